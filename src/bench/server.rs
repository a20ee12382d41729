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
//!   for `wharf_queue_wait_seconds_*`, `wharf_service_seconds_*`,
//!   `wharf_workers_busy`, `wharf_workers`, `wharf_requests_total` and
//!   `wharf_connections_rejected_total{reason}`. Rests and wake-ups are not
//!   exported, so they are `None` there.
//!
//! Percentiles come from the server's buckets (1 µs to 10 s in 1-2.5-5
//! steps), interpolated linearly inside the bucket as Prometheus'
//! `histogram_quantile` does: they are coarse (a p99 of "3.7 ms" means
//! "between 2.5 and 5 ms"), and the maximum is the upper bound of the
//! highest non-empty bucket. The client-side latency (the table's p50 to
//! max) is exact; these say only where the time went.
//!
//! Utilisation is sampled, not derived: a thread reads the busy-worker
//! count every millisecond in process (every twentieth of the window, at
//! least 50 ms apart, from the endpoint), and the average is divided by the
//! pool size. Deriving it from the service-time sum would miss the time a
//! worker spends reading, framing and writing, which is most of it for a
//! plain echo; the sampled count is what `wharf_workers_busy` reports, so
//! in-process and external runs say the same thing.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::point::{Percentiles, Rejections, ServerFigures};
use crate::observe::stats::BOUNDS_NS;
use crate::server::Probe;

/// Where the figures are read from.
#[derive(Debug, Clone)]
pub(super) enum Source {
    /// An in-process server started with its histograms recorded.
    InProcess(Probe),
    /// An external server's metrics endpoint.
    Endpoint(SocketAddr),
}

/// A histogram: upper bounds in seconds (the last may be +Inf) and the
/// count in each bucket (not cumulative), with the sum of observations.
#[derive(Debug, Clone, Default, PartialEq)]
pub(super) struct Hist {
    pub(super) bounds: Vec<f64>,
    pub(super) counts: Vec<u64>,
    pub(super) sum: f64,
}

impl Hist {
    /// `self - before`, bucket by bucket (a restart in between reads as 0).
    fn since(&self, before: &Hist) -> Hist {
        let counts = self
            .counts
            .iter()
            .enumerate()
            .map(|(i, &c)| c.saturating_sub(before.counts.get(i).copied().unwrap_or(0)))
            .collect();
        Hist {
            bounds: self.bounds.clone(),
            counts,
            sum: (self.sum - before.sum).max(0.0),
        }
    }

    fn count(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// The `q` quantile in seconds, interpolated inside its bucket.
    fn quantile(&self, q: f64) -> f64 {
        let total = self.count();
        if total == 0 {
            return 0.0;
        }
        let rank = q * total as f64;
        let mut below = 0u64;
        for (i, &count) in self.counts.iter().enumerate() {
            if count > 0 && (below + count) as f64 >= rank {
                let lower = if i == 0 { 0.0 } else { self.bounds[i - 1] };
                let upper = self.finite_bound(i);
                let within = ((rank - below as f64) / count as f64).clamp(0.0, 1.0);
                return lower + (upper - lower) * within;
            }
            below += count;
        }
        self.max()
    }

    /// The upper bound of the highest non-empty bucket, in seconds.
    fn max(&self) -> f64 {
        self.counts
            .iter()
            .rposition(|&c| c > 0)
            .map_or(0.0, |i| self.finite_bound(i))
    }

    /// Bucket `i`'s upper bound, or for +Inf the largest finite bound.
    fn finite_bound(&self, i: usize) -> f64 {
        let bound = self.bounds.get(i).copied().unwrap_or(f64::INFINITY);
        if bound.is_finite() {
            bound
        } else {
            self.bounds
                .iter()
                .copied()
                .filter(|b| b.is_finite())
                .fold(0.0, f64::max)
        }
    }

    fn percentiles(&self) -> Percentiles {
        let us = |s: f64| (s * 1e6).round() as u64;
        Percentiles {
            p50_us: us(self.quantile(0.50)),
            p90_us: us(self.quantile(0.90)),
            p99_us: us(self.quantile(0.99)),
            max_us: us(self.max()),
        }
    }

    fn from_stats(h: &crate::observe::stats::Histogram) -> Hist {
        let mut bounds: Vec<f64> = BOUNDS_NS.iter().map(|&ns| ns as f64 / 1e9).collect();
        bounds.push(f64::INFINITY);
        Hist {
            bounds,
            counts: h.counts.to_vec(),
            sum: h.sum_ns as f64 / 1e9,
        }
    }
}

/// The server's counters at one moment.
#[derive(Debug, Clone, Default, PartialEq)]
pub(super) struct Reading {
    pub(super) queue_wait: Hist,
    pub(super) service: Hist,
    pub(super) data_requests: u64,
    pub(super) rests: Option<u64>,
    pub(super) wakeups: Option<u64>,
    pub(super) rejected: Rejections,
    pub(super) busy: f64,
    pub(super) pool: usize,
}

impl Source {
    /// Reads the counters now.
    pub(super) fn read(&self) -> Result<Reading, String> {
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
                })
            }
            Source::Endpoint(addr) => scrape(*addr).and_then(|text| parse(&text)),
        }
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
pub(super) fn figures(start: &Reading, end: &Reading, busy: f64) -> ServerFigures {
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

/// How long a scrape may take, each way.
const SCRAPE_TIMEOUT: Duration = Duration::from_secs(5);

/// `GET /metrics` from `addr`: the body of a 200 response.
pub(super) fn scrape(addr: SocketAddr) -> Result<String, String> {
    let fail = |e: std::io::Error| format!("cannot read metrics from {addr}: {e}");
    let mut stream = TcpStream::connect_timeout(&addr, SCRAPE_TIMEOUT).map_err(fail)?;
    stream
        .set_read_timeout(Some(SCRAPE_TIMEOUT))
        .map_err(fail)?;
    stream
        .set_write_timeout(Some(SCRAPE_TIMEOUT))
        .map_err(fail)?;
    stream
        .write_all(
            format!("GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        )
        .map_err(fail)?;
    let deadline = Instant::now() + SCRAPE_TIMEOUT;
    let mut response = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    loop {
        match stream.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => response.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(fail(e)),
        }
        if Instant::now() > deadline || response.len() > 16 << 20 {
            return Err(format!(
                "cannot read metrics from {addr}: response too slow or too large"
            ));
        }
    }
    let text = String::from_utf8_lossy(&response);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("{addr} did not answer with HTTP"))?;
    let status = head.lines().next().unwrap_or_default();
    if status.split_whitespace().nth(1) != Some("200") {
        return Err(format!("GET http://{addr}/metrics answered {status:?}"));
    }
    Ok(body.to_owned())
}

/// The figures' metrics from a Prometheus text exposition.
pub(super) fn parse(text: &str) -> Result<Reading, String> {
    let mut reading = Reading::default();
    let mut queue_wait: Vec<(f64, u64)> = Vec::new();
    let mut service: Vec<(f64, u64)> = Vec::new();
    let (mut queue_wait_sum, mut service_sum) = (0.0, 0.0);
    let mut seen = false;
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((series, value)) = line.rsplit_once(char::is_whitespace) else {
            continue;
        };
        let Ok(value) = value.parse::<f64>() else {
            continue;
        };
        let (name, labels) = match series.split_once('{') {
            Some((name, rest)) => (name, rest.trim_end_matches('}')),
            None => (series.trim(), ""),
        };
        let label = |key: &str| {
            labels.split(',').find_map(|pair| {
                let (k, v) = pair.split_once('=')?;
                (k.trim() == key).then(|| v.trim().trim_matches('"').to_owned())
            })
        };
        let le = || {
            label("le").and_then(|le| match le.as_str() {
                "+Inf" => Some(f64::INFINITY),
                other => other.parse::<f64>().ok(),
            })
        };
        let count = value.max(0.0) as u64;
        match name {
            "wharf_queue_wait_seconds_bucket" => {
                seen = true;
                queue_wait.extend(le().map(|le| (le, count)));
            }
            "wharf_queue_wait_seconds_sum" => queue_wait_sum = value,
            "wharf_service_seconds_bucket" => service.extend(le().map(|le| (le, count))),
            "wharf_service_seconds_sum" => service_sum = value,
            "wharf_requests_total" => reading.data_requests = count,
            "wharf_workers_busy" => reading.busy = value,
            "wharf_workers" => reading.pool = count as usize,
            "wharf_connections_rejected_total" => match label("reason").as_deref() {
                Some("max_connections") => reading.rejected.max_connections = count,
                Some("queue_full") => reading.rejected.queue_full = count,
                Some("queue_deadline") => reading.rejected.queue_deadline = count,
                _ => {}
            },
            _ => {}
        }
    }
    if !seen {
        return Err(
            "no wharf_queue_wait_seconds histogram in the metrics (is it a wharf \
                    server's --metrics address?)"
                .into(),
        );
    }
    reading.queue_wait = Hist {
        sum: queue_wait_sum,
        ..from_cumulative(queue_wait)
    };
    reading.service = Hist {
        sum: service_sum,
        ..from_cumulative(service)
    };
    Ok(reading)
}

/// Per-bucket counts from Prometheus' cumulative `le` buckets.
fn from_cumulative(mut buckets: Vec<(f64, u64)>) -> Hist {
    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut previous = 0;
    let mut hist = Hist::default();
    for (bound, cumulative) in buckets {
        hist.bounds.push(bound);
        hist.counts.push(cumulative.saturating_sub(previous));
        previous = previous.max(cumulative);
    }
    hist
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "\
# HELP wharf_queue_wait_seconds How long
# TYPE wharf_queue_wait_seconds histogram
wharf_queue_wait_seconds_sum 0.03
wharf_queue_wait_seconds_count 10
wharf_queue_wait_seconds_bucket{le=\"0.001\"} 5
wharf_queue_wait_seconds_bucket{le=\"0.01\"} 10
wharf_queue_wait_seconds_bucket{le=\"+Inf\"} 10
wharf_service_seconds_sum 0.1
wharf_service_seconds_count 10
wharf_service_seconds_bucket{le=\"0.01\"} 10
wharf_service_seconds_bucket{le=\"+Inf\"} 10
wharf_requests_total 10
wharf_workers 4
wharf_workers_busy 3
wharf_connections_rejected_total{reason=\"max_connections\"} 1
wharf_connections_rejected_total{reason=\"queue_full\"} 2
wharf_connections_rejected_total{reason=\"queue_deadline\"} 3
";

    #[test]
    fn the_prometheus_text_is_read_into_a_reading() {
        let r = parse(TEXT).unwrap();
        assert_eq!(r.queue_wait.counts, vec![5, 5, 0]);
        assert_eq!(r.service.counts, vec![10, 0]);
        assert!((r.queue_wait.sum - 0.03).abs() < 1e-9);
        assert!((r.service.sum - 0.1).abs() < 1e-9);
        assert_eq!((r.data_requests, r.pool, r.busy), (10, 4, 3.0));
        assert_eq!(
            r.rejected,
            Rejections {
                max_connections: 1,
                queue_full: 2,
                queue_deadline: 3
            }
        );
        assert!(parse("something_else 1\n").is_err());
    }

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
