//! Safe retries (docs/protocol.md, "Retrying safely") in `wharf::Client`: what is
//! not retried. A connection lost without GOAWAY (reset or closed) is
//! retried only when the caller says its requests are idempotent, and
//! GOAWAY 2, 4 and 5 never are.
//!
//! The tests talk to a scripted fake server (`common::fake`) on
//! 127.0.0.1:0. Every read has a timeout, so a broken client fails a test
//! instead of hanging it. Time bounds are generous: CI is a busy 2-core
//! machine.

mod common;

use std::thread;
use std::time::Duration;

use common::fake::{
    causes, datas, finish_keep, lose, record_reconnects, reply, retrying, script, Fake, Loss,
};
use wharf::{Client, ClientError, ClientOptions, GoAwayCode};

// ---------------------------------------------------------------------------
// Lost without GOAWAY; GOAWAY 2, 4, 5.

fn lost_without_goaway_is_not_retried(loss: Loss) {
    let mut fake = Fake::start(vec![script(move |mut c| {
        let requests = c.read(3);
        c.answer(&requests[..1]);
        // Let the reply reach the client before the connection goes.
        thread::sleep(Duration::from_millis(100));
        lose(c, loss);
    })]);
    let mut client = Client::connect(fake.addr, retrying(3)).unwrap();
    let reports = record_reconnects(&mut client);
    for r in ["a", "b", "c"] {
        client.send(r.as_bytes()).unwrap();
    }
    client.flush().unwrap();
    assert_eq!(client.recv().unwrap(), reply("a"));
    match client.recv() {
        Err(ClientError::Closed) => {}
        other => panic!("{loss:?}: expected Closed, got {other:?}"),
    }
    assert!(causes(&reports).is_empty(), "{loss:?}: no reconnect");
    assert_eq!(client.reconnects(), 0);
    finish_keep(&mut fake);
    fake.assert_no_more_connections();
}

#[test]
fn a_reset_without_goaway_is_closed_and_not_retried() {
    lost_without_goaway_is_not_retried(Loss::Reset);
}

#[test]
fn a_close_without_goaway_is_closed_and_not_retried() {
    lost_without_goaway_is_not_retried(Loss::Close);
}

fn lost_is_retried_when_idempotent(loss: Loss) {
    let fake = Fake::start(vec![
        script(move |mut c| {
            let requests = c.read(3);
            c.answer(&requests[..1]);
            thread::sleep(Duration::from_millis(100));
            lose(c, loss);
        }),
        script(|mut c| {
            let resent = c.read(2);
            c.answer(&resent);
            c.serve_to_end();
        }),
    ]);
    let options = ClientOptions {
        idempotent: true,
        ..retrying(3)
    };
    let mut client = Client::connect(fake.addr, options).unwrap();
    let reports = record_reconnects(&mut client);
    for r in ["a", "b", "c"] {
        client.send(r.as_bytes()).unwrap();
    }
    client.flush().unwrap();
    for r in ["a", "b", "c"] {
        assert_eq!(client.recv().unwrap(), reply(r));
    }
    assert_eq!(causes(&reports), vec![("closed".to_owned(), 1, 2)]);
    assert_eq!((client.reconnects(), client.resent()), (1, 2));
    drop(client);
    let frames = fake.finish();
    assert_eq!(frames[1], datas(&["b", "c"]));
}

#[test]
fn a_reset_is_retried_when_the_requests_are_idempotent() {
    lost_is_retried_when_idempotent(Loss::Reset);
}

#[test]
fn a_close_is_retried_when_the_requests_are_idempotent() {
    lost_is_retried_when_idempotent(Loss::Close);
}

#[test]
fn goaway_2_4_and_5_are_not_retried() {
    for code in [
        GoAwayCode::HeartbeatTimeout,
        GoAwayCode::ProtocolError,
        GoAwayCode::FrameTooLarge,
    ] {
        let mut fake = Fake::start(vec![script(move |mut c| {
            c.read(1);
            c.goaway(code);
        })]);
        let options = ClientOptions {
            idempotent: true,
            ..retrying(3)
        };
        let mut client = Client::connect(fake.addr, options).unwrap();
        let reports = record_reconnects(&mut client);
        let err = client.request(b"x").unwrap_err();
        assert_eq!(err.goaway_code(), Some(code.as_u16()), "{err}");
        assert!(causes(&reports).is_empty(), "GOAWAY {code} is not retried");
        finish_keep(&mut fake);
        fake.assert_no_more_connections();
    }
}
