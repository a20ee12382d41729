//! What the driver keeps: where the run is ([`Phase`]), each client
//! connection ([`Conn`]) with the requests it owes ([`Owed`]), the
//! schedules of the open loop and the idle clients ([`Schedule`]), and the
//! [`Driver`] itself with the figures counted so far.
//!
//! Plain data: the `impl Driver` blocks in the sibling modules (connecting,
//! sending, receiving, the window) all work on it, and this module imports
//! none of them.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::io;
use std::net::SocketAddr;
use std::os::fd::OwnedFd;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use rustls::ClientConnection;
use socket2::Socket;

use crate::bench::options::BenchOptions;
use crate::bench::tls::ClientTls;

/// The longest one wait for readiness lasts, so a cancel is seen soon.
pub(super) const MAX_WAIT: Duration = Duration::from_millis(20);

/// Where the run is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Phase {
    /// Opening the connections; nothing is sent.
    Connect,
    /// Sending, counting nothing.
    Warmup,
    /// Sending and counting.
    Window,
    /// The window is over: waiting out the PING grace, sending nothing.
    Drain,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum State {
    /// No socket: waiting to connect (in the queue or paused).
    Closed,
    Connecting,
    Open,
}

/// A request sent, or to be sent when the connection opens.
pub(super) struct Owed {
    pub(super) seq: u64,
    /// Due time (open loop, PINGs) or send time (closed loop).
    pub(super) from: Instant,
    /// Due or sent inside the window.
    pub(super) measured: bool,
}

pub(super) struct Conn {
    /// The number in its payloads; its index in the driver.
    pub(super) id: u64,
    pub(super) idle: bool,
    pub(super) socket: Option<Socket>,
    /// Bumped for every new socket, so readiness of an old one is ignored.
    pub(super) generation: u32,
    pub(super) state: State,
    /// Whether its first connection attempt has had an outcome.
    pub(super) tried: bool,
    pub(super) input: Vec<u8>,
    pub(super) output: Vec<u8>,
    pub(super) watching_writes: bool,
    pub(super) owed: VecDeque<Owed>,
    pub(super) next_seq: u64,
    /// Closed loop: batches sent on the current connection.
    pub(super) batches: usize,
    /// A verified reply arrived in the window.
    pub(super) served: bool,
    /// Over TLS: the session on the current socket. `output` is plaintext
    /// that goes into it.
    pub(super) tls: Option<Box<ClientConnection>>,
    /// Over TLS: the socket is open and its handshake not done yet (it
    /// still holds one of the connecting slots).
    pub(super) handshaking: bool,
    /// Over TLS: when the current socket started connecting.
    pub(super) connect_started: Instant,
}

/// Why a connection is closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Lost {
    /// Closed loop churn: reconnect at once.
    Churn,
    /// GOAWAY 3: reconnect after [`BUSY_PAUSE`](super::connect::BUSY_PAUSE).
    Busy,
    /// Failed: reconnect after [`RETRY_PAUSE`](super::connect::RETRY_PAUSE).
    Failed,
    /// The server is shutting down after the window: do not reconnect.
    Done,
}

/// A global schedule: event `k` due at `start + k * interval`.
pub(super) struct Schedule {
    pub(super) interval: f64,
    pub(super) next: u64,
}

impl Schedule {
    pub(super) fn due(&self, start: Instant) -> Instant {
        start + Duration::from_secs_f64(self.next as f64 * self.interval)
    }
}

/// Everything the driver keeps: the connections, the clock of the run,
/// and what has been counted.
pub(super) struct Driver<'a> {
    pub(super) addr: SocketAddr,
    pub(super) options: &'a BenchOptions,
    pub(super) epoll: OwnedFd,
    pub(super) conns: Vec<Conn>,
    pub(super) to_connect: VecDeque<usize>,
    pub(super) connecting: usize,
    /// Conns whose first attempt has not had an outcome yet.
    pub(super) untried: usize,
    pub(super) timers: BinaryHeap<Reverse<(Instant, usize)>>,
    pub(super) phase: Phase,
    /// Schedule origin (the warm-up start) and the planned window.
    pub(super) start: Instant,
    pub(super) window_start: Instant,
    pub(super) window_end: Instant,
    pub(super) busy_schedule: Option<Schedule>,
    pub(super) idle_schedule: Option<Schedule>,
    pub(super) latency: Histogram<u64>,
    pub(super) idle_latency: Histogram<u64>,
    pub(super) requests: u64,
    pub(super) pongs: u64,
    pub(super) busy: u64,
    pub(super) errors: u64,
    pub(super) first_error: Option<String>,
    pub(super) first_connect_error: Option<io::Error>,
    pub(super) ever_connected: bool,
    pub(super) scratch: Vec<u8>,
    pub(super) expected: Vec<u8>,
    pub(super) buf: Vec<u8>,
    /// Over TLS: what every connection's session is made from.
    pub(super) tls: Option<&'a ClientTls>,
    /// Over TLS: handshakes completed in the window, and how long each
    /// took from the connect.
    pub(super) handshakes: u64,
    pub(super) handshake_latency: Histogram<u64>,
}

/// A latency histogram: 1 µs to an hour, 3 significant digits.
pub(super) fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("static histogram bounds are valid")
}

/// `d` in whole microseconds, at least 1 (the histogram's floor).
pub(super) fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_schedule_spreads_events_evenly() {
        let start = Instant::now();
        let mut s = Schedule {
            interval: 0.001,
            next: 0,
        };
        assert_eq!(s.due(start), start);
        s.next = 1500;
        assert_eq!(s.due(start) - start, Duration::from_millis(1500));
    }
}
