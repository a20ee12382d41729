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

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::client::{Client, ClientError, ClientOptions, Reply};
use crate::{Config, Echo, GoAwayCode, Server};

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
    /// Server threads' CPU time in the window (in-process servers only).
    pub server_cpu_seconds: Option<f64>,
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
    /// The options make no sense.
    #[error("invalid benchmark options: {0}")]
    Invalid(String),
}

const WARMUP: u8 = 0;
const MEASURE: u8 = 1;
const STOP: u8 = 2;

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
        let result = measure(server.local_addr(), options, Some(&server));
        server.handle().shutdown();
        server.join();
        let point = result?;
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
        })
}

/// Little's law for `delay`-bound work: each served connection completes at
/// most one request per `delay`, and at most `workers` connections are
/// served at once, so the rate is `min(clients, workers) / delay`.
pub fn littles_law(options: &BenchOptions, workers: usize) -> Option<f64> {
    (!options.delay.is_zero())
        .then(|| options.clients.min(workers) as f64 / options.delay.as_secs_f64())
}

/// What one client thread counted.
struct Tally {
    histogram: Histogram<u64>,
    requests: u64,
    busy: u64,
    errors: u64,
}

/// Loads a server that is already running at `addr` for `options.warmup`
/// then `options.duration`, and returns the measurement (without CPU time).
/// Used by `--connect` and by the comparison with other servers.
pub fn load(addr: SocketAddr, options: &BenchOptions) -> Result<BenchPoint, BenchError> {
    measure(addr, options, None)
}

fn measure(
    addr: SocketAddr,
    options: &BenchOptions,
    server: Option<&Server>,
) -> Result<BenchPoint, BenchError> {
    let phase = Arc::new(AtomicU8::new(WARMUP));
    let clients = (0..options.clients)
        .map(|id| {
            let phase = Arc::clone(&phase);
            let options = options.clone();
            std::thread::Builder::new()
                .name(format!("bench-client-{id}"))
                .spawn(move || client_loop(addr, &options, id, &phase))
                .map_err(BenchError::Spawn)
        })
        .collect::<Result<Vec<_>, _>>();
    let clients = match clients {
        Ok(clients) => clients,
        Err(e) => {
            phase.store(STOP, Ordering::SeqCst);
            return Err(e);
        }
    };

    std::thread::sleep(options.warmup);
    let cpu_start = server.map(|_| server_cpu_seconds());
    let start = Instant::now();
    phase.store(MEASURE, Ordering::SeqCst);
    std::thread::sleep(options.duration);
    phase.store(STOP, Ordering::SeqCst);
    let seconds = start.elapsed().as_secs_f64();
    let cpu = cpu_start.map(|before| server_cpu_seconds() - before);
    // Clients still waiting in the queue get GOAWAY 1 and stop.
    if let Some(server) = server {
        server.handle().shutdown();
    }

    let mut histogram = new_histogram();
    let (mut requests, mut busy, mut errors, mut clients_served) = (0, 0, 0, 0);
    for client in clients {
        match client.join() {
            Ok(tally) => {
                let _ = histogram.add(&tally.histogram);
                clients_served += usize::from(tally.requests > 0);
                requests += tally.requests;
                busy += tally.busy;
                errors += tally.errors;
            }
            Err(_) => errors += 1,
        }
    }
    let at = |q: f64| histogram.value_at_quantile(q);
    Ok(BenchPoint {
        workers: server.map(|s| s.config().workers),
        requests,
        seconds,
        requests_per_sec: requests as f64 / seconds,
        p50_us: at(0.50),
        p90_us: at(0.90),
        p99_us: at(0.99),
        p999_us: at(0.999),
        max_us: histogram.max(),
        clients_served,
        busy,
        errors,
        server_cpu_seconds: cpu,
    })
}

fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("static histogram bounds are valid")
}

/// One closed-loop client: send a batch, verify every reply, repeat.
fn client_loop(addr: SocketAddr, options: &BenchOptions, id: usize, phase: &AtomicU8) -> Tally {
    let mut tally = Tally {
        histogram: new_histogram(),
        requests: 0,
        busy: 0,
        errors: 0,
    };
    let payload: Vec<u8> = (0..options.payload)
        .map(|i| (i.wrapping_mul(31).wrapping_add(id)) as u8)
        .collect();
    let client_options = ClientOptions {
        read_timeout: Some(Duration::from_millis(200)),
        ..ClientOptions::default()
    };
    while phase.load(Ordering::Relaxed) != STOP {
        let mut client = match Client::connect(addr, client_options.clone()) {
            Ok(client) => client,
            Err(_) => {
                count(&mut tally.errors, phase);
                std::thread::sleep(Duration::from_millis(10));
                continue;
            }
        };
        let batches = options.batches_per_connection;
        if let Err(e) = run_batches(
            &mut client,
            &payload,
            options.pipeline,
            batches,
            phase,
            &mut tally,
        ) {
            match e.goaway_code() {
                Some(code) if code == GoAwayCode::Busy.as_u16() => {
                    count(&mut tally.busy, phase);
                    std::thread::sleep(Duration::from_millis(1));
                }
                // The drain at the end of a run.
                Some(code) if code == GoAwayCode::Shutdown.as_u16() => {}
                _ => count(&mut tally.errors, phase),
            }
        }
    }
    tally
}

/// Counts an event only inside the measured window.
fn count(counter: &mut u64, phase: &AtomicU8) {
    if phase.load(Ordering::Relaxed) == MEASURE {
        *counter += 1;
    }
}

fn run_batches(
    client: &mut Client,
    payload: &[u8],
    pipeline: usize,
    batches: Option<usize>,
    phase: &AtomicU8,
    tally: &mut Tally,
) -> Result<(), ClientError> {
    for _ in 0..batches.unwrap_or(usize::MAX) {
        let started_in = phase.load(Ordering::Relaxed);
        if started_in == STOP {
            return Ok(());
        }
        let start = Instant::now();
        for _ in 0..pipeline {
            client.send(payload)?;
        }
        client.flush()?;
        for _ in 0..pipeline {
            let reply = loop {
                match client.recv() {
                    // Waiting in the queue for a worker: keep waiting until told to stop.
                    Err(ClientError::Timeout(_)) if phase.load(Ordering::Relaxed) != STOP => {}
                    Err(ClientError::Timeout(_)) => return Ok(()),
                    other => break other?,
                }
            };
            let measured = started_in == MEASURE && phase.load(Ordering::Relaxed) == MEASURE;
            match reply {
                Reply::Data(data) if data == payload => {
                    if measured {
                        tally.requests += 1;
                        let micros = start.elapsed().as_micros() as u64;
                        let _ = tally.histogram.record(micros.max(1));
                    }
                }
                _ => count(&mut tally.errors, phase),
            }
        }
    }
    Ok(())
}

/// User + system CPU of this process's server threads (named `wharf-*`).
fn server_cpu_seconds() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return 0.0;
    };
    let mut total = 0u64;
    for task in tasks.flatten() {
        let Ok(stat) = std::fs::read_to_string(task.path().join("stat")) else {
            continue;
        };
        // "tid (comm) state ..." : comm may contain spaces, so split at ')'.
        let Some((head, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        if !head.contains("(wharf-") {
            continue;
        }
        let fields: Vec<&str> = rest.split_whitespace().collect();
        // After the comm: state is field 3 of the line, utime 14, stime 15.
        let field = |n: usize| fields.get(n - 3).and_then(|f| f.parse::<u64>().ok());
        total += field(14).unwrap_or(0) + field(15).unwrap_or(0);
    }
    total as f64 / ticks
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
            server_cpu_seconds: None,
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
