//! wharf against two competent peers under the same closed-loop load: a
//! plain thread-per-connection `std` server and a tokio server, both written
//! here and speaking wharf's length framing. Run with
//! `cargo bench --bench compare`.
//!
//! Every point starts a fresh server on 127.0.0.1:0 in this process, drives
//! it with `wharf::bench::load` (closed-loop clients on one event-driven
//! thread, every echoed byte verified), and stops it. Within a round the servers are interleaved
//! (wharf, std, tokio for scenario a, then b, ...) so slow drift of the
//! machine hits all three alike; the table reports the median over rounds.
//!
//! `WHARF_COMPARE_SECS` sets the measured window per point (default 2;
//! the warm-up is a quarter of it, at most 0.5 s) and
//! `WHARF_COMPARE_ROUNDS` the number of rounds (default 3);
//! `WHARF_COMPARE_ONLY=ab` runs only the scenarios whose letters it names.
//! The table goes
//! to stdout and to `target/compare.md`; any error reported by the load
//! generator is printed and makes the process exit 1.
//!
//! Scenarios i and j are over TLS (1.3, ECDSA P-256 certificate made for
//! the run, key exchange X25519, no session resumption, so every
//! connection makes a full handshake): wharf's TLS listener, the
//! thread-per-connection peer with rustls, and tokio with tokio-rustls, all
//! three serving the same certificate with the same rustls settings
//! (`peers::tls_config`). i is handshake churn: 4 clients, each
//! connecting, shaking hands, sending one 64 B request and closing, so its
//! requests per second are handshakes per second. j is 8 long-lived TLS
//! connections echoing 64 B.
//!
//! wharf runs with 64 workers everywhere except in scenario h, which is
//! scenario c (64 closed-loop clients) on 4 workers: with connections that
//! hold a worker only while they have work, 4 workers should serve 64
//! clients about as fast as 64 workers do (the goal: at least 0.9x). The
//! table ends with that ratio, of the medians and round by round. The peers
//! are the same in h as in c; they live in `peers/mod.rs`, shared with the
//! `many` benchmark.

#[path = "common/mod.rs"]
mod common;
#[path = "peers/mod.rs"]
mod peers;
#[path = "compare/servers.rs"]
mod servers;
#[path = "compare/table.rs"]
mod table;

use std::fmt::Write as _;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use common::{target_dir, thousands};
use servers::{Certs, Kind, Running, KINDS};
use table::{median, table, Row};
use wharf::bench::{load, BenchOptions, BenchPoint};

/// Connections per 1 ms in scenario g, for Little's law.
const DELAY_CLIENTS: usize = 64;
/// wharf's pool in every scenario but h.
const WORKERS: usize = 64;
/// wharf's pool in scenario h.
const H_WORKERS: usize = 4;
/// Scenario h's goal: wharf on 4 workers reaches at least this fraction of
/// its throughput on 64 workers with the same 64 clients (scenario c).
const H_GOAL: f64 = 0.9;

struct Scenario {
    label: &'static str,
    clients: usize,
    payload: usize,
    pipeline: usize,
    batches_per_connection: Option<usize>,
    delay: Duration,
    long_lived: bool,
    /// wharf's pool size (the peers have no pool).
    workers: usize,
    /// Over TLS.
    tls: bool,
}

fn scenarios() -> Vec<Scenario> {
    let base = |label, clients, payload| Scenario {
        label,
        clients,
        payload,
        pipeline: 1,
        batches_per_connection: None,
        delay: Duration::ZERO,
        long_lived: true,
        workers: WORKERS,
        tls: false,
    };
    vec![
        base("a) 1 conn, 64 B", 1, 64),
        base("b) 8 conns, 64 B", 8, 64),
        base("c) 64 conns, 64 B", 64, 64),
        Scenario {
            pipeline: 16,
            ..base("d) 8 conns, pipeline 16, 64 B", 8, 64)
        },
        base("e) 8 conns, 64 KiB", 8, 64 * 1024),
        Scenario {
            batches_per_connection: Some(1),
            long_lived: false,
            ..base("f) churn: 8 clients, connect-request-close, 64 B", 8, 64)
        },
        Scenario {
            delay: Duration::from_millis(1),
            ..base("g) 64 conns, 64 B, 1 ms delay", DELAY_CLIENTS, 64)
        },
        Scenario {
            workers: H_WORKERS,
            ..base("h) 64 conns on 4 workers, 64 B", 64, 64)
        },
        Scenario {
            batches_per_connection: Some(1),
            long_lived: false,
            tls: true,
            ..base(
                "i) TLS churn: 4 clients, handshake-request-close, 64 B",
                4,
                64,
            )
        },
        Scenario {
            tls: true,
            ..base("j) TLS 8 conns, 64 B", 8, 64)
        },
    ]
}

struct Settings {
    rounds: usize,
    warmup: Duration,
    duration: Duration,
}

fn settings() -> Result<Settings, String> {
    let secs = match std::env::var("WHARF_COMPARE_SECS") {
        Ok(v) => v
            .trim()
            .parse::<f64>()
            .ok()
            .filter(|s| s.is_finite() && *s > 0.0 && *s <= 600.0)
            .ok_or_else(|| format!("WHARF_COMPARE_SECS={v:?}: want seconds in (0, 600]"))?,
        Err(_) => 2.0,
    };
    let rounds = match std::env::var("WHARF_COMPARE_ROUNDS") {
        Ok(v) => v
            .trim()
            .parse::<usize>()
            .ok()
            .filter(|r| (1..=100).contains(r))
            .ok_or_else(|| format!("WHARF_COMPARE_ROUNDS={v:?}: want 1..=100"))?,
        Err(_) => 3,
    };
    Ok(Settings {
        rounds,
        warmup: Duration::from_secs_f64((secs / 4.0).min(0.5)),
        duration: Duration::from_secs_f64(secs),
    })
}

fn measure(
    kind: Kind,
    scenario: &Scenario,
    settings: &Settings,
    certs: Option<&Certs>,
) -> Result<BenchPoint, String> {
    let tls = if scenario.tls {
        Some(certs.ok_or("no certificate for the TLS scenarios")?)
    } else {
        None
    };
    let server = Running::start(kind, scenario.delay, scenario.workers, tls)?;
    let options = BenchOptions {
        tls: tls.is_some(),
        tls_ca: tls.map(Certs::ca),
        clients: scenario.clients,
        payload: scenario.payload,
        pipeline: scenario.pipeline,
        batches_per_connection: scenario.batches_per_connection,
        warmup: settings.warmup,
        duration: settings.duration,
        ..BenchOptions::default()
    };
    let result = load(server.addr(), &options);
    server.stop();
    result.map_err(|e| format!("{}: {}: {e}", scenario.label, kind.name()))
}

fn main() -> ExitCode {
    // `cargo bench` passes --bench; `cargo test --benches` does not, and a
    // multi-minute comparison has no place in a test run.
    if !std::env::args().any(|a| a == "--bench") {
        println!("compare: skipped (run it with `cargo bench --bench compare`)");
        return ExitCode::SUCCESS;
    }
    let settings = match settings() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("compare: {e}");
            return ExitCode::from(2);
        }
    };
    let mut scenarios = scenarios();
    // WHARF_COMPARE_ONLY=ab runs only scenarios a and b (for a quick look).
    if let Ok(only) = std::env::var("WHARF_COMPARE_ONLY") {
        scenarios.retain(|s| s.label.chars().next().is_some_and(|c| only.contains(c)));
    }
    let certs = if scenarios.iter().any(|s| s.tls) {
        match Certs::new() {
            Ok(certs) => Some(certs),
            Err(e) => {
                eprintln!("compare: {e}");
                return ExitCode::FAILURE;
            }
        }
    } else {
        None
    };
    // points[scenario][server] = one BenchPoint per round.
    let mut points: Vec<[Vec<BenchPoint>; 3]> =
        scenarios.iter().map(|_| Default::default()).collect();
    let mut errors = Vec::new();
    let started = Instant::now();
    for round in 1..=settings.rounds {
        for (s, scenario) in scenarios.iter().enumerate() {
            for (k, kind) in KINDS.into_iter().enumerate() {
                match measure(kind, scenario, &settings, certs.as_ref()) {
                    Ok(point) => {
                        eprintln!(
                            "round {round}/{}  {:<48} {:<5} {:>10} req/s  p99 {:>7} µs  \
                             served {}/{}  errors {}",
                            settings.rounds,
                            scenario.label,
                            kind.name(),
                            thousands(point.requests_per_sec),
                            point.p99_us,
                            point.clients_served,
                            scenario.clients,
                            point.errors,
                        );
                        if point.errors > 0 || point.busy > 0 {
                            errors.push(format!(
                                "round {round}, {}, {}: {} error(s), {} BUSY",
                                scenario.label,
                                kind.name(),
                                point.errors,
                                point.busy
                            ));
                        }
                        points[s][k].push(point);
                    }
                    Err(e) => {
                        eprintln!("round {round}: {e}");
                        errors.push(format!("round {round}: {e}"));
                    }
                }
            }
        }
    }
    eprintln!("compare: {:.0} s in all", started.elapsed().as_secs_f64());

    let rows: Vec<Row> = points
        .iter()
        .map(|per_kind| {
            let rps = |k: usize| median(per_kind[k].iter().map(|p| p.requests_per_sec).collect());
            let p99 = |k: usize| median(per_kind[k].iter().map(|p| p.p99_us as f64).collect());
            let hs = |k: usize| {
                median(
                    per_kind[k]
                        .iter()
                        .filter_map(|p| p.tls.map(|t| t.handshakes_per_sec))
                        .collect(),
                )
            };
            let spread = |k: usize| {
                per_kind[k]
                    .iter()
                    .map(|p| p.requests_per_sec)
                    .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), r| {
                        (lo.min(r), hi.max(r))
                    })
            };
            Row {
                rps: [rps(0), rps(1), rps(2)],
                p99: [p99(0), p99(1), p99(2)],
                spread: [spread(0), spread(1), spread(2)],
                wharf_rounds: per_kind[0].iter().map(|p| p.requests_per_sec).collect(),
                handshakes: [hs(0), hs(1), hs(2)],
            }
        })
        .collect();
    let mut report = table(&scenarios, &rows, &settings);
    if !errors.is_empty() {
        report.push_str("\nERRORS (the numbers above are not valid):\n");
        for e in &errors {
            let _ = writeln!(report, "- {e}");
        }
    }
    print!("{report}");
    let path = target_dir().join("compare.md");
    if let Err(e) =
        std::fs::create_dir_all(target_dir()).and_then(|()| std::fs::write(&path, &report))
    {
        eprintln!("compare: cannot write {}: {e}", path.display());
        return ExitCode::FAILURE;
    }
    eprintln!("compare: table written to {}", path.display());
    if errors.is_empty() {
        ExitCode::SUCCESS
    } else {
        for e in &errors {
            eprintln!("compare: error: {e}");
        }
        ExitCode::FAILURE
    }
}
