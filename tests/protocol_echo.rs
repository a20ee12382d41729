//! Wire protocol v1 in length framing: DATA is echoed and PING answered
//! with PONG, for payloads of every size up to exactly `max_frame`, frames
//! dribbled one byte at a time, and over IPv6 loopback.

mod common;

use std::net::TcpListener;
use std::thread;
use std::time::Duration;

use common::protocol::{frame, pattern, small_max_config, stop};
use common::{config, start, Client, Received};
use wharf::frame::DATA;
use wharf::{Config, Echo, Server};

#[test]
fn echoes_a_data_request() {
    let server = start(config());
    let mut client = Client::connect(server.local_addr());
    client.echo(b"hello");
    drop(client);
    server.handle().shutdown();
    assert_eq!(server.join().requests, 1);
}

#[test]
fn echo_of_an_empty_payload_is_a_one_byte_frame() {
    let server = start(config());
    let mut client = Client::connect(server.local_addr());
    client.echo(b"");
    // The exact bytes on the wire: len = 1, kind DATA, nothing else.
    client.send_raw(&frame(DATA, b""));
    let reply = client.recv().expect("reply");
    assert_eq!(
        reply,
        Received {
            kind: DATA,
            payload: Vec::new()
        }
    );
    drop(client);
    stop(server);
}

#[test]
fn echo_of_assorted_payload_sizes() {
    let server = start(config());
    let mut client = Client::connect(server.local_addr());
    for (i, len) in [
        1usize,
        2,
        1000,
        16 * 1024 - 5,
        16 * 1024,
        64 * 1024,
        100_000,
    ]
    .into_iter()
    .enumerate()
    {
        client.echo(&pattern(len, i as u8));
    }
    // Small requests still work after the buffer grew for a large one.
    client.echo(b"x");
    drop(client);
    // And on a fresh connection (the worker's buffers are reset in between).
    let mut client = Client::connect(server.local_addr());
    client.echo(&pattern(64 * 1024, 9));
    client.echo(b"y");
    drop(client);
    stop(server);
}

#[test]
fn frame_of_exactly_max_frame_is_accepted_with_a_small_max() {
    let max = 4096u32;
    let server = start(small_max_config(max));
    let mut client = Client::connect(server.local_addr());
    // len = kind byte + payload = max_frame exactly.
    let payload = pattern(max as usize - 1, 3);
    client.send_raw(&frame(DATA, &payload));
    let reply = client.recv().expect("reply");
    assert_eq!(reply.kind, DATA);
    assert_eq!(reply.payload, payload);
    // Twice in one write, and the connection is still fine afterwards.
    let mut both = frame(DATA, &payload);
    both.extend(frame(DATA, &pattern(max as usize - 1, 4)));
    client.send_raw(&both);
    assert_eq!(client.recv().unwrap().payload, payload);
    assert_eq!(client.recv().unwrap().payload, pattern(max as usize - 1, 4));
    client.echo(b"after");
    drop(client);
    stop(server);
}

#[test]
fn frame_of_exactly_max_frame_is_accepted_with_the_default_max() {
    let config = Config {
        max_frame: Config::default().max_frame,
        ..config()
    };
    assert_eq!(config.max_frame, 1024 * 1024);
    let server = start(config);
    let mut client = Client::connect(server.local_addr());
    let payload = pattern(1024 * 1024 - 1, 7);
    client.echo(&payload);
    client.echo(b"small after large");
    drop(client);
    stop(server);
}

#[test]
fn a_frame_dribbled_one_byte_at_a_time_is_reassembled() {
    let server = start(config());
    let mut client = Client::connect(server.local_addr());
    let bytes = frame(DATA, b"dribbled payload");
    for &b in &bytes {
        client.send_raw(&[b]);
        thread::sleep(Duration::from_millis(2));
    }
    let reply = client.recv().expect("reply");
    assert_eq!(reply.kind, DATA);
    assert_eq!(reply.payload, b"dribbled payload");
    // A large frame written in uneven chunks.
    let payload = pattern(40_000, 1);
    let bytes = frame(DATA, &payload);
    for chunk in bytes.chunks(7919) {
        client.send_raw(chunk);
        thread::sleep(Duration::from_millis(2));
    }
    assert_eq!(client.recv().unwrap().payload, payload);
    drop(client);
    stop(server);
}

#[test]
fn ping_gets_pong_with_the_same_payload() {
    let server = start(config());
    let mut client = Client::connect(server.local_addr());
    client.ping(b"");
    client.ping(&pattern(64, 5));
    client.ping(b"x");
    client.echo(b"data still works");
    drop(client);
    stop(server);
}

#[test]
fn serves_over_ipv6_loopback() {
    if let Err(e) = TcpListener::bind("[::1]:0") {
        println!("skipped: cannot bind [::1]:0 on this machine ({e})");
        return;
    }
    let server = Server::start("[::1]:0", config(), Echo::default()).expect("server on [::1]:0");
    let addr = server.local_addr();
    assert!(addr.is_ipv6(), "{addr}");
    assert_eq!(addr.ip(), "::1".parse::<std::net::IpAddr>().unwrap());
    assert_ne!(addr.port(), 0);
    let mut client = Client::connect(addr);
    client.echo(b"over ipv6");
    client.ping(b"v6");
    drop(client);
    let report = stop(server);
    assert_eq!(report.requests, 2);
}
