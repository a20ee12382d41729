//! Reading a server's `/metrics` (Prometheus text) from a test: one scrape,
//! one sample's value, and polling until a sample shows a value.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use wharf::{Config, Server};

use super::eventually;

/// How long a check waits for a value to show.
pub const WITHIN: Duration = Duration::from_secs(10);

/// `config` with the metrics endpoint on 127.0.0.1:0.
pub fn with_metrics(config: Config) -> Config {
    Config {
        metrics: Some("127.0.0.1:0".parse().unwrap()),
        ..config
    }
}

/// The address of a server's metrics endpoint.
pub fn metrics_addr(server: &Server) -> SocketAddr {
    server.metrics_addr().expect("the metrics endpoint runs")
}

/// The body of `GET /metrics` (the endpoint closes after each response).
pub fn scrape(addr: SocketAddr) -> String {
    let mut stream = TcpStream::connect(addr).expect("connect to the metrics endpoint");
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: wharf\r\n\r\n")
        .expect("send the scrape");
    let mut raw = Vec::new();
    let mut buf = [0; 16 * 1024];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => raw.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::ConnectionReset && !raw.is_empty() => break,
            Err(e) => panic!("reading /metrics: {e}"),
        }
    }
    let text = String::from_utf8(raw).expect("UTF-8 metrics");
    let (head, body) = text.split_once("\r\n\r\n").expect("a complete response");
    assert!(head.starts_with("HTTP/1.1 200"), "GET /metrics: {head}");
    body.to_owned()
}

/// The value of the sample `series` (name and labels, exactly as
/// exported), if present.
pub fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|line| {
        let value = line.strip_prefix(series)?.strip_prefix(' ')?;
        Some(value.trim().parse().expect("a numeric sample value"))
    })
}

/// The value of the sample `series`; fails the test if it is missing.
pub fn value(text: &str, series: &str) -> f64 {
    sample(text, series).unwrap_or_else(|| panic!("no sample {series} in:\n{text}"))
}

/// Polls `/metrics` until `series` has the value `expected`; returns the
/// last scrape.
pub fn wait_for(addr: SocketAddr, series: &str, expected: f64) -> String {
    let mut last = String::new();
    let seen = eventually(WITHIN, || {
        last = scrape(addr);
        sample(&last, series) == Some(expected)
    });
    assert!(
        seen,
        "{series} never became {expected}; last scrape:\n{last}"
    );
    last
}

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
