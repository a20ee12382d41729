//! The report: the open-loop and idle-crowd tables (with wharf's goals for
//! the idle crowd) and the notes under them; the TLS scenarios' are in
//! `tls_report`. The machine line, where the
//! report is written and number formatting are in `benches/common`, shared
//! with `compare`.

use std::fmt::Write as _;

use crate::common::thousands;
use crate::scenario::Outcome;
use crate::wire::DATA_PAYLOAD;
use crate::{Settings, Spec};

/// Goals for wharf in the idle crowd.
const GOAL_IDLE_P99_US: u64 = 2_000;
const GOAL_RSS_MIB: f64 = 32.0;
/// wharf's threads besides the workers, in this bench's child: main (waits
/// on stdin), acceptor, reaper, closer, shutdown coordinator (there is no
/// poller thread: idle workers wait on the epoll set themselves).
pub(crate) const WHARF_FIXED_THREADS: usize = 5;

pub(crate) fn mib(kib: Option<u64>) -> String {
    kib.map_or("-".into(), |k| format!("{:.1}", k as f64 / 1024.0))
}

pub(crate) fn opt1(v: Option<f64>) -> String {
    v.map_or("-".into(), |v| format!("{v:.1}"))
}

pub(crate) fn open_table(outcomes: &[Outcome], s: &Settings) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "### Open loop: {} connections, {} req/s offered, {DATA_PAYLOAD} B DATA\n\n\
         Each connection sends every {:.1} ms at evenly spread due times ({} client thread(s), \
         non-blocking, `polling`); latency from the due time to the verified echo (p50 / p99 \
         from send: from the actual write instead, i.e. without the client's own lateness, \
         which is the send lag column); {:.1} s warm-up + {:.1} s measured. Server CPU is its utime + stime over the window divided by \
         the replies in the window. Threads: the most seen in `/proc/PID/task`.\n",
        thousands(s.conns as f64),
        thousands(s.rate),
        1e3 * s.conns as f64 / s.rate,
        s.client_threads,
        s.warmup.as_secs_f64(),
        s.window.as_secs_f64(),
    );
    out.push_str(
        "| server | achieved req/s | p50 µs | p99 µs | p99.9 µs | max µs | p50 / p99 from send µs \
         | client send lag p99 µs | server CPU µs/req | peak RSS MiB | threads \
         | sent / answered / missed | errors | CPU cores: server / client / others / softirq / steal | 1 ms sleeper late p99.9 / max µs |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for o in outcomes {
        let h = o.latency();
        let lag = o.driven.lag.as_ref().expect("lag histogram");
        let sent = o.driven.from_send.as_ref().expect("from-send histogram");
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} / {} | {} | {} | {} | {} | {} / {} / {} | {} | {} \
             | {} |",
            o.spec.label(),
            thousands(o.driven.replies_in_window as f64 / o.window.as_secs_f64()),
            thousands(h.value_at_quantile(0.5) as f64),
            thousands(h.value_at_quantile(0.99) as f64),
            thousands(h.value_at_quantile(0.999) as f64),
            thousands(h.max() as f64),
            thousands(sent.value_at_quantile(0.5) as f64),
            thousands(sent.value_at_quantile(0.99) as f64),
            thousands(lag.value_at_quantile(0.99) as f64),
            opt1(o.cpu_us_per_request()),
            mib(o.proc.peak_rss_kib),
            o.proc.threads_max,
            thousands(o.driven.sent as f64),
            thousands(o.driven.answered as f64),
            thousands(o.driven.missed as f64),
            o.error_count(),
            o.cores(),
            o.stalls(),
        );
    }
    out
}

pub(crate) fn idle_table(outcomes: &[Outcome], s: &Settings) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "### Idle crowd: {} connections PING every {:.1} s ({} PING/s), beside {} busy \
         connections (closed-loop {DATA_PAYLOAD} B echo)\n\n\
         Idle PONG latency from the PING's send to the verified PONG (\"from due\": from its \
         due time, so including the client's send lag); busy latency from send to echo. \
         {:.1} s warm-up + {:.1} s measured. Server CPU per request counts PONGs and busy \
         echoes. RSS in window: VmRSS at the start and end of the measured window.\n",
        thousands(s.idle_conns as f64),
        s.ping_every.as_secs_f64(),
        thousands(s.idle_conns as f64 / s.ping_every.as_secs_f64()),
        s.busy,
        s.idle_warmup.as_secs_f64(),
        s.idle_window.as_secs_f64(),
    );
    out.push_str(
        "| server | PINGs sent | PONGs | missed | idle p50 µs | idle p99 µs | idle p99.9 µs \
         | idle max µs | idle p99 from due µs | client send lag p99 µs | busy req/s | busy p99 µs \
         | server CPU µs/req | peak RSS MiB | RSS in window MiB | threads | errors \
         | CPU cores: server / client / others / softirq / steal | 1 ms sleeper late p99.9 / max µs |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for o in outcomes {
        let h = o.driven.from_send.as_ref().expect("from-send histogram");
        let due = o.latency();
        let lag = o.driven.lag.as_ref().expect("lag histogram");
        let (busy_rps, busy_p99) = o.busy.as_ref().map_or((f64::NAN, f64::NAN), |b| {
            (
                b.in_window as f64 / o.window.as_secs_f64(),
                b.latency
                    .as_ref()
                    .map_or(f64::NAN, |h| h.value_at_quantile(0.99) as f64),
            )
        });
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} → {} | {} \
             | {} | {} | {} |",
            o.spec.label(),
            thousands(o.driven.sent as f64),
            thousands(o.driven.answered as f64),
            thousands(o.driven.missed as f64),
            thousands(h.value_at_quantile(0.5) as f64),
            thousands(h.value_at_quantile(0.99) as f64),
            thousands(h.value_at_quantile(0.999) as f64),
            thousands(h.max() as f64),
            thousands(due.value_at_quantile(0.99) as f64),
            thousands(lag.value_at_quantile(0.99) as f64),
            thousands(busy_rps),
            thousands(busy_p99),
            opt1(o.cpu_us_per_request()),
            mib(o.proc.peak_rss_kib),
            mib(o.proc.rss_window_start_kib),
            mib(o.proc.rss_window_end_kib),
            o.proc.threads_max,
            o.error_count(),
            o.cores(),
            o.stalls(),
        );
    }
    out.push_str("\nGoals for wharf in the idle crowd:\n\n");
    for o in outcomes {
        let Spec::Wharf { workers, .. } = o.spec else {
            continue;
        };
        let p99 = o
            .driven
            .from_send
            .as_ref()
            .expect("from-send histogram")
            .value_at_quantile(0.99);
        let rss = o.proc.peak_rss_kib.map(|k| k as f64 / 1024.0);
        let want_threads = workers + WHARF_FIXED_THREADS;
        let verdict = |ok: bool| if ok { "met" } else { "NOT met" };
        let _ = writeln!(
            out,
            "- {}: every PONG answered: {} ({} missed of {} sent); idle PONG p99 (from send) {} µs \
             ≤ {} µs: \
             {}; peak RSS {} MiB ≤ {GOAL_RSS_MIB} MiB: {}; threads {} (at most; {} in the \
             window) = {workers} workers + {WHARF_FIXED_THREADS} (main, acceptor, reaper, closer, \
             shutdown): {}.",
            o.spec.label(),
            verdict(o.driven.missed == 0 && o.driven.answered == o.driven.sent),
            o.driven.missed,
            o.driven.sent,
            thousands(p99 as f64),
            thousands(GOAL_IDLE_P99_US as f64),
            verdict(p99 <= GOAL_IDLE_P99_US),
            opt1(rss),
            verdict(rss.is_some_and(|r| r <= GOAL_RSS_MIB)),
            o.proc.threads_max,
            o.proc.threads_in_window.map_or("-".into(), |t| t.to_string()),
            verdict(o.proc.threads_max == want_threads),
        );
    }
    out
}

/// Errors, wharf's own counters and notes for a scenario's outcomes.
pub(crate) fn notes(outcomes: &[Outcome]) -> String {
    let mut out = String::new();
    for o in outcomes {
        let _ = write!(
            out,
            "\n- {}: connecting took {:.1} s",
            o.spec.label(),
            o.connect_secs
        );
        if !o.config.is_empty() {
            let _ = write!(out, "; {}", o.config);
        }
        if let Some(report) = &o.proc.report {
            let _ = write!(out, "; exit report: {report}");
        }
        if o.driven.not_reniced {
            let _ = write!(out, "; the client thread could not be reniced");
        }
        if let Some(note) = &o.proc.stop_note {
            let _ = write!(out, "; STOP: {note}");
        }
        let mut errors = Vec::new();
        errors.extend(o.driven.errors.first.iter().cloned());
        if let Some(b) = &o.busy {
            errors.extend(b.errors.first.iter().cloned());
        }
        if !errors.is_empty() {
            let _ = write!(
                out,
                "; ERRORS ({}), first: {}",
                o.error_count(),
                errors.join(" | ")
            );
        }
        out.push('.');
    }
    out.push('\n');
    out
}
