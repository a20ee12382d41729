//! Safe retries (docs/protocol.md, "Retrying safely") in `wharf::Client`: after
//! GOAWAY 1 or 3, exactly the unanswered requests are resent, in order,
//! never an answered one; replies come back in order across the reconnect;
//! the count of attempts starts again after a reply; and retries are off
//! unless asked for.
//!
//! The tests talk to a scripted fake server (`common::fake`) on
//! 127.0.0.1:0, which proves what the client does frame by frame. Every
//! read has a timeout, so a broken client fails a test instead of hanging
//! it. Time bounds are generous: CI is a busy 2-core machine.

mod common;

use std::time::Duration;

use common::fake::{
    causes, datas, finish_keep, ping, record_reconnects, reply, retrying, script, Fake,
};
use common::READ_TIMEOUT;
use wharf::{Client, ClientOptions, GoAwayCode, Reply};

// ---------------------------------------------------------------------------
// Exactly the unanswered requests are resent, in order.

/// Five pipelined requests (one of them a PING); the server answers two and
/// sends GOAWAY `code`; the next connection must receive exactly the other
/// three, in order, and the caller sees all five replies in order.
fn answered_two_of_five_then(code: GoAwayCode) {
    let fake = Fake::start(vec![
        script(move |mut c| {
            let requests = c.read(5);
            c.answer(&requests[..2]);
            c.goaway(code);
        }),
        script(|mut c| {
            let resent = c.read(3);
            c.answer(&resent);
            c.serve_to_end();
        }),
    ]);
    let mut client = Client::connect(fake.addr, retrying(3)).unwrap();
    let reports = record_reconnects(&mut client);
    client.send(b"r0").unwrap();
    client.send(b"r1").unwrap();
    client.send_ping(b"p2").unwrap();
    client.send(b"r3").unwrap();
    client.send(b"r4").unwrap();
    client.flush().unwrap();
    assert_eq!(client.recv().unwrap(), reply("r0"));
    assert_eq!(client.recv().unwrap(), reply("r1"));
    assert_eq!(client.recv().unwrap(), Reply::Pong(b"p2".to_vec()));
    assert_eq!(client.recv().unwrap(), reply("r3"));
    assert_eq!(client.recv().unwrap(), reply("r4"));
    assert_eq!(client.outstanding(), 0);
    assert_eq!(client.reconnects(), 1);
    assert_eq!(client.resent(), 3);
    assert_eq!(
        causes(&reports),
        vec![(format!("GOAWAY {}", code.as_u16()), 1, 3)]
    );
    // The connection keeps working after the reconnect.
    assert_eq!(client.request(b"after").unwrap(), b"after");
    drop(client);
    let frames = fake.finish();
    assert_eq!(frames.len(), 2, "one reconnect: {frames:?}");
    let mut first = datas(&["r0", "r1"]);
    first.push(ping("p2"));
    first.extend(datas(&["r3", "r4"]));
    assert_eq!(frames[0], first);
    let mut second = vec![ping("p2")];
    second.extend(datas(&["r3", "r4", "after"]));
    assert_eq!(frames[1], second, "exactly the unanswered, in order");
}

#[test]
fn goaway_1_after_2_of_5_pipelined_resends_exactly_the_other_3_in_order() {
    answered_two_of_five_then(GoAwayCode::Shutdown);
}

#[test]
fn goaway_3_after_2_of_5_pipelined_resends_exactly_the_other_3_in_order() {
    answered_two_of_five_then(GoAwayCode::Busy);
}

#[test]
fn retries_are_off_by_default() {
    let defaults = ClientOptions::default();
    assert_eq!(defaults.retries, 0);
    assert!(!defaults.idempotent);
    assert_eq!(defaults.retry_backoff, Duration::from_millis(100));
    assert_eq!(defaults.retry_backoff_max, Duration::from_secs(2));

    let mut fake = Fake::start(vec![script(|mut c| {
        let requests = c.read(3);
        c.answer(&requests[..1]);
        c.goaway(GoAwayCode::Shutdown);
    })]);
    let mut client = Client::connect(
        fake.addr,
        ClientOptions {
            read_timeout: Some(READ_TIMEOUT),
            ..ClientOptions::default()
        },
    )
    .unwrap();
    for r in ["r0", "r1", "r2"] {
        client.send(r.as_bytes()).unwrap();
    }
    client.flush().unwrap();
    assert_eq!(client.recv().unwrap(), reply("r0"));
    let err = client.recv().unwrap_err();
    assert_eq!(err.goaway_code(), Some(1), "{err}");
    assert_eq!(client.outstanding(), 2, "the unanswered are still owed");
    assert_eq!((client.reconnects(), client.resent()), (0, 0));
    finish_keep(&mut fake);
    fake.assert_no_more_connections();
}

/// The caller never sees an answered request twice, and no server sees it
/// twice, across several reconnects in a row. With `retries: 1` this only
/// passes because each reply starts the count again.
#[test]
fn a_reply_starts_the_count_again_and_nothing_answered_is_resent() {
    let fake = Fake::start(vec![
        script(|mut c| {
            let requests = c.read(4);
            c.answer(&requests[..1]);
            c.goaway(GoAwayCode::Shutdown);
        }),
        script(|mut c| {
            let requests = c.read(3);
            c.answer(&requests[..1]);
            c.goaway(GoAwayCode::Busy);
        }),
        script(|mut c| {
            let requests = c.read(2);
            c.answer(&requests);
            c.serve_to_end();
        }),
    ]);
    let mut client = Client::connect(fake.addr, retrying(1)).unwrap();
    let reports = record_reconnects(&mut client);
    for r in ["a", "b", "c", "d"] {
        client.send(r.as_bytes()).unwrap();
    }
    client.flush().unwrap();
    for r in ["a", "b", "c", "d"] {
        assert_eq!(client.recv().unwrap(), reply(r), "reply to {r}, in order");
    }
    assert_eq!((client.reconnects(), client.resent()), (2, 5));
    assert_eq!(
        causes(&reports),
        vec![("GOAWAY 1".to_owned(), 1, 3), ("GOAWAY 3".to_owned(), 1, 2)],
        "attempt 1 each time: the reply in between reset the count"
    );
    drop(client);
    let frames = fake.finish();
    assert_eq!(frames[0], datas(&["a", "b", "c", "d"]));
    assert_eq!(frames[1], datas(&["b", "c", "d"]));
    assert_eq!(frames[2], datas(&["c", "d"]));
}

/// The same sequence without the reply in between: the second failure is a
/// second attempt in a row, over `retries: 1`, so it is returned.
#[test]
fn without_a_reply_in_between_the_attempts_run_out() {
    let mut fake = Fake::start(vec![
        script(|mut c| {
            let requests = c.read(2);
            c.answer(&requests[..1]);
            c.goaway(GoAwayCode::Shutdown);
        }),
        script(|mut c| {
            c.read(1);
            c.goaway(GoAwayCode::Busy);
        }),
    ]);
    let mut client = Client::connect(fake.addr, retrying(1)).unwrap();
    let reports = record_reconnects(&mut client);
    client.send(b"a").unwrap();
    client.send(b"b").unwrap();
    client.flush().unwrap();
    assert_eq!(client.recv().unwrap(), reply("a"));
    let err = client.recv().unwrap_err();
    assert_eq!(err.goaway_code(), Some(3), "the last failure: {err}");
    assert_eq!(causes(&reports), vec![("GOAWAY 1".to_owned(), 1, 1)]);
    assert_eq!((client.reconnects(), client.resent()), (1, 1));
    // The client has given up: sending now fails instead of queueing.
    client.send(b"c").unwrap();
    assert!(client.flush().is_err());
    let frames = finish_keep(&mut fake);
    assert_eq!(frames, vec![datas(&["a", "b"]), datas(&["b"])]);
    fake.assert_no_more_connections();
}

#[test]
fn a_server_that_is_always_busy_gets_n_reconnects_then_goaway_3() {
    let turn_away = || {
        script(|mut c| {
            c.read(1);
            c.goaway(GoAwayCode::Busy);
        })
    };
    let mut fake = Fake::start((0..4).map(|_| turn_away()).collect());
    let mut client = Client::connect(fake.addr, retrying(3)).unwrap();
    let reports = record_reconnects(&mut client);
    let err = client.request(b"once more").unwrap_err();
    assert_eq!(err.goaway_code(), Some(3), "{err}");
    let expected: Vec<_> = (1..=3).map(|a| ("GOAWAY 3".to_owned(), a, 1)).collect();
    assert_eq!(causes(&reports), expected);
    assert_eq!((client.reconnects(), client.resent()), (3, 3));
    let frames = finish_keep(&mut fake);
    assert_eq!(frames, vec![datas(&["once more"]); 4], "1 + 3 connections");
    fake.assert_no_more_connections();
}
