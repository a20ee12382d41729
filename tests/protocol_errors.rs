//! Wire protocol v1 in length framing: ERROR replies, after which the
//! connection stays usable. A long PING, unknown kinds, the kinds only a
//! server sends, a service error (with its message, its partial response
//! discarded) and a service panic (the pool does not shrink); and the
//! report counts every reply.

mod common;

use std::net::SocketAddr;
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use common::protocol::{frame, header, pattern, small_max_config, stop};
use common::{config, start, start_with, Client, Received};
use wharf::frame::{DATA, ERROR, GOAWAY, PING, PONG};
use wharf::{Config, GoAwayCode, Response, ServiceError};

/// Asserts that the reply is an ERROR with a UTF-8 message, and returns it.
fn expect_error(reply: Option<Received>) -> String {
    let reply = reply.expect("an ERROR reply, not end-of-stream");
    assert_eq!(
        reply.kind, ERROR,
        "reply kind (payload {:?})",
        reply.payload
    );
    String::from_utf8(reply.payload).expect("ERROR message is UTF-8")
}

#[test]
fn ping_longer_than_64_bytes_gets_error_and_connection_stays_usable() {
    let server = start(config());
    let mut client = Client::connect(server.local_addr());
    client.send(PING, &pattern(65, 1));
    let message = expect_error(client.recv());
    assert!(!message.is_empty(), "ERROR carries a message");
    client.send(PING, &pattern(1000, 1));
    expect_error(client.recv());
    client.echo(b"next");
    client.ping(&pattern(64, 2));
    drop(client);
    stop(server);
}

#[test]
fn unknown_kinds_get_error_and_connection_stays_usable() {
    let server = start(config());
    let mut client = Client::connect(server.local_addr());
    for kind in [0x00u8, 0x06, 0x09, 0x7f, 0xff] {
        client.send(kind, b"whatever");
        let message = expect_error(client.recv());
        assert!(
            !message.is_empty(),
            "kind 0x{kind:02x}: ERROR carries a message"
        );
        client.send(kind, b"");
        expect_error(client.recv());
        client.echo(format!("after 0x{kind:02x}").as_bytes());
    }
    drop(client);
    stop(server);
}

#[test]
fn client_sent_pong_goaway_and_error_get_error() {
    let server = start(config());
    let mut client = Client::connect(server.local_addr());
    let mut goaway = Vec::new();
    goaway.extend_from_slice(&1u16.to_be_bytes());
    goaway.extend_from_slice(b"bye");
    for (kind, payload) in [
        (PONG, b"pong".to_vec()),
        (GOAWAY, goaway),
        (ERROR, b"oops".to_vec()),
        (PONG, Vec::new()),
        (GOAWAY, Vec::new()),
        (ERROR, Vec::new()),
    ] {
        client.send(kind, &payload);
        expect_error(client.recv());
        client.echo(b"still usable");
        client.ping(b"p");
    }
    drop(client);
    stop(server);
}

/// Echo, except that requests starting with `fail` get a service error.
fn failing_service(request: &[u8], response: &mut Response<'_>) -> Result<(), ServiceError> {
    if let Some(rest) = request.strip_prefix(b"fail") {
        return Err(ServiceError(format!(
            "refused:{}",
            String::from_utf8_lossy(rest)
        )));
    }
    response.extend_from_slice(request);
    Ok(())
}

#[test]
fn service_error_becomes_error_with_its_message() {
    let server = start_with(config(), failing_service);
    let mut client = Client::connect(server.local_addr());
    client.echo(b"fine");
    let reply = client.request(b"fail-42");
    assert_eq!(reply.kind, ERROR);
    assert_eq!(reply.payload, b"refused:-42");
    client.echo(b"fine again");
    // Pipelined around an error: order and kinds kept.
    let mut batch = frame(DATA, b"a");
    batch.extend(frame(DATA, b"failX"));
    batch.extend(frame(DATA, b"b"));
    client.send_raw(&batch);
    assert_eq!(
        client.recv().unwrap(),
        Received {
            kind: DATA,
            payload: b"a".to_vec()
        }
    );
    assert_eq!(
        client.recv().unwrap(),
        Received {
            kind: ERROR,
            payload: b"refused:X".to_vec()
        }
    );
    assert_eq!(
        client.recv().unwrap(),
        Received {
            kind: DATA,
            payload: b"b".to_vec()
        }
    );
    drop(client);
    stop(server);
}

#[test]
fn service_error_discards_partial_response() {
    let service = |request: &[u8], response: &mut Response<'_>| -> Result<(), ServiceError> {
        response.extend_from_slice(b"partial output");
        if request == b"bad" {
            return Err("bad request".into());
        }
        Ok(())
    };
    let server = start_with(config(), service);
    let mut client = Client::connect(server.local_addr());
    let reply = client.request(b"bad");
    assert_eq!(
        reply,
        Received {
            kind: ERROR,
            payload: b"bad request".to_vec()
        }
    );
    let reply = client.request(b"good");
    assert_eq!(
        reply,
        Received {
            kind: DATA,
            payload: b"partial output".to_vec()
        }
    );
    drop(client);
    stop(server);
}

/// A service whose `together` requests only succeed when two of them are
/// inside the service at the same time (proving two workers serve at once),
/// and whose `panic` requests panic.
#[derive(Clone, Default)]
struct Rendezvous {
    inside: Arc<(Mutex<usize>, Condvar)>,
}

impl wharf::Service for Rendezvous {
    type Session = ();

    fn open(&self, _conn: &wharf::ConnInfo) {}

    fn call(
        &self,
        _session: &mut (),
        request: &[u8],
        response: &mut Response<'_>,
    ) -> Result<(), ServiceError> {
        match request {
            b"panic" => {
                response.extend_from_slice(b"half-written");
                panic!("test service panics on purpose")
            }
            b"together" => {
                let (lock, cvar) = &*self.inside;
                let mut inside = lock.lock().unwrap();
                *inside += 1;
                cvar.notify_all();
                let deadline = Instant::now() + Duration::from_secs(10);
                while *inside < 2 {
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        *inside -= 1;
                        return Err("alone: no second worker served concurrently".into());
                    }
                    inside = cvar.wait_timeout(inside, left).unwrap().0;
                }
                response.extend_from_slice(b"met");
                Ok(())
            }
            other => {
                response.extend_from_slice(other);
                Ok(())
            }
        }
    }
}

#[test]
fn service_panic_gets_error_and_the_pool_does_not_shrink() {
    let config = Config {
        workers: 2,
        heartbeat_timeout: Duration::from_secs(30),
        reap_interval: Duration::from_millis(100),
        ..config()
    };
    let service = Rendezvous::default();
    let server = start_with(config, service);
    let addr = server.local_addr();

    // Several panics, on several connections (so that both workers panic).
    let mut panics = 0;
    for round in 0..4 {
        let mut a = Client::connect(addr);
        let mut b = Client::connect(addr);
        for client in [&mut a, &mut b] {
            let reply = client.request(b"panic");
            assert_eq!(reply.kind, ERROR, "round {round}: {reply:?}");
            assert!(
                !reply.payload.starts_with(b"half-written"),
                "partial output leaked: {reply:?}"
            );
            panics += 1;
            client.echo(b"usable after panic");
            // Pipelined behind a panic.
            let mut batch = frame(DATA, b"panic");
            batch.extend(frame(DATA, b"behind"));
            client.send_raw(&batch);
            assert_eq!(client.recv().unwrap().kind, ERROR);
            assert_eq!(client.recv().unwrap().payload, b"behind");
            panics += 1;
        }
    }

    // Two clients, each in its own thread, must be inside the service at
    // the same time: only possible if both workers are still alive.
    let clients: Vec<_> = (0..2)
        .map(|_| {
            thread::spawn(move || {
                let mut client = Client::connect(addr);
                let reply = client.request(b"together");
                let result = (reply.kind, reply.payload);
                client.echo(b"after");
                result
            })
        })
        .collect();
    for client in clients {
        let (kind, payload) = client.join().expect("client thread");
        assert_eq!(
            (kind, String::from_utf8_lossy(&payload).into_owned()),
            (DATA, "met".to_owned())
        );
    }
    let report = stop(server);
    assert_eq!(report.service_panics, panics);
    assert!(!report.forced);
}

#[test]
fn report_counts_every_reply() {
    let server = start(small_max_config(4096));
    let addr: SocketAddr = server.local_addr();

    // 3 DATA + 2 PING + 1 long PING (ERROR) + 1 unknown kind (ERROR) = 7.
    let mut a = Client::connect(addr);
    a.echo(b"1");
    a.echo(b"2");
    a.echo(b"");
    a.ping(b"");
    a.ping(b"p");
    a.send(PING, &[0; 65]);
    expect_error(a.recv());
    a.send(0xee, b"?");
    expect_error(a.recv());
    drop(a);

    // 2 replies, then GOAWAY 4, which is not a reply to a request.
    let mut b = Client::connect(addr);
    let mut batch = frame(DATA, b"x");
    batch.extend(frame(PING, b"y"));
    batch.extend(header(0));
    b.send_raw(&batch);
    assert_eq!(b.expect_goaway(GoAwayCode::ProtocolError).len(), 2);

    // 1 reply, then GOAWAY 5.
    let mut c = Client::connect(addr);
    let mut batch = frame(DATA, b"z");
    batch.extend(header(5000));
    c.send_raw(&batch);
    assert_eq!(c.expect_goaway(GoAwayCode::FrameTooLarge).len(), 1);

    // A pipelined batch of 50, still connected when the drain starts.
    let mut d = Client::connect(addr);
    let mut batch = Vec::new();
    for i in 0..50u8 {
        batch.extend(frame(DATA, &[i]));
    }
    d.send_raw(&batch);
    for i in 0..50u8 {
        assert_eq!(d.recv().unwrap().payload, [i]);
    }

    server.handle().shutdown();
    d.expect_goaway(GoAwayCode::Shutdown);
    let report = server.join();
    assert_eq!(report.requests, 7 + 2 + 1 + 50, "{report:?}");
    assert_eq!(report.protocol_errors, 2, "{report:?}");
    assert!(report.accepted >= 4, "{report:?}");
}
