//! Connection handling: opening the clients' connections (at most
//! [`CONNECTING_AT_ONCE`] at a time, so a listen backlog is never
//! flooded), noticing them open, closing them, and opening them again
//! after a pause when they are turned away ([`BUSY_PAUSE`]) or fail
//! ([`RETRY_PAUSE`]).
//!
//! A connection that opens again first sends what it owed on the one it
//! lost, with the requests' original times, so a rejection shows as
//! latency. If no connection at all can be opened, the run fails with the
//! first cause ([`Driver::connect_error`]).
//!
//! Over TLS a connection counts as connecting until its handshake is done
//! (so at most [`CONNECTING_AT_ONCE`] handshakes are under way at once),
//! and a failed handshake is a failed connect, whose cause the run reports
//! if no connection opens at all (an untrusted certificate, say).

use std::cmp::Reverse;
use std::io::{self, ErrorKind};
use std::time::{Duration, Instant};

use rustix::event::epoll::{self, EventData, EventFlags};
use socket2::{Domain, Protocol, SockAddr, Socket, Type};

use super::send::{payload, PING_PAYLOAD};
use super::state::{Driver, Lost, Phase, State};
use crate::bench::error::BenchError;
use crate::frame::{Framing, DATA, PING};

/// Connection attempts in progress at once.
pub(super) const CONNECTING_AT_ONCE: usize = 256;
/// The longest the connections may take to open before the warm-up starts
/// anyway.
pub(super) const CONNECT_LIMIT: Duration = Duration::from_secs(10);
/// Pause before a client turned away with GOAWAY 3 connects again.
pub(super) const BUSY_PAUSE: Duration = Duration::from_millis(5);
/// Pause before a client whose connection failed connects again.
pub(super) const RETRY_PAUSE: Duration = Duration::from_millis(50);

impl Driver<'_> {
    /// Why no connection could be opened: the first attempt's error, or
    /// the time it waited for one.
    pub(super) fn connect_error(&mut self) -> BenchError {
        let source = self.first_connect_error.take().unwrap_or_else(|| {
            io::Error::new(
                ErrorKind::TimedOut,
                format!("no connection opened within {CONNECT_LIMIT:?}"),
            )
        });
        BenchError::Connect {
            addr: self.addr,
            source,
        }
    }

    pub(super) fn fire_timers(&mut self, now: Instant) {
        while let Some(Reverse((at, i))) = self.timers.peek().copied() {
            if at > now {
                break;
            }
            self.timers.pop();
            if self.conns[i].state == State::Closed && self.phase < Phase::Drain {
                self.to_connect.push_back(i);
            }
        }
    }

    pub(super) fn start_connects(&mut self) {
        while self.connecting < CONNECTING_AT_ONCE && self.phase < Phase::Drain {
            let Some(i) = self.to_connect.pop_front() else {
                break;
            };
            if self.conns[i].state != State::Closed {
                continue;
            }
            match self.open_socket(i) {
                Ok(true) => self.on_connected(i),
                Ok(false) => {
                    self.conns[i].state = State::Connecting;
                    self.connecting += 1;
                }
                Err(e) => self.connect_failed(i, e),
            }
        }
    }

    /// Starts a connection; `Ok(true)` if it is already open.
    fn open_socket(&mut self, i: usize) -> io::Result<bool> {
        let socket = Socket::new(
            Domain::for_address(self.addr),
            Type::STREAM,
            Some(Protocol::TCP),
        )?;
        socket.set_nonblocking(true)?;
        socket.set_nodelay(true)?;
        let session = match self.tls {
            Some(tls) => Some(tls.session().map_err(io::Error::other)?),
            None => None,
        };
        let c = &mut self.conns[i];
        c.generation = c.generation.wrapping_add(1);
        if session.is_some() {
            c.connect_started = Instant::now();
        }
        c.tls = session;
        let open = match socket.connect(&SockAddr::from(self.addr)) {
            Ok(()) => true,
            Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => false,
            Err(e) => return Err(e),
        };
        let key = EventData::new_u64((u64::from(c.generation) << 32) | i as u64);
        epoll::add(&self.epoll, &socket, key, EventFlags::IN | EventFlags::OUT)?;
        c.watching_writes = true;
        c.socket = Some(socket);
        Ok(open)
    }

    pub(super) fn connect_failed(&mut self, i: usize, e: io::Error) {
        let addr = self.addr;
        self.error(|| format!("cannot connect to {addr}: {e}"));
        if self.first_connect_error.is_none() {
            self.first_connect_error = Some(e);
        }
        self.close(i, Lost::Failed);
    }

    pub(super) fn on_connected(&mut self, i: usize) {
        let c = &mut self.conns[i];
        if c.tls.is_some() {
            // Open for sending (rustls keeps the plaintext until the
            // handshake is done), but connecting until the handshake is:
            // `handshake_done` counts it then.
            c.handshaking = true;
            self.connecting += 1;
        } else {
            self.ever_connected = true;
            if !c.tried {
                c.tried = true;
                self.untried -= 1;
            }
        }
        c.state = State::Open;
        c.batches = 0;
        // What it owed on a connection that was lost goes again.
        c.output.clear();
        let kind = if c.idle { PING } else { DATA };
        let len = if c.idle {
            PING_PAYLOAD
        } else {
            self.options.payload
        };
        for owed in &c.owed {
            payload(c.id, owed.seq, len, &mut self.scratch);
            Framing::Length.encode(kind, &self.scratch, &mut c.output);
        }
        if self.phase >= Phase::Warmup {
            self.next_batch(i, Instant::now());
        }
        self.flush(i);
    }

    /// Drops a connection's socket (closing it) and decides when it opens
    /// again. What it owed stays owed.
    pub(super) fn close(&mut self, i: usize, why: Lost) {
        let c = &mut self.conns[i];
        if c.state == State::Connecting || c.handshaking {
            self.connecting -= 1;
        }
        if !c.tried {
            c.tried = true;
            self.untried -= 1;
        }
        if let (Some(tls), Some(socket)) = (c.tls.as_mut(), c.socket.as_ref()) {
            if !c.handshaking && matches!(why, Lost::Churn | Lost::Done) {
                // A polite end, as a real client's: close_notify, if the
                // socket takes it now.
                tls.send_close_notify();
                let _ = tls.write_tls(&mut &*socket);
            }
        }
        c.tls = None;
        c.handshaking = false;
        c.socket = None;
        c.state = State::Closed;
        c.input.clear();
        c.output.clear();
        c.watching_writes = false;
        if self.phase >= Phase::Drain {
            return;
        }
        let now = Instant::now();
        match why {
            Lost::Churn => self.to_connect.push_back(i),
            Lost::Busy => self.timers.push(Reverse((now + BUSY_PAUSE, i))),
            Lost::Failed => self.timers.push(Reverse((now + RETRY_PAUSE, i))),
            Lost::Done => {}
        }
    }
}
