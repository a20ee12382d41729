//! Receiving: readiness from epoll for each connection (a connect's
//! outcome, room to write, replies to read), and every reply checked
//! against the request it answers.
//!
//! A connection that is turned away (GOAWAY 3), fails or answers wrongly
//! is closed (`connect` opens it again after a pause). A verified reply
//! counts toward throughput if it arrives inside the window, and toward
//! latency if its request was also sent (or due) inside it.

use std::io::{self, ErrorKind, Read};
use std::time::Instant;

use rustix::event::epoll::EventFlags;
use socket2::Socket;

use super::send::{payload, PING_PAYLOAD};
use super::state::{micros, Driver, Lost, Phase, State};
use crate::frame::{GoAwayCode, DATA, ERROR, GOAWAY, HEADER_LEN, PONG};

impl Driver<'_> {
    pub(super) fn on_event(&mut self, key: u64, flags: EventFlags) {
        let i = (key & u64::from(u32::MAX)) as usize;
        let generation = (key >> 32) as u32;
        let Some(c) = self.conns.get(i) else { return };
        if c.generation != generation || c.socket.is_none() {
            return;
        }
        match c.state {
            State::Closed => {}
            State::Connecting => {
                let outcome = match c.socket.as_ref().map(Socket::take_error) {
                    Some(Ok(None)) if flags.contains(EventFlags::OUT) => Ok(()),
                    Some(Ok(Some(e))) | Some(Err(e)) => Err(e),
                    _ if flags.intersects(EventFlags::ERR | EventFlags::HUP) => Err(
                        io::Error::new(ErrorKind::ConnectionAborted, "closed while connecting"),
                    ),
                    _ => return,
                };
                self.connecting -= 1;
                match outcome {
                    Ok(()) => self.on_connected(i),
                    Err(e) => {
                        // `close` must not count it as connecting again.
                        self.conns[i].state = State::Closed;
                        self.connect_failed(i, e);
                    }
                }
            }
            State::Open => {
                if flags.contains(EventFlags::OUT) {
                    self.flush(i);
                }
                if self.conns[i].state == State::Open
                    && flags.intersects(EventFlags::IN | EventFlags::ERR | EventFlags::HUP)
                {
                    self.read(i);
                }
            }
        }
    }

    fn read(&mut self, i: usize) {
        if self.conns[i].tls.is_some() {
            return self.read_tls(i);
        }
        let c = &self.conns[i];
        let id = c.id;
        let Some(socket) = c.socket.as_ref() else {
            return;
        };
        let got = match (&*socket).read(&mut self.buf) {
            Ok(0) => {
                let lost = if self.phase >= Phase::Drain {
                    Lost::Done
                } else {
                    Lost::Failed
                };
                self.error(|| format!("connection {id}: closed by the server"));
                self.close(i, lost);
                return;
            }
            Ok(got) => got,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::Interrupted) => return,
            Err(e) => {
                self.error(|| format!("connection {id}: read: {e}"));
                self.close(i, Lost::Failed);
                return;
            }
        };
        let now = Instant::now();
        let mut input = std::mem::take(&mut self.conns[i].input);
        input.extend_from_slice(&self.buf[..got]);
        // `None`: the connection was closed, and its input is gone with it.
        if let Some(used) = self.replies(i, &input, now) {
            input.drain(..used);
            self.conns[i].input = input;
            self.next_batch(i, now);
            self.flush(i);
        }
    }

    /// Handles every whole reply in `input`; returns the bytes used, or
    /// `None` if the connection had to be closed.
    pub(super) fn replies(&mut self, i: usize, input: &[u8], now: Instant) -> Option<usize> {
        let limit = self.options.payload.max(PING_PAYLOAD) + 64 * 1024;
        let mut at = 0;
        while input.len() - at >= HEADER_LEN {
            let head = &input[at..];
            let len = u32::from_be_bytes([head[0], head[1], head[2], head[3]]) as usize;
            let id = self.conns[i].id;
            if len == 0 || len > limit {
                self.error(|| format!("connection {id}: a reply with a bad length ({len})"));
                self.close(i, Lost::Failed);
                return None;
            }
            if head.len() < 4 + len {
                break;
            }
            let kind = head[4];
            let body = &head[HEADER_LEN..4 + len];
            at += 4 + len;
            if kind == GOAWAY {
                let code = match body {
                    [a, b, ..] => u16::from_be_bytes([*a, *b]),
                    _ => 0,
                };
                if code == GoAwayCode::Busy.as_u16() {
                    if self.phase == Phase::Window {
                        self.busy += 1;
                    }
                    self.close(i, Lost::Busy);
                } else if code == GoAwayCode::Shutdown.as_u16() && self.phase >= Phase::Drain {
                    self.close(i, Lost::Done);
                } else {
                    let reason = String::from_utf8_lossy(body.get(2..).unwrap_or_default());
                    self.error(|| format!("connection {id}: GOAWAY {code} {reason}"));
                    self.close(i, Lost::Failed);
                }
                return None;
            }
            let c = &mut self.conns[i];
            let Some(owed) = c.owed.pop_front() else {
                self.error(|| format!("connection {id}: a reply to no request (kind {kind})"));
                self.close(i, Lost::Failed);
                return None;
            };
            if kind == ERROR {
                let text = String::from_utf8_lossy(body);
                self.error(|| format!("connection {id}: ERROR {text}"));
                continue;
            }
            let (want_kind, len) = if c.idle {
                (PONG, PING_PAYLOAD)
            } else {
                (DATA, self.options.payload)
            };
            payload(c.id, owed.seq, len, &mut self.expected);
            if kind != want_kind || body != self.expected.as_slice() {
                let seq = owed.seq;
                self.error(|| {
                    format!("connection {id}: the reply to request {seq} is not what was sent")
                });
                self.close(i, Lost::Failed);
                return None;
            }
            let wait = micros(now.saturating_duration_since(owed.from));
            if c.idle {
                if owed.measured && self.phase >= Phase::Window {
                    self.pongs += 1;
                    self.idle_latency.saturating_record(wait);
                }
            } else if self.phase == Phase::Window {
                // Throughput counts every reply the window saw, also to a
                // request sent before it: under overload, requests wait in
                // line longer than a window, and counting only those sent
                // inside it would understate what the server delivered.
                // Latency keeps to requests sent (or due) in the window.
                c.served = true;
                self.requests += 1;
                if owed.measured {
                    self.latency.saturating_record(wait);
                }
            }
        }
        Some(at)
    }
}
