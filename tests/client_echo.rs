//! The library's blocking [`wharf::Client`] against real in-process servers
//! on 127.0.0.1:0 (and [::1]:0 when the host has IPv6): echo in both
//! framings, pipelining, PING, and ERROR replies.
//!
//! Every read has a timeout (`ClientOptions::read_timeout`), so a broken
//! server or client fails a test instead of hanging it. Time bounds are
//! generous; nothing here asserts on speed.

mod common;

use std::time::Duration;

use common::client::{connect, connect_line, line_config, options, stop, REPLY_TIMEOUT};
use common::{config, start, start_with};
use wharf::{Client, ClientError, Echo, Reply, Response, Server, ServiceError};

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

// ---------------------------------------------------------------------------
// Connecting and echo.

#[test]
fn connects_over_ipv4_and_echoes() {
    let server = start(config());
    let mut client = connect(server.local_addr());
    assert_eq!(client.peer_addr(), Some(server.local_addr()));
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
    assert_eq!(client.peer_addr(), Some(addr));
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
