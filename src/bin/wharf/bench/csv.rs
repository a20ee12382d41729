//! The CSV (`--csv`): one row per point, a column per figure, empty where
//! a figure is not known.
//!
//! The CSV carries the run's context (wharf version, CPUs, kernel,
//! timestamp) as its last four columns, the same on every row, so that any
//! CSV reader takes it (comment lines would trip some).

use super::report::JsonReport;

/// The CSV columns, in order.
pub const CSV_COLUMNS: &[&str] = &[
    "workers",
    "requests",
    "seconds",
    "requests_per_sec",
    "p50_us",
    "p90_us",
    "p99_us",
    "p999_us",
    "max_us",
    "clients_served",
    "busy",
    "errors",
    "server_cpu_seconds",
    "clients",
    "offered_rps",
    "queue_wait_p50_us",
    "queue_wait_p99_us",
    "queue_wait_max_us",
    "service_p50_us",
    "service_p99_us",
    "service_max_us",
    "service_mean_us",
    "busy_workers",
    "utilisation",
    "rests_per_request",
    "wakeups_per_request",
    "rejected_max_connections",
    "rejected_queue_full",
    "rejected_queue_deadline",
    "idle_pongs",
    "idle_missed",
    "idle_p99_us",
    "tls_handshakes",
    "tls_handshakes_per_sec",
    "tls_handshake_p50_us",
    "tls_handshake_p99_us",
    "server_tls_handshakes",
    "server_cpu_us_per_handshake",
    "version",
    "cpus",
    "kernel",
    "timestamp",
];

/// One row per point, with a header; empty fields where a figure is not
/// known.
pub fn csv(report: &JsonReport<'_>) -> String {
    let mut out = CSV_COLUMNS.join(",");
    out.push('\n');
    let f = |v: Option<f64>, digits: usize| v.map_or(String::new(), |v| format!("{v:.digits$}"));
    let u = |v: Option<u64>| v.map_or(String::new(), |v| v.to_string());
    for p in report.results {
        let s = p.server.as_ref();
        let idle = p.idle.as_ref();
        let tls = p.tls.as_ref();
        let fields = [
            p.workers.map_or(String::new(), |w| w.to_string()),
            p.requests.to_string(),
            format!("{:.3}", p.seconds),
            format!("{:.1}", p.requests_per_sec),
            p.p50_us.to_string(),
            p.p90_us.to_string(),
            p.p99_us.to_string(),
            p.p999_us.to_string(),
            p.max_us.to_string(),
            p.clients_served.to_string(),
            p.busy.to_string(),
            p.errors.to_string(),
            f(p.server_cpu_seconds, 3),
            p.clients.to_string(),
            f(p.offered_rps, 1),
            u(s.map(|s| s.queue_wait.p50_us)),
            u(s.map(|s| s.queue_wait.p99_us)),
            u(s.map(|s| s.queue_wait.max_us)),
            u(s.map(|s| s.service.p50_us)),
            u(s.map(|s| s.service.p99_us)),
            u(s.map(|s| s.service.max_us)),
            f(s.map(|s| s.service_mean_us), 1),
            f(s.map(|s| s.busy_workers), 2),
            f(s.map(|s| s.utilisation), 3),
            f(s.and_then(|s| s.rests_per_request), 3),
            f(s.and_then(|s| s.wakeups_per_request), 3),
            u(s.map(|s| s.rejected.max_connections)),
            u(s.map(|s| s.rejected.queue_full)),
            u(s.map(|s| s.rejected.queue_deadline)),
            u(idle.map(|i| i.pongs)),
            u(idle.map(|i| i.missed)),
            u(idle.map(|i| i.latency.p99_us)),
            u(tls.map(|t| t.handshakes)),
            f(tls.map(|t| t.handshakes_per_sec), 1),
            u(tls.map(|t| t.handshake.p50_us)),
            u(tls.map(|t| t.handshake.p99_us)),
            u(tls.and_then(|t| t.server_handshakes)),
            f(tls.and_then(|t| t.server_cpu_us_per_handshake), 1),
            report.version.to_owned(),
            report.machine.cpus.to_string(),
            // A kernel release has no comma; make sure.
            report.machine.kernel.replace(',', ";"),
            report.timestamp.clone(),
        ];
        out.push_str(&fields.join(","));
        out.push('\n');
    }
    out
}
