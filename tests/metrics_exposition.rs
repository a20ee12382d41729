//! Metrics and probes (docs/operating.md, "Metrics and probes"): what
//! `/metrics` exposes. Every metric the chapter lists is there from
//! startup with its HELP and TYPE, every counter, gauge and histogram at
//! zero (but the configured sizes and the build), the histograms in
//! seconds with their buckets in order, and no label but wharf's own: none
//! per peer.
//!
//! The test talks to a real server over a real socket on 127.0.0.1, port 0.

mod common;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::metrics::{logged_metrics_addr, metrics_addr, scrape, value, with_metrics};
use common::{config, spawn_wharf, start};
use wharf::Config;

/// Every metric docs/operating.md lists ("Metrics and probes"), with its type.
const FAMILIES: &[(&str, &str)] = &[
    ("wharf_connections_accepted_total", "counter"),
    ("wharf_connections_rejected_total", "counter"),
    ("wharf_connections_reaped_total", "counter"),
    ("wharf_requests_total", "counter"),
    ("wharf_protocol_errors_total", "counter"),
    ("wharf_write_timeouts_total", "counter"),
    ("wharf_accept_errors_total", "counter"),
    ("wharf_service_panics_total", "counter"),
    ("wharf_connections", "gauge"),
    ("wharf_workers", "gauge"),
    ("wharf_workers_busy", "gauge"),
    ("wharf_max_connections", "gauge"),
    ("wharf_buffered_bytes", "gauge"),
    ("wharf_stopping", "gauge"),
    ("wharf_draining", "gauge"),
    ("wharf_queue_wait_seconds", "histogram"),
    ("wharf_service_seconds", "histogram"),
    ("wharf_build_info", "gauge"),
    ("process_start_time_seconds", "gauge"),
    ("process_resident_memory_bytes", "gauge"),
    ("process_open_fds", "gauge"),
    ("process_cpu_seconds_total", "counter"),
];

#[test]
fn every_metric_and_label_value_is_there_from_startup_at_zero() {
    let server = start(with_metrics(Config {
        max_connections: 123,
        ..config()
    }));
    let text = scrape(metrics_addr(&server));

    for (name, kind) in FAMILIES {
        assert!(
            text.lines()
                .any(|l| l.starts_with(&format!("# HELP {name} ")) && l.len() > name.len() + 10),
            "no HELP for {name}:\n{text}"
        );
        assert!(
            text.lines().any(|l| l == format!("# TYPE {name} {kind}")),
            "no TYPE {kind} for {name}:\n{text}"
        );
    }
    let zero = [
        "wharf_connections_accepted_total",
        "wharf_connections_rejected_total{reason=\"max_connections\"}",
        "wharf_connections_rejected_total{reason=\"queue_full\"}",
        "wharf_connections_rejected_total{reason=\"queue_deadline\"}",
        "wharf_connections_reaped_total",
        "wharf_requests_total",
        "wharf_protocol_errors_total",
        "wharf_write_timeouts_total",
        "wharf_accept_errors_total",
        "wharf_service_panics_total",
        "wharf_connections{state=\"queued\"}",
        "wharf_connections{state=\"active\"}",
        "wharf_connections{state=\"resting\"}",
        "wharf_workers_busy",
        "wharf_buffered_bytes",
        "wharf_stopping",
        "wharf_draining",
        "wharf_queue_wait_seconds_count",
        "wharf_queue_wait_seconds_sum",
        "wharf_queue_wait_seconds_bucket{le=\"+Inf\"}",
        "wharf_service_seconds_count",
        "wharf_service_seconds_sum",
        "wharf_service_seconds_bucket{le=\"+Inf\"}",
    ];
    for series in zero {
        assert_eq!(value(&text, series), 0.0, "{series}");
    }
    assert_eq!(value(&text, "wharf_workers"), 2.0);
    assert_eq!(value(&text, "wharf_max_connections"), 123.0);
    let build = format!(
        "wharf_build_info{{version=\"{}\",commit=\"{}\"}}",
        env!("CARGO_PKG_VERSION"),
        wharf::build_info::COMMIT.unwrap_or("unknown")
    );
    assert_eq!(value(&text, &build), 1.0);

    // Histograms in seconds, with their buckets in order and all at 0.
    for histogram in ["wharf_queue_wait_seconds", "wharf_service_seconds"] {
        let bounds: Vec<String> = text
            .lines()
            .filter_map(|l| l.strip_prefix(&format!("{histogram}_bucket{{le=\"")))
            .map(|rest| rest.split('"').next().unwrap().to_owned())
            .collect();
        assert!(bounds.len() >= 10, "{histogram}: {bounds:?}");
        assert_eq!(bounds.last().map(String::as_str), Some("+Inf"));
        let finite: Vec<f64> = bounds[..bounds.len() - 1]
            .iter()
            .map(|b| b.parse().unwrap())
            .collect();
        assert!(finite.windows(2).all(|w| w[0] < w[1]), "{finite:?}");
        assert!(
            finite[0] <= 1e-5 && *finite.last().unwrap() >= 1.0,
            "{finite:?}"
        );
    }
    // No per-peer labels, nothing but wharf's own and the standard process
    // metrics.
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        assert!(
            line.starts_with("wharf_") || line.starts_with("process_"),
            "{line}"
        );
        assert!(!line.contains("127.0.0.1"), "{line}");
    }
    server.handle().shutdown();
    server.join();
}

/// The standard process metrics every Prometheus exporter has, read from
/// the real binary: they tell one process from another behind one metrics
/// address (docs/operating.md, "Restarts without losing a request").
#[test]
fn the_standard_process_metrics_describe_the_serving_process() {
    let before = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    let mut wharf = spawn_wharf(&["--workers", "2", "--metrics", "127.0.0.1:0"]);
    let addr = logged_metrics_addr(&wharf.log());
    let text = scrape(addr);
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();

    let started = value(&text, "process_start_time_seconds");
    // The start time is counted in clock ticks since boot (1/100 s), and the
    // boot time in whole seconds.
    assert!(
        started >= before.as_secs_f64() - 2.0 && started <= now.as_secs_f64() + 1.0,
        "started at {started}, spawned at {before:?}, scraped at {now:?}"
    );
    assert!(
        now.as_secs_f64() - started < Duration::from_secs(60).as_secs_f64(),
        "{started}"
    );
    let rss = value(&text, "process_resident_memory_bytes");
    assert!(rss > 1024.0 * 1024.0, "resident {rss} bytes");
    // stdin, stdout, stderr, the listener, the metrics listener, epoll ...
    let fds = value(&text, "process_open_fds");
    assert!(fds >= 3.0, "{fds} open descriptors");
    let cpu = value(&text, "process_cpu_seconds_total");
    assert!((0.0..60.0).contains(&cpu), "{cpu} s of CPU");
    for (name, help) in [
        (
            "process_start_time_seconds",
            "Start time of the process since unix epoch in seconds.",
        ),
        (
            "process_resident_memory_bytes",
            "Resident memory size in bytes.",
        ),
        ("process_open_fds", "Number of open file descriptors."),
        (
            "process_cpu_seconds_total",
            "Total user and system CPU time spent in seconds.",
        ),
    ] {
        assert!(
            text.lines().any(|l| l == format!("# HELP {name} {help}")),
            "no HELP for {name}:\n{text}"
        );
    }

    wharf.signal(libc::SIGTERM);
    let status = wharf.wait_exit(Duration::from_secs(20)).expect("exits");
    assert_eq!(status.code(), Some(0), "{}", wharf.log());
}
