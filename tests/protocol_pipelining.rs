//! Wire protocol v1 in length framing: ordering. Pipelined requests (small,
//! large, DATA mixed with PING and bad kinds) are answered in order, and a
//! client that half-closes still gets every reply, then end-of-stream.

mod common;

use std::io::Write;
use std::net::Shutdown as How;
use std::thread;
use std::time::Duration;

use common::protocol::{frame, pattern, stop};
use common::{config, start, start_with, Client};
use wharf::frame::{DATA, ERROR, PING, PONG};
use wharf::Echo;

#[test]
fn pipelined_requests_are_answered_in_order() {
    let server = start(config());
    let mut client = Client::connect(server.local_addr());
    let payloads: Vec<Vec<u8>> = (0..200)
        .map(|i| format!("request-{i}:").repeat(i % 7 + 1).into_bytes())
        .collect();
    let mut batch = Vec::new();
    for payload in &payloads {
        batch.extend(frame(DATA, payload));
    }
    client.send_raw(&batch);
    for (i, payload) in payloads.iter().enumerate() {
        let reply = client.recv().unwrap_or_else(|| panic!("reply {i}"));
        assert_eq!(reply.kind, DATA, "reply {i}");
        assert_eq!(reply.payload, *payload, "reply {i} out of order or wrong");
    }
    client.echo(b"after the batch");
    drop(client);
    stop(server);
}

#[test]
fn pipelined_large_requests_are_answered_in_order() {
    // More output than one write batch: the responses are flushed in parts.
    let server = start(config());
    let mut client = Client::connect(server.local_addr());
    let payloads: Vec<Vec<u8>> = (0..12).map(|i| pattern(60_000 + i, i as u8)).collect();
    let mut batch = Vec::new();
    for payload in &payloads {
        batch.extend(frame(DATA, payload));
    }
    // Write from another thread: the server answers while we still send.
    let mut writer = client.stream.try_clone().unwrap();
    let sender = thread::spawn(move || writer.write_all(&batch).expect("send batch"));
    for (i, payload) in payloads.iter().enumerate() {
        let reply = client.recv().unwrap_or_else(|| panic!("reply {i}"));
        assert_eq!(reply.kind, DATA);
        assert_eq!(reply.payload, *payload, "reply {i}");
    }
    sender.join().unwrap();
    drop(client);
    stop(server);
}

#[test]
fn pipelined_data_ping_and_bad_kinds_keep_their_order() {
    let server = start(config());
    let mut client = Client::connect(server.local_addr());
    let mut batch = Vec::new();
    let mut expected = Vec::new();
    for i in 0..90 {
        let payload = format!("m{i}").into_bytes();
        match i % 3 {
            0 => {
                batch.extend(frame(PING, &payload));
                expected.push((PONG, Some(payload)));
            }
            1 => {
                batch.extend(frame(DATA, &payload));
                expected.push((DATA, Some(payload)));
            }
            _ if i % 9 == 2 => {
                batch.extend(frame(0x09, &payload));
                expected.push((ERROR, None));
            }
            _ => {
                batch.extend(frame(DATA, &payload));
                expected.push((DATA, Some(payload)));
            }
        }
    }
    client.send_raw(&batch);
    for (i, (kind, payload)) in expected.into_iter().enumerate() {
        let reply = client.recv().unwrap_or_else(|| panic!("reply {i}"));
        assert_eq!(reply.kind, kind, "reply {i}: {reply:?}");
        if let Some(payload) = payload {
            assert_eq!(reply.payload, payload, "reply {i}");
        }
    }
    client.ping(b"done");
    drop(client);
    stop(server);
}

#[test]
fn half_close_still_gets_every_reply_then_end_of_stream() {
    let server = start(config());
    let mut client = Client::connect(server.local_addr());
    let payloads: Vec<Vec<u8>> = (0..20).map(|i| pattern(i * 997 % 5000, i as u8)).collect();
    let mut batch = Vec::new();
    for payload in &payloads {
        batch.extend(frame(DATA, payload));
    }
    batch.extend(frame(PING, b"last"));
    client.send_raw(&batch);
    client.stream.shutdown(How::Write).unwrap();
    for (i, payload) in payloads.iter().enumerate() {
        let reply = client
            .recv()
            .unwrap_or_else(|| panic!("reply {i} after half-close"));
        assert_eq!(reply.kind, DATA);
        assert_eq!(reply.payload, *payload, "reply {i}");
    }
    let pong = client.recv().expect("PONG after half-close");
    assert_eq!((pong.kind, pong.payload.as_slice()), (PONG, &b"last"[..]));
    client.expect_closed();
    stop(server);
}

#[test]
fn half_close_with_a_slow_service_still_gets_every_reply() {
    let server = start_with(
        config(),
        Echo {
            delay: Duration::from_millis(20),
            ..Echo::default()
        },
    );
    let mut client = Client::connect(server.local_addr());
    let mut batch = Vec::new();
    for i in 0..5u8 {
        batch.extend(frame(DATA, &[i]));
    }
    client.send_raw(&batch);
    client.stream.shutdown(How::Write).unwrap();
    for i in 0..5u8 {
        assert_eq!(client.recv().expect("reply").payload, [i]);
    }
    client.expect_closed();
    stop(server);
}

#[test]
fn half_close_with_a_partial_frame_answers_the_complete_ones() {
    let server = start(config());
    let mut client = Client::connect(server.local_addr());
    let mut batch = frame(DATA, b"complete");
    batch.extend(&frame(DATA, b"never finished")[..7]);
    client.send_raw(&batch);
    client.stream.shutdown(How::Write).unwrap();
    assert_eq!(client.recv().expect("reply").payload, b"complete");
    client.expect_closed();
    stop(server);
}
