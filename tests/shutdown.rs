//! Graceful shutdown through the library: `server.handle().shutdown()`,
//! `.force()` and `server.join()` (the protocol, "Graceful shutdown"). Every
//! join is bounded in time, so a drain that hangs fails its test.
//!
//! Services here tell the test when a request has started, so "shutdown while
//! the service runs" is an observed fact rather than a guess based on sleeps.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::mpsc::{self, Receiver};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::gate::gate;
use common::{config, start, start_with, Client, Received};
use wharf::frame::{DATA, GOAWAY};
use wharf::{
    Config, Framing, GoAwayCode, Listener, Report, Response, Server, Service, ServiceError,
};

/// How long a test waits for the service to report that a request started.
const STARTED_WITHIN: Duration = Duration::from_secs(10);

/// An echo service that reports each request's payload on a channel as soon
/// as it starts, then sleeps `delay` before answering.
fn notifying(delay: Duration) -> (impl Service, Receiver<Vec<u8>>) {
    let (tx, rx) = mpsc::channel();
    let tx = Mutex::new(tx);
    let service = move |request: &[u8], response: &mut Response<'_>| -> Result<(), ServiceError> {
        let _ = tx.lock().unwrap().send(request.to_vec());
        std::thread::sleep(delay);
        response.extend_from_slice(request);
        Ok(())
    };
    (service, rx)
}

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

/// Waits for the service to report that it started on `payload`.
fn wait_started(started: &Receiver<Vec<u8>>, payload: &[u8]) {
    let got = started
        .recv_timeout(STARTED_WITHIN)
        .expect("the service starts the request");
    assert_eq!(got, payload, "the request the service started");
}

/// `server.join()` bounded in time: a drain that never finishes fails the
/// test instead of hanging it (the joining thread is left behind).
fn join_within(server: Server, within: Duration) -> Report {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(server.join());
    });
    rx.recv_timeout(within)
        .unwrap_or_else(|_| panic!("server.join() did not return within {within:?}"))
}

/// How long any drain in these tests may take before the test fails.
const JOIN_WITHIN: Duration = Duration::from_secs(15);

/// Reads frames until end-of-stream (or reset); panics on a read timeout.
fn read_to_close(client: &mut Client) -> Vec<Received> {
    let mut frames = Vec::new();
    for _ in 0..1000 {
        match client.recv() {
            Some(frame) => frames.push(frame),
            None => return frames,
        }
    }
    panic!("the server never closed the connection; got {frames:?}");
}

/// After a forced close the client may see GOAWAY 1 (best effort) but never
/// a response, and the connection must be closed.
fn assert_forced_close(client: &mut Client) {
    let frames = read_to_close(client);
    assert!(
        frames.len() <= 1,
        "at most one frame (GOAWAY) after a forced close, got {frames:?}"
    );
    if let Some(frame) = frames.first() {
        let goaway = frame
            .goaway(Framing::Length)
            .unwrap_or_else(|| panic!("expected GOAWAY, got {frame:?}"));
        assert_eq!(goaway.code, GoAwayCode::Shutdown.as_u16(), "{goaway:?}");
    }
}

/// A config whose only difference from `config()` is the worker count and
/// the grace period.
/// A server with the given grace, and a client whose three-second request
/// the service has just started.
fn three_second_request_in_flight(grace: Duration) -> (Server, Client) {
    let (service, started) = notifying(Duration::from_secs(3));
    let server = start_with(config_with(2, grace), service);
    let mut client = Client::connect(server.local_addr());
    client.send(DATA, b"takes three seconds");
    wait_started(&started, b"takes three seconds");
    (server, client)
}

fn config_with(workers: usize, grace: Duration) -> Config {
    Config {
        workers,
        grace,
        ..config()
    }
}

/// Asserts that a new connection to `addr` is never served: either the
/// connect is refused, or the connection reads end-of-stream / reset at once
/// instead of a reply.
fn assert_not_served(addr: SocketAddr) {
    let mut stream = match TcpStream::connect_timeout(&addr, Duration::from_secs(5)) {
        Err(e) => {
            assert_eq!(
                e.kind(),
                ErrorKind::ConnectionRefused,
                "connect after shutdown failed, but not by refusal: {e}"
            );
            return;
        }
        Ok(stream) => stream,
    };
    // Connected (a race with the kernel's accept queue): it must still not be
    // served. A write may already fail; that is fine.
    let mut request = Vec::new();
    Framing::Length.encode_data(b"late", &mut request);
    let _ = stream.write_all(&request);
    stream
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    let mut buf = [0u8; 64];
    match stream.read(&mut buf) {
        Ok(0) => {}
        Ok(n) => panic!(
            "a connection made after shutdown got {n} bytes: {:?}",
            &buf[..n]
        ),
        Err(e) if matches!(e.kind(), ErrorKind::ConnectionReset | ErrorKind::BrokenPipe) => {}
        Err(e) => panic!("a connection made after shutdown was neither refused nor closed: {e}"),
    }
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
    assert!(handle.is_shutting_down());
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

/// Promised: "If work is still running after --grace ... closes every
/// remaining connection at once" and the report says forced (exit 1).
#[test]
fn grace_exceeded_forces_close() {
    let (server, mut client) = three_second_request_in_flight(Duration::from_millis(300));

    let handle = server.handle();
    let began = Instant::now();
    handle.shutdown();
    let report = join_within(server, JOIN_WITHIN);
    let took = began.elapsed();
    assert!(
        took < Duration::from_millis(2500),
        "join waited {took:?}, as if for the 3 s service instead of the 300 ms grace"
    );
    assert!(report.forced, "grace ran out but not forced: {report:?}");
    assert_forced_close(&mut client);
}

/// Promised: a second signal (here `force()`) during a drain closes every
/// remaining connection at once and reports forced.
#[test]
fn force_during_drain_closes_at_once() {
    let (server, mut client) = three_second_request_in_flight(Duration::from_secs(30));

    let handle = server.handle();
    handle.shutdown();
    // The drain is under way and would wait up to 30 s.
    std::thread::sleep(Duration::from_millis(200));
    let began = Instant::now();
    handle.force();
    let report = join_within(server, JOIN_WITHIN);
    let took = began.elapsed();
    assert!(
        took < Duration::from_secs(2),
        "join took {took:?} after force()"
    );
    assert!(report.forced, "force() but not forced: {report:?}");
    assert_forced_close(&mut client);
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

/// Operations, socket activation through the library: the drain of a
/// server on an inherited listener stops accepting and closes only its own
/// descriptor; the holder's socket keeps taking connections into its
/// backlog for the next instance.
#[test]
fn the_drain_leaves_an_inherited_listener_open() {
    let holder = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = holder.local_addr().unwrap();
    let server = Server::from_listener(
        Listener::Inherited(holder.try_clone().unwrap()),
        config(),
        wharf::Echo::default(),
    )
    .expect("server starts on the inherited socket");
    assert_eq!(server.local_addr(), addr);
    let mut client = Client::connect(addr);
    client.echo(b"served");
    let handle = server.handle();
    handle.shutdown();
    client.expect_goaway(GoAwayCode::Shutdown);
    assert!(!join_within(server, JOIN_WITHIN).forced);

    let waiting = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .expect("the inherited socket still takes connections");
    holder.set_nonblocking(false).unwrap();
    let (_accepted, peer) = holder.accept().expect("accept from the backlog");
    assert_eq!(peer, waiting.local_addr().unwrap());
}

/// A listener handed over as the server's own is shut down by the drain,
/// like one the server bound: new connections are refused at once.
#[test]
fn the_drain_shuts_an_own_listener_down() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let server =
        Server::from_listener(Listener::Own(listener), config(), wharf::Echo::default()).unwrap();
    Client::connect(addr).echo(b"served");
    server.handle().shutdown();
    assert_not_served(addr);
    assert!(!join_within(server, JOIN_WITHIN).forced);
}

/// `Server::from_listener` refuses a socket that is not a listening TCP
/// socket.
#[test]
fn from_listener_refuses_a_socket_that_does_not_listen() {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket
        .bind(&std::net::SocketAddr::from(([127, 0, 0, 1], 0)).into())
        .unwrap();
    let not_listening: std::net::TcpListener = socket.into();
    match Server::from_listener(
        Listener::Inherited(not_listening),
        config(),
        wharf::Echo::default(),
    ) {
        Err(wharf::Error::InvalidListener(why)) => assert!(why.contains("not listening"), "{why}"),
        other => panic!("expected InvalidListener, got {other:?}"),
    }
}

/// Operations, drain delay through the library: after `shutdown()` the
/// server is stopping (not ready) but still accepts and serves for the
/// delay; then it drains (GOAWAY 1), and is not forced.
#[test]
fn drain_delay_keeps_serving_then_drains() {
    let delay = Duration::from_millis(600);
    let server = start(Config {
        drain_delay: delay,
        ..config()
    });
    let addr = server.local_addr();
    let handle = server.handle();
    let mut existing = Client::connect(addr);
    existing.echo(b"before");
    assert!(!handle.is_stopping() && !handle.is_draining());

    let began = Instant::now();
    handle.shutdown();
    assert!(handle.is_stopping(), "stopping at once");
    assert!(!handle.is_draining(), "but not draining during the delay");
    let mut late = Client::connect(addr);
    late.echo(b"accepted during the delay");
    existing.echo(b"served during the delay");
    assert!(
        began.elapsed() < delay,
        "the checks took too long to prove anything"
    );

    existing.expect_goaway(GoAwayCode::Shutdown);
    assert!(
        began.elapsed() >= delay,
        "drained after {:?}",
        began.elapsed()
    );
    assert!(handle.is_draining());
    late.expect_goaway(GoAwayCode::Shutdown);
    let report = join_within(server, JOIN_WITHIN);
    assert!(!report.forced, "{report:?}");
    assert_eq!(report.requests, 3, "{report:?}");
}

/// Operations: "`--grace` counts from the start of the drain", not from
/// the signal. A request that starts during a 2 s delay is held until 2.5 s
/// after the signal: past a 1.5 s grace counted from the signal (which
/// would force the close, with no reply), but only 0.5 s into the drain,
/// well within the grace counted from there (until 3.5 s). So it must end
/// with its reply, then GOAWAY 1, and the drain must not be forced. Each
/// reading is at least 0.5 s from its limit.
#[test]
fn grace_counts_from_the_start_of_the_drain_not_from_the_signal() {
    const DRAIN_DELAY: Duration = Duration::from_secs(2);
    const GRACE: Duration = Duration::from_millis(1500);
    const RELEASE_AT: Duration = Duration::from_millis(2500);
    const HELD: &[u8] = b"slow: started during the drain delay";
    let (service, gate) = gate();
    let server = start_with(
        Config {
            drain_delay: DRAIN_DELAY,
            grace: GRACE,
            ..config()
        },
        service,
    );
    let handle = server.handle();
    let signalled = Instant::now();
    handle.shutdown();

    let mut client = Client::connect(server.local_addr());
    client.send(DATA, HELD);
    gate.wait_started(HELD);
    assert!(
        !handle.is_draining(),
        "the request started only {:?} after the stop, once the drain had",
        signalled.elapsed()
    );

    std::thread::sleep(RELEASE_AT.saturating_sub(signalled.elapsed()));
    assert!(handle.is_draining(), "the drain started while it was held");
    gate.release();
    let before = client.expect_goaway(GoAwayCode::Shutdown);
    let answered = signalled.elapsed();
    assert_eq!(
        before,
        vec![Received {
            kind: DATA,
            payload: HELD.to_vec()
        }],
        "the held request's reply, then GOAWAY 1 ({answered:?} after the stop)"
    );
    let report = join_within(server, JOIN_WITHIN);
    assert!(
        !report.forced,
        "forced, as if the grace counted from the stop: {report:?}"
    );
    assert_eq!(report.requests, 1, "{report:?}");
}

/// `force()` during the drain delay stops at once, as a second signal does.
#[test]
fn force_cuts_the_drain_delay_short() {
    let server = start(Config {
        drain_delay: Duration::from_secs(30),
        ..config()
    });
    let mut client = Client::connect(server.local_addr());
    client.echo(b"connected");
    let handle = server.handle();
    handle.shutdown();
    std::thread::sleep(Duration::from_millis(100));
    let began = Instant::now();
    handle.force();
    let report = join_within(server, JOIN_WITHIN);
    assert!(
        began.elapsed() < Duration::from_secs(2),
        "{:?}",
        began.elapsed()
    );
    assert!(report.forced, "{report:?}");
    assert_forced_close(&mut client);
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
