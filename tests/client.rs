//! The library's blocking [`wharf::Client`] against real in-process servers
//! on 127.0.0.1:0 (and [::1]:0 when the host has IPv6): echo in both
//! framings, pipelining, PING, ERROR replies, GOAWAY as a typed error, the
//! background heartbeat, line framing's `PONG` ambiguity, connect failures,
//! sending from another thread and half-close.
//!
//! Every read has a timeout (`ClientOptions::read_timeout`), so a broken
//! server or client fails a test instead of hanging it. Time bounds are
//! generous; nothing here asserts on speed.

mod common;

use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use common::gate::{gate, Gate};
use common::{config, start, start_with};
use wharf::{
    Client, ClientError, ClientOptions, Config, Echo, Framing, GoAwayCode, Overload, Reply,
    Response, Server, ServiceError,
};

/// The longest a test waits for any one reply.
const REPLY_TIMEOUT: Duration = Duration::from_secs(10);

/// Length framing, with a read timeout so that nothing hangs.
fn options() -> ClientOptions {
    ClientOptions {
        read_timeout: Some(REPLY_TIMEOUT),
        ..ClientOptions::default()
    }
}

/// Line framing, with a read timeout.
fn line_options() -> ClientOptions {
    ClientOptions {
        framing: Framing::Line,
        ..options()
    }
}

fn connect(addr: SocketAddr) -> Client {
    Client::connect(addr, options()).expect("client connects")
}

fn connect_line(addr: SocketAddr) -> Client {
    Client::connect(addr, line_options()).expect("client connects (line framing)")
}

fn line_config() -> Config {
    Config {
        framing: Framing::Line,
        ..config()
    }
}

/// A short heartbeat (600 ms), for the idle tests. The reap interval is the
/// largest allowed: the server shuts a reaped socket down completely if its
/// worker has not sent the GOAWAY within about `reap_interval + LINGER`, and
/// on a loaded machine a worker can be descheduled that long.
fn short_heartbeat(framing: Framing) -> Config {
    Config {
        heartbeat_timeout: HEARTBEAT,
        reap_interval: HEARTBEAT / 4,
        framing,
        ..config()
    }
}

const HEARTBEAT: Duration = Duration::from_millis(600);

/// Comfortably more than three heartbeat timeouts.
const IDLE: Duration = Duration::from_millis(2100);

/// Echoes, except that a request starting with `fail` is answered with ERROR.
fn fail_on_request(request: &[u8], response: &mut Response<'_>) -> Result<(), ServiceError> {
    if request.starts_with(b"fail") {
        return Err(ServiceError::from(format!(
            "refused {}",
            String::from_utf8_lossy(request)
        )));
    }
    response.extend_from_slice(request);
    Ok(())
}

/// Asserts that `result` is a GOAWAY with `code`, and that it reads like
/// `GOAWAY <code> <NAME>: <reason>` with the server's reason text.
fn assert_goaway<T: std::fmt::Debug>(result: Result<T, ClientError>, code: GoAwayCode) {
    let err = result.expect_err("expected a GOAWAY error");
    match &err {
        ClientError::GoAway { code: got, reason } => {
            assert_eq!(*got, code.as_u16(), "GOAWAY code ({err:?})");
            assert_eq!(reason, code.reason(), "GOAWAY reason text");
        }
        other => panic!("expected GOAWAY {code}, got {other:?}"),
    }
    assert_eq!(err.goaway_code(), Some(code.as_u16()));
    assert_eq!(
        err.to_string(),
        format!(
            "GOAWAY {} {}: {}",
            code.as_u16(),
            code.name(),
            code.reason()
        )
    );
}

/// Stops a server and waits for its drain.
fn stop(server: Server) {
    server.handle().shutdown();
    server.join();
}

// ---------------------------------------------------------------------------
// Connecting and echo.

#[test]
fn connects_over_ipv4_and_echoes() {
    let server = start(config());
    let mut client = connect(server.local_addr());
    assert_eq!(client.peer_addr(), server.local_addr());
    assert_eq!(client.request(b"hello").unwrap(), b"hello");
    // Length framing carries any bytes: newlines, NULs, an empty payload.
    let binary = b"a\nb\r\n\0\xff".to_vec();
    assert_eq!(client.request(&binary).unwrap(), binary);
    assert_eq!(client.request(b"").unwrap(), b"");
    let big = vec![0x5a; 200_000];
    assert_eq!(client.request(&big).unwrap(), big);
    assert_eq!(client.outstanding(), 0);
    drop(client);
    stop(server);
}

#[test]
fn connects_over_ipv6_when_available() {
    let server = match Server::start("[::1]:0", config(), Echo::default()) {
        Ok(server) => server,
        Err(e) => {
            eprintln!("skipped: no IPv6 loopback on this host ({e})");
            return;
        }
    };
    let addr = server.local_addr();
    assert!(addr.is_ipv6(), "{addr}");
    let mut client = connect(addr);
    assert_eq!(client.peer_addr(), addr);
    assert_eq!(client.request(b"over ipv6").unwrap(), b"over ipv6");
    // Also by its text form, as a user would write it.
    let mut by_name =
        Client::connect(format!("[::1]:{}", addr.port()).as_str(), options()).unwrap();
    assert_eq!(by_name.request(b"by name").unwrap(), b"by name");
    drop((client, by_name));
    stop(server);
}

#[test]
fn line_framing_echoes() {
    let server = start(line_config());
    let mut client = connect_line(server.local_addr());
    assert_eq!(client.request(b"hello world").unwrap(), b"hello world");
    assert_eq!(client.request(b"second").unwrap(), b"second");
    assert_eq!(client.outstanding(), 0);
    drop(client);
    stop(server);
}

#[test]
fn line_framing_refuses_a_request_holding_a_newline() {
    let server = start(line_config());
    let mut client = connect_line(server.local_addr());
    match client.request(b"two\nlines") {
        Err(ClientError::Protocol(message)) => assert!(message.contains("newline"), "{message}"),
        other => panic!("expected a Protocol error, got {other:?}"),
    }
    // Nothing was sent or queued, so the connection is still in step.
    assert_eq!(client.outstanding(), 0);
    assert_eq!(client.request(b"one line").unwrap(), b"one line");
    drop(client);
    stop(server);
}

// ---------------------------------------------------------------------------
// Pipelining and PING.

fn pipeline_100(mut client: Client) {
    for i in 0..100 {
        client.send(format!("request {i}").as_bytes()).unwrap();
    }
    assert_eq!(client.outstanding(), 100);
    client.flush().unwrap();
    for i in 0..100 {
        assert_eq!(
            client.recv().unwrap(),
            Reply::Data(format!("request {i}").into_bytes()),
            "reply {i} in order"
        );
    }
    assert_eq!(client.outstanding(), 0);
}

#[test]
fn pipelines_100_requests_in_order() {
    let server = start(config());
    pipeline_100(connect(server.local_addr()));
    stop(server);
}

#[test]
fn pipelines_100_requests_in_order_in_line_framing() {
    let server = start(line_config());
    pipeline_100(connect_line(server.local_addr()));
    stop(server);
}

#[test]
fn ping_measures_a_positive_round_trip() {
    let server = start(config());
    let mut client = connect(server.local_addr());
    for _ in 0..3 {
        let rtt = client.ping().unwrap();
        assert!(rtt > Duration::ZERO, "{rtt:?}");
        assert!(rtt < REPLY_TIMEOUT, "{rtt:?}");
    }
    assert_eq!(client.outstanding(), 0);
    drop(client);
    stop(server);
}

#[test]
fn send_ping_then_recv_gives_pong_in_position() {
    let server = start(config());
    let mut client = connect(server.local_addr());
    client.send(b"first").unwrap();
    client.send_ping(b"token").unwrap();
    client.send(b"last").unwrap();
    client.flush().unwrap();
    assert_eq!(client.recv().unwrap(), Reply::Data(b"first".to_vec()));
    assert_eq!(client.recv().unwrap(), Reply::Pong(b"token".to_vec()));
    assert_eq!(client.recv().unwrap(), Reply::Data(b"last".to_vec()));
    // A PING payload over 64 bytes is answered with ERROR, in position.
    client.send_ping(&[b'x'; 65]).unwrap();
    client.send(b"after").unwrap();
    client.flush().unwrap();
    assert!(matches!(client.recv().unwrap(), Reply::Error(_)));
    assert_eq!(client.recv().unwrap(), Reply::Data(b"after".to_vec()));
    drop(client);
    stop(server);
}

#[test]
fn ping_in_line_framing() {
    let server = start(line_config());
    let mut client = connect_line(server.local_addr());
    assert!(client.ping().unwrap() > Duration::ZERO);
    client.send_ping(b"").unwrap();
    client.flush().unwrap();
    assert_eq!(client.recv().unwrap(), Reply::Pong(Vec::new()));
    drop(client);
    stop(server);
}

#[test]
fn line_framing_ping_with_a_payload_is_refused_or_answered() {
    let server = start(line_config());
    let mut client = connect_line(server.local_addr());
    // Line framing cannot carry a PING payload. Acceptable: send_ping
    // refuses it up front, or sends a plain PING and recv gives a Pong.
    if client.send_ping(b"token").is_ok() {
        client.flush().unwrap();
        match client.recv() {
            Ok(Reply::Pong(_)) => {}
            other => panic!("expected a Pong, got {other:?}"),
        }
    }
    assert_eq!(client.request(b"still in step").unwrap(), b"still in step");
    drop(client);
    stop(server);
}

// ---------------------------------------------------------------------------
// ERROR replies.

#[test]
fn error_reply_is_reply_error_via_recv_and_server_error_via_request() {
    let server = start_with(config(), fail_on_request);
    let mut client = connect(server.local_addr());

    client.send(b"ok 1").unwrap();
    client.send(b"fail 2").unwrap();
    client.send(b"ok 3").unwrap();
    client.flush().unwrap();
    assert_eq!(client.recv().unwrap(), Reply::Data(b"ok 1".to_vec()));
    assert_eq!(
        client.recv().unwrap(),
        Reply::Error("refused fail 2".into())
    );
    assert_eq!(client.recv().unwrap(), Reply::Data(b"ok 3".to_vec()));

    match client.request(b"fail again") {
        Err(ClientError::Server(message)) => assert_eq!(message, "refused fail again"),
        other => panic!("expected ClientError::Server, got {other:?}"),
    }
    let err = client.request(b"fail x").unwrap_err();
    assert_eq!(err.to_string(), "ERROR refused fail x");
    assert_eq!(err.goaway_code(), None);
    // The connection stays usable.
    assert_eq!(client.request(b"fine").unwrap(), b"fine");
    drop(client);
    stop(server);
}

#[test]
fn error_reply_in_line_framing() {
    let server = start_with(line_config(), fail_on_request);
    let mut client = connect_line(server.local_addr());
    client.send(b"fail here").unwrap();
    client.send(b"ok").unwrap();
    client.flush().unwrap();
    assert_eq!(
        client.recv().unwrap(),
        Reply::Error("refused fail here".into())
    );
    assert_eq!(client.recv().unwrap(), Reply::Data(b"ok".to_vec()));
    assert!(matches!(
        client.request(b"fail 2"),
        Err(ClientError::Server(m)) if m == "refused fail 2"
    ));
    assert_eq!(client.request(b"fine").unwrap(), b"fine");
    drop(client);
    stop(server);
}

// ---------------------------------------------------------------------------
// GOAWAY as a typed error.

#[test]
fn drain_is_goaway_1_shutdown() {
    let server = start(Config {
        workers: 1,
        queue: 4,
        ..config()
    });
    let addr = server.local_addr();
    let mut served = connect(addr);
    assert_eq!(served.request(b"served").unwrap(), b"served");
    // This one waits in the queue behind `served`.
    let mut queued = connect(addr);
    thread::sleep(Duration::from_millis(100));

    let handle = server.handle();
    let joiner = thread::spawn(move || server.join());
    handle.shutdown();

    assert_goaway(served.recv(), GoAwayCode::Shutdown);
    assert_goaway(queued.recv(), GoAwayCode::Shutdown);
    let report = joiner.join().unwrap();
    assert!(!report.forced, "{report}");
}

#[test]
fn drain_answers_pipelined_requests_before_goaway_1() {
    let server = start(config());
    let mut client = connect(server.local_addr());
    assert_eq!(client.request(b"warm").unwrap(), b"warm");
    for i in 0..5 {
        client.send(format!("r{i}").as_bytes()).unwrap();
    }
    client.flush().unwrap();
    // Every request before the GOAWAY is answered in order; then GOAWAY 1.
    let mut answered = 0;
    let handle = server.handle();
    let joiner = thread::spawn(move || server.join());
    handle.shutdown();
    let err = loop {
        match client.recv() {
            Ok(reply) => {
                assert_eq!(reply, Reply::Data(format!("r{answered}").into_bytes()));
                answered += 1;
                assert!(answered <= 5);
            }
            Err(e) => break e,
        }
    };
    assert_goaway(Err::<(), _>(err), GoAwayCode::Shutdown);
    joiner.join().unwrap();
}

#[test]
fn idle_client_gets_goaway_2_heartbeat_timeout() {
    let server = start(short_heartbeat(Framing::Length));
    let mut client = connect(server.local_addr());
    assert_eq!(client.request(b"then silence").unwrap(), b"then silence");
    // Blocks until the reaper's GOAWAY arrives (well within REPLY_TIMEOUT).
    assert_goaway(client.recv(), GoAwayCode::HeartbeatTimeout);
    // After the GOAWAY the connection is gone.
    match client.request(b"too late") {
        Err(ClientError::Closed | ClientError::Io(_)) => {}
        other => panic!("expected the connection to be closed, got {other:?}"),
    }
    stop(server);
}

#[test]
fn idle_line_client_gets_goaway_2_heartbeat_timeout() {
    let server = start(short_heartbeat(Framing::Line));
    let mut client = connect_line(server.local_addr());
    assert_eq!(client.request(b"then silence").unwrap(), b"then silence");
    assert_goaway(client.recv(), GoAwayCode::HeartbeatTimeout);
    stop(server);
}

/// Connects a client that gets served. With `queue: 0` a connection made in
/// the instant the worker is not yet waiting for one is turned away (see
/// `queue_0_first_connection_to_an_idle_worker_is_served`), so retry a
/// bounded number of times.
fn connect_served(addr: SocketAddr) -> Client {
    for _ in 0..100 {
        let mut client = connect(addr);
        match client.request(b"hold") {
            Ok(reply) => {
                assert_eq!(reply, b"hold");
                return client;
            }
            Err(e) if e.goaway_code() == Some(GoAwayCode::Busy.as_u16()) => {
                thread::sleep(Duration::from_millis(20));
            }
            Err(e) => panic!("holder: {e}"),
        }
    }
    panic!("never served");
}

#[test]
fn queue_0_first_connection_to_an_idle_worker_is_served() {
    // CPU hogs make the race likely: the new worker thread is not yet
    // scheduled when the first connection arrives.
    let stop_hogs = Arc::new(AtomicBool::new(false));
    let hogs: Vec<_> = (0..4)
        .map(|_| {
            let stop = Arc::clone(&stop_hogs);
            thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    std::hint::spin_loop();
                }
            })
        })
        .collect();
    let mut busy = 0;
    for _ in 0..200 {
        let server = start(Config {
            workers: 1,
            queue: 0,
            heartbeat_timeout: Duration::from_secs(20),
            ..config()
        });
        let mut client = connect(server.local_addr());
        match client.request(b"first") {
            Ok(reply) => assert_eq!(reply, b"first"),
            Err(e) if e.goaway_code() == Some(GoAwayCode::Busy.as_u16()) => busy += 1,
            Err(e) => panic!("{e}"),
        }
        drop(client);
        stop(server);
    }
    stop_hogs.store(true, Ordering::Relaxed);
    for hog in hogs {
        hog.join().unwrap();
    }
    assert_eq!(
        busy, 0,
        "first connections to an idle server turned away as BUSY"
    );
}

/// A quiet connection does not hold a worker (since v2), so the
/// holder keeps the only worker busy with a slow request, held by the
/// service until [`release_holder`].
const HOLD: &[u8] = b"slow: hold the only worker";

/// Sends [`HOLD`] on `holder` and waits until the service is running it.
fn make_busy(holder: &mut Client, gate: &Gate) {
    holder.send(HOLD).unwrap();
    holder.flush().unwrap();
    gate.wait_started(HOLD);
}

/// Lets the holder's slow request finish and checks its reply.
fn release_holder(holder: &mut Client, gate: &Gate) {
    gate.release();
    assert_eq!(holder.recv().unwrap(), Reply::Data(HOLD.to_vec()));
}

fn busy_when_the_worker_is_held(queue: usize) {
    let (service, gate) = gate();
    let server = start_with(
        Config {
            workers: 1,
            queue,
            overload: Overload::Reject,
            heartbeat_timeout: Duration::from_secs(20),
            ..config()
        },
        service,
    );
    let addr = server.local_addr();
    let mut holder = connect_served(addr);
    make_busy(&mut holder, &gate);
    // Fill the queue, if there is one. The acceptor takes connections in
    // order, so the fillers are in line before the next one is accepted.
    let fillers: Vec<Client> = (0..queue).map(|_| connect(addr)).collect();

    let mut turned_away = connect(addr);
    assert_goaway(turned_away.recv(), GoAwayCode::Busy);

    // The holder is still served.
    release_holder(&mut holder, &gate);
    assert_eq!(holder.request(b"still here").unwrap(), b"still here");
    drop((holder, fillers));
    stop(server);
}

#[test]
fn queue_0_with_the_worker_held_is_goaway_3_busy() {
    busy_when_the_worker_is_held(0);
}

#[test]
fn full_queue_1_is_goaway_3_busy() {
    busy_when_the_worker_is_held(1);
}

#[test]
fn request_on_a_busy_server_is_goaway_3() {
    let (service, gate) = gate();
    let server = start_with(
        Config {
            workers: 1,
            queue: 0,
            heartbeat_timeout: Duration::from_secs(20),
            ..config()
        },
        service,
    );
    let addr = server.local_addr();
    let mut holder = connect_served(addr);
    make_busy(&mut holder, &gate);
    let mut turned_away = connect(addr);
    // Give the GOAWAY time to arrive before writing, so the write cannot race
    // the server's close.
    thread::sleep(Duration::from_millis(100));
    assert_goaway(turned_away.request(b"please"), GoAwayCode::Busy);
    release_holder(&mut holder, &gate);
    drop(holder);
    stop(server);
}

// ---------------------------------------------------------------------------
// Background heartbeat.

#[test]
fn background_heartbeat_keeps_an_idle_client_alive() {
    let server = start(short_heartbeat(Framing::Length));
    let addr = server.local_addr();
    let mut kept = connect(addr);
    kept.start_heartbeat(HEARTBEAT / 3).unwrap();
    // Calling it again is harmless.
    kept.start_heartbeat(HEARTBEAT / 3).unwrap();
    let mut silent = connect(addr);
    assert_eq!(kept.request(b"before").unwrap(), b"before");
    assert_eq!(silent.request(b"before").unwrap(), b"before");

    thread::sleep(IDLE);

    // Without the heartbeat: reaped.
    assert_goaway(silent.recv(), GoAwayCode::HeartbeatTimeout);
    // With it: still served, and the PONGs that piled up are swallowed.
    assert_eq!(kept.request(b"after").unwrap(), b"after");
    kept.send(b"p1").unwrap();
    kept.send_ping(b"mine").unwrap();
    kept.send(b"p2").unwrap();
    kept.flush().unwrap();
    assert_eq!(kept.recv().unwrap(), Reply::Data(b"p1".to_vec()));
    assert_eq!(kept.recv().unwrap(), Reply::Pong(b"mine".to_vec()));
    assert_eq!(kept.recv().unwrap(), Reply::Data(b"p2".to_vec()));
    assert!(kept.ping().unwrap() > Duration::ZERO);

    // No stray replies: after half-closing (which stops the heartbeat), the
    // next thing recv sees is the end of the connection, not a PONG.
    kept.shutdown_write().unwrap();
    match kept.recv() {
        Err(ClientError::Closed) => {}
        other => panic!("expected Closed after the half-close, got {other:?}"),
    }
    stop(server);
}

#[test]
fn background_heartbeat_in_line_framing_swallows_pong_lines() {
    let server = start(short_heartbeat(Framing::Line));
    let mut client = connect_line(server.local_addr());
    client.start_heartbeat(HEARTBEAT / 3).unwrap();
    assert_eq!(client.request(b"before").unwrap(), b"before");
    thread::sleep(IDLE);
    // The heartbeat's PONG lines are swallowed; an echoed "PONG" is data.
    assert_eq!(client.request(b"PONG").unwrap(), b"PONG");
    client.send(b"PONG").unwrap();
    client.flush().unwrap();
    assert_eq!(client.recv().unwrap(), Reply::Data(b"PONG".to_vec()));
    client.shutdown_write().unwrap();
    assert!(matches!(client.recv(), Err(ClientError::Closed)));
    stop(server);
}

#[test]
fn half_close_through_the_sender_leaves_nothing_outstanding() {
    // The service takes a while, so the heartbeat ticks after the half-close.
    let server = start_with(
        Config {
            heartbeat_timeout: Duration::from_secs(20),
            ..config()
        },
        Echo {
            delay: Duration::from_millis(600),
            ..Echo::default()
        },
    );
    let mut client = connect(server.local_addr());
    client.start_heartbeat(Duration::from_millis(50)).unwrap();
    let sender = client.sender();
    sender.request(b"slow").unwrap();
    sender.shutdown_write().unwrap();
    assert_eq!(client.recv().unwrap(), Reply::Data(b"slow".to_vec()));
    // Every request sent has been answered; nothing can be owed any more.
    assert_eq!(client.outstanding(), 0, "replies owed after the last one");
    assert!(matches!(client.recv(), Err(ClientError::Closed)));
    drop(client);
    stop(server);
}

// ---------------------------------------------------------------------------
// Line framing: a PONG line in DATA position is data.

#[test]
fn line_framing_echoed_pong_is_data_not_a_pong() {
    let server = start(line_config());
    let mut client = connect_line(server.local_addr());
    assert_eq!(client.request(b"PONG").unwrap(), b"PONG");
    client.send(b"PONG").unwrap();
    client.send_ping(b"").unwrap();
    client.send(b"PONG").unwrap();
    client.flush().unwrap();
    assert_eq!(client.recv().unwrap(), Reply::Data(b"PONG".to_vec()));
    assert_eq!(client.recv().unwrap(), Reply::Pong(Vec::new()));
    assert_eq!(client.recv().unwrap(), Reply::Data(b"PONG".to_vec()));
    assert_eq!(client.outstanding(), 0);
    drop(client);
    stop(server);
}

// ---------------------------------------------------------------------------
// Connect failures and timeouts.

#[test]
fn connect_to_a_closed_port_is_a_connect_error() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let opts = ClientOptions {
        connect_timeout: Duration::from_secs(5),
        ..options()
    };
    match Client::connect(addr, opts) {
        Err(err @ ClientError::Connect { .. }) => {
            let ClientError::Connect { addr: tried, .. } = &err else {
                unreachable!()
            };
            assert_eq!(tried, &addr.to_string());
            let text = err.to_string();
            assert!(
                text.starts_with(&format!("cannot connect to {addr}: ")),
                "{text}"
            );
            assert_eq!(err.goaway_code(), None);
        }
        other => panic!("expected ClientError::Connect, got {other:?}"),
    }
}

#[test]
fn unresolvable_address_is_a_connect_error() {
    match Client::connect("not an address", options()) {
        Err(ClientError::Connect { .. }) => {}
        other => panic!("expected ClientError::Connect, got {other:?}"),
    }
}

#[test]
fn slow_reply_is_a_timeout() {
    let server = start_with(
        config(),
        Echo {
            delay: Duration::from_millis(1500),
            ..Echo::default()
        },
    );
    let timeout = Duration::from_millis(200);
    let mut client = Client::connect(
        server.local_addr(),
        ClientOptions {
            read_timeout: Some(timeout),
            ..ClientOptions::default()
        },
    )
    .unwrap();
    match client.request(b"slow") {
        Err(ClientError::Timeout(t)) => assert_eq!(t, timeout),
        other => panic!("expected a Timeout, got {other:?}"),
    }
    drop(client);
    stop(server);
}

// ---------------------------------------------------------------------------
// Sending from another thread; half-close.

#[test]
fn sender_on_another_thread_while_this_one_receives() {
    let server = start(config());
    let mut client = connect(server.local_addr());
    let sender = client.sender();
    let sending = thread::spawn(move || {
        for i in 0..200 {
            sender
                .request(format!("from thread {i}").as_bytes())
                .unwrap();
        }
    });
    for i in 0..200 {
        assert_eq!(
            client.recv().unwrap(),
            Reply::Data(format!("from thread {i}").into_bytes())
        );
    }
    sending.join().unwrap();
    assert_eq!(client.outstanding(), 0);
    drop(client);
    stop(server);
}

#[test]
fn shutdown_write_gets_every_reply_then_closed() {
    let server = start(config());
    let mut client = connect(server.local_addr());
    for i in 0..10 {
        client.send(format!("q{i}").as_bytes()).unwrap();
    }
    // Not flushed yet: shutdown_write sends them first.
    client.shutdown_write().unwrap();
    for i in 0..10 {
        assert_eq!(
            client.recv().unwrap(),
            Reply::Data(format!("q{i}").into_bytes())
        );
    }
    match client.recv() {
        Err(ClientError::Closed) => {}
        other => panic!("expected Closed, got {other:?}"),
    }
    drop(client);
    stop(server);
}

#[test]
fn sender_shutdown_write_from_another_thread() {
    let server = start(config());
    let mut client = connect(server.local_addr());
    let sender = client.sender();
    let sending = thread::spawn(move || {
        for i in 0..20 {
            sender.request(format!("s{i}").as_bytes()).unwrap();
        }
        sender.shutdown_write().unwrap();
    });
    for i in 0..20 {
        assert_eq!(
            client.recv().unwrap(),
            Reply::Data(format!("s{i}").into_bytes())
        );
    }
    assert!(matches!(client.recv(), Err(ClientError::Closed)));
    sending.join().unwrap();
    drop(client);
    stop(server);
}

/// A client that writes to a server which already turned it away (GOAWAY 3,
/// then closed) gets the GOAWAY as a typed error from `flush` too, not the
/// bare I/O error of the failed write.
#[test]
fn a_failed_write_after_goaway_reports_the_goaway() {
    let (service, gate) = gate();
    let server = start_with(
        Config {
            workers: 1,
            queue: 0,
            ..config()
        },
        service,
    );
    let mut holder = wharf::Client::connect(server.local_addr(), ClientOptions::default()).unwrap();
    assert_eq!(holder.request(b"hold").unwrap(), b"hold");
    make_busy(&mut holder, &gate);
    let mut late = wharf::Client::connect(server.local_addr(), ClientOptions::default()).unwrap();
    // Write until the server has sent GOAWAY 3, lingered and closed the
    // socket for good (writes before that succeed; bounded).
    let mut outcome = None;
    let failed = common::eventually(REPLY_TIMEOUT, || {
        match late.send(b"anyone there?").and_then(|()| late.flush()) {
            Ok(()) => false,
            Err(e) => {
                outcome = Some(e);
                true
            }
        }
    });
    assert!(failed, "writing to a closed connection fails");
    let e = outcome.expect("the write error");
    assert_eq!(e.goaway_code(), Some(3), "{e}");
    release_holder(&mut holder, &gate);
    drop(holder);
    server.handle().shutdown();
    server.join();
}

/// A fake server for one connection: reads what the client sends (up to
/// its first request), answers with exactly `reply`, then closes.
fn answers_once(reply: impl AsRef<[u8]> + Send + 'static) -> (SocketAddr, thread::JoinHandle<()>) {
    use std::io::{Read, Write};
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let server = thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        stream.set_read_timeout(Some(REPLY_TIMEOUT)).unwrap();
        let mut buf = [0u8; 256];
        let _ = stream.read(&mut buf);
        let _ = stream.write_all(reply.as_ref());
        let _ = stream.shutdown(std::net::Shutdown::Write);
        // Until the client closes: no reset under the client's last read.
        let _ = stream.read(&mut buf);
    });
    (addr, server)
}

/// A length client gets what a `--framing line` server sends: a text line
/// where a length header should be. It is reported at once, naming the text
/// and the likely cause, instead of waiting for a gigabyte.
#[test]
fn length_client_reading_a_text_line_says_the_server_looks_line_framed() {
    let cases: [(&[u8], &str, Option<u32>); 4] = [
        (b"ERROR unknown\n", "ERROR unknown", None),
        (
            b"GOAWAY 2 no complete frame within the heartbeat timeout\r\n",
            "GOAWAY 2 no complete frame within the heartbeat timeout",
            None,
        ),
        (b"PONG\n", "PONG", None),
        // Within a huge max_frame the length alone is plausible, but no
        // reply kind is a text byte.
        (b"hello world\n", "hello world", Some(u32::MAX)),
    ];
    for (reply, quoted, max_frame) in cases {
        let (addr, fake) = answers_once(reply);
        let mut client = Client::connect(
            addr,
            ClientOptions {
                max_frame: max_frame.unwrap_or(options().max_frame),
                ..options()
            },
        )
        .unwrap();
        client.send(b"hello").unwrap();
        client.flush().unwrap();
        match client.recv() {
            Err(ClientError::Protocol(message)) => assert_eq!(
                message,
                format!(
                    "the reply looks like text (\"{quoted}\"): is the server using --framing line?"
                )
            ),
            other => panic!("{reply:?}: expected a protocol error, got {other:?}"),
        }
        drop(client);
        fake.join().unwrap();
    }
}

/// A huge length that is not text is still just out of range: no hint.
#[test]
fn length_client_reading_a_binary_huge_length_gets_no_framing_hint() {
    let (addr, fake) = answers_once(b"\xde\xad\xbe\xef\x01junk");
    let mut client = connect(addr);
    client.send(b"hello").unwrap();
    client.flush().unwrap();
    match client.recv() {
        Err(ClientError::Protocol(message)) => {
            assert_eq!(message, "reply frame length 3735928559 out of range");
        }
        other => panic!("expected a protocol error, got {other:?}"),
    }
    drop(client);
    fake.join().unwrap();
}

/// A line client gets the length-framed GOAWAY of a `--framing length`
/// server (which read its first line as a length header): it is reported as
/// that GOAWAY, with its code and reason, not as a closed connection.
#[test]
fn line_client_reading_a_length_framed_goaway_reports_it() {
    // The server's own reason already names the framing: kept as it is.
    let (addr, fake) = answers_once(length_goaway(GoAwayCode::FrameTooLarge, "hint: --framing"));
    let mut client = connect_line(addr);
    client.send(b"hello").unwrap();
    client.flush().unwrap();
    match client.recv() {
        Err(ClientError::GoAway { code, reason }) => {
            assert_eq!((code, reason.as_str()), (5, "hint: --framing"));
        }
        other => panic!("expected GOAWAY 5, got {other:?}"),
    }
    drop(client);
    fake.join().unwrap();

    // Any other reason gets the client's hint. A length of 10 puts a
    // newline inside the header: the GOAWAY is still recognised.
    for (code, said) in [
        (GoAwayCode::Busy, "busy"),
        (GoAwayCode::Shutdown, "no room"),
    ] {
        let reply = length_goaway(code, said);
        let code = code.as_u16();
        if said == "no room" {
            assert_eq!(reply[3], b'\n', "the length byte is a newline");
        }
        let (addr, fake) = answers_once(reply.clone());
        let mut client = connect_line(addr);
        client.send(b"hello").unwrap();
        client.flush().unwrap();
        match client.recv() {
            Err(ClientError::GoAway { code: c, reason }) => {
                assert_eq!(c, code);
                assert_eq!(
                    reason,
                    format!(
                        "{said}; it came as a length frame: is the server using --framing length?"
                    )
                );
            }
            other => panic!("{reply:?}: expected GOAWAY {code}, got {other:?}"),
        }
        drop(client);
        fake.join().unwrap();
    }
}

/// A GOAWAY as a `--framing length` server sends it.
fn length_goaway(code: GoAwayCode, reason: &str) -> Vec<u8> {
    let mut out = Vec::new();
    Framing::Length.encode_goaway(code, reason, &mut out);
    out
}

/// A line reply that merely starts with a NUL byte is still a line.
#[test]
fn line_client_still_takes_a_line_starting_with_nul_as_data() {
    let (addr, fake) = answers_once(b"\x00\x00\x00\x03\x01ab\n");
    let mut client = connect_line(addr);
    client.send(b"hello").unwrap();
    client.flush().unwrap();
    assert_eq!(
        client.recv().unwrap(),
        Reply::Data(b"\x00\x00\x00\x03\x01ab".to_vec())
    );
    drop(client);
    fake.join().unwrap();
}
