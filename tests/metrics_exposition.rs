//! Metrics and probes (docs/operating.md, "Metrics and probes"): what
//! `/metrics` exposes. Every metric the chapter lists is there from
//! startup with its HELP and TYPE, every counter, gauge and histogram at
//! zero (but the configured sizes and the build), the histograms in
//! seconds with their buckets in order, and no label but wharf's own: none
//! per peer.
//!
//! The test talks to a real server over a real socket on 127.0.0.1, port 0.

mod common;

use common::metrics::{metrics_addr, scrape, value, with_metrics};
use common::{config, start};
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
    ("wharf_draining", "gauge"),
    ("wharf_queue_wait_seconds", "histogram"),
    ("wharf_service_seconds", "histogram"),
    ("wharf_build_info", "gauge"),
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
    // No per-peer labels, nothing but wharf's own.
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        assert!(line.starts_with("wharf_"), "{line}");
        assert!(!line.contains("127.0.0.1"), "{line}");
    }
    server.handle().shutdown();
    server.join();
}
