//! Counters an operator reads to see trouble, and the [`Report`] a server
//! returns when it stops.
//!
//! Connection-level events (accepts, rejections, reaps, ...) are rare and
//! use shared atomics. Requests are counted per worker in a cache-line
//! padded slot that only that worker writes, so the hot path never bounces
//! a shared cache line between cores.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};

use crossbeam_utils::CachePadded;

/// Live counters shared by the server's threads.
#[derive(Debug)]
pub(crate) struct Stats {
    pub(crate) accepted: AtomicU64,
    pub(crate) rejected_busy: AtomicU64,
    pub(crate) reaped: AtomicU64,
    pub(crate) protocol_errors: AtomicU64,
    pub(crate) write_timeouts: AtomicU64,
    pub(crate) accept_errors: AtomicU64,
    pub(crate) service_panics: AtomicU64,
    requests: Box<[CachePadded<AtomicU64>]>,
}

impl Stats {
    pub(crate) fn new(workers: usize) -> Self {
        Stats {
            accepted: AtomicU64::new(0),
            rejected_busy: AtomicU64::new(0),
            reaped: AtomicU64::new(0),
            protocol_errors: AtomicU64::new(0),
            write_timeouts: AtomicU64::new(0),
            accept_errors: AtomicU64::new(0),
            service_panics: AtomicU64::new(0),
            requests: (0..workers)
                .map(|_| CachePadded::new(AtomicU64::new(0)))
                .collect(),
        }
    }

    /// Adds one to a connection-level counter.
    pub(crate) fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Adds `n` answered requests to worker `worker`'s own slot.
    pub(crate) fn add_requests(&self, worker: usize, n: u64) {
        let slot = &self.requests[worker];
        // Only this worker writes its slot: a load and a store, no lock prefix.
        slot.store(slot.load(Ordering::Relaxed) + n, Ordering::Relaxed);
    }

    /// The counters as they are now.
    pub(crate) fn report(&self, forced: bool) -> Report {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        Report {
            accepted: get(&self.accepted),
            rejected_busy: get(&self.rejected_busy),
            reaped: get(&self.reaped),
            requests: self.requests.iter().map(|c| get(c)).sum(),
            protocol_errors: get(&self.protocol_errors),
            write_timeouts: get(&self.write_timeouts),
            accept_errors: get(&self.accept_errors),
            service_panics: get(&self.service_panics),
            forced,
        }
    }
}

/// The counters plus the connections live right now, for the periodic log.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Snapshot {
    /// The counters so far.
    pub(crate) report: Report,
    /// Connections a worker is serving now.
    pub(crate) active: usize,
    /// Connections waiting in the queue now.
    pub(crate) queued: usize,
}

impl fmt::Display for Snapshot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "active={} queued={} {}",
            self.active, self.queued, self.report
        )
    }
}

/// What a server did over its life, returned by [`crate::Server::join`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Report {
    /// Connections accepted (including those then rejected as busy).
    pub accepted: u64,
    /// Connections sent GOAWAY 3: queue full, or deadline passed in the queue.
    pub rejected_busy: u64,
    /// Connections closed with GOAWAY 2 for missing their heartbeat deadline.
    pub reaped: u64,
    /// Requests answered: every complete frame that got a reply (DATA, PONG or ERROR).
    pub requests: u64,
    /// Connections closed with GOAWAY 4 or 5 for a malformed stream.
    pub protocol_errors: u64,
    /// Connections dropped because the client did not take its responses.
    pub write_timeouts: u64,
    /// Errors from `accept` (for example out of file descriptors).
    pub accept_errors: u64,
    /// Requests whose service panicked (answered with ERROR).
    pub service_panics: u64,
    /// Whether the drain ran out of time (or was cut short) and connections
    /// were closed by force.
    pub forced: bool,
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "accepted={} rejected_busy={} reaped={} requests={} protocol_errors={} \
             write_timeouts={} accept_errors={} service_panics={}",
            self.accepted,
            self.rejected_busy,
            self.reaped,
            self.requests,
            self.protocol_errors,
            self.write_timeouts,
            self.accept_errors,
            self.service_panics,
        )
    }
}
