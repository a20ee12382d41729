//! Metrics and probes (docs/operating.md, "Metrics and probes"): the HTTP
//! side of `--metrics ADDR`. The endpoint is off unless configured;
//! `/metrics`, `/ready` and `/live` answer GET and HEAD over HTTP/1.1 with
//! their status and close the connection, other paths get 404 and other
//! methods 405; request heads are bounded: malformed ones get 400, ones
//! over 16 KiB 431, and one that does not arrive within 5 s 408.
//!
//! Every test talks to a real server over real sockets on 127.0.0.1, port
//! 0. HTTP requests are written by hand, byte for byte (see
//! `common::metrics`), so that malformed ones can be sent too.

mod common;

use std::io::Write;
use std::net::Shutdown;
use std::thread;
use std::time::{Duration, Instant};

use common::metrics::{call, connect_http, get, http, metrics_addr, parse, read_all, with_metrics};
use common::{config, start};

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
