//! Where the server's time went in the measured window: the
//! [`ServerFigures`] of one point, from two readings of the server's own
//! counters and histograms (at the window's start and end) and from
//! sampling its busy workers in between.
//!
//! Two sources, the same figures:
//!
//! - **In process** ([`Source::InProcess`]): the server is started with its
//!   histograms recorded (`Server::start_timed`) and read directly, as the
//!   metrics endpoint reads them, with no HTTP in between.
//! - **An external server's `--metrics` endpoint** ([`Source::Endpoint`]):
//!   `GET /metrics` over a plain TCP connection, the Prometheus text parsed
//!   (`endpoint`). Rests and wake-ups are not exported, so they are `None`
//!   there.
//!
//! Percentiles come from the server's buckets, interpolated inside the
//! bucket (`reading`): they are coarse. The client-side latency (the
//! table's p50 to max) is exact; these say only where the time went.
//!
//! Utilisation is sampled, not derived: a thread reads the busy-worker
//! count every millisecond in process (every twentieth of the window, at
//! least 50 ms apart, from the endpoint), and the average is divided by the
//! pool size. Deriving it from the service-time sum would miss the time a
//! worker spends reading, framing and writing, which is most of it for a
//! plain echo; the sampled count is what `wharf_workers_busy` reports, so
//! in-process and external runs say the same thing.
//!
//! This file holds the two sources ([`Source`]), the window in progress
//! with its sampler ([`Window`]) and the [`figures`] between two readings;
//! `reading` holds the readings and their histograms, `endpoint` the
//! scrape of an external server.

mod endpoint;
mod reading;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use super::point::{Rejections, ServerFigures};
use crate::server::Probe;
use endpoint::{parse, scrape};
use reading::{Hist, Reading};

/// Where the figures are read from.
#[derive(Debug, Clone)]
pub(super) enum Source {
    /// An in-process server started with its histograms recorded.
    InProcess(Probe),
    /// An external server's metrics endpoint.
    Endpoint(SocketAddr),
}

impl Source {
    /// Reads the counters now.
    fn read(&self) -> Result<Reading, String> {
        match self {
            Source::InProcess(probe) => {
                let report = probe.stats.report(false);
                Ok(Reading {
                    queue_wait: Hist::from_stats(&probe.stats.queue_wait_histogram()),
                    service: Hist::from_stats(&probe.stats.service_histogram()),
                    data_requests: report.data_requests,
                    rests: Some(report.rests),
                    wakeups: Some(report.wakeups),
                    rejected: Rejections {
                        max_connections: report.rejected_max_connections,
                        queue_full: report.rejected_queue_full,
                        queue_deadline: report.rejected_queue_deadline,
                    },
                    busy: probe.workers.busy() as f64,
                    pool: probe.workers.len(),
                    tls_handshakes: Some(probe.stats.tls_handshakes_ok.load(Ordering::Relaxed)),
                })
            }
            Source::Endpoint(addr) => scrape(*addr).and_then(|text| parse(&text)),
        }
    }

    /// Reads the counters once, only to see that they can be read (an
    /// address that is not a wharf server's metrics endpoint fails here).
    pub(super) fn check(&self) -> Result<(), String> {
        self.read().map(drop)
    }

    /// Busy workers now (what the sampler reads).
    fn busy(&self) -> Option<f64> {
        match self {
            Source::InProcess(probe) => Some(probe.workers.busy() as f64),
            Source::Endpoint(_) => self.read().ok().map(|r| r.busy),
        }
    }
}

/// A measured window in progress: the reading at its start and the
/// busy-worker sampler.
#[derive(Debug)]
pub(super) struct Window {
    source: Source,
    start: Reading,
    stop: Arc<AtomicBool>,
    sampler: Option<JoinHandle<(f64, u64)>>,
}

impl Window {
    /// Reads the counters and starts sampling busy workers every `every`.
    pub(super) fn start(source: Source, every: Duration) -> Result<Window, String> {
        let start = source.read()?;
        let stop = Arc::new(AtomicBool::new(false));
        let sampler = {
            let (source, stop) = (source.clone(), Arc::clone(&stop));
            std::thread::Builder::new()
                .name("bench-sampler".into())
                .spawn(move || {
                    let (mut sum, mut n) = (0.0, 0u64);
                    while !stop.load(Ordering::Relaxed) {
                        if let Some(busy) = source.busy() {
                            sum += busy;
                            n += 1;
                        }
                        std::thread::sleep(every);
                    }
                    (sum, n)
                })
                .map_err(|e| format!("cannot start the busy-worker sampler: {e}"))?
        };
        Ok(Window {
            source,
            start,
            stop,
            sampler: Some(sampler),
        })
    }

    /// Reads the counters again and returns what happened in between.
    pub(super) fn finish(mut self) -> Result<ServerFigures, String> {
        let end = self.source.read();
        let (busy_sum, samples) = self.stop_sampler();
        let end = end?;
        let busy = if samples > 0 {
            busy_sum / samples as f64
        } else {
            end.busy
        };
        Ok(figures(&self.start, &end, busy))
    }

    fn stop_sampler(&mut self) -> (f64, u64) {
        self.stop.store(true, Ordering::Relaxed);
        self.sampler
            .take()
            .and_then(|t| t.join().ok())
            .unwrap_or((0.0, 0))
    }
}

impl Drop for Window {
    fn drop(&mut self) {
        self.stop_sampler();
    }
}

/// The figures between two readings, with `busy` workers on average.
fn figures(start: &Reading, end: &Reading, busy: f64) -> ServerFigures {
    let queue_wait = end.queue_wait.since(&start.queue_wait);
    let service = end.service.since(&start.service);
    let requests = end.data_requests.saturating_sub(start.data_requests);
    let per_request = |a: Option<u64>, b: Option<u64>| match (a, b) {
        (Some(a), Some(b)) if requests > 0 => Some(b.saturating_sub(a) as f64 / requests as f64),
        (Some(_), Some(_)) => Some(0.0),
        _ => None,
    };
    let served = service.count();
    ServerFigures {
        queue_wait: queue_wait.percentiles(),
        service: service.percentiles(),
        service_mean_us: if served > 0 {
            service.sum / served as f64 * 1e6
        } else {
            0.0
        },
        busy_workers: busy,
        utilisation: if end.pool > 0 {
            busy / end.pool as f64
        } else {
            0.0
        },
        rests_per_request: per_request(start.rests, end.rests),
        wakeups_per_request: per_request(start.wakeups, end.wakeups),
        tls_handshakes: start
            .tls_handshakes
            .zip(end.tls_handshakes)
            .map(|(a, b)| b.saturating_sub(a)),
        rejected: Rejections {
            max_connections: end
                .rejected
                .max_connections
                .saturating_sub(start.rejected.max_connections),
            queue_full: end
                .rejected
                .queue_full
                .saturating_sub(start.rejected.queue_full),
            queue_deadline: end
                .rejected
                .queue_deadline
                .saturating_sub(start.rejected.queue_deadline),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::endpoint::tests::TEXT;
    use super::*;

    #[test]
    fn figures_are_the_difference_with_interpolated_percentiles() {
        let start = Reading {
            pool: 4,
            ..parse(TEXT).unwrap()
        };
        let mut end = start.clone();
        // 100 more waits, all in (1 ms, 10 ms]; 100 more requests.
        end.queue_wait.counts[1] += 100;
        end.service.counts[0] += 100;
        end.service.sum += 0.5;
        end.data_requests += 100;
        let f = figures(&start, &end, 2.0);
        assert_eq!(f.queue_wait.p50_us, 5_500);
        assert_eq!(f.queue_wait.p99_us, 9_910);
        assert_eq!(f.queue_wait.max_us, 10_000);
        assert!((f.service_mean_us - 5_000.0).abs() < 1e-6);
        assert_eq!(f.utilisation, 0.5);
        assert_eq!(f.rejected, Rejections::default());
        assert_eq!(f.rests_per_request, None);
    }
}
