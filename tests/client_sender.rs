//! The library's blocking [`wharf::Client`] against real in-process servers
//! on 127.0.0.1:0: sending from another thread through a `RequestSender`
//! while this one receives, and half-close (`shutdown_write`), from either
//! thread, after which every reply still arrives.
//!
//! Every read has a timeout (`ClientOptions::read_timeout`), so a broken
//! server or client fails a test instead of hanging it. Time bounds are
//! generous; nothing here asserts on speed.

mod common;

use std::thread;

use common::client::{connect, stop};
use common::{config, start};
use wharf::{ClientError, Reply};

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
