//! The load engine: every client connection on the calling thread, driven
//! by readiness from epoll, so ten thousand clients cost ten thousand
//! sockets and no threads.
//!
//! Three kinds of traffic share the loop:
//!
//! - **closed loop** (no `rate`): each busy client sends `pipeline`
//!   requests, waits for every reply, and sends the next batch, closing
//!   and reconnecting after `batches_per_connection` batches; latency
//!   counts from the send;
//! - **open loop** (`rate` R): one global schedule, request `k` due at
//!   `start + k / R` on busy client `k mod clients`, sent when due whether
//!   or not earlier replies are back (they pipeline on the connection), or
//!   as soon as the loop can when it is late; latency counts from the due
//!   time, so it includes every wait a real client would see;
//! - **idle clients** (`idle` N): PING `k` due at `start + k * idle_ping / N`
//!   on idle client `k mod N`, so each PINGs every `idle_ping`, staggered;
//!   PONG latency from the due time goes to a histogram of its own.
//!
//! Connections open first (at most
//! [`CONNECTING_AT_ONCE`](connect::CONNECTING_AT_ONCE) at a time, so a
//! listen backlog is never flooded); if none can be opened, the run fails
//! with the first cause. Then comes the warm-up and the measured window:
//! latency counts the requests sent (closed loop) or due (open loop, PINGs)
//! inside it whose replies arrive inside it, and throughput every reply that
//! arrives inside it. At the end of the window
//! every request still unanswered records its wait so far, so clients the
//! server never served show in the percentiles; PINGs due in the window get
//! a short grace ([`PING_GRACE`]) for their PONG, then count as missed.
//!
//! Every reply is checked against the request it answers (payloads name
//! their connection and sequence number). A connection that is turned away
//! (GOAWAY 3), fails or answers wrongly is closed and opened again after a
//! pause; the requests it owed are sent again on the new connection and
//! keep their original time, so a rejection shows as latency.
//!
//! Over TLS (`tls`), each connection has a rustls session between its
//! frames and its socket, resumption off, so every connection makes a full
//! handshake; its requests are written into the session as soon as the
//! socket is open (rustls sends them right after the handshake), and it
//! counts as connecting until the handshake is done. A plain run never
//! touches any of it: one check of the connection's session per read and
//! per write.
//!
//! The modules: `state`, what the driver keeps; `connect`, the connections
//! opening, closing and opening again; `closed_loop` and `open_loop`, which
//! requests go out when; `idle`, the idle clients; `send` and `receive`,
//! the bytes each way and the check of every reply; `tls`, the same
//! through a TLS session, and the handshakes; `window`, the measured
//! window and the point it yields. This file runs the loop through the
//! phases.

mod closed_loop;
mod connect;
mod idle;
mod open_loop;
mod receive;
mod send;
mod state;
mod tls;
mod window;

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rustix::buffer::spare_capacity;
use rustix::event::epoll::{self, CreateFlags, Event};
use rustix::event::Timespec;

use super::error::BenchError;
use super::options::BenchOptions;
use super::point::BenchPoint;
use super::tls::ClientTls;
use connect::CONNECT_LIMIT;
use idle::PING_GRACE;
use state::{histogram, Conn, Driver, Phase, Schedule, State, MAX_WAIT};

pub use window::Edge;

/// Events taken from the kernel per wait.
const EVENTS: usize = 1024;
/// Bytes read per read call.
const READ_CHUNK: usize = 64 * 1024;

/// Runs the whole load: connect, warm up, measure, close everything.
pub(super) fn drive(
    addr: SocketAddr,
    options: &BenchOptions,
    tls: Option<&ClientTls>,
    cancel: &AtomicBool,
    watch: &mut dyn FnMut(Edge),
) -> Result<BenchPoint, BenchError> {
    let epoll =
        epoll::create(CreateFlags::CLOEXEC).map_err(|e| BenchError::Driver(io::Error::from(e)))?;
    let total = options.clients + options.idle;
    let now = Instant::now();
    let mut driver = Driver {
        addr,
        options,
        epoll,
        conns: (0..total)
            .map(|i| Conn {
                id: i as u64,
                idle: i >= options.clients,
                socket: None,
                generation: 0,
                state: State::Closed,
                tried: false,
                input: Vec::new(),
                output: Vec::new(),
                watching_writes: false,
                owed: VecDeque::new(),
                next_seq: 1,
                batches: 0,
                served: false,
                tls: None,
                handshaking: false,
                connect_started: now,
            })
            .collect(),
        to_connect: (0..total).collect(),
        connecting: 0,
        untried: total,
        timers: BinaryHeap::new(),
        phase: Phase::Connect,
        start: now,
        window_start: now,
        window_end: now,
        busy_schedule: options.rate.map(|rate| Schedule {
            interval: 1.0 / rate,
            next: 0,
        }),
        idle_schedule: (options.idle > 0).then(|| Schedule {
            interval: options.idle_ping.as_secs_f64() / options.idle as f64,
            next: 0,
        }),
        latency: histogram(),
        idle_latency: histogram(),
        requests: 0,
        pongs: 0,
        busy: 0,
        errors: 0,
        first_error: None,
        first_connect_error: None,
        ever_connected: false,
        scratch: Vec::new(),
        expected: Vec::new(),
        buf: vec![0; READ_CHUNK],
        tls,
        handshakes: 0,
        handshake_latency: histogram(),
    };
    let result = driver.run(cancel, watch);
    // Every connection is closed here, whatever the server does next.
    driver.conns.clear();
    result
}

impl Driver<'_> {
    fn run(
        &mut self,
        cancel: &AtomicBool,
        watch: &mut dyn FnMut(Edge),
    ) -> Result<BenchPoint, BenchError> {
        let began = Instant::now();
        let mut events: Vec<Event> = Vec::with_capacity(EVENTS);
        let mut real_start = began;
        let mut real_end = began;
        let mut drain_until = began;
        // Bounded: every phase ends by the clock; this is the backstop.
        let backstop = began
            + CONNECT_LIMIT
            + self.options.warmup
            + self.options.duration
            + PING_GRACE
            + Duration::from_secs(10);
        loop {
            let now = Instant::now();
            if now >= backstop {
                break;
            }
            if cancel.load(Ordering::Relaxed) {
                match self.phase {
                    Phase::Connect | Phase::Warmup => return Err(BenchError::Cancelled),
                    Phase::Window => {
                        real_end = self.end_window(now, watch);
                        drain_until = now;
                    }
                    Phase::Drain => break,
                }
            }
            match self.phase {
                Phase::Connect => {
                    if self.untried == 0 || now >= began + CONNECT_LIMIT {
                        if !self.ever_connected {
                            return Err(self.connect_error());
                        }
                        self.start = now;
                        self.window_start = now + self.options.warmup;
                        self.window_end = self.window_start + self.options.duration;
                        self.phase = Phase::Warmup;
                        for i in 0..self.options.clients {
                            self.next_batch(i, now);
                        }
                    }
                }
                Phase::Warmup => {
                    if now >= self.window_start {
                        self.phase = Phase::Window;
                        real_start = Instant::now();
                        watch(Edge::Start);
                        // The window lasts `duration` from when the caller
                        // was told it started, however late that was.
                        self.window_end = real_start + self.options.duration;
                    }
                }
                Phase::Window => {
                    if now >= self.window_end {
                        real_end = self.end_window(now, watch);
                        drain_until = now + self.ping_grace();
                    }
                }
                Phase::Drain => {
                    if now >= drain_until || !self.pings_outstanding() {
                        break;
                    }
                }
            }
            self.fire_timers(now);
            self.start_connects();
            let mut next = now + MAX_WAIT;
            if matches!(self.phase, Phase::Warmup | Phase::Window) {
                next = next.min(self.send_scheduled(now));
            }
            next = match self.phase {
                Phase::Connect => next,
                Phase::Warmup => next.min(self.window_start),
                Phase::Window => next.min(self.window_end),
                Phase::Drain => next.min(drain_until),
            };
            if let Some(Reverse((at, _))) = self.timers.peek() {
                next = next.min(*at);
            }
            self.wait(&mut events, next.saturating_duration_since(Instant::now()))?;
            for event in &events {
                self.on_event(event.data.u64(), event.flags);
            }
        }
        if self.phase == Phase::Window {
            real_end = self.end_window(Instant::now(), watch);
        }
        Ok(self.outcome(real_start, real_end))
    }

    fn wait(&mut self, events: &mut Vec<Event>, timeout: Duration) -> Result<(), BenchError> {
        events.clear();
        let timeout = Timespec {
            tv_sec: timeout.as_secs() as _,
            tv_nsec: timeout.subsec_nanos() as _,
        };
        match epoll::wait(&self.epoll, spare_capacity(events), Some(&timeout)) {
            Ok(_) | Err(rustix::io::Errno::INTR) => Ok(()),
            Err(e) => Err(BenchError::Driver(io::Error::from(e))),
        }
    }
}
