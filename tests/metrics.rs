//! Metrics and probes (the protocol §4, "Metrics and probes"): `--metrics
//! ADDR` serves `/metrics`, `/ready` and `/live` over HTTP/1.1 on its own
//! thread, with bounded request heads, and never slows the data port.
//!
//! Every test talks to a real server over real sockets on 127.0.0.1, port
//! 0. HTTP requests are written by hand, byte for byte, so that malformed
//! ones can be sent too. The connection gauges are counted at most every
//! 100 ms, so checks of them poll.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use common::gate::{gate, SLOW};
use common::{config, eventually, spawn_wharf, start, start_with, Client};
use wharf::frame::PING;
use wharf::{Config, Echo, GoAwayCode, Response, Server, ServiceError};

/// How long a check waits for a value to show (scrapes are cheap, the
/// machine is shared and busy).
const WITHIN: Duration = Duration::from_secs(10);

/// The test configuration with the metrics endpoint on 127.0.0.1:0.
fn with_metrics(config: Config) -> Config {
    Config {
        metrics: Some("127.0.0.1:0".parse().unwrap()),
        ..config
    }
}

fn metrics_addr(server: &Server) -> SocketAddr {
    server.metrics_addr().expect("the metrics endpoint runs")
}

/// One HTTP response, as received.
#[derive(Debug)]
struct HttpResponse {
    status: u16,
    head: String,
    body: Vec<u8>,
}

impl HttpResponse {
    fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().skip(1).find_map(|line| {
            let (key, value) = line.split_once(':')?;
            key.eq_ignore_ascii_case(name).then(|| value.trim())
        })
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Parses what a server sent on one connection.
fn parse(raw: &[u8]) -> HttpResponse {
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
fn read_all(stream: &mut TcpStream) -> Vec<u8> {
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

fn connect_http(addr: SocketAddr) -> TcpStream {
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
fn http(addr: SocketAddr, request: &[u8]) -> HttpResponse {
    let mut stream = connect_http(addr);
    stream.write_all(request).expect("send the HTTP request");
    parse(&read_all(&mut stream))
}

fn call(addr: SocketAddr, method: &str, path: &str) -> HttpResponse {
    let request = format!("{method} {path} HTTP/1.1\r\nHost: wharf\r\nUser-Agent: test\r\n\r\n");
    http(addr, request.as_bytes())
}

fn get(addr: SocketAddr, path: &str) -> HttpResponse {
    call(addr, "GET", path)
}

/// The text of `GET /metrics`.
fn scrape(addr: SocketAddr) -> String {
    let response = get(addr, "/metrics");
    assert_eq!(response.status, 200, "{response:?}");
    response.text()
}

/// The value of the sample `series` (name and labels, exactly as
/// exported), if present.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|line| {
        let value = line.strip_prefix(series)?.strip_prefix(' ')?;
        Some(value.trim().parse().expect("a numeric sample value"))
    })
}

fn value(text: &str, series: &str) -> f64 {
    sample(text, series).unwrap_or_else(|| panic!("no sample {series} in:\n{text}"))
}

/// Polls `/metrics` until `series` has the value `expected`.
fn wait_for(addr: SocketAddr, series: &str, expected: f64) {
    let mut last = String::new();
    let seen = eventually(WITHIN, || {
        last = scrape(addr);
        sample(&last, series) == Some(expected)
    });
    assert!(
        seen,
        "{series} never became {expected}; last scrape:\n{last}"
    );
}

#[test]
fn the_metrics_address_is_none_unless_configured() {
    let server = start(config());
    assert_eq!(server.metrics_addr(), None);
    server.handle().shutdown();
    server.join();
}

#[test]
fn every_endpoint_answers_with_its_status_and_closes() {
    let server = start(with_metrics(config()));
    let addr = metrics_addr(&server);
    assert_ne!(addr.port(), 0, "the real port");

    let metrics = get(addr, "/metrics");
    assert_eq!(metrics.status, 200, "{metrics:?}");
    let content_type = metrics.header("Content-Type").unwrap();
    assert!(
        content_type.starts_with("text/plain; version=0.0.4"),
        "{content_type}"
    );
    assert!(content_type.contains("charset=utf-8"), "{content_type}");
    assert_eq!(
        metrics.header("Content-Length"),
        Some(metrics.body.len().to_string().as_str())
    );
    assert!(metrics
        .text()
        .contains("# TYPE wharf_requests_total counter"));

    let with_query = get(addr, "/metrics?name[]=wharf_requests_total");
    assert_eq!(with_query.status, 200, "{with_query:?}");

    let ready = get(addr, "/ready");
    assert_eq!((ready.status, ready.text().as_str()), (200, "ready\n"));
    let live = get(addr, "/live");
    assert_eq!((live.status, live.text().as_str()), (200, "live\n"));
    for path in ["/", "/metric", "/metrics/", "/ready/x", "/favicon.ico"] {
        assert_eq!(get(addr, path).status, 404, "{path}");
    }
    for method in ["POST", "PUT", "DELETE", "OPTIONS", "PATCH", "get"] {
        let response = call(addr, method, "/metrics");
        assert_eq!(response.status, 405, "{method}: {response:?}");
        assert_eq!(response.header("Allow"), Some("GET, HEAD"), "{method}");
    }
    // 405 whatever the path.
    assert_eq!(call(addr, "POST", "/nowhere").status, 405);

    // HEAD: the head GET would get, with its length, and no body.
    for path in ["/metrics", "/ready", "/live"] {
        let head = call(addr, "HEAD", path);
        assert_eq!(head.status, 200, "HEAD {path}");
        assert!(head.body.is_empty(), "HEAD {path} has a body: {head:?}");
        let length: usize = head.header("Content-Length").unwrap().parse().unwrap();
        assert!(length > 0, "HEAD {path}");
    }
    assert_eq!(call(addr, "HEAD", "/nowhere").status, 404);

    // Every response closes the connection.
    for response in [metrics, ready, live, get(addr, "/nowhere")] {
        assert_eq!(response.header("Connection"), Some("close"), "{response:?}");
    }
    // HTTP/1.0 is answered too.
    let old = http(addr, b"GET /live HTTP/1.0\r\n\r\n");
    assert_eq!(old.status, 200, "{old:?}");

    server.handle().shutdown();
    server.join();
}

#[test]
fn malformed_and_oversized_heads_get_400_and_431() {
    let server = start(with_metrics(config()));
    let addr = metrics_addr(&server);

    let garbage: &[&[u8]] = &[
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03 a TLS hello\r\n\r\n",
        b"GET /metrics HTTP/9.9\r\n\r\n",
        b"GET\x00/metrics HTTP/1.1\r\n\r\n",
        b"GET /metrics HTTP/1.1\r\nno colon here\r\n\r\n",
        b"\r\n\r\n\r\nhello world\r\n\r\n",
    ];
    for request in garbage {
        let response = http(addr, request);
        assert_eq!(
            response.status,
            400,
            "{:?}: {response:?}",
            String::from_utf8_lossy(request)
        );
        assert_eq!(response.header("Connection"), Some("close"));
    }

    // Half a head, then the client's end of the stream.
    let mut stream = connect_http(addr);
    stream.write_all(b"GET /metr").unwrap();
    stream.shutdown(Shutdown::Write).unwrap();
    assert_eq!(parse(&read_all(&mut stream)).status, 400);

    // A head over 16 KiB: one long header, and no end in sight.
    let mut big = b"GET /metrics HTTP/1.1\r\nX-Filler: ".to_vec();
    big.extend(std::iter::repeat_n(b'a', 20 * 1024));
    let response = http(addr, &big);
    assert_eq!(response.status, 431, "{response:?}");

    // Complete, but over 16 KiB.
    big.extend_from_slice(b"\r\n\r\n");
    assert_eq!(http(addr, &big).status, 431);

    // Many small headers.
    let mut many = b"GET /metrics HTTP/1.1\r\n".to_vec();
    for i in 0..200 {
        many.extend_from_slice(format!("X-H{i}: v\r\n").as_bytes());
    }
    many.extend_from_slice(b"\r\n");
    assert_eq!(http(addr, &many).status, 431);

    // A head of exactly 16 KiB is fine.
    let mut exact = b"GET /live HTTP/1.1\r\nX-Filler: ".to_vec();
    let end = b"\r\n\r\n";
    exact.extend(std::iter::repeat_n(
        b'b',
        16 * 1024 - exact.len() - end.len(),
    ));
    exact.extend_from_slice(end);
    assert_eq!(exact.len(), 16 * 1024);
    assert_eq!(http(addr, &exact).status, 200);

    // And the endpoint serves normally after all that.
    assert_eq!(get(addr, "/ready").status, 200);
    server.handle().shutdown();
    server.join();
}

#[test]
fn a_head_that_does_not_arrive_within_5_s_gets_408() {
    let server = start(with_metrics(config()));
    let addr = metrics_addr(&server);
    for partial in [&b""[..], b"GET /metrics HTTP/1.1\r\nHost: wh"] {
        let mut stream = connect_http(addr);
        stream.write_all(partial).unwrap();
        let started = Instant::now();
        let response = parse(&read_all(&mut stream));
        let took = started.elapsed();
        assert_eq!(response.status, 408, "{response:?}");
        assert!(
            took >= Duration::from_millis(4500) && took < Duration::from_secs(15),
            "408 after {took:?}"
        );
    }
    // A client dribbling a byte at a time gets no more than 5 s either.
    let mut stream = connect_http(addr);
    let started = Instant::now();
    let mut written = 0;
    for byte in b"GET /metrics HTTP/1.1\r\nX-Slow: ".iter().cycle() {
        if stream.write_all(&[*byte]).is_err() || started.elapsed() > Duration::from_secs(15) {
            break;
        }
        written += 1;
        // The 408 is already on its way once the server has given up.
        let mut peek = [0; 1];
        stream.set_nonblocking(true).unwrap();
        let answered = matches!(stream.peek(&mut peek), Ok(n) if n > 0);
        stream.set_nonblocking(false).unwrap();
        if answered {
            break;
        }
        thread::sleep(Duration::from_millis(50));
    }
    let response = parse(&read_all(&mut stream));
    let took = started.elapsed();
    assert_eq!(response.status, 408, "{response:?} after {written} bytes");
    assert!(took < Duration::from_secs(15), "408 after {took:?}");
    server.handle().shutdown();
    server.join();
}

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

#[test]
fn requests_count_data_only_and_the_histograms_count_them() {
    let server = start(with_metrics(config()));
    let addr = metrics_addr(&server);
    let mut client = Client::connect(server.local_addr());
    for i in 0..3 {
        client.echo(format!("data {i}").as_bytes());
        client.ping(b"ping");
    }
    // An unknown kind gets ERROR: not a request either.
    client.send(0x7f, b"what");
    assert_eq!(client.recv().unwrap().kind, wharf::frame::ERROR);
    client.send(PING, b"");
    client.recv().unwrap();

    wait_for(addr, "wharf_requests_total", 3.0);
    let text = scrape(addr);
    assert_eq!(value(&text, "wharf_service_seconds_count"), 3.0);
    assert_eq!(
        value(&text, "wharf_service_seconds_bucket{le=\"+Inf\"}"),
        3.0
    );
    assert_eq!(value(&text, "wharf_connections_accepted_total"), 1.0);
    // The connection waited in line once, when it was new.
    assert!(
        value(&text, "wharf_queue_wait_seconds_count") >= 1.0,
        "{text}"
    );
    drop(client);
    server.handle().shutdown();
    let report = server.join();
    assert_eq!(report.data_requests, 3, "{report}");
    assert_eq!(report.requests, 8, "{report}");
}

#[test]
fn the_histograms_are_in_seconds() {
    // One worker, busy for 300 ms with a request that sleeps: the second
    // connection waits in line all that time.
    let server = start_with(
        with_metrics(Config {
            workers: 1,
            ..config()
        }),
        Echo {
            delay: Duration::from_millis(300),
            spin: Duration::ZERO,
        },
    );
    let addr = metrics_addr(&server);
    let data = server.local_addr();
    let first = thread::spawn(move || Client::connect(data).echo(b"first"));
    thread::sleep(Duration::from_millis(100));
    Client::connect(data).echo(b"second");
    first.join().unwrap();

    let text = scrape(addr);
    assert_eq!(value(&text, "wharf_service_seconds_count"), 2.0);
    let sum = value(&text, "wharf_service_seconds_sum");
    assert!((0.6..5.0).contains(&sum), "service time sum {sum} s");
    assert_eq!(
        value(&text, "wharf_service_seconds_bucket{le=\"0.25\"}"),
        0.0,
        "{text}"
    );
    assert_eq!(value(&text, "wharf_service_seconds_bucket{le=\"10\"}"), 2.0);
    let waited = value(&text, "wharf_queue_wait_seconds_sum");
    assert!(
        (0.05..5.0).contains(&waited),
        "queue wait sum {waited} s:\n{text}"
    );
    assert!(value(&text, "wharf_queue_wait_seconds_bucket{le=\"+Inf\"}") >= 2.0);
    server.handle().shutdown();
    server.join();
}

/// A resting connection's request that waits for the only worker is timed
/// from its arrival: it joins the line in the kernel, which stamps the
/// arrival, with no thread in between to stamp it.
#[test]
fn a_resting_connections_wait_in_line_is_timed_from_its_requests_arrival() {
    let server = start_with(
        with_metrics(Config {
            workers: 1,
            ..config()
        }),
        Echo {
            delay: Duration::from_millis(300),
            spin: Duration::ZERO,
        },
    );
    let addr = metrics_addr(&server);
    let data = server.local_addr();
    let mut a = Client::connect(data);
    let mut b = Client::connect(data);
    a.ping(b"a rests");
    b.ping(b"b rests");
    thread::sleep(Duration::from_millis(50));
    let before = scrape(addr);
    // A's request holds the worker for 300 ms; B's arrives 100 ms in and
    // waits about 200 ms in line.
    a.send(wharf::frame::DATA, b"a");
    thread::sleep(Duration::from_millis(100));
    b.echo(b"b");
    assert_eq!(a.recv().unwrap().payload, b"a");
    let after = scrape(addr);
    let count = value(&after, "wharf_queue_wait_seconds_count")
        - value(&before, "wharf_queue_wait_seconds_count");
    let waited = value(&after, "wharf_queue_wait_seconds_sum")
        - value(&before, "wharf_queue_wait_seconds_sum");
    assert_eq!(count, 2.0, "A and B each waited once:\n{after}");
    assert!(
        (0.15..5.0).contains(&waited),
        "B waited about 0.2 s, the histogram has {waited} s:\n{after}"
    );
    server.handle().shutdown();
    server.join();
}

#[test]
fn connection_counters_follow_what_happens() {
    // Reaped: a silent client past a short heartbeat.
    let server = start(with_metrics(Config {
        heartbeat_timeout: Duration::from_millis(400),
        reap_interval: Duration::from_millis(50),
        ..config()
    }));
    let addr = metrics_addr(&server);
    let mut silent = Client::connect(server.local_addr());
    silent.expect_goaway(GoAwayCode::HeartbeatTimeout);
    wait_for(addr, "wharf_connections_reaped_total", 1.0);

    // Protocol error: a frame of length 0.
    let mut bad = Client::connect(server.local_addr());
    bad.send_raw(&[0, 0, 0, 0]);
    bad.expect_goaway(GoAwayCode::ProtocolError);
    wait_for(addr, "wharf_protocol_errors_total", 1.0);
    wait_for(addr, "wharf_connections_accepted_total", 2.0);
    server.handle().shutdown();
    server.join();
}

#[test]
fn rejections_are_counted_by_reason() {
    // One worker, held busy; queue 0 turns the next new connection away
    // (queue_full); max-connections 2 turns the third away.
    let (service, gate) = gate();
    let server = start_with(
        with_metrics(Config {
            workers: 1,
            queue: 0,
            max_connections: 2,
            heartbeat_timeout: Duration::from_secs(20),
            ..config()
        }),
        service,
    );
    let addr = metrics_addr(&server);
    let data = server.local_addr();
    let mut busy = Client::connect(data);
    busy.send(wharf::frame::DATA, SLOW);
    gate.wait_started(SLOW);
    wait_for(addr, "wharf_workers_busy", 1.0);
    wait_for(addr, "wharf_connections{state=\"active\"}", 1.0);

    let mut turned = Client::connect(data);
    turned.expect_goaway(GoAwayCode::Busy);
    wait_for(
        addr,
        "wharf_connections_rejected_total{reason=\"queue_full\"}",
        1.0,
    );
    gate.release();
    busy.recv().unwrap();
    // The worker counts as working for a moment after its reply; with
    // queue 0 a connection arriving then would be turned away too.
    wait_for(addr, "wharf_workers_busy", 0.0);

    // The turned-away connection never held a --max-connections slot. With
    // a second one open, a third is over the limit (the acceptor takes
    // them in order).
    let idle = Client::connect(data);
    let mut over = Client::connect(data);
    over.expect_goaway(GoAwayCode::Busy);
    wait_for(
        addr,
        "wharf_connections_rejected_total{reason=\"max_connections\"}",
        1.0,
    );
    let text = scrape(addr);
    assert_eq!(
        value(&text, "wharf_connections_accepted_total"),
        4.0,
        "{text}"
    );
    drop((busy, idle));
    server.handle().shutdown();
    server.join();
}

#[test]
fn a_connection_that_waits_past_its_deadline_is_counted_as_queue_deadline() {
    let (service, gate) = gate();
    let server = start_with(
        with_metrics(Config {
            workers: 1,
            heartbeat_timeout: Duration::from_millis(1500),
            reap_interval: Duration::from_millis(50),
            ..config()
        }),
        service,
    );
    let addr = metrics_addr(&server);
    let data = server.local_addr();
    let mut busy = Client::connect(data);
    busy.send(wharf::frame::DATA, SLOW);
    gate.wait_started(SLOW);
    // In line behind the held request, with work, past its deadline.
    let mut late = Client::connect(data);
    late.send(wharf::frame::DATA, b"late");
    wait_for(addr, "wharf_connections{state=\"queued\"}", 1.0);
    late.expect_goaway(GoAwayCode::Busy);
    wait_for(
        addr,
        "wharf_connections_rejected_total{reason=\"queue_deadline\"}",
        1.0,
    );
    gate.release();
    let _ = busy.try_recv();
    server.handle().shutdown();
    server.join();
}

#[test]
fn resting_connections_and_buffered_bytes_show() {
    let server = start(with_metrics(config()));
    let addr = metrics_addr(&server);
    let mut client = Client::connect(server.local_addr());
    client.echo(b"then rest");
    // Half a frame: 5 of its 11 bytes.
    client.send_raw(&[0, 0, 0, 11, wharf::frame::DATA]);
    wait_for(addr, "wharf_connections{state=\"resting\"}", 1.0);
    wait_for(addr, "wharf_buffered_bytes", 5.0);
    client.send_raw(b"abcdefghij");
    assert_eq!(client.recv().unwrap().payload, b"abcdefghij");
    wait_for(addr, "wharf_buffered_bytes", 0.0);
    server.handle().shutdown();
    server.join();
}

#[test]
fn panics_and_write_timeouts_are_counted() {
    let service = |request: &[u8], response: &mut Response<'_>| -> Result<(), ServiceError> {
        if request == b"panic" {
            panic!("asked to panic");
        }
        response.extend_from_slice(request);
        Ok(())
    };
    let server = start_with(
        with_metrics(Config {
            write_timeout: Duration::from_millis(300),
            ..config()
        }),
        service,
    );
    let addr = metrics_addr(&server);
    let mut client = Client::connect(server.local_addr());
    let reply = client.request(b"panic");
    assert_eq!(reply.kind, wharf::frame::ERROR);
    client.echo(b"still usable");
    wait_for(addr, "wharf_service_panics_total", 1.0);
    // A DATA request answered with ERROR is still a request.
    assert_eq!(value(&scrape(addr), "wharf_requests_total"), 2.0);

    // Pipelined 64 KiB echoes, never reading a reply.
    let mut request = Vec::new();
    wharf::Framing::Length.encode_data(&vec![0x5a; 64 * 1024 - 1], &mut request);
    let mut stream = TcpStream::connect(server.local_addr()).unwrap();
    stream
        .set_write_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    for _ in 0..1024 {
        if stream.write_all(&request).is_err() {
            break;
        }
    }
    wait_for(addr, "wharf_write_timeouts_total", 1.0);
    server.handle().shutdown();
    server.join();
}

#[test]
fn ready_is_503_and_live_200_throughout_a_drain() {
    let (service, gate) = gate();
    let server = start_with(with_metrics(config()), service);
    let addr = metrics_addr(&server);
    let mut client = Client::connect(server.local_addr());
    client.send(wharf::frame::DATA, SLOW);
    gate.wait_started(SLOW);
    assert_eq!(get(addr, "/ready").status, 200);

    server.handle().shutdown();
    // The drain lasts as long as the request is held: ask repeatedly.
    let until = Instant::now() + Duration::from_millis(500);
    while Instant::now() < until {
        let ready = get(addr, "/ready");
        assert_eq!(ready.status, 503, "{ready:?}");
        assert_eq!(ready.header("Connection"), Some("close"));
        assert_eq!(call(addr, "HEAD", "/ready").status, 503);
        assert_eq!(get(addr, "/live").status, 200);
        let text = scrape(addr);
        assert_eq!(value(&text, "wharf_draining"), 1.0);
        assert_eq!(value(&text, "wharf_workers_busy"), 1.0);
    }
    gate.release();
    let before = client.expect_goaway(GoAwayCode::Shutdown);
    assert_eq!(before.len(), 1, "the held request's reply, then GOAWAY 1");
    let report = server.join();
    assert!(!report.forced, "{report}");
    assert_eq!(report.data_requests, 1, "{report}");
    // Once the server is joined, the endpoint is gone too.
    assert!(
        TcpStream::connect_timeout(&addr, Duration::from_secs(2)).is_err(),
        "the metrics endpoint outlived the server"
    );
}

/// How long a data client may wait for its next reply while the metrics
/// endpoint is being abused (generous: the machine is shared and busy).
const MAX_REPLY_GAP: Duration = Duration::from_secs(2);

/// What one pipelining data client saw.
#[derive(Debug)]
struct Progress {
    replies: usize,
    /// The longest wait for a reply: from the start to the first, and
    /// between any two.
    max_gap: Duration,
    started: Instant,
    last_reply: Instant,
}

/// Pipelines batches of 16 echo requests of 16 B to 4 KiB on `client`,
/// reading each batch's replies before sending the next, until `stop` is
/// set (or an upper bound of batches). Checks every reply, in order, and
/// the longest wait for one.
fn pipeline(mut client: Client, id: usize, stop: &AtomicBool) -> Progress {
    const BATCH: usize = 16;
    const MAX_BATCHES: usize = 1_000_000;
    const SIZES: [usize; 4] = [16, 256, 1024, 4096];
    let started = Instant::now();
    let mut last_reply = started;
    let mut max_gap = Duration::ZERO;
    let mut replies = 0;
    for round in 0..MAX_BATCHES {
        if stop.load(Ordering::SeqCst) {
            break;
        }
        let payloads: Vec<Vec<u8>> = (0..BATCH)
            .map(|i| {
                let mut payload = format!("client {id} round {round} request {i} ").into_bytes();
                payload.resize(SIZES[i % SIZES.len()].max(payload.len()), b'.');
                payload
            })
            .collect();
        let mut batch = Vec::new();
        for payload in &payloads {
            wharf::Framing::Length.encode_data(payload, &mut batch);
        }
        client.send_raw(&batch);
        for payload in &payloads {
            let reply = client.recv().expect("a reply, not end-of-stream");
            let now = Instant::now();
            assert_eq!(reply.kind, wharf::frame::DATA, "client {id}: {reply:?}");
            assert!(
                reply.payload == *payload,
                "client {id}: a reply out of order"
            );
            max_gap = max_gap.max(now - last_reply);
            last_reply = now;
            replies += 1;
        }
    }
    Progress {
        replies,
        max_gap,
        started,
        last_reply,
    }
}

/// Operations: the metrics endpoint runs on its own thread, and "nothing
/// it does can slow or stop the data path". Four clients pipeline echo
/// requests on the data port (with two workers, so their connections keep
/// changing hands through the line and the poller) while a silent HTTP
/// client holds the endpoint's one thread for its whole 5 s head timeout,
/// and garbage, oversized and dribbling heads pile up behind it. No data
/// client may wait more than [`MAX_REPLY_GAP`] for any reply, at any time
/// during the hold. No speed is compared: the machine is shared.
#[test]
fn misbehaving_http_clients_do_not_slow_the_data_port() {
    const DATA_CLIENTS: usize = 4;
    /// Far below what any machine does in the ~6 s of load, but more than
    /// a client stalled for most of it gets.
    const MIN_REPLIES: usize = 320;
    let server = start(with_metrics(config()));
    let addr = metrics_addr(&server);
    let data = server.local_addr();
    // Connected and answered before the endpoint is held, so that what is
    // measured is the traffic on established connections.
    let clients: Vec<Client> = (0..DATA_CLIENTS)
        .map(|_| {
            let mut client = Client::connect(data);
            client.echo(b"connected");
            client
        })
        .collect();

    // Silent: connects and sends nothing. The endpoint serves one request
    // at a time, so it holds the thread until its 408, 5 s on.
    let mut silent = connect_http(addr);
    let held_from = Instant::now();
    let silent = thread::spawn(move || {
        let response = parse(&read_all(&mut silent));
        (response, Instant::now())
    });

    let stop_data = Arc::new(AtomicBool::new(false));
    let loads: Vec<_> = clients
        .into_iter()
        .enumerate()
        .map(|(id, client)| {
            let stop = Arc::clone(&stop_data);
            thread::spawn(move || pipeline(client, id, &stop))
        })
        .collect();

    let stop_http = Arc::new(AtomicBool::new(false));
    let mut misbehaving = Vec::new();
    // Garbage, a huge head, and a dribbler, again and again.
    let http_clients: [fn(&mut TcpStream) -> bool; 3] = [
        |s| {
            s.write_all(b"\x00\x01\x02 \xff\xfe garbage \r\n\r\n")
                .is_ok()
        },
        |s| {
            let mut big = b"GET /metrics HTTP/1.1\r\n".to_vec();
            big.extend(std::iter::repeat_n(b'x', 200 * 1024));
            let _ = s.write_all(&big);
            true
        },
        |s| {
            for byte in b"GET /metrics HTTP/1.1\r\n" {
                if s.write_all(&[*byte]).is_err() {
                    return false;
                }
                thread::sleep(Duration::from_millis(20));
            }
            true
        },
    ];
    for client in http_clients {
        let stop = Arc::clone(&stop_http);
        misbehaving.push(thread::spawn(move || {
            let mut rounds = 0;
            while !stop.load(Ordering::SeqCst) && rounds < 50 {
                let Ok(mut stream) = TcpStream::connect(addr) else {
                    break;
                };
                stream
                    .set_read_timeout(Some(Duration::from_millis(200)))
                    .unwrap();
                stream
                    .set_write_timeout(Some(Duration::from_secs(2)))
                    .unwrap();
                client(&mut stream);
                let mut sink = [0; 4096];
                let _ = stream.read(&mut sink);
                rounds += 1;
            }
        }));
    }

    // The hold is over when the silent client gets its 408 (bounded by its
    // 20 s read timeout); the data clients go on a little past it.
    let (timed_out, held_until) = silent.join().unwrap();
    thread::sleep(Duration::from_millis(500));
    stop_data.store(true, Ordering::SeqCst);
    let progress: Vec<Progress> = loads.into_iter().map(|l| l.join().unwrap()).collect();
    stop_http.store(true, Ordering::SeqCst);
    for thread in misbehaving {
        thread.join().unwrap();
    }

    let held = held_until - held_from;
    eprintln!(
        "FIGURES pipelining data clients while the metrics endpoint was held for {held:?}: {}",
        progress
            .iter()
            .map(|p| format!("{} replies, longest wait {:?}", p.replies, p.max_gap))
            .collect::<Vec<_>>()
            .join("; ")
    );
    assert_eq!(timed_out.status, 408, "{timed_out:?}");
    assert!(
        held >= Duration::from_millis(4500),
        "the silent client held the endpoint for only {held:?}"
    );
    for (id, p) in progress.iter().enumerate() {
        // The client was at work through the hold...
        assert!(
            p.started <= held_from + MAX_REPLY_GAP && p.last_reply >= held_until,
            "client {id} did not run through the hold: {p:?}"
        );
        // ... and never waited long for a reply.
        assert!(
            p.max_gap < MAX_REPLY_GAP,
            "client {id} waited {:?} for a reply ({} replies)",
            p.max_gap,
            p.replies
        );
        assert!(p.replies >= MIN_REPLIES, "client {id}: {p:?}");
    }

    // The endpoint recovers: what piled up behind the silent client is
    // answered or dropped, and then scrapes work again.
    let started = Instant::now();
    let mut last = None;
    let recovered = eventually(Duration::from_secs(20), || {
        let mut stream = connect_http(addr);
        if stream.write_all(b"GET /metrics HTTP/1.1\r\n\r\n").is_err() {
            return false;
        }
        let response = parse(&read_all(&mut stream));
        let ok = response.status == 200;
        last = Some(response);
        ok
    });
    assert!(recovered, "no 200 after the misbehaving clients: {last:?}");
    assert!(started.elapsed() < Duration::from_secs(20));
    let text = last.unwrap().text();
    let replies: usize = progress.iter().map(|p| p.replies + 1).sum();
    assert!(
        value(&text, "wharf_requests_total") >= replies as f64,
        "{text}"
    );
    server.handle().shutdown();
    server.join();
}

/// The number of threads of process `pid`.
fn thread_count(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .expect("read /proc/<pid>/task")
        .count()
}

/// The `metrics on <addr>` line's address.
fn logged_metrics_addr(log: &str) -> SocketAddr {
    log.lines()
        .find_map(|l| l.split("metrics on ").nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no `metrics on` line:\n{log}"))
        .parse()
        .expect("the logged metrics address parses")
}

#[test]
fn serve_logs_metrics_on_with_the_real_address() {
    let mut wharf = spawn_wharf(&["--workers", "2", "--metrics", "127.0.0.1:0"]);
    // The listening line is announced before it is added to the log.
    assert!(eventually(WITHIN, || wharf.log().contains("listening on")));
    let log = wharf.log();
    let addr = logged_metrics_addr(&log);
    assert_ne!(addr.port(), 0, "{log}");
    let metrics_line = log.lines().position(|l| l.contains("metrics on")).unwrap();
    let listening_line = log
        .lines()
        .position(|l| l.contains("listening on"))
        .unwrap();
    assert!(metrics_line < listening_line, "{log}");
    assert_eq!(get(addr, "/ready").status, 200);
    assert!(scrape(addr).contains("wharf_workers 2"));

    wharf.signal(libc::SIGTERM);
    let status = wharf.wait_exit(Duration::from_secs(10)).expect("exits");
    assert_eq!(status.code(), Some(0), "{}", wharf.log());
}

#[test]
fn serve_without_metrics_logs_no_metrics_line_and_a_taken_address_fails() {
    let wharf = spawn_wharf(&["--workers", "2"]);
    assert!(!wharf.log().contains("metrics on"), "{}", wharf.log());
    drop(wharf);

    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken_addr = taken.local_addr().unwrap().to_string();
    let output = common::serve_command("127.0.0.1:0", &["--metrics", &taken_addr])
        .output()
        .expect("wharf runs");
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains(&taken_addr), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn the_thread_count_stays_fixed_with_metrics() {
    let without = spawn_wharf(&["--workers", "2"]);
    let base = thread_count(without.child.id());
    drop(without);

    let mut wharf = spawn_wharf(&["--workers", "2", "--metrics", "127.0.0.1:0"]);
    let pid = wharf.child.id();
    let at_start = thread_count(pid);
    assert_eq!(at_start, base + 1, "the endpoint is exactly one thread");
    let addr = logged_metrics_addr(&wharf.log());

    let clients: Vec<Client> = (0..50).map(|_| Client::connect(wharf.addr)).collect();
    let silent: Vec<TcpStream> = (0..5).map(|_| connect_http(addr)).collect();
    let scrapers: Vec<_> = (0..10)
        .map(|_| {
            thread::spawn(move || {
                let mut stream = connect_http(addr);
                let _ = stream.write_all(b"GET /metrics HTTP/1.1\r\n\r\n");
            })
        })
        .collect();
    for scraper in scrapers {
        scraper.join().unwrap();
    }
    thread::sleep(Duration::from_millis(300));
    assert_eq!(
        thread_count(pid),
        at_start,
        "threads with HTTP clients waiting"
    );
    drop(silent);
    for mut client in clients {
        client.echo(b"served");
    }
    assert_eq!(thread_count(pid), at_start);
    wharf.signal(libc::SIGTERM);
    let status = wharf.wait_exit(Duration::from_secs(20)).expect("exits");
    assert_eq!(status.code(), Some(0), "{}", wharf.log());
}

/// Operations, "Drain delay" with "Metrics and probes", through the
/// binary: from the signal on `/ready` is 503 and `/live` 200, and
/// `wharf_draining` is 0 while the server still accepts and serves for the
/// delay; once the drain starts it is 1, and the probes stay as they were
/// until the process exits.
///
/// `--delay 3s` holds every DATA request in the service for 3 s, so one
/// started during the 1.5 s delay is still running when the drain starts
/// and keeps the drain (and so the endpoint) going for another 1.5 s: long
/// enough to look on a loaded machine, without guessing at sleeps.
#[test]
fn the_drain_delay_shows_not_ready_then_draining() {
    const DRAIN_DELAY: Duration = Duration::from_millis(1500);
    const SERVICE: Duration = Duration::from_secs(3);
    let mut wharf = spawn_wharf(&[
        "--workers",
        "2",
        "--metrics",
        "127.0.0.1:0",
        "--drain-delay",
        "1500ms",
        "--grace",
        "10s",
        "--delay",
        "3s",
    ]);
    let addr = logged_metrics_addr(&wharf.log());
    assert_eq!(get(addr, "/ready").status, 200);
    assert_eq!(value(&scrape(addr), "wharf_draining"), 0.0);

    // Taken before the signal: the drain cannot start before this plus the
    // delay.
    let signalled = Instant::now();
    wharf.signal(libc::SIGTERM);
    // The signal is handled on the server's own thread: not ready at once,
    // long before the delay is over.
    assert!(
        eventually(DRAIN_DELAY / 2, || get(addr, "/ready").status == 503),
        "/ready still 200 {:?} after the signal; log:\n{}",
        signalled.elapsed(),
        wharf.log()
    );

    // During the delay. A new connection is accepted and served: its PING
    // is answered at once, and its DATA request goes into the service.
    let mut late = Client::connect(wharf.addr);
    late.ping(b"during the delay");
    late.send(wharf::frame::DATA, b"accepted during the delay");
    wait_for(addr, "wharf_workers_busy", 1.0);
    // Ask repeatedly, for a while, but well before the delay is over.
    let mut rounds = 0;
    while rounds == 0 || signalled.elapsed() < Duration::from_millis(800) {
        rounds += 1;
        let ready = get(addr, "/ready");
        assert_eq!(ready.status, 503, "{ready:?}");
        assert_eq!(call(addr, "HEAD", "/ready").status, 503);
        assert_eq!(get(addr, "/live").status, 200);
        let text = scrape(addr);
        let at = signalled.elapsed();
        assert_eq!(
            value(&text, "wharf_draining"),
            0.0,
            "draining {at:?} after the signal, during a delay of {DRAIN_DELAY:?}"
        );
    }
    assert!(
        signalled.elapsed() < DRAIN_DELAY,
        "the checks took too long to prove anything: {:?}",
        signalled.elapsed()
    );

    // The drain: the request above is still in the service (it started
    // after the signal and takes 3 s), so the drain goes on until then.
    let mut last = String::new();
    let draining = eventually(WITHIN, || {
        last = scrape(addr);
        value(&last, "wharf_draining") == 1.0
    });
    let drained = signalled.elapsed();
    assert!(draining, "wharf_draining never became 1:\n{last}");
    assert!(drained >= DRAIN_DELAY, "draining after {drained:?}");
    let mut rounds = 0;
    while rounds == 0 || signalled.elapsed() < SERVICE - Duration::from_millis(700) {
        rounds += 1;
        let ready = get(addr, "/ready");
        assert_eq!(ready.status, 503, "{ready:?}");
        assert_eq!(call(addr, "HEAD", "/ready").status, 503);
        assert_eq!(get(addr, "/live").status, 200);
        let text = scrape(addr);
        assert_eq!(value(&text, "wharf_draining"), 1.0, "{text}");
        // What keeps the drain going.
        assert_eq!(value(&text, "wharf_workers_busy"), 1.0, "{text}");
        thread::sleep(Duration::from_millis(20));
    }

    // The request accepted during the delay is answered, then GOAWAY 1.
    let before = late.expect_goaway(GoAwayCode::Shutdown);
    assert_eq!(before.len(), 1, "{before:?}");
    assert_eq!(before[0].payload, b"accepted during the delay");
    assert!(signalled.elapsed() >= SERVICE);
    let status = wharf.wait_exit(Duration::from_secs(20)).expect("exits");
    assert_eq!(status.code(), Some(0), "{}", wharf.log());
    let log = wharf.log();
    assert!(log.contains("shutdown: draining"), "{log}");
}
