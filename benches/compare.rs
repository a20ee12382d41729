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

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use common::{ephemeral_ports, machine, target_dir, thousands};
use peers::{StdServer, TokioServer};
use wharf::bench::{load, BenchOptions, BenchPoint};
use wharf::{Config, Echo, Server};

/// Connections per 1 ms in scenario g, for Little's law.
const DELAY_CLIENTS: usize = 64;
/// wharf's pool in every scenario but h.
const WORKERS: usize = 64;
/// wharf's pool in scenario h.
const H_WORKERS: usize = 4;
/// Scenario h's goal: wharf on 4 workers reaches at least this fraction of
/// its throughput on 64 workers with the same 64 clients (scenario c).
const H_GOAL: f64 = 0.9;

// ---------------------------------------------------------------------------
// Running the comparison.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Wharf,
    Std,
    Tokio,
}

const KINDS: [Kind; 3] = [Kind::Wharf, Kind::Std, Kind::Tokio];

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Wharf => "wharf",
            Kind::Std => "std",
            Kind::Tokio => "tokio",
        }
    }
}

enum Running {
    Wharf(Server),
    Std(StdServer),
    Tokio(TokioServer),
}

impl Running {
    fn start(kind: Kind, delay: Duration, workers: usize) -> Result<Running, String> {
        let started = match kind {
            Kind::Wharf => {
                let config = Config {
                    workers,
                    queue: 64,
                    ..Config::default()
                };
                let echo = Echo {
                    delay,
                    ..Echo::default()
                };
                Server::start("127.0.0.1:0", config, echo)
                    .map(Running::Wharf)
                    .map_err(|e| e.to_string())
            }
            Kind::Std => StdServer::start(delay)
                .map(Running::Std)
                .map_err(|e| e.to_string()),
            Kind::Tokio => TokioServer::start(delay)
                .map(Running::Tokio)
                .map_err(|e| e.to_string()),
        };
        started.map_err(|e| format!("cannot start the {} server: {e}", kind.name()))
    }

    fn addr(&self) -> SocketAddr {
        match self {
            Running::Wharf(server) => server.local_addr(),
            Running::Std(server) => server.addr,
            Running::Tokio(server) => server.addr,
        }
    }

    fn stop(self) {
        match self {
            Running::Wharf(server) => {
                server.handle().shutdown();
                server.join();
            }
            Running::Std(server) => server.stop(),
            Running::Tokio(server) => server.stop(),
        }
    }
}

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

fn measure(kind: Kind, scenario: &Scenario, settings: &Settings) -> Result<BenchPoint, String> {
    let server = Running::start(kind, scenario.delay, scenario.workers)?;
    let options = BenchOptions {
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

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    match n {
        0 => f64::NAN,
        _ if n % 2 == 1 => values[n / 2],
        _ => (values[n / 2 - 1] + values[n / 2]) / 2.0,
    }
}

/// Medians of one scenario: per server, throughput and p99.
struct Row {
    rps: [f64; 3],
    p99: [f64; 3],
    /// Lowest and highest throughput over the rounds.
    spread: [(f64, f64); 3],
    /// wharf's throughput in each round, in round order.
    wharf_rounds: Vec<f64>,
}

fn ratio(a: f64, b: f64) -> String {
    if b > 0.0 && a.is_finite() && b.is_finite() {
        format!("{:.2}", a / b)
    } else {
        "-".into()
    }
}

fn table(scenarios: &[Scenario], rows: &[Row], settings: &Settings) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "Median of {} rounds; per point {:.1} s warm-up + {:.1} s measured, a fresh server each \
         time, servers interleaved within a round. Load: `wharf::bench::load` closed-loop \
         clients on one event-driven thread in the same process, every echo verified. wharf: 64 workers (4 in h), \
         queue 64. \
         Throughput in requests/s, p99 latency in µs; ratios are wharf / peer (throughput: \
         higher is better for wharf; p99: lower is better for wharf).",
        settings.rounds,
        settings.warmup.as_secs_f64(),
        settings.duration.as_secs_f64(),
    );
    out.push('\n');
    out.push_str(
        "| scenario | wharf req/s | std req/s | tokio req/s | wharf/std | wharf/tokio \
         | wharf p99 µs | std p99 µs | tokio p99 µs | p99 wharf/std | p99 wharf/tokio |\n",
    );
    out.push_str("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    for (scenario, row) in scenarios.iter().zip(rows) {
        let [w, s, t] = row.rps;
        let [pw, ps, pt] = row.p99;
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            scenario.label,
            thousands(w),
            thousands(s),
            thousands(t),
            ratio(w, s),
            ratio(w, t),
            thousands(pw),
            thousands(ps),
            thousands(pt),
            ratio(pw, ps),
            ratio(pw, pt),
        );
    }
    let _ = writeln!(
        out,
        "\nThroughput range over the {} rounds (lowest - highest req/s), to judge the noise:\n",
        settings.rounds
    );
    out.push_str("| scenario | wharf | std | tokio |\n|---|---:|---:|---:|\n");
    for (scenario, row) in scenarios.iter().zip(rows) {
        let range = |(lo, hi): (f64, f64)| format!("{} - {}", thousands(lo), thousands(hi));
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} |",
            scenario.label,
            range(row.spread[0]),
            range(row.spread[1]),
            range(row.spread[2]),
        );
    }
    for (scenario, row) in scenarios.iter().zip(rows) {
        if scenario.delay.is_zero() {
            continue;
        }
        let little = scenario.clients as f64 / scenario.delay.as_secs_f64();
        let [w, s, t] = row.rps;
        let _ = writeln!(
            out,
            "\n{}: Little's law allows {} connections / {} ms = {} req/s; wharf reaches {} req/s \
             = {:.1}% of it (std {:.1}%, tokio {:.1}%).",
            scenario.label,
            scenario.clients,
            scenario.delay.as_millis(),
            thousands(little),
            thousands(w),
            100.0 * w / little,
            100.0 * s / little,
            100.0 * t / little,
        );
    }
    if let Some((low, high)) = ephemeral_ports() {
        let ports = high.saturating_sub(low) + 1;
        let window = (settings.warmup + settings.duration).as_secs_f64();
        for (scenario, row) in scenarios.iter().zip(rows) {
            if scenario.batches_per_connection.is_none() {
                continue;
            }
            let most = row.rps.iter().copied().fold(0.0, f64::max);
            if most * window > ports as f64 {
                let _ = writeln!(
                    out,
                    "\n{}: caveat: at these rates one warm-up + window opens up to {} connections \
                     from one client address to one server port, more than the {ports} ephemeral \
                     ports ({low}-{high}). The client closes first, so each port sits in \
                     TIME_WAIT and can be reused only after about 1 s (tcp_tw_reuse): past that \
                     point the client's connect() limits the rate, for every server alike. \
                     Shorter windows (WHARF_COMPARE_SECS=0.4) show the servers' own rates.",
                    scenario.label,
                    thousands(most * window),
                );
            }
        }
    }
    let wharf_row = |letter: char| {
        scenarios
            .iter()
            .zip(rows)
            .find(|(s, _)| s.label.starts_with(letter))
            .map(|(_, row)| row)
    };
    if let (Some(c), Some(h)) = (wharf_row('c'), wharf_row('h')) {
        let h_over_c = h.rps[0] / c.rps[0];
        let per_round = if h.wharf_rounds.len() == c.wharf_rounds.len() {
            let ratios: Vec<String> = h
                .wharf_rounds
                .iter()
                .zip(&c.wharf_rounds)
                .map(|(h, c)| ratio(*h, *c))
                .collect();
            format!(" Round by round: {}.", ratios.join(", "))
        } else {
            String::new()
        };
        let _ = writeln!(
            out,
            "\nh against c: 64 clients on {H_WORKERS} wharf workers reach {} req/s, {:.2}x the {} \
             req/s on {WORKERS} workers (goal: at least {H_GOAL:.2}x): {}.{per_round}",
            thousands(h.rps[0]),
            h_over_c,
            thousands(c.rps[0]),
            if h_over_c >= H_GOAL { "met" } else { "NOT met" },
        );
    }
    let mut findings = Vec::new();
    for (scenario, row) in scenarios.iter().zip(rows) {
        let [w, s, t] = row.rps;
        if scenario.long_lived && w < 0.95 * s {
            findings.push(format!(
                "{}: wharf has {:.1}% less throughput than thread-per-connection std ({} vs {} \
                 req/s).",
                scenario.label,
                100.0 * (1.0 - w / s),
                thousands(w),
                thousands(s)
            ));
        }
        if w < t {
            findings.push(format!(
                "{}: wharf is slower than tokio ({} vs {} req/s, {:.1}% less).",
                scenario.label,
                thousands(w),
                thousands(t),
                100.0 * (1.0 - w / t)
            ));
        }
    }
    out.push('\n');
    if findings.is_empty() {
        out.push_str(
            "No long-lived scenario where wharf is more than 5% behind std in throughput, and \
             none where it is slower than tokio.\n",
        );
    } else {
        for finding in findings {
            let _ = writeln!(out, "- {finding}");
        }
    }
    let _ = writeln!(out, "\n{}", machine());
    out
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
    // points[scenario][server] = one BenchPoint per round.
    let mut points: Vec<[Vec<BenchPoint>; 3]> =
        scenarios.iter().map(|_| Default::default()).collect();
    let mut errors = Vec::new();
    let started = Instant::now();
    for round in 1..=settings.rounds {
        for (s, scenario) in scenarios.iter().enumerate() {
            for (k, kind) in KINDS.into_iter().enumerate() {
                match measure(kind, scenario, &settings) {
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
