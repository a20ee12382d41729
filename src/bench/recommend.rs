//! The advice drawn from a sweep: which pool to run and why
//! ([`recommend`]), and what Little's law expects of `delay`/`spin`-bound
//! work ([`littles_law`], [`expected_busy`]), so the report can set the
//! measurement beside the arithmetic.
//!
//! Plain functions of the points and the options: nothing here measures.

use std::time::Duration;

use serde::Serialize;

use super::options::BenchOptions;
use super::point::BenchPoint;
use super::words::{human_rate, human_us};

/// The closing advice of a sweep (see [`recommend`]).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Recommendation {
    /// The pool to run; `None` when no pool qualified (`reason` says why).
    pub workers: Option<usize>,
    /// Its throughput.
    pub requests_per_sec: Option<f64>,
    /// Its 99th percentile latency (µs).
    pub p99_us: Option<u64>,
    /// The best throughput of the sweep.
    pub best_requests_per_sec: f64,
    /// The p99 target it was chosen for (µs), if any.
    pub target_p99_us: Option<u64>,
    /// Why, in one or two sentences built from the figures.
    pub reason: String,
}

/// Whether an external server met `target` at the load offered.
fn verdict(point: &BenchPoint, target: Duration) -> Option<Recommendation> {
    let target_us = target.as_micros() as u64;
    let reason = match point.shortfall() {
        Some(why) => format!("not met: the server did not keep up ({why})"),
        None if point.p99_us <= target_us => format!(
            "met: p99 {} at {} req/s, within the target of {}",
            human_us(point.p99_us as f64),
            human_rate(point.requests_per_sec),
            human_us(target_us as f64)
        ),
        None => format!(
            "not met: p99 {} at {} req/s, over the target of {}",
            human_us(point.p99_us as f64),
            human_rate(point.requests_per_sec),
            human_us(target_us as f64)
        ),
    };
    Some(Recommendation {
        workers: None,
        requests_per_sec: Some(point.requests_per_sec),
        p99_us: Some(point.p99_us),
        best_requests_per_sec: point.requests_per_sec,
        target_p99_us: Some(target_us),
        reason,
    })
}

/// The advice drawn from a sweep.
///
/// With `target_p99`: the smallest pool that kept up (every client served,
/// at least 95% of the offered rate) with a p99 at or under the target.
/// Without: the smallest pool that kept up within 5% of the best
/// throughput. A pool that left offered work unserved is never
/// recommended. A recommendation with `workers: None` when no pool
/// qualified, with the reason. For an external server (no pool size) there
/// is no pool to recommend: with `target_p99` the verdict on the target
/// (its reason starts `met` or `not met`), else `None`.
pub fn recommend(points: &[BenchPoint], target_p99: Option<Duration>) -> Option<Recommendation> {
    let pools: Vec<&BenchPoint> = points.iter().filter(|p| p.workers.is_some()).collect();
    if pools.is_empty() {
        return verdict(points.first()?, target_p99?);
    }
    let best = pools
        .iter()
        .map(|p| p.requests_per_sec)
        .fold(0.0_f64, f64::max);
    let target_us = target_p99.map(|t| t.as_micros() as u64);
    let mut sorted = pools.clone();
    sorted.sort_by_key(|p| p.workers);
    let qualifies = |p: &BenchPoint| {
        p.kept_up()
            && p.requests_per_sec > 0.0
            && match target_us {
                Some(t) => p.p99_us <= t,
                None => p.requests_per_sec >= best * 0.95,
            }
    };
    let chosen = sorted.iter().copied().find(|p| qualifies(p));
    let Some(p) = chosen else {
        let reason = match target_us {
            _ if best <= 0.0 => "no pool served any request".to_owned(),
            Some(t) => {
                let closest = sorted
                    .iter()
                    .filter(|p| p.kept_up())
                    .min_by_key(|p| p.p99_us);
                match closest {
                    Some(c) => format!(
                        "no pool kept p99 under {} at {} req/s: the best, {} workers, had p99 {}",
                        human_us(t as f64),
                        human_rate(c.offered_rps.unwrap_or(c.requests_per_sec)),
                        c.workers.unwrap_or_default(),
                        human_us(c.p99_us as f64)
                    ),
                    None => no_pool_kept_up(&sorted),
                }
            }
            None => no_pool_kept_up(&sorted),
        };
        return Some(Recommendation {
            workers: None,
            requests_per_sec: None,
            p99_us: None,
            best_requests_per_sec: best,
            target_p99_us: target_us,
            reason,
        });
    };
    let workers = p.workers.unwrap_or_default();
    let rate = p.offered_rps.unwrap_or(p.requests_per_sec);
    let mut reason = match &p.server {
        Some(s) => format!(
            "at {} req/s and {} in the service, {:.1} workers are busy on average",
            human_rate(rate),
            human_us(s.service_mean_us),
            s.busy_workers
        ),
        None => format!("at {} req/s", human_rate(rate)),
    };
    let smaller = sorted
        .iter()
        .rev()
        .find(|q| q.workers < p.workers)
        .map(|q| {
            let why = q.shortfall().unwrap_or_else(|| match target_us {
                Some(_) => format!("p99 {}", human_us(q.p99_us as f64)),
                None => format!("{} req/s", human_rate(q.requests_per_sec)),
            });
            format!("; {} workers: {why}", q.workers.unwrap_or_default())
        })
        .unwrap_or_default();
    match target_us {
        Some(t) => {
            let queue = p.server.map_or(String::new(), |s| {
                format!(
                    " with queue wait p99 {}",
                    human_us(s.queue_wait.p99_us as f64)
                )
            });
            reason.push_str(&format!(
                "; {workers} is the smallest pool that keeps p99 under {} (p99 {}){queue}{smaller}",
                human_us(t as f64),
                human_us(p.p99_us as f64)
            ));
        }
        None => reason.push_str(&format!(
            "; {workers} is the smallest pool that served every client within 5% of the best \
             throughput ({} req/s){smaller}",
            human_rate(best)
        )),
    }
    Some(Recommendation {
        workers: Some(workers),
        requests_per_sec: Some(p.requests_per_sec),
        p99_us: Some(p.p99_us),
        best_requests_per_sec: best,
        target_p99_us: target_us,
        reason,
    })
}

fn no_pool_kept_up(sorted: &[&BenchPoint]) -> String {
    let largest = sorted.last().map_or(String::new(), |p| {
        format!(
            ": the largest, {} workers, {}",
            p.workers.unwrap_or_default(),
            p.shortfall().unwrap_or_else(|| "fell short".into())
        )
    });
    format!("no pool served all the offered work{largest}")
}

/// The time a request holds a worker in the echo service, as configured.
fn work(options: &BenchOptions) -> Duration {
    options.delay + options.spin
}

/// Little's law for `delay`/`spin`-bound work, as requests per second.
///
/// Closed loop: each served connection completes at most one request per
/// `delay + spin`, and at most `min(clients, workers)` connections are
/// served at once (for `spin`, at most one per CPU), so the rate is
/// `min(clients, workers[, cpus]) / (delay + spin)`. Open loop (`rate`):
/// the offered rate, or that capacity if it is lower.
pub fn littles_law(options: &BenchOptions, workers: usize) -> Option<f64> {
    let work = work(options);
    if work.is_zero() {
        return None;
    }
    let mut parallel = workers;
    if options.rate.is_none() {
        parallel = parallel.min(options.clients);
    }
    if !options.spin.is_zero() {
        parallel = parallel.min(std::thread::available_parallelism().map_or(1, |n| n.get()));
    }
    let capacity = parallel as f64 / work.as_secs_f64();
    Some(options.rate.map_or(capacity, |rate| rate.min(capacity)))
}

/// Little's law for the open loop: busy workers on average = offered rate
/// × time in the service (`delay + spin`), if the pool has that many.
pub fn expected_busy(options: &BenchOptions, workers: usize) -> Option<f64> {
    let work = work(options);
    let rate = options.rate?;
    (!work.is_zero()).then(|| (rate * work.as_secs_f64()).min(workers as f64))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(workers: usize, rps: f64) -> BenchPoint {
        BenchPoint {
            workers: Some(workers),
            requests: 1,
            seconds: 1.0,
            requests_per_sec: rps,
            p50_us: 1,
            p90_us: 1,
            p99_us: workers as u64,
            p999_us: 1,
            max_us: 1,
            clients_served: 1,
            busy: 0,
            errors: 0,
            first_error: None,
            server_cpu_seconds: None,
            clients: 1,
            offered_rps: None,
            idle: None,
            server: None,
            tls: None,
        }
    }

    #[test]
    fn recommends_the_smallest_pool_within_five_percent_of_the_best() {
        let points = [
            point(1, 100.0),
            point(2, 960.0),
            point(4, 1000.0),
            point(8, 990.0),
        ];
        let rec = recommend(&points, None).unwrap();
        assert_eq!(rec.workers, Some(2));
        assert_eq!(rec.p99_us, Some(2));
        assert_eq!(rec.best_requests_per_sec, 1000.0);
        assert!(recommend(&[], None).is_none());
    }

    #[test]
    fn littles_law_is_capped_by_the_pool() {
        let options = BenchOptions {
            delay: Duration::from_millis(1),
            clients: 64,
            ..BenchOptions::default()
        };
        assert_eq!(littles_law(&options, 8), Some(8000.0));
        assert_eq!(littles_law(&options, 128), Some(64000.0));
        let no_delay = BenchOptions::default();
        assert_eq!(littles_law(&no_delay, 8), None);
        let open = BenchOptions {
            rate: Some(2000.0),
            ..options
        };
        assert_eq!(littles_law(&open, 8), Some(2000.0));
        assert_eq!(littles_law(&open, 1), Some(1000.0));
        assert_eq!(expected_busy(&open, 8), Some(2.0));
        assert_eq!(expected_busy(&open, 1), Some(1.0));
    }
}
