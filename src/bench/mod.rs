//! Choosing a pool size by measurement: a closed-loop load generator and a
//! sweep over pool sizes.
//!
//! For each pool size, [`sweep`] starts an in-process server on
//! 127.0.0.1:0 with the echo service (optionally with `delay` or `spin`
//! work), drives it with `clients` closed-loop client threads (each sends
//! `pipeline` requests, waits for their replies, and repeats), discards the
//! `warmup`, measures for `duration`, then drains the server and moves on.
//! Every echoed byte is checked; a mismatch counts as an error.
//!
//! Latency is the time from sending a batch to receiving each reply, in an
//! HDR histogram per client thread (merged at the end, so recording costs
//! no synchronisation). CPU is the server threads' own user + system time
//! over the measured window, read from `/proc/self/task`; it is not
//! available when loading an external server with `connect`.
//!
//! This file holds the options and results, the [`sweep`] over pool sizes
//! and the advice drawn from it ([`recommend`], [`littles_law`]). Driving
//! one server with client threads ([`load`](fn@load)) is in `load`;
//! reading the server threads' CPU time is in `cpu`.

mod cpu;
mod driver;
mod load;

use std::net::SocketAddr;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use serde::Serialize;

use crate::{Config, Echo, Server};
use cpu::server_cpu_seconds;
use load::measure;

pub use load::{load, Edge};

/// What to measure.
#[derive(Debug, Clone, Serialize)]
pub struct BenchOptions {
    /// Pool sizes to sweep (ignored with `connect`).
    pub workers: Vec<usize>,
    /// Queue capacity of the in-process server.
    pub queue: usize,
    /// Echo service sleep per request (I/O-bound work).
    pub delay: Duration,
    /// Echo service busy-loop per request (CPU-bound work).
    pub spin: Duration,
    /// Closed-loop client threads (connections).
    pub clients: usize,
    /// Load applied before measuring, per pool size.
    pub warmup: Duration,
    /// Measured time per pool size.
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
    pub idle_ping: Duration,
    /// Latency target for the recommendation: the smallest pool whose p99
    /// meets it at the offered load.
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
    /// Busy workers on average over the window, divided by the pool size.
    pub utilisation: f64,
    /// Connections put to rest in the poller, per request.
    pub rests_per_request: f64,
    /// Resting connections woken by their bytes, per request.
    pub wakeups_per_request: f64,
    /// Connections turned away with GOAWAY 3.
    pub rejected: Rejections,
}

/// The closing advice of a sweep.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Recommendation {
    /// The smallest pool within 5% of the best throughput.
    pub workers: usize,
    /// Its throughput.
    pub requests_per_sec: f64,
    /// Its 99th percentile latency (µs).
    pub p99_us: u64,
    /// The best throughput of the sweep.
    pub best_requests_per_sec: f64,
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
    /// Cancelled before the measured window started: nothing was measured.
    #[error("cancelled before the measured window started")]
    Cancelled,
}

/// Runs the sweep (or, with `connect`, one point), calling `progress` with
/// each pool size before it starts and `done` with each result.
pub fn sweep(
    options: &BenchOptions,
    mut progress: impl FnMut(Option<usize>),
    mut done: impl FnMut(&BenchPoint),
) -> Result<Vec<BenchPoint>, BenchError> {
    if options.clients == 0 || options.pipeline == 0 || options.duration.is_zero() {
        return Err(BenchError::Invalid(
            "clients, pipeline and duration must be greater than 0".into(),
        ));
    }
    let mut points = Vec::new();
    if let Some(addr) = options.connect {
        progress(None);
        let point = load(addr, options)?;
        done(&point);
        points.push(point);
        return Ok(points);
    }
    for &workers in &options.workers {
        progress(Some(workers));
        let config = Config {
            workers,
            queue: options.queue,
            ..Config::default()
        };
        let echo = Echo {
            delay: options.delay,
            spin: options.spin,
        };
        let server = Server::start("127.0.0.1:0", config, echo)?;
        let (mut cpu_start, mut cpu) = (None, None);
        let result = measure(
            server.local_addr(),
            options,
            &AtomicBool::new(false),
            &mut |edge| match edge {
                Edge::Start => cpu_start = Some(server_cpu_seconds()),
                Edge::End => cpu = cpu_start.map(|start| server_cpu_seconds() - start),
            },
        );
        server.handle().shutdown();
        server.join();
        let point = BenchPoint {
            workers: Some(workers),
            server_cpu_seconds: cpu,
            ..result?
        };
        done(&point);
        points.push(point);
    }
    Ok(points)
}

/// The smallest pool within 5% of the best throughput.
pub fn recommend(points: &[BenchPoint]) -> Option<Recommendation> {
    let best = points
        .iter()
        .map(|p| p.requests_per_sec)
        .fold(0.0_f64, f64::max);
    points
        .iter()
        .filter(|p| p.workers.is_some() && p.requests_per_sec >= best * 0.95 && best > 0.0)
        .min_by_key(|p| p.workers)
        .map(|p| Recommendation {
            workers: p.workers.unwrap_or_default(),
            requests_per_sec: p.requests_per_sec,
            p99_us: p.p99_us,
            best_requests_per_sec: best,
            reason: format!("the smallest pool within 5% of the best throughput ({best:.0} req/s)"),
        })
}

/// Little's law for `delay`-bound work: each served connection completes at
/// most one request per `delay`, and at most `workers` connections are
/// served at once, so the rate is `min(clients, workers) / delay`.
pub fn littles_law(options: &BenchOptions, workers: usize) -> Option<f64> {
    (!options.delay.is_zero())
        .then(|| options.clients.min(workers) as f64 / options.delay.as_secs_f64())
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
        let rec = recommend(&points).unwrap();
        assert_eq!(rec.workers, 2);
        assert_eq!(rec.p99_us, 2);
        assert_eq!(rec.best_requests_per_sec, 1000.0);
        assert!(recommend(&[]).is_none());
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
    }
}
