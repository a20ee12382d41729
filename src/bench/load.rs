//! Driving a server: the closed-loop client threads, their batches, and
//! turning what they counted into a [`BenchPoint`].
//!
//! Separate from the sweep because this part runs against any server, in
//! process or external ([`load`] is what `--connect` and the comparison
//! with other servers use), while the sweep only decides which servers to
//! start. The client threads share nothing but the phase flag (warm-up,
//! measure, stop); each counts into its own [`Tally`], merged at the end.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use super::cpu::server_cpu_seconds;
use super::{BenchError, BenchOptions, BenchPoint};
use crate::client::{Client, ClientError, ClientOptions, Reply};
use crate::{GoAwayCode, Server};

const WARMUP: u8 = 0;
const MEASURE: u8 = 1;
const STOP: u8 = 2;

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

pub(super) fn measure(
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
        clients: options.clients,
        offered_rps: None,
        idle: None,
        server: None,
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
