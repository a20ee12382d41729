//! Counters an operator reads to see trouble, and the [`Report`] a server
//! returns when it stops.
//!
//! Connection-level events (accepts, rejections, reaps, wake-ups) are rare
//! next to requests and use shared atomics. What a worker does per request
//! or per hand-off (requests answered, DATA requests among them, rests,
//! requeues) is counted in that
//! worker's own cache-line padded slot, which only it writes, so the hot
//! path never bounces a shared cache line between cores. How many
//! connections are where right now is not counted at all: it is read off
//! the registry when asked for (see [`Snapshot`]).
//!
//! The two latency histograms that `--metrics` exports (time in line for a
//! worker, time in the service per DATA request) follow the same rule: each
//! worker records into its own array of bucket counts, with a plain load
//! and store per observation, and a reader sums the workers' arrays when it
//! is asked. prometheus-client's own `Histogram` takes a write lock per
//! observation, which the hot path cannot afford. Timing costs two clock
//! reads per observation (tens of nanoseconds), so the histograms are only
//! recorded when the metrics endpoint is on, or the in-process benchmark
//! reads them (see `reply`, `line` and `worker`, and
//! `Server::start_timed`); the counters always are. The time in line of a
//! new connection, or one sent back, is stamped when it joins the line; the
//! time in line of a resting connection's request is read from the kernel,
//! which stamps each packet's arrival while the histograms are on.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};

use crossbeam_utils::CachePadded;

use crate::observe::turned_away::Busy;

/// Live counters shared by the server's threads.
#[derive(Debug)]
pub(crate) struct Stats {
    pub(crate) accepted: AtomicU64,
    pub(crate) rejected_max_connections: AtomicU64,
    pub(crate) rejected_queue_full: AtomicU64,
    pub(crate) rejected_queue_deadline: AtomicU64,
    pub(crate) rejected_per_address_connections: AtomicU64,
    pub(crate) rejected_per_address_rate: AtomicU64,
    pub(crate) reaped: AtomicU64,
    pub(crate) protocol_errors: AtomicU64,
    pub(crate) write_timeouts: AtomicU64,
    pub(crate) accept_errors: AtomicU64,
    pub(crate) service_panics: AtomicU64,
    /// TLS handshakes completed, failed, and timed out (exported with
    /// `--metrics` when a TLS listener exists; not in the report).
    pub(crate) tls_handshakes_ok: AtomicU64,
    pub(crate) tls_handshakes_failed: AtomicU64,
    pub(crate) tls_handshakes_timeout: AtomicU64,
    /// TLS reloads that replaced the set, and that kept the old one.
    pub(crate) tls_reloads_ok: AtomicU64,
    pub(crate) tls_reloads_failed: AtomicU64,
    /// The serving certificate's `notAfter`, in Unix seconds.
    pub(crate) tls_expiry: std::sync::atomic::AtomicI64,
    workers: Box<[CachePadded<WorkerCounts>]>,
}

/// What one worker counts; only that worker writes it.
#[derive(Debug, Default)]
struct WorkerCounts {
    requests: AtomicU64,
    data_requests: AtomicU64,
    rests: AtomicU64,
    wakeups: AtomicU64,
    requeues: AtomicU64,
    /// Time in the service per DATA request.
    service: Buckets,
    /// Time a connection with work waited in line before this worker took it.
    queue_wait: Buckets,
    /// Time from accept to a completed TLS handshake.
    tls_handshake: Buckets,
}

/// Upper bounds of the histogram buckets, in nanoseconds: 1 µs to 10 s in
/// 1-2.5-5 steps, then +Inf. An echo answers in about a microsecond, a
/// connection waits microseconds for an idle worker and up to the heartbeat
/// timeout for a saturated pool.
pub(crate) const BOUNDS_NS: [u64; 22] = [
    1_000,
    2_500,
    5_000,
    10_000,
    25_000,
    50_000,
    100_000,
    250_000,
    500_000,
    1_000_000,
    2_500_000,
    5_000_000,
    10_000_000,
    25_000_000,
    50_000_000,
    100_000_000,
    250_000_000,
    500_000_000,
    1_000_000_000,
    2_500_000_000,
    5_000_000_000,
    10_000_000_000,
];

/// One bucket per bound, plus +Inf.
const SLOTS: usize = BOUNDS_NS.len() + 1;

/// One worker's share of a histogram: how many observations fell in each
/// bucket (not cumulative), and their sum. Only the owning worker writes.
#[derive(Debug, Default)]
struct Buckets {
    counts: [AtomicU64; SLOTS],
    sum_ns: AtomicU64,
}

impl Buckets {
    /// Records one observation: a search over 22 bounds, two plain stores.
    fn observe_own(&self, ns: u64) {
        let slot = BOUNDS_NS.partition_point(|&bound| bound < ns);
        add_own(&self.counts[slot], 1);
        add_own(&self.sum_ns, ns);
    }
}

/// A histogram summed over every worker, at one moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Histogram {
    /// Observations per bucket (not cumulative), the last one +Inf.
    pub(crate) counts: [u64; SLOTS],
    /// Sum of the observations, in nanoseconds.
    pub(crate) sum_ns: u128,
}

impl Histogram {
    /// How many observations there were.
    pub(crate) fn count(&self) -> u64 {
        self.counts.iter().sum()
    }

    fn sum_of<'a>(parts: impl Iterator<Item = &'a Buckets>) -> Histogram {
        let mut total = Histogram {
            counts: [0; SLOTS],
            sum_ns: 0,
        };
        for part in parts {
            for (sum, count) in total.counts.iter_mut().zip(&part.counts) {
                *sum += count.load(Ordering::Relaxed);
            }
            total.sum_ns += u128::from(part.sum_ns.load(Ordering::Relaxed));
        }
        total
    }
}

/// Adds `n` to a counter that only the calling thread writes: a load and a
/// store, no lock prefix.
fn add_own(counter: &AtomicU64, n: u64) {
    counter.store(counter.load(Ordering::Relaxed) + n, Ordering::Relaxed);
}

impl Stats {
    /// The counter of connections turned away with BUSY for `why`.
    pub(crate) fn rejected(&self, why: Busy) -> &AtomicU64 {
        match why {
            Busy::MaxConnections => &self.rejected_max_connections,
            Busy::QueueFull => &self.rejected_queue_full,
            Busy::QueueDeadline => &self.rejected_queue_deadline,
            Busy::PerAddressConnections => &self.rejected_per_address_connections,
            Busy::PerAddressRate => &self.rejected_per_address_rate,
        }
    }

    pub(crate) fn new(workers: usize) -> Self {
        Stats {
            accepted: AtomicU64::new(0),
            rejected_max_connections: AtomicU64::new(0),
            rejected_queue_full: AtomicU64::new(0),
            rejected_queue_deadline: AtomicU64::new(0),
            rejected_per_address_connections: AtomicU64::new(0),
            rejected_per_address_rate: AtomicU64::new(0),
            reaped: AtomicU64::new(0),
            protocol_errors: AtomicU64::new(0),
            write_timeouts: AtomicU64::new(0),
            accept_errors: AtomicU64::new(0),
            service_panics: AtomicU64::new(0),
            tls_handshakes_ok: AtomicU64::new(0),
            tls_handshakes_failed: AtomicU64::new(0),
            tls_handshakes_timeout: AtomicU64::new(0),
            tls_reloads_ok: AtomicU64::new(0),
            tls_reloads_failed: AtomicU64::new(0),
            tls_expiry: std::sync::atomic::AtomicI64::new(0),
            workers: (0..workers).map(|_| CachePadded::default()).collect(),
        }
    }

    /// Adds one to a connection-level counter.
    pub(crate) fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Adds `n` answered requests to worker `worker`'s own slot.
    pub(crate) fn add_requests(&self, worker: usize, n: u64) {
        add_own(&self.workers[worker].requests, n);
    }

    /// Adds `n` answered DATA requests to worker `worker`'s own slot.
    pub(crate) fn add_data_requests(&self, worker: usize, n: u64) {
        add_own(&self.workers[worker].data_requests, n);
    }

    /// Worker `worker` put a quiet connection to rest.
    pub(crate) fn add_rest(&self, worker: usize) {
        add_own(&self.workers[worker].rests, 1);
    }

    /// Worker `worker` sent a connection back in line (batch budget).
    pub(crate) fn add_requeue(&self, worker: usize) {
        add_own(&self.workers[worker].requeues, 1);
    }

    /// Worker `worker` ran the service for one DATA request, for `ns`
    /// nanoseconds.
    pub(crate) fn observe_service(&self, worker: usize, ns: u64) {
        self.workers[worker].service.observe_own(ns);
    }

    /// Worker `worker` took a connection that had waited `ns` nanoseconds
    /// in line.
    pub(crate) fn observe_queue_wait(&self, worker: usize, ns: u64) {
        self.workers[worker].queue_wait.observe_own(ns);
    }

    /// Time in the service per DATA request, summed over the workers.
    pub(crate) fn service_histogram(&self) -> Histogram {
        Histogram::sum_of(self.workers.iter().map(|w| &w.service))
    }

    /// Time in line for a worker, summed over the workers.
    /// Worker `worker` completed a TLS handshake, `ns` after the accept.
    pub(crate) fn tls_handshake_done(&self, worker: usize, ns: u64) {
        Stats::bump(&self.tls_handshakes_ok);
        self.workers[worker].tls_handshake.observe_own(ns);
    }

    /// Time from accept to a completed TLS handshake, summed over the
    /// workers.
    pub(crate) fn tls_handshake_histogram(&self) -> Histogram {
        Histogram::sum_of(self.workers.iter().map(|w| &w.tls_handshake))
    }

    pub(crate) fn queue_wait_histogram(&self) -> Histogram {
        Histogram::sum_of(self.workers.iter().map(|w| &w.queue_wait))
    }

    /// Worker `worker` took a resting connection whose bytes arrived.
    pub(crate) fn add_wakeup(&self, worker: usize) {
        add_own(&self.workers[worker].wakeups, 1);
    }

    /// The counters as they are now.
    pub(crate) fn report(&self, forced: bool) -> Report {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let sum = |f: fn(&WorkerCounts) -> &AtomicU64| -> u64 {
            self.workers.iter().map(|w| get(f(w))).sum()
        };
        let max_connections = get(&self.rejected_max_connections);
        let queue_full = get(&self.rejected_queue_full);
        let queue_deadline = get(&self.rejected_queue_deadline);
        Report {
            accepted: get(&self.accepted),
            rejected_busy: max_connections + queue_full + queue_deadline,
            rejected_max_connections: max_connections,
            rejected_queue_full: queue_full,
            rejected_queue_deadline: queue_deadline,
            rejected_per_address_connections: get(&self.rejected_per_address_connections),
            rejected_per_address_rate: get(&self.rejected_per_address_rate),
            reaped: get(&self.reaped),
            requests: sum(|w| &w.requests),
            data_requests: sum(|w| &w.data_requests),
            protocol_errors: get(&self.protocol_errors),
            write_timeouts: get(&self.write_timeouts),
            accept_errors: get(&self.accept_errors),
            service_panics: get(&self.service_panics),
            rests: sum(|w| &w.rests),
            wakeups: sum(|w| &w.wakeups),
            requeues: sum(|w| &w.requeues),
            forced,
        }
    }
}

/// The counters plus where the connections are right now, for the periodic
/// log line.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Snapshot {
    /// The counters so far.
    pub(crate) report: Report,
    /// Connections open (counted against `--max-connections`).
    pub(crate) open: usize,
    /// Connections held by a worker now.
    pub(crate) active: usize,
    /// Connections waiting in line now.
    pub(crate) queued: usize,
    /// Connections resting now (held ones included).
    pub(crate) resting: usize,
    /// Workers holding a connection that has work.
    pub(crate) busy_workers: usize,
    /// Bytes of unfinished frames counted against `--max-buffered`.
    pub(crate) buffered: usize,
}

impl fmt::Display for Snapshot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "open={} active={} queued={} resting={} busy_workers={} buffered_bytes={} {}",
            self.open,
            self.active,
            self.queued,
            self.resting,
            self.busy_workers,
            self.buffered,
            self.report
        )
    }
}

/// What a server did over its life, returned by [`crate::Server::join`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Report {
    /// Connections accepted (including those then rejected as busy).
    pub accepted: u64,
    /// Connections sent GOAWAY 3 for any reason: the sum of the three
    /// `rejected_*` counts below.
    pub rejected_busy: u64,
    /// ... because `--max-connections` clients were already connected.
    pub rejected_max_connections: u64,
    /// ... because `--queue` new connections already waited for a worker.
    pub rejected_queue_full: u64,
    /// ... because they waited in line past their heartbeat deadline.
    pub rejected_queue_deadline: u64,
    /// Connections sent GOAWAY 6 (or, on a TLS listener, closed without a
    /// handshake) because `--max-connections-per-address` connections from
    /// their address were open. Not part of `rejected_busy`.
    pub rejected_per_address_connections: u64,
    /// ... because their address was over `--connect-rate-per-address`.
    pub rejected_per_address_rate: u64,
    /// Connections closed with GOAWAY 2 for missing their heartbeat deadline.
    pub reaped: u64,
    /// Requests answered: every complete frame that got a reply (DATA, PONG or ERROR).
    pub requests: u64,
    /// DATA requests answered (by the service, or with ERROR when it
    /// failed or panicked): `requests` without PINGs and other frames, and
    /// what `wharf_requests_total` counts.
    pub data_requests: u64,
    /// Connections closed with GOAWAY 4 or 5 for a malformed stream.
    pub protocol_errors: u64,
    /// Connections dropped because the client did not take its responses.
    pub write_timeouts: u64,
    /// Errors from `accept` (for example out of file descriptors).
    pub accept_errors: u64,
    /// Requests whose service panicked (answered with ERROR).
    pub service_panics: u64,
    /// Times a worker let a quiet connection rest.
    pub rests: u64,
    /// Times a worker took a resting connection whose bytes arrived.
    pub wakeups: u64,
    /// Times the batch budget sent a connection to the back of the line.
    pub requeues: u64,
    /// Whether the drain ran out of time (or was cut short) while work was
    /// still running, and connections were closed by force.
    pub forced: bool,
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "accepted={} rejected_busy={} rejected_max_connections={} rejected_queue_full={} \
             rejected_queue_deadline={} rejected_per_address_connections={} \
             rejected_per_address_rate={} reaped={} requests={} data_requests={} protocol_errors={} \
             write_timeouts={} accept_errors={} service_panics={} rests={} wakeups={} \
             requeues={}",
            self.accepted,
            self.rejected_busy,
            self.rejected_max_connections,
            self.rejected_queue_full,
            self.rejected_queue_deadline,
            self.rejected_per_address_connections,
            self.rejected_per_address_rate,
            self.reaped,
            self.requests,
            self.data_requests,
            self.protocol_errors,
            self.write_timeouts,
            self.accept_errors,
            self.service_panics,
            self.rests,
            self.wakeups,
            self.requeues,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_requests_are_summed_over_the_workers_apart_from_requests() {
        let stats = Stats::new(2);
        stats.add_requests(0, 5);
        stats.add_data_requests(0, 3);
        stats.add_data_requests(1, 4);
        let report = stats.report(false);
        assert_eq!((report.requests, report.data_requests), (5, 7));
        assert!(report.to_string().contains(" data_requests=7 "), "{report}");
    }

    #[test]
    fn an_observation_lands_in_the_first_bucket_whose_bound_it_does_not_exceed() {
        let stats = Stats::new(2);
        stats.observe_service(0, 0);
        stats.observe_service(0, 1_000); // le 1 µs: bounds are inclusive
        stats.observe_service(1, 1_001);
        stats.observe_service(1, 20_000_000_000); // past 10 s: +Inf
        let h = stats.service_histogram();
        assert_eq!(h.counts[0], 2);
        assert_eq!(h.counts[1], 1);
        assert_eq!(h.counts[SLOTS - 1], 1);
        assert_eq!(h.count(), 4);
        assert_eq!(h.sum_ns, 20_000_002_001);
        assert_eq!(stats.queue_wait_histogram().count(), 0);
    }
}
