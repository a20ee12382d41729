//! Metrics and probes (docs/operating.md, "Metrics and probes"): the
//! counters and gauges follow what happens on the data port. Requests count
//! DATA only (PING and unknown kinds are not requests); connections
//! accepted, reaped and rejected (by reason: `max_connections`,
//! `queue_full`, `queue_deadline`), protocol errors, service panics and
//! write timeouts are each counted; resting connections and buffered bytes
//! show in their gauges.
//!
//! Every test talks to a real server over real sockets on 127.0.0.1, port
//! 0. The connection gauges are counted at most every 100 ms, so checks of
//! them poll.

mod common;

use std::io::Write;
use std::net::TcpStream;
use std::time::Duration;

use common::gate::{gate, SLOW};
use common::metrics::{metrics_addr, scrape, value, wait_for, with_metrics};
use common::{config, start, start_with, Client};
use wharf::frame::PING;
use wharf::{Config, GoAwayCode, Response, ServiceError};

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
