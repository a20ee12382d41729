//! The library's blocking [`wharf::Client`] against real in-process servers
//! on 127.0.0.1:0: the background heartbeat (it keeps an idle client alive,
//! its PONGs are swallowed, a half-close stops it), and line framing's
//! `PONG` ambiguity (an echoed "PONG" in DATA position is data).
//!
//! Every read has a timeout (`ClientOptions::read_timeout`), so a broken
//! server or client fails a test instead of hanging it. Time bounds are
//! generous; nothing here asserts on speed.

mod common;

use std::thread;
use std::time::Duration;

use common::client::{
    assert_goaway, connect, connect_line, line_config, short_heartbeat, stop, HEARTBEAT, IDLE,
};
use common::{config, start, start_with};
use wharf::{ClientError, Config, Echo, Framing, GoAwayCode, Reply};

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
