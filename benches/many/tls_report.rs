//! The TLS scenarios' report: the handshake-churn and TLS idle-crowd
//! tables, with wharf's goals against the TLS peers, and the notes under
//! them.

use std::fmt::Write as _;
use std::time::Duration;

use wharf::bench::BenchPoint;

use crate::child::ProcFigures;
use crate::common::thousands;
use crate::report::{mib, opt1, WHARF_FIXED_THREADS};
use crate::{Settings, Spec};

/// What one TLS scenario measured against one server, as the tables read it.
pub(crate) struct TlsOutcome {
    pub(crate) spec: Spec,
    pub(crate) config: String,
    pub(crate) point: BenchPoint,
    pub(crate) window: Duration,
    pub(crate) proc: ProcFigures,
    /// VmRSS of the child before any client connected.
    pub(crate) rss_before_kib: Option<u64>,
    pub(crate) not_reniced: bool,
}

impl TlsOutcome {
    pub(crate) fn handshakes(&self) -> u64 {
        self.point.tls.map_or(0, |t| t.handshakes)
    }

    pub(crate) fn handshakes_per_sec(&self) -> f64 {
        self.point.tls.map_or(0.0, |t| t.handshakes_per_sec)
    }

    /// The child's CPU in the window per handshake the clients completed
    /// in it (µs).
    pub(crate) fn cpu_us_per_handshake(&self) -> Option<f64> {
        let handshakes = self.handshakes();
        let cpu = self.proc.cpu_in_window?;
        (handshakes > 0).then(|| cpu * 1e6 / handshakes as f64)
    }

    /// (VmRSS at the window's end − VmRSS before any client) / `idle`, KiB.
    pub(crate) fn kib_per_connection(&self, idle: usize) -> Option<f64> {
        let before = self.rss_before_kib? as f64;
        let during = self.proc.rss_window_end_kib? as f64;
        (idle > 0).then(|| (during - before) / idle as f64)
    }

    pub(crate) fn idle_p99_us(&self) -> Option<u64> {
        self.point.idle.map(|i| i.latency.p99_us)
    }

    /// CPU used in the window, in cores: server / client / other
    /// processes / irq+softirq / steal.
    pub(crate) fn cores(&self) -> String {
        let secs = self.window.as_secs_f64();
        let cores = |v: Option<f64>| v.map_or("-".into(), |v| format!("{:.2}", v / secs));
        format!(
            "{} / {} / {} / {} / {}",
            cores(self.proc.cpu_in_window),
            cores(self.proc.client_cpu_in_window),
            cores(self.proc.others_cpu_in_window),
            cores(self.proc.irq_in_window),
            cores(self.proc.steal_in_window),
        )
    }

    pub(crate) fn failed(&self) -> bool {
        self.point.errors > 0
            || self.point.busy > 0
            || self.point.idle.is_some_and(|i| i.missed > 0)
            || self.proc.stop_note.is_some()
    }
}

/// Payload of the TLS scenarios' requests.
const PAYLOAD: usize = 64;

/// Goals for wharf over TLS, against the better or the named peer.
const GOAL_HANDSHAKES_VS_TOKIO: f64 = 1.0;
const GOAL_CPU_PER_HANDSHAKE_VS_TOKIO: f64 = 1.1;
const GOAL_TLS_IDLE_P99_VS_BEST_PEER: f64 = 1.25;
const GOAL_TLS_KIB_PER_IDLE: f64 = 8.0;
/// The thread that checks the TLS files for changes (`--tls-reload-interval`).
const WHARF_TLS_THREADS: usize = 1;

fn verdict(ok: bool) -> &'static str {
    if ok {
        "met"
    } else {
        "NOT met"
    }
}

fn ratio(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    a.zip(b).filter(|&(_, b)| b > 0.0).map(|(a, b)| a / b)
}

fn ratio2(v: Option<f64>) -> String {
    v.map_or("-".into(), |v| format!("{v:.2}"))
}

pub(crate) fn churn_table(outcomes: &[TlsOutcome], s: &Settings) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "### TLS handshake churn: {} clients, each connect, full TLS handshake, one \
         {PAYLOAD} B request, close\n\n\
         TLS 1.3, ECDSA P-256 certificate, X25519, no session resumption (every handshake \
         full), the same certificate and rustls settings on every server; clients: \
         `wharf::bench`'s driver on one thread. {:.1} s warm-up + {:.1} s measured. \
         Handshakes/s: completed by the clients in the window; server CPU: the child's \
         utime + stime over the window divided by them. Handshake time: connect to \
         handshake done, as the client saw it.\n",
        s.churn_clients,
        s.churn_warmup.as_secs_f64(),
        s.churn_window.as_secs_f64(),
    );
    out.push_str(
        "| server | handshakes/s | server CPU µs/handshake | handshake p50 / p99 µs \
         | request p99 µs | errors | peak RSS MiB | threads \
         | CPU cores: server / client / others / softirq / steal |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for o in outcomes {
        let hs = o.point.tls.unwrap_or_default();
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} / {} | {} | {} | {} | {} | {} |",
            o.spec.tls_label(),
            thousands(o.handshakes_per_sec()),
            opt1(o.cpu_us_per_handshake()),
            thousands(hs.handshake.p50_us as f64),
            thousands(hs.handshake.p99_us as f64),
            thousands(o.point.p99_us as f64),
            o.point.errors,
            mib(o.proc.peak_rss_kib),
            o.proc.threads_max,
            o.cores(),
        );
    }
    let tokio = outcomes.iter().find(|o| o.spec == Spec::Tokio);
    let std = outcomes.iter().find(|o| o.spec == Spec::Std);
    out.push_str("\nGoals for wharf (against tokio-rustls; threads + rustls for reference):\n\n");
    for o in outcomes
        .iter()
        .filter(|o| matches!(o.spec, Spec::Wharf { .. }))
    {
        let rate = |p: Option<&TlsOutcome>| p.map(TlsOutcome::handshakes_per_sec);
        let cpu = |p: Option<&TlsOutcome>| p.and_then(TlsOutcome::cpu_us_per_handshake);
        let rate_vs_tokio = ratio(rate(Some(o)), rate(tokio));
        let cpu_vs_tokio = ratio(cpu(Some(o)), cpu(tokio));
        let _ = writeln!(
            out,
            "- {}: handshakes/s {}x tokio-rustls (goal ≥ {GOAL_HANDSHAKES_VS_TOKIO:.1}x): {}; \
             server CPU per handshake {}x tokio-rustls (goal ≤ {GOAL_CPU_PER_HANDSHAKE_VS_TOKIO:.1}x): \
             {}. Against threads + rustls: handshakes/s {}x, CPU per handshake {}x.",
            o.spec.tls_label(),
            ratio2(rate_vs_tokio),
            verdict(rate_vs_tokio.is_some_and(|r| r >= GOAL_HANDSHAKES_VS_TOKIO)),
            ratio2(cpu_vs_tokio),
            verdict(cpu_vs_tokio.is_some_and(|r| r <= GOAL_CPU_PER_HANDSHAKE_VS_TOKIO)),
            ratio2(ratio(rate(Some(o)), rate(std))),
            ratio2(ratio(cpu(Some(o)), cpu(std))),
        );
    }
    out
}

pub(crate) fn tls_idle_table(outcomes: &[TlsOutcome], s: &Settings) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "### TLS idle crowd: {} TLS connections PING every {:.1} s ({} PING/s), beside {} busy \
         TLS connections (closed-loop {PAYLOAD} B echo)\n\n\
         Clients: `wharf::bench`'s driver on one thread (idle and busy alike). Idle PONG \
         latency from each PING's due time (so including the client's own lateness). RSS per \
         idle connection: (VmRSS at the window's end, every connection open, − VmRSS before \
         any client connected) / idle connections. {:.1} s warm-up + {:.1} s measured.\n",
        thousands(s.tls_idle_conns as f64),
        s.tls_ping_every.as_secs_f64(),
        thousands(s.tls_idle_conns as f64 / s.tls_ping_every.as_secs_f64()),
        s.tls_busy,
        s.tls_idle_warmup.as_secs_f64(),
        s.tls_idle_window.as_secs_f64(),
    );
    out.push_str(
        "| server | PONGs | missed | idle p50 µs | idle p99 µs | idle max µs | busy req/s \
         | busy p99 µs | RSS before → in window MiB | KiB per idle connection | peak RSS MiB \
         | threads | errors | CPU cores: server / client / others / softirq / steal |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for o in outcomes {
        let idle = o.point.idle.unwrap_or_default();
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} → {} | {} | {} | {} | {} | {} |",
            o.spec.tls_label(),
            thousands(idle.pongs as f64),
            thousands(idle.missed as f64),
            thousands(idle.latency.p50_us as f64),
            thousands(idle.latency.p99_us as f64),
            thousands(idle.latency.max_us as f64),
            thousands(o.point.requests_per_sec),
            thousands(o.point.p99_us as f64),
            mib(o.rss_before_kib),
            mib(o.proc.rss_window_end_kib),
            opt1(o.kib_per_connection(s.tls_idle_conns)),
            mib(o.proc.peak_rss_kib),
            o.proc.threads_max,
            o.point.errors,
            o.cores(),
        );
    }
    let best_peer_p99 = outcomes
        .iter()
        .filter(|o| !matches!(o.spec, Spec::Wharf { .. }))
        .filter_map(TlsOutcome::idle_p99_us)
        .min();
    out.push_str("\nGoals for wharf in the TLS idle crowd:\n\n");
    for o in outcomes.iter() {
        let Spec::Wharf { workers } = o.spec else {
            continue;
        };
        let idle = o.point.idle.unwrap_or_default();
        let p99 = o.idle_p99_us();
        let p99_ratio = ratio(p99.map(|p| p as f64), best_peer_p99.map(|p| p as f64));
        let kib = o.kib_per_connection(s.tls_idle_conns);
        let want_threads = workers + WHARF_FIXED_THREADS + WHARF_TLS_THREADS;
        let _ = writeln!(
            out,
            "- {}: every PONG answered: {} ({} missed, {} errors); idle PONG p99 {} µs, {}x the \
             better peer's {} µs (goal ≤ {GOAL_TLS_IDLE_P99_VS_BEST_PEER:.2}x): {}; {} KiB of RSS \
             per idle TLS connection (goal ≤ {GOAL_TLS_KIB_PER_IDLE:.0} KiB): {}; threads {} (at \
             most; {} in the window) = {workers} workers + {WHARF_FIXED_THREADS} as plain + \
             {WHARF_TLS_THREADS} (the TLS files' check), whatever the connections: {}.",
            o.spec.tls_label(),
            verdict(idle.missed == 0 && o.point.errors == 0 && idle.pongs > 0),
            idle.missed,
            o.point.errors,
            p99.map_or("-".into(), |p| thousands(p as f64)),
            ratio2(p99_ratio),
            best_peer_p99.map_or("-".into(), |p| thousands(p as f64)),
            verdict(p99_ratio.is_some_and(|r| r <= GOAL_TLS_IDLE_P99_VS_BEST_PEER)),
            opt1(kib),
            verdict(kib.is_some_and(|k| k <= GOAL_TLS_KIB_PER_IDLE)),
            o.proc.threads_max,
            o.proc
                .threads_in_window
                .map_or("-".into(), |t| t.to_string()),
            verdict(o.proc.threads_max == want_threads),
        );
    }
    out
}

/// Configuration, exit reports, errors and notes for the TLS outcomes.
pub(crate) fn tls_notes(outcomes: &[TlsOutcome]) -> String {
    let mut out = String::new();
    for o in outcomes {
        let _ = write!(out, "\n- {}", o.spec.tls_label());
        if !o.config.is_empty() {
            let _ = write!(out, ": {}", o.config);
        }
        if let Some(tls) = o.point.tls {
            let _ = write!(
                out,
                "; {} handshakes in the window{}",
                thousands(tls.handshakes as f64),
                tls.server_handshakes
                    .map_or(String::new(), |n| format!(" ({n} by the server's count)"))
            );
        }
        if let Some(report) = &o.proc.report {
            let _ = write!(out, "; exit report: {report}");
        }
        if o.not_reniced {
            let _ = write!(out, "; the client thread could not be reniced");
        }
        if let Some(note) = &o.proc.stop_note {
            let _ = write!(out, "; STOP: {note}");
        }
        if let Some(first) = &o.point.first_error {
            let _ = write!(out, "; ERRORS ({}), first: {first}", o.point.errors);
        }
        out.push('.');
    }
    out.push('\n');
    out
}
