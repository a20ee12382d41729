//! The table printed on stdout: one row per point, the idle clients'
//! lines, the recommendation with its reason, and Little's law set beside
//! the measured throughput.

use std::fmt::Write as _;

use wharf::bench::{self, human_rate, BenchOptions, BenchPoint, Recommendation};

/// How a point is named: `workers=N`, or the external server.
pub fn label(workers: Option<usize>) -> String {
    workers.map_or("external server".to_owned(), |w| format!("workers={w}"))
}

fn opt<T: std::fmt::Display>(value: Option<T>) -> String {
    value.map_or("-".to_owned(), |v| v.to_string())
}

/// The human-readable table, the recommendation and Little's law.
pub fn table(
    options: &BenchOptions,
    points: &[BenchPoint],
    rec: Option<&Recommendation>,
) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:>8} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>11} {:>7} {:>7} {:>10} {:>9} {:>6} {:>7}",
        "workers",
        "offered",
        "req/s",
        "p50 us",
        "p90 us",
        "p99 us",
        "p99.9 us",
        "max us",
        "served",
        "busy",
        "errors",
        "qwait p99",
        "svc p99",
        "util",
        "cpu s"
    );
    for p in points {
        let server = p.server.as_ref();
        let _ = writeln!(
            out,
            "{:>8} {:>9} {:>9.0} {:>9} {:>9} {:>9} {:>9} {:>9} {:>11} {:>7} {:>7} {:>10} {:>9} {:>6} {:>7}",
            p.workers.map_or("ext".to_owned(), |w| w.to_string()),
            p.offered_rps.map_or("-".to_owned(), |r| format!("{r:.0}")),
            p.requests_per_sec,
            p.p50_us,
            p.p90_us,
            p.p99_us,
            p.p999_us,
            p.max_us,
            format!("{}/{}", p.clients_served, p.clients),
            p.busy,
            p.errors,
            opt(server.map(|s| s.queue_wait.p99_us)),
            opt(server.map(|s| s.service.p99_us)),
            server.map_or("-".to_owned(), |s| format!("{:.0}%", 100.0 * s.utilisation)),
            p.server_cpu_seconds
                .map_or("-".to_owned(), |c| format!("{c:.2}"))
        );
    }
    if points.iter().any(|p| p.server.is_some()) {
        let _ = writeln!(
            out,
            "\n(qwait, svc: the server's queue wait and service time, from its 1-2.5-5 buckets; \
             util: busy workers / pool)"
        );
    }
    if points.iter().any(|p| p.idle.is_some()) {
        let _ = writeln!(
            out,
            "\nidle clients (PONG latency from each PING's scheduled time):"
        );
        for p in points {
            if let Some(idle) = p.idle {
                let _ = writeln!(
                    out,
                    "  idle at {}: {} PONGs, {} missed; p50 {} us, p99 {} us, max {} us",
                    label(p.workers),
                    idle.pongs,
                    idle.missed,
                    idle.latency.p50_us,
                    idle.latency.p99_us,
                    idle.latency.max_us
                );
            }
        }
    }
    if points.iter().any(|p| p.tls.is_some()) {
        let _ = writeln!(
            out,
            "\nTLS handshakes (full: no session resumption; time from the connect to the \
             handshake done, as the clients saw it):"
        );
        for p in points {
            if let Some(tls) = p.tls {
                let _ = write!(
                    out,
                    "  {}: {} handshakes, {}/s; p50 {} us, p99 {} us",
                    label(p.workers),
                    tls.handshakes,
                    human_rate(tls.handshakes_per_sec),
                    tls.handshake.p50_us,
                    tls.handshake.p99_us
                );
                if let Some(server) = tls.server_handshakes {
                    let _ = write!(out, "; the server counted {server}");
                }
                if let Some(cpu) = tls.server_cpu_us_per_handshake {
                    let _ = write!(out, ", {cpu:.0} us of its CPU per handshake");
                }
                out.push('\n');
            }
        }
    }
    match rec {
        Some(Recommendation {
            workers: Some(workers),
            requests_per_sec,
            p99_us,
            reason,
            ..
        }) => {
            let _ = writeln!(
                out,
                "\nrecommendation: --workers {workers} ({} req/s, p99 {} us)\n  why: {reason}",
                human_rate(requests_per_sec.unwrap_or_default()),
                opt(*p99_us)
            );
        }
        // An external server: no pool to recommend, a verdict on the target.
        Some(rec) if options.connect.is_some() => {
            let _ = writeln!(out, "\ntarget p99: {}", rec.reason);
        }
        Some(rec) => {
            let _ = writeln!(out, "\nrecommendation: none\n  why: {}", rec.reason);
        }
        None => {}
    }
    let law: Vec<String> = points
        .iter()
        .filter_map(|p| {
            let workers = p.workers?;
            let expected = bench::littles_law(options, workers)?;
            let mut line = format!(
                "  workers={:<4} expected {:>9.0} req/s, measured {:>9.0} req/s ({:.0}%)",
                workers,
                expected,
                p.requests_per_sec,
                100.0 * p.requests_per_sec / expected
            );
            if let (Some(busy), Some(server)) = (bench::expected_busy(options, workers), p.server) {
                let _ = write!(
                    line,
                    "; busy workers expected {busy:.1}, measured {:.1}",
                    server.busy_workers
                );
            }
            Some(line)
        })
        .collect();
    if !law.is_empty() {
        // CPU-bound work runs at most one request per core at a time.
        let rule = match (options.rate.is_some(), options.spin.is_zero()) {
            (true, true) => "min(rate, workers / service time); busy workers = rate x service time",
            (true, false) => {
                "min(rate, min(workers, cpus) / service time); busy workers = rate x service time"
            }
            (false, true) => "min(clients, workers) / service time",
            (false, false) => "min(clients, workers, cpus) / service time",
        };
        let _ = writeln!(out, "\nLittle's law ({rule}) against measured:");
        for line in law {
            let _ = writeln!(out, "{line}");
        }
    }
    out
}
