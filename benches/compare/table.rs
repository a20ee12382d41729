//! The comparison's report: the medians over the rounds ([`Row`]), the
//! table of throughput and p99 with wharf's ratios to each peer, the
//! handshake rates of the TLS scenarios, scenario h against its goal and
//! the findings under it.

use std::fmt::Write as _;

use crate::common::{ephemeral_ports, machine, thousands};
use crate::{Scenario, Settings, H_GOAL, H_WORKERS, WORKERS};

pub(crate) fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    match n {
        0 => f64::NAN,
        _ if n % 2 == 1 => values[n / 2],
        _ => (values[n / 2 - 1] + values[n / 2]) / 2.0,
    }
}

/// Medians of one scenario: per server, throughput and p99.
pub(crate) struct Row {
    pub(crate) rps: [f64; 3],
    pub(crate) p99: [f64; 3],
    /// Lowest and highest throughput over the rounds.
    pub(crate) spread: [(f64, f64); 3],
    /// wharf's throughput in each round, in round order.
    pub(crate) wharf_rounds: Vec<f64>,
    /// Over TLS: handshakes completed per second, per server.
    pub(crate) handshakes: [f64; 3],
}

fn ratio(a: f64, b: f64) -> String {
    if b > 0.0 && a.is_finite() && b.is_finite() {
        format!("{:.2}", a / b)
    } else {
        "-".into()
    }
}

pub(crate) fn table(scenarios: &[Scenario], rows: &[Row], settings: &Settings) -> String {
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
    for (scenario, row) in scenarios.iter().zip(rows) {
        if !scenario.tls || scenario.long_lived {
            continue;
        }
        let [w, s, t] = row.handshakes;
        let _ = writeln!(
            out,
            "\n{}: full TLS handshakes per second in the window: wharf {}, std + rustls {}, \
             tokio-rustls {} (wharf/std {}, wharf/tokio {}).",
            scenario.label,
            thousands(w),
            thousands(s),
            thousands(t),
            ratio(w, s),
            ratio(w, t),
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
