//! The library's blocking [`wharf::Client`] against real in-process servers
//! on 127.0.0.1:0: GOAWAY as a typed error. GOAWAY 1 from a drain (after the
//! pipelined replies), GOAWAY 2 to an idle client, GOAWAY 3 from a busy
//! server (also to a write that fails after it).
//!
//! Every read has a timeout (`ClientOptions::read_timeout`), so a broken
//! server or client fails a test instead of hanging it. Time bounds are
//! generous; nothing here asserts on speed.

mod common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use common::client::{assert_goaway, connect, connect_line, short_heartbeat, stop, REPLY_TIMEOUT};
use common::gate::{gate, Gate};
use common::{config, start, start_with};
use wharf::{Client, ClientError, ClientOptions, Config, Framing, GoAwayCode, Overload, Reply};

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
