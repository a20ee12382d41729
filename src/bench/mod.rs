//! Choosing a pool size by measurement: a sweep over pool sizes, each
//! loaded the way the workload described in [`BenchOptions`] would load it.
//!
//! For each pool size, [`sweep`] starts an in-process server on
//! 127.0.0.1:0 with the echo service (optionally with `delay` or `spin`
//! work), loads it from one event-driven thread (`driver`): a closed loop
//! by default, or an open loop at `rate` requests per second whose latency
//! counts from each request's scheduled time, plus `idle` clients that only
//! PING. It discards the `warmup`, measures for `duration`, then drains the
//! server and moves on. Every reply is checked against its request.
//!
//! Over exactly the measured window (the driver reports its [`Edge`]s) the
//! sweep also reads the server itself (`server`): its queue-wait and
//! service-time histograms, busy workers, rests, wake-ups and rejections,
//! in process, or from an external server's `--metrics` endpoint; and the
//! server threads' CPU time (`cpu`, from `/proc/self/task`, in process only).
//!
//! This file holds the options and results, the [`sweep`] and the advice
//! drawn from it ([`recommend`], [`littles_law`]). `load` wraps the driver
//! for one server ([`load`](fn@load) is what `--connect` and the comparison
//! with other servers use).

mod cpu;
mod driver;
mod load;
mod server;

use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde::Serialize;

use crate::{Config, Echo, Server};
use load::measure;

pub use driver::Edge;
pub use load::load;

/// What to measure.
#[derive(Debug, Clone, Serialize)]
pub struct BenchOptions {
    /// Pool sizes to sweep (ignored with `connect`).
    pub workers: Vec<usize>,
    /// Queue capacity of the in-process server.
    pub queue: usize,
    /// Echo service sleep per request (I/O-bound work).
    #[serde(serialize_with = "seconds")]
    pub delay: Duration,
    /// Echo service busy-loop per request (CPU-bound work).
    #[serde(serialize_with = "seconds")]
    pub spin: Duration,
    /// Closed-loop client threads (connections).
    pub clients: usize,
    /// Load applied before measuring, per pool size.
    #[serde(serialize_with = "seconds")]
    pub warmup: Duration,
    /// Measured time per pool size.
    #[serde(serialize_with = "seconds")]
    pub duration: Duration,
    /// Request payload size in bytes.
    pub payload: usize,
    /// Requests each client sends before waiting for their replies.
    pub pipeline: usize,
    /// Load this running server instead of sweeping in-process servers.
    pub connect: Option<SocketAddr>,
    /// Close and reconnect after this many batches (connection churn);
    /// `None` keeps each client's connection for the whole run.
    pub batches_per_connection: Option<usize>,
    /// Open loop: total requests per second over all `clients`, each sent
    /// at its scheduled time whether or not earlier replies are back
    /// (latency counts from the scheduled time). `None`: closed loop.
    pub rate: Option<f64>,
    /// Idle clients besides `clients`: connected for the whole run, each
    /// sending only a PING every `idle_ping`.
    pub idle: usize,
    /// How often each idle client PINGs.
    #[serde(serialize_with = "seconds")]
    pub idle_ping: Duration,
    /// Latency target for the recommendation: the smallest pool whose p99
    /// meets it at the offered load.
    #[serde(serialize_with = "seconds_opt")]
    pub target_p99: Option<Duration>,
    /// With `connect`: the server's `--metrics` address, to read its queue
    /// wait, service time and busy workers from.
    pub metrics: Option<SocketAddr>,
}

impl Default for BenchOptions {
    fn default() -> Self {
        BenchOptions {
            workers: vec![1, 2, 4, 8, 16, 32, 64],
            queue: 64,
            delay: Duration::ZERO,
            spin: Duration::ZERO,
            clients: 64,
            warmup: Duration::from_secs(1),
            duration: Duration::from_secs(5),
            payload: 64,
            pipeline: 1,
            connect: None,
            batches_per_connection: None,
            rate: None,
            idle: 0,
            idle_ping: Duration::from_secs(1),
            target_p99: None,
            metrics: None,
        }
    }
}

/// The measurement for one pool size (or for the external server).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct BenchPoint {
    /// Pool size; `None` for an external server.
    pub workers: Option<usize>,
    /// Replies received and verified in the measured window.
    pub requests: u64,
    /// Length of the measured window.
    pub seconds: f64,
    /// `requests / seconds`.
    pub requests_per_sec: f64,
    /// Latency percentiles and maximum, in microseconds.
    pub p50_us: u64,
    /// 90th percentile latency (µs).
    pub p90_us: u64,
    /// 99th percentile latency (µs).
    pub p99_us: u64,
    /// 99.9th percentile latency (µs).
    pub p999_us: u64,
    /// Largest latency seen (µs).
    pub max_us: u64,
    /// Client connections that got at least one reply in the window: fewer
    /// than `clients` means the others waited in the queue, unserved.
    pub clients_served: usize,
    /// Connections turned away with GOAWAY 3 (BUSY).
    pub busy: u64,
    /// Wrong echoes, ERROR replies, unexpected GOAWAYs and I/O failures.
    pub errors: u64,
    /// The first of the `errors`, in words (e.g. "cannot connect to
    /// 127.0.0.1:7878: Connection refused (os error 111)").
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_error: Option<String>,
    /// Server threads' CPU time in the window (in-process servers only).
    pub server_cpu_seconds: Option<f64>,
    /// Busy clients offered (`clients`); `clients_served` of them got a reply.
    pub clients: usize,
    /// Open loop: the requests per second offered (`rate`).
    pub offered_rps: Option<f64>,
    /// What the idle clients saw, when there were any.
    pub idle: Option<IdleFigures>,
    /// What the server saw: where the time went. In-process servers, or an
    /// external one with `metrics`.
    pub server: Option<ServerFigures>,
}

/// Latency percentiles, in microseconds.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq)]
pub struct Percentiles {
    /// Median.
    pub p50_us: u64,
    /// 90th percentile.
    pub p90_us: u64,
    /// 99th percentile.
    pub p99_us: u64,
    /// Largest seen.
    pub max_us: u64,
}

/// What the idle clients (`idle`) saw: PING round trips.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq)]
pub struct IdleFigures {
    /// PONGs received in the window.
    pub pongs: u64,
    /// PINGs that got no PONG (lost, or turned away).
    pub missed: u64,
    /// PONG latency from the PING's scheduled time.
    pub latency: Percentiles,
}

/// Connections turned away with GOAWAY 3, by reason.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq)]
pub struct Rejections {
    /// `--max-connections` reached.
    pub max_connections: u64,
    /// `--queue` full.
    pub queue_full: u64,
    /// Waited in line past the heartbeat deadline.
    pub queue_deadline: u64,
}

/// Where the server's time went in the window.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq)]
pub struct ServerFigures {
    /// How long connections with work waited in line for a worker.
    pub queue_wait: Percentiles,
    /// Time in the service per DATA request.
    pub service: Percentiles,
    /// Mean time in the service per DATA request (µs): exact, from the
    /// histogram's sum, where the percentiles are bucket-coarse.
    pub service_mean_us: f64,
    /// Busy workers on average over the window (sampled).
    pub busy_workers: f64,
    /// Busy workers on average over the window, divided by the pool size.
    pub utilisation: f64,
    /// Connections put to rest, per request (`None` from a
    /// metrics endpoint, which does not export it).
    pub rests_per_request: Option<f64>,
    /// Resting connections woken by their bytes, per request (`None` from a
    /// metrics endpoint).
    pub wakeups_per_request: Option<f64>,
    /// Connections turned away with GOAWAY 3.
    pub rejected: Rejections,
}

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

/// Why a benchmark could not run.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// The in-process server did not start.
    #[error(transparent)]
    Server(#[from] crate::Error),
    /// A thread could not be started.
    #[error("cannot start a client thread: {0}")]
    Spawn(std::io::Error),
    /// The options make no sense, or cannot run here (too few file
    /// descriptors for the clients).
    #[error("invalid benchmark options: {0}")]
    Invalid(String),
    /// Not one connection to the server could be opened: the first cause.
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        /// The server's address.
        addr: SocketAddr,
        /// Why the first attempt failed.
        source: std::io::Error,
    },
    /// The load driver's own poller failed.
    #[error("the load driver failed: {0}")]
    Driver(std::io::Error),
    /// The external server's metrics endpoint (`metrics`) could not be read.
    #[error("{0}")]
    Metrics(String),
    /// Cancelled before the measured window started: nothing was measured
    /// (the points before it stand).
    #[error("cancelled before the measured window started")]
    Cancelled,
}

/// What the sweep is doing, for a progress display.
#[derive(Debug, Clone, Copy)]
pub enum Event<'a> {
    /// Step `step` (from 0) of `steps` starts its warm-up; `workers` is
    /// `None` for an external server.
    Warmup {
        /// Which step, from 0.
        step: usize,
        /// How many steps in all.
        steps: usize,
        /// The pool size measured.
        workers: Option<usize>,
    },
    /// The same step starts its measured window.
    Measure {
        /// Which step, from 0.
        step: usize,
        /// How many steps in all.
        steps: usize,
        /// The pool size measured.
        workers: Option<usize>,
    },
    /// A point was measured.
    Done(&'a BenchPoint),
}

/// The largest DATA payload a server with `max_frame` accepts (the frame
/// is the kind byte plus the payload).
pub fn max_payload(max_frame: u32) -> usize {
    (max_frame as usize).saturating_sub(1)
}

/// Checks `options` before anything is measured.
pub fn check(options: &BenchOptions) -> Result<(), BenchError> {
    let invalid = |what: &str| Err(BenchError::Invalid(what.to_owned()));
    if options.clients == 0 || options.pipeline == 0 || options.duration.is_zero() {
        return invalid("clients, pipeline and duration must be greater than 0");
    }
    if options.connect.is_none() {
        if options.workers.is_empty() {
            return invalid("no pool size to measure");
        }
        if let Some(w) = options
            .workers
            .iter()
            .find(|&&w| w == 0 || w > crate::config::MAX_WORKERS)
        {
            return Err(BenchError::Invalid(format!(
                "workers {w}: each pool size must be between 1 and {}",
                crate::config::MAX_WORKERS
            )));
        }
        if options.metrics.is_some() {
            return invalid("metrics is for an external server: it needs connect");
        }
    }
    if let Some(rate) = options.rate {
        if !(rate.is_finite() && rate > 0.0) {
            return invalid("rate must be a number of requests per second greater than 0");
        }
    }
    if options.target_p99.is_some() && options.rate.is_none() {
        return invalid(
            "a p99 target needs a rate: the target is met (or not) at an offered load, \
             and a closed loop offers whatever the server takes",
        );
    }
    if options.idle > 0 && options.idle_ping.is_zero() {
        return invalid("idle-ping must be greater than 0");
    }
    let limit = max_payload(Config::default().max_frame);
    if options.payload > limit {
        return Err(BenchError::Invalid(format!(
            "payload {} bytes is more than the server's max frame allows ({limit} bytes: \
             max-frame 1 MiB less the kind byte)",
            options.payload
        )));
    }
    Ok(())
}

/// Runs the sweep (or, with `connect`, one point), telling `on` what it is
/// doing and each point it measured. When `cancel` is set (Ctrl-C), the
/// point under way is dropped and the points measured so far are returned.
pub fn sweep(
    options: &BenchOptions,
    cancel: &AtomicBool,
    mut on: impl FnMut(Event<'_>),
) -> Result<Vec<BenchPoint>, BenchError> {
    check(options)?;
    let mut points = Vec::new();
    if let Some(addr) = options.connect {
        // The real cause, before any client thread counts it as an error.
        TcpStream::connect_timeout(&addr, Duration::from_secs(5))
            .map_err(|source| BenchError::Connect { addr, source })?;
        let source = match options.metrics {
            Some(metrics) => {
                // Fail now, not after the run, on an address that is not one.
                server::scrape(metrics)
                    .and_then(|text| server::parse(&text))
                    .map_err(BenchError::Metrics)?;
                Some(server::Source::Endpoint(metrics))
            }
            None => None,
        };
        let every = (options.duration / 20).max(Duration::from_millis(50));
        let run = Run {
            addr,
            options,
            cancel,
            source,
            every,
            step: 0,
            steps: 1,
        };
        let mut point = match run.measure(&mut on, &mut |_| {}) {
            Err(BenchError::Cancelled) => return Ok(points),
            other => other?,
        };
        point.workers = None;
        on(Event::Done(&point));
        points.push(point);
        return Ok(points);
    }
    let steps = options.workers.len();
    for (step, &workers) in options.workers.iter().enumerate() {
        if cancel.load(Ordering::Relaxed) {
            break;
        }
        let config = Config {
            workers,
            queue: options.queue,
            max_connections: (options.clients + options.idle + 64).clamp(
                Config::default().max_connections,
                crate::config::MAX_CONNECTIONS,
            ),
            ..Config::default()
        };
        let echo = Echo {
            delay: options.delay,
            spin: options.spin,
        };
        let server = Server::start_timed(config, crate::server::Security::Plain, echo)?;
        let source = server.probe().map(server::Source::InProcess);
        let mut cpu = None;
        let run = Run {
            addr: server.local_addr(),
            options,
            cancel,
            source,
            every: Duration::from_millis(1),
            step,
            steps,
        };
        let result = run.measure(&mut on, &mut |edge| {
            cpu = match edge {
                Edge::Start => Some(cpu::server_cpu_seconds()),
                Edge::End => cpu.map(|before| cpu::server_cpu_seconds() - before),
            }
        });
        server.handle().shutdown();
        server.join();
        let mut point = match result {
            Err(BenchError::Cancelled) => break,
            other => other?,
        };
        point.workers = Some(workers);
        point.server_cpu_seconds = cpu;
        on(Event::Done(&point));
        points.push(point);
    }
    Ok(points)
}

/// One point to measure: the engine's measurement, with the server's
/// figures read at the window's edges from `source` (sampling busy
/// workers every `every`).
struct Run<'a> {
    addr: SocketAddr,
    options: &'a BenchOptions,
    cancel: &'a AtomicBool,
    source: Option<server::Source>,
    every: Duration,
    step: usize,
    steps: usize,
}

impl Run<'_> {
    /// Measures, telling `on` the phases and `edge` the window's edges.
    fn measure(
        self,
        on: &mut dyn FnMut(Event<'_>),
        edge: &mut dyn FnMut(Edge),
    ) -> Result<BenchPoint, BenchError> {
        let (step, steps) = (self.step, self.steps);
        let workers = self
            .options
            .connect
            .is_none()
            .then(|| self.options.workers[step]);
        on(Event::Warmup {
            step,
            steps,
            workers,
        });
        let mut window: Option<Result<server::Window, String>> = None;
        let mut figures: Option<Result<ServerFigures, String>> = None;
        let result = measure(self.addr, self.options, self.cancel, &mut |at| {
            edge(at);
            match at {
                Edge::Start => {
                    on(Event::Measure {
                        step,
                        steps,
                        workers,
                    });
                    let every = self.every;
                    window = self.source.clone().map(|s| server::Window::start(s, every));
                }
                Edge::End => {
                    figures = window.take().map(|w| w.and_then(server::Window::finish));
                }
            }
        });
        let mut point = result?;
        point.server = match figures {
            Some(Ok(figures)) => Some(figures),
            Some(Err(e)) if self.options.metrics.is_some() => return Err(BenchError::Metrics(e)),
            _ => None,
        };
        Ok(point)
    }
}

impl BenchPoint {
    /// Whether the point served what was offered: every busy client got
    /// a reply, and with an offered rate, at least 95% of it was served by
    /// workers not busy all the time ([`SATURATED`]).
    pub fn kept_up(&self) -> bool {
        self.shortfall().is_none()
    }

    /// Why the point did not keep up, if it did not.
    pub fn shortfall(&self) -> Option<String> {
        if self.clients_served < self.clients {
            return Some(format!(
                "served only {}/{} clients",
                self.clients_served, self.clients
            ));
        }
        let offered = self.offered_rps?;
        if self.requests_per_sec < 0.95 * offered {
            return Some(format!(
                "served {} of the {} req/s offered",
                human_rate(self.requests_per_sec),
                human_rate(offered)
            ));
        }
        // Open loop only (a closed loop keeps every worker busy by design):
        // a pool busy all the time is saturated. Its line grows without
        // bound, however good a short window's p99 looks.
        match self.server {
            Some(server) if server.utilisation >= SATURATED => Some(format!(
                "its workers were busy {:.0}% of the time: saturated",
                server.utilisation * 100.0
            )),
            _ => None,
        }
    }
}

/// Utilisation from which an open-loop point counts as saturated.
pub const SATURATED: f64 = 0.95;

/// `20,000` for 20000.4: a rate as a sentence writes it.
pub fn human_rate(rps: f64) -> String {
    let n = rps.round().max(0.0) as u64;
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// `850 us`, `1.2 ms`, `3.05 s`: a duration in microseconds as a sentence
/// writes it.
pub fn human_us(us: f64) -> String {
    let trim = |text: String| {
        if text.contains('.') {
            text.trim_end_matches('0').trim_end_matches('.').to_owned()
        } else {
            text
        }
    };
    match us {
        us if us >= 1e6 => format!("{} s", trim(format!("{:.2}", us / 1e6))),
        us if us >= 1e3 => format!("{} ms", trim(format!("{:.1}", us / 1e3))),
        us => format!("{us:.0} us"),
    }
}

/// The advice drawn from a sweep.
///
/// With `target_p99`: the smallest pool that kept up (every client served,
/// at least 95% of the offered rate) with a p99 at or under the target.
/// Without: the smallest pool that kept up within 5% of the best
/// throughput. A pool that left offered work unserved is never
/// recommended. `None` when there is no pool size at all (an external
/// server); a recommendation with `workers: None` when no pool qualified,
/// with the reason.
pub fn recommend(points: &[BenchPoint], target_p99: Option<Duration>) -> Option<Recommendation> {
    let pools: Vec<&BenchPoint> = points.iter().filter(|p| p.workers.is_some()).collect();
    if pools.is_empty() {
        return None;
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

/// Durations written as seconds (`1.5`), not `{secs, nanos}`.
fn seconds<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

/// Optional durations written as seconds, or `null`.
fn seconds_opt<S: serde::Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => s.serialize_some(&d.as_secs_f64()),
        None => s.serialize_none(),
    }
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

    #[test]
    fn sentences_write_rates_and_durations_readably() {
        assert_eq!(human_rate(20_000.4), "20,000");
        assert_eq!(human_rate(999.0), "999");
        assert_eq!(human_rate(1_234_567.0), "1,234,567");
        assert_eq!(human_us(850.0), "850 us");
        assert_eq!(human_us(1_000.0), "1 ms");
        assert_eq!(human_us(1_250.0), "1.2 ms");
        assert_eq!(human_us(3_050_000.0), "3.05 s");
    }
}
