//! Helpers of the tests of the metrics endpoint (`metrics_*.rs`): a server
//! configuration with the endpoint on 127.0.0.1:0, HTTP requests written by
//! hand, byte for byte, and their responses parsed, scrapes of `/metrics`
//! and the value of one sample in them, polling until a sample has a value,
//! and the address the binary logs as `metrics on <addr>`.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use wharf::{Config, Server};

use super::eventually;

/// How long a check waits for a value to show (scrapes are cheap, the
/// machine is shared and busy).
pub const WITHIN: Duration = Duration::from_secs(10);

/// The test configuration with the metrics endpoint on 127.0.0.1:0.
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

/// One HTTP response, as received.
#[derive(Debug)]
pub struct HttpResponse {
    pub status: u16,
    pub head: String,
    pub body: Vec<u8>,
}

impl HttpResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().skip(1).find_map(|line| {
            let (key, value) = line.split_once(':')?;
            key.eq_ignore_ascii_case(name).then(|| value.trim())
        })
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Parses what a server sent on one connection.
pub fn parse(raw: &[u8]) -> HttpResponse {
    let text = String::from_utf8_lossy(raw);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no complete response head in {text:?}"));
    let status = head
        .strip_prefix("HTTP/1.1 ")
        .and_then(|rest| rest.get(..3))
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("no HTTP/1.1 status line in {head:?}"));
    HttpResponse {
        status,
        head: head.to_owned(),
        body: body.as_bytes().to_vec(),
    }
}

/// Reads until the server closes (or resets after sending something).
pub fn read_all(stream: &mut TcpStream) -> Vec<u8> {
    let mut raw = Vec::new();
    let mut buf = [0; 16 * 1024];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return raw,
            Ok(n) => raw.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::ConnectionReset && !raw.is_empty() => return raw,
            Err(e) => panic!("reading the HTTP response: {e} (after {} bytes)", raw.len()),
        }
    }
}

pub fn connect_http(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect(addr).expect("connect to the metrics endpoint");
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    stream
        .set_write_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    stream
}

/// Sends `request` as is and returns the response.
pub fn http(addr: SocketAddr, request: &[u8]) -> HttpResponse {
    let mut stream = connect_http(addr);
    stream.write_all(request).expect("send the HTTP request");
    parse(&read_all(&mut stream))
}

pub fn call(addr: SocketAddr, method: &str, path: &str) -> HttpResponse {
    let request = format!("{method} {path} HTTP/1.1\r\nHost: wharf\r\nUser-Agent: test\r\n\r\n");
    http(addr, request.as_bytes())
}

pub fn get(addr: SocketAddr, path: &str) -> HttpResponse {
    call(addr, "GET", path)
}

/// The text of `GET /metrics`.
pub fn scrape(addr: SocketAddr) -> String {
    let response = get(addr, "/metrics");
    assert_eq!(response.status, 200, "{response:?}");
    response.text()
}

/// The value of the sample `series` (name and labels, exactly as
/// exported), if present.
pub fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|line| {
        let value = line.strip_prefix(series)?.strip_prefix(' ')?;
        Some(value.trim().parse().expect("a numeric sample value"))
    })
}

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

/// The `metrics on <addr>` line's address.
pub fn logged_metrics_addr(log: &str) -> SocketAddr {
    log.lines()
        .find_map(|l| l.split("metrics on ").nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no `metrics on` line:\n{log}"))
        .parse()
        .expect("the logged metrics address parses")
}
