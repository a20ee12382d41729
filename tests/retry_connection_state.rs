//! Safe retries (docs/protocol.md, "Retrying safely") in `wharf::Client`: what a
//! connection carries across the reconnect. Heartbeat PINGs are not
//! resent, a half-close is made again after the resend, `ping` measures
//! its round trip on the new connection, and a sender on another thread
//! loses and repeats nothing.
//!
//! The tests talk to a scripted fake server (`common::fake`) on
//! 127.0.0.1:0. Every read has a timeout, so a broken client fails a test
//! instead of hanging it. Time bounds are generous: CI is a busy 2-core
//! machine.

mod common;

use std::thread;
use std::time::Duration;

use common::fake::{data, datas, reply, retrying, script, Fake, Frame};
use wharf::frame::DATA;
use wharf::{Client, ClientError, ClientOptions, GoAwayCode};

// ---------------------------------------------------------------------------
// Heartbeats, half-close, ping, a sender on another thread.

/// Heartbeat PINGs left unanswered by the GOAWAY are dropped, not resent:
/// the first frame on the new connection is the unanswered request.
#[test]
fn heartbeat_pings_are_not_resent() {
    let fake = Fake::start(vec![
        script(|mut c| {
            // PINGs from the heartbeat, unanswered, then the request.
            let mut pings = 0;
            loop {
                let frame = c.read_frame().expect("a frame");
                if frame.kind == DATA {
                    break;
                }
                pings += 1;
            }
            assert!(pings >= 1, "the heartbeat ran");
            c.goaway(GoAwayCode::Shutdown);
        }),
        script(|mut c| {
            let first = c.read(1);
            assert_eq!(first, datas(&["request"]), "the request, no PING before it");
            c.answer(&first);
            c.serve_to_end();
        }),
    ]);
    let mut client = Client::connect(fake.addr, retrying(2)).unwrap();
    client.start_heartbeat(Duration::from_millis(20)).unwrap();
    thread::sleep(Duration::from_millis(200));
    assert_eq!(client.request(b"request").unwrap(), b"request");
    assert_eq!((client.reconnects(), client.resent()), (1, 1));
    drop(client);
    fake.finish();
}

/// A client that has half-closed gets its unanswered requests resent, and
/// the new connection is half-closed again after them.
#[test]
fn a_half_closed_client_is_half_closed_again_after_the_resend() {
    let fake = Fake::start(vec![
        script(|mut c| {
            let requests = c.read(3);
            assert_eq!(c.read_frame(), None, "the client half-closed");
            c.answer(&requests[..1]);
            c.goaway(GoAwayCode::Shutdown);
        }),
        script(|mut c| {
            let resent = c.read(2);
            assert_eq!(c.read_frame(), None, "half-closed again after the resend");
            c.answer(&resent);
            c.close();
        }),
    ]);
    let mut client = Client::connect(fake.addr, retrying(2)).unwrap();
    for r in ["a", "b", "c"] {
        client.send(r.as_bytes()).unwrap();
    }
    client.shutdown_write().unwrap();
    for r in ["a", "b", "c"] {
        assert_eq!(client.recv().unwrap(), reply(r));
    }
    assert!(matches!(client.recv(), Err(ClientError::Closed)));
    drop(client);
    let frames = fake.finish();
    assert_eq!(frames[1], datas(&["b", "c"]));
}

/// `ping` goes through a reconnect and measures the round trip on the new
/// connection.
#[test]
fn ping_survives_a_goaway() {
    let fake = Fake::start(vec![
        script(|mut c| {
            let first = c.read(1);
            c.answer(&first);
            c.read(1);
            c.goaway(GoAwayCode::Shutdown);
        }),
        script(|mut c| c.serve_to_end()),
    ]);
    // A backoff sleep of at least 1 s, so a time measured across it is
    // told apart from a round trip even on a loaded machine.
    let options = ClientOptions {
        retry_backoff: Duration::from_secs(2),
        ..retrying(1)
    };
    let mut client = Client::connect(fake.addr, options).unwrap();
    client.ping().unwrap();
    let rtt = client.ping().unwrap();
    assert!(
        rtt < Duration::from_secs(1),
        "{rtt:?}: measured from the resend, not across the >= 1 s backoff"
    );
    assert_eq!(client.reconnects(), 1);
    drop(client);
    fake.finish();
}

/// Requests sent from another thread through a `RequestSender` while this
/// one receives: a GOAWAY in the middle loses nothing and repeats nothing.
#[test]
fn a_sender_thread_keeps_sending_across_the_reconnect() {
    const N: usize = 200;
    let fake = Fake::start(vec![
        script(|mut c| {
            let requests = c.read(50);
            c.answer(&requests[..20]);
            c.goaway(GoAwayCode::Shutdown);
        }),
        script(|mut c| c.serve_to_end()),
    ]);
    let mut client = Client::connect(fake.addr, retrying(2)).unwrap();
    let sender = client.sender();
    let sending = thread::spawn(move || {
        for i in 0..N {
            sender.request(format!("s{i}").as_bytes()).unwrap();
            if i % 10 == 0 {
                thread::sleep(Duration::from_millis(5));
            }
        }
        sender.shutdown_write().unwrap();
    });
    for i in 0..N {
        assert_eq!(client.recv().unwrap(), reply(&format!("s{i}")), "reply {i}");
    }
    sending.join().unwrap();
    assert!(matches!(client.recv(), Err(ClientError::Closed)));
    assert_eq!(client.reconnects(), 1);
    drop(client);
    let frames = fake.finish();
    // Everything after the 20 answered went to the second connection,
    // exactly once and in order.
    let expected: Vec<Frame> = (20..N).map(|i| data(&format!("s{i}"))).collect();
    assert_eq!(frames[1], expected);
}
