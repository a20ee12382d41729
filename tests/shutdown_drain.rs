//! Graceful shutdown through the library: `server.handle().shutdown()` and
//! `server.join()` (the protocol, "Graceful shutdown"), step by step. The
//! listener closes at once; queued connections get GOAWAY 1 without waiting
//! for a worker; a request in progress gets its response, then GOAWAY 1;
//! idle clients get it promptly, in either framing. Every join is bounded
//! in time, so a drain that hangs fails its test.
//!
//! Services here tell the test when a request has started, so "shutdown while
//! the service runs" is an observed fact rather than a guess based on sleeps.

mod common;

use std::io::{Read, Write};
use std::sync::mpsc::{self, Receiver};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::shutdown::{
    assert_not_served, config_with, join_within, notifying, read_to_close, wait_started,
    JOIN_WITHIN,
};
use common::{config, start, start_with, Client, Received};
use wharf::frame::{DATA, GOAWAY};
use wharf::{Config, Framing, GoAwayCode, Response, Service, ServiceError};

/// An echo service that reports each request as it starts and then holds it
/// until the test sends on the returned release channel (or 10 s pass).
fn gated() -> (impl Service, Receiver<Vec<u8>>, mpsc::Sender<()>) {
    let (started_tx, started_rx) = mpsc::channel();
    let (release_tx, release_rx) = mpsc::channel::<()>();
    let started_tx = Mutex::new(started_tx);
    let release_rx = Mutex::new(release_rx);
    let service = move |request: &[u8], response: &mut Response<'_>| -> Result<(), ServiceError> {
        let _ = started_tx.lock().unwrap().send(request.to_vec());
        let _ = release_rx
            .lock()
            .unwrap()
            .recv_timeout(Duration::from_secs(10));
        response.extend_from_slice(request);
        Ok(())
    };
    (service, started_rx, release_tx)
}

/// Promised: an idle server exits within a few milliseconds of the signal
/// ("Shutdown never waits for a timer tick"), and a drain with nothing to do
/// is not forced.
#[test]
fn idle_server_joins_quickly_and_is_not_forced() {
    let server = start(config());
    // Let every thread reach its blocking wait first.
    let mut client = Client::connect(server.local_addr());
    client.echo(b"warm up");
    drop(client);
    std::thread::sleep(Duration::from_millis(100));

    let handle = server.handle();
    let began = Instant::now();
    handle.shutdown();
    let report = join_within(server, JOIN_WITHIN);
    let took = began.elapsed();
    assert!(
        took < Duration::from_secs(2),
        "join took {took:?} after shutdown of an idle server"
    );
    assert!(!report.forced, "idle drain reported forced: {report:?}");
    assert!(handle.is_stopping());
}

/// Drain step 1: the listener closes at once, new connection attempts are
/// refused, even while the drain is still waiting for a request in service.
#[test]
fn listener_closes_at_once() {
    let (service, started) = notifying(Duration::from_millis(700));
    let server = start_with(config(), service);
    let addr = server.local_addr();
    let mut busy = Client::connect(addr);
    busy.send(DATA, b"in flight");
    wait_started(&started, b"in flight");

    server.handle().shutdown();
    // The drain is in progress (the request above is still running).
    assert_not_served(addr);
    assert_not_served(addr);

    let before = busy.expect_goaway(GoAwayCode::Shutdown);
    assert_eq!(before.len(), 1, "{before:?}");
    let report = join_within(server, JOIN_WITHIN);
    assert!(!report.forced, "{report:?}");
    // And after the drain, too.
    assert_not_served(addr);
}

/// Drain step 3: a request in progress finishes and gets its response,
/// then GOAWAY 1, then the connection closes; the drain is not forced.
#[test]
fn in_flight_request_gets_response_then_goaway() {
    let (service, started) = notifying(Duration::from_millis(500));
    let server = start_with(config(), service);
    let mut client = Client::connect(server.local_addr());
    client.send(DATA, b"slow request");
    wait_started(&started, b"slow request");

    server.handle().shutdown();
    let before = client.expect_goaway(GoAwayCode::Shutdown);
    assert_eq!(
        before,
        vec![Received {
            kind: DATA,
            payload: b"slow request".to_vec()
        }],
        "exactly the response to the request in progress before GOAWAY"
    );
    let report = join_within(server, JOIN_WITHIN);
    assert!(!report.forced, "{report:?}");
    assert_eq!(report.requests, 1, "{report:?}");
}

/// Drain step 3: "Requests not yet started get no response; the client
/// knows exactly which requests were answered (responses are in order)".
#[test]
fn pipelined_requests_get_an_in_order_prefix_then_goaway() {
    let (service, started) = notifying(Duration::from_millis(200));
    let server = start_with(config(), service);
    let mut client = Client::connect(server.local_addr());
    let payloads: Vec<Vec<u8>> = (0..5).map(|i| format!("req-{i}").into_bytes()).collect();
    let mut batch = Vec::new();
    for payload in &payloads {
        Framing::Length.encode_data(payload, &mut batch);
    }
    client.send_raw(&batch);
    wait_started(&started, b"req-0");

    server.handle().shutdown();
    let before = client.expect_goaway(GoAwayCode::Shutdown);
    assert!(
        !before.is_empty() && before.len() < payloads.len(),
        "expected 1..5 responses before GOAWAY, got {}: {before:?}",
        before.len()
    );
    for (i, frame) in before.iter().enumerate() {
        assert_eq!(frame.kind, DATA, "response {i}: {frame:?}");
        assert_eq!(
            frame.payload, payloads[i],
            "response {i} is out of order, missing a predecessor or duplicated"
        );
    }
    let report = join_within(server, JOIN_WITHIN);
    assert!(!report.forced, "{report:?}");
    assert_eq!(
        report.requests,
        before.len() as u64,
        "requests counted = responses sent; {report:?}"
    );
}

/// Drain step 3 for a connection with no request in progress: its worker
/// is blocked in read, and is woken to send GOAWAY 1 and close at once.
#[test]
fn idle_connected_client_gets_goaway_promptly() {
    let server = start(config());
    let mut client = Client::connect(server.local_addr());
    client.echo(b"I am being served");

    let handle = server.handle();
    let began = Instant::now();
    handle.shutdown();
    let before = client.expect_goaway(GoAwayCode::Shutdown);
    let took = began.elapsed();
    assert!(before.is_empty(), "{before:?}");
    assert!(
        took < Duration::from_secs(2),
        "idle client got GOAWAY and close only after {took:?}"
    );
    let report = join_within(server, JOIN_WITHIN);
    assert!(!report.forced, "{report:?}");
}

/// Drain step 2: connections still in the queue are sent GOAWAY 1 and
/// closed, without waiting for a worker to become free.
#[test]
fn queued_connection_gets_goaway_while_worker_is_busy() {
    let (service, started, release) = gated();
    let server = start_with(config_with(1, Duration::from_secs(10)), service);
    let addr = server.local_addr();

    let mut busy = Client::connect(addr);
    busy.send(DATA, b"hold the worker");
    wait_started(&started, b"hold the worker");

    // The only worker is busy: this one waits in the queue.
    let mut queued = Client::connect(addr);
    queued.send(DATA, b"never started");
    // Give the acceptor time to move it from the kernel's backlog to the queue.
    std::thread::sleep(Duration::from_millis(300));

    server.handle().shutdown();
    let began = Instant::now();
    let before = queued.expect_goaway(GoAwayCode::Shutdown);
    let took = began.elapsed();
    assert!(
        before.is_empty(),
        "a queued connection got a response: {before:?}"
    );
    assert!(
        took < Duration::from_secs(3),
        "queued connection closed only after {took:?}"
    );
    // The worker was still busy the whole time: nothing started but the first.
    assert!(
        started.try_recv().is_err(),
        "the queued request reached the service"
    );

    release.send(()).unwrap();
    let before = busy.expect_goaway(GoAwayCode::Shutdown);
    assert_eq!(before.len(), 1, "{before:?}");
    assert_eq!(before[0].payload, b"hold the worker");
    let report = join_within(server, JOIN_WITHIN);
    assert!(!report.forced, "{report:?}");
    assert_eq!(report.requests, 1, "{report:?}");
}

/// The idle-client case in line framing: GOAWAY is the line
/// `GOAWAY 1 <reason>` and the connection closes.
#[test]
fn idle_line_client_gets_goaway_line() {
    let server = start(Config {
        framing: Framing::Line,
        ..config()
    });
    let mut client = Client::connect_with(server.local_addr(), Framing::Line);
    client.echo(b"hello");
    server.handle().shutdown();
    let frames = read_to_close(&mut client);
    assert_eq!(frames.len(), 1, "{frames:?}");
    assert_eq!(frames[0].kind, GOAWAY);
    let goaway = frames[0].goaway(Framing::Line).expect("a GOAWAY line");
    assert_eq!(goaway.code, 1, "{goaway:?}");
    assert!(!join_within(server, JOIN_WITHIN).forced);
}

/// The monitor sees the acceptor and the reaper turn at least every
/// `ALIVE_TICK` while the server runs, the acceptor stop once the drain
/// starts, and the counters so far.
#[test]
fn the_monitor_sees_the_acceptor_and_reaper_turn() {
    let server = start(Config {
        // Longer than the tick: the reaper must turn between scans too.
        heartbeat_timeout: Duration::from_secs(20),
        reap_interval: Duration::from_secs(5),
        ..config()
    });
    let monitor = server.monitor();
    let mut client = Client::connect(server.local_addr());
    client.echo(b"counted");
    let first = monitor.liveness();
    std::thread::sleep(wharf::ALIVE_TICK * 3);
    let second = monitor.liveness();
    assert!(second.acceptor > first.acceptor, "{first:?} {second:?}");
    assert!(second.reaper > first.reaper, "{first:?} {second:?}");
    let report = monitor.report().expect("running");
    assert_eq!((report.accepted, report.requests), (1, 1), "{report:?}");
    assert!(monitor.status_line().unwrap().contains("open=1"));

    server.handle().shutdown();
    assert!(monitor.is_stopping() && monitor.is_draining());
    drop(client);
    assert!(!join_within(server, JOIN_WITHIN).forced);
    let after = monitor.liveness();
    std::thread::sleep(wharf::ALIVE_TICK * 2);
    assert_eq!(monitor.liveness(), after, "nothing turns once stopped");
    assert!(monitor.report().is_none(), "the server is gone");
}

/// A client that keeps sending while the drain closes its quiet connection
/// (a worker was staying on it) still reads its GOAWAY 1 and a clean end of
/// stream: the drain wakes the worker without shutting the socket's read
/// side down, which would make the kernel answer those bytes with a reset.
#[test]
fn a_client_still_sending_during_the_drain_is_not_reset() {
    let server = start(config_with(1, Duration::from_secs(5)));
    let mut client = Client::connect(server.local_addr());
    client.echo(b"the worker now stays on this connection");
    std::thread::sleep(Duration::from_millis(50));
    let handle = server.handle();
    handle.shutdown();
    // Requests the server will not answer, sent on until well after the
    // GOAWAY and the FIN are out (within the closer's linger).
    let mut frame = Vec::new();
    Framing::Length.encode_data(b"too late", &mut frame);
    let until = Instant::now() + Duration::from_millis(100);
    while Instant::now() < until {
        if let Err(e) = client.stream.write_all(&frame) {
            panic!("a write after the drain started failed: {e}");
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    let mut buf = [0u8; 64];
    let mut got = Vec::new();
    loop {
        match client.stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) => panic!("reading the GOAWAY failed: {e} (after {got:?})"),
        }
    }
    assert!(got.len() > 5 && got[4] == GOAWAY, "{got:?}");
    assert_eq!(u16::from_be_bytes([got[5], got[6]]), 1, "{got:?}");
    assert!(!join_within(server, JOIN_WITHIN).forced);
}
