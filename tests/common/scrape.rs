//! The TLS series in a scrape of `/metrics` (the scrape itself, and the
//! general helpers, are `common::metrics`).

use super::metrics::value;

/// `wharf_tls_handshakes_total{result="RESULT"}` in `text`.
pub fn handshakes(text: &str, result: &str) -> f64 {
    value(
        text,
        &format!("wharf_tls_handshakes_total{{result=\"{result}\"}}"),
    )
}

/// `wharf_tls_reloads_total{result="RESULT"}` in `text`.
pub fn reloads(text: &str, result: &str) -> f64 {
    value(
        text,
        &format!("wharf_tls_reloads_total{{result=\"{result}\"}}"),
    )
}
