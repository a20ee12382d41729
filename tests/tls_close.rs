//! How TLS connections end (contract v3 §5, "After the handshake everything
//! in §1–§4 holds inside TLS"):
//!
//! - the heartbeat deadline counts from the completed handshake; a silent
//!   client is sent GOAWAY 2, readable over TLS, then close_notify; PINGs
//!   keep it alive;
//! - the drain: a resting TLS client gets GOAWAY 1 and close_notify at once,
//!   a busy one its reply first; a connection still handshaking is closed
//!   without a byte; a forced close sends no GOAWAY to a connection whose
//!   request is inside the service;
//! - a malformed stream gets GOAWAY 4 or 5, then close_notify; on the wire
//!   (TLS 1.2, where an alert's record type shows) the close_notify alert
//!   is the last record, after the last reply and the GOAWAY.
//!
//! Real server, real sockets on 127.0.0.1; timing bounds are generous.

mod common;

use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::gate::{gate, SLOW};
use common::metrics::{metrics_addr, value, wait_for, with_metrics};
use common::scrape::handshakes;
use common::tls::{bytes_until_closed, start_tls, Certs, ClientSetup, TlsStream};
use common::Client;
use wharf::frame::{GoAway, DATA, GOAWAY, PING, PONG};
use wharf::{Config, Echo, Framing, GoAwayCode};

fn config(certs: &Certs) -> Config {
    with_metrics(Config {
        tls: Some(certs.settings()),
        ..common::config()
    })
}

/// Reads the next frame, asserts it is GOAWAY `code`, then that the stream
/// ends with the server's close_notify.
fn expect_goaway_then_close_notify(client: &mut TlsStream, code: GoAwayCode) {
    let (kind, payload) = client
        .recv()
        .expect("read the GOAWAY over TLS")
        .expect("a GOAWAY, not the end");
    assert_eq!(
        kind,
        GOAWAY,
        "payload {:?}",
        String::from_utf8_lossy(&payload)
    );
    let goaway = GoAway::parse(Framing::Length, &payload).expect("a well-formed GOAWAY");
    assert_eq!(goaway.code, code.as_u16(), "{goaway:?}");
    assert_eq!(client.recv().expect("the end after the GOAWAY"), None);
    assert!(client.closed_cleanly(), "close_notify after the GOAWAY");
}

#[test]
fn the_heartbeat_deadline_counts_from_the_completed_handshake() {
    let certs = Certs::new();
    let heartbeat = Duration::from_millis(1500);
    let config = Config {
        heartbeat_timeout: heartbeat,
        reap_interval: Duration::from_millis(100),
        handshake_timeout: Duration::from_secs(10),
        ..config(&certs)
    };
    let (server, addr) = start_tls(config, Echo::default());
    // Connect, then wait most of a heartbeat before saying hello: counted
    // from the accept, the deadline would pass a moment after the handshake.
    let tcp = TcpStream::connect(addr).expect("connect");
    let pause = Duration::from_millis(1200);
    std::thread::sleep(pause);
    let mut client = ClientSetup::new(&certs)
        .handshake(tcp)
        .expect("a handshake well within its timeout");
    let shaken = Instant::now();
    expect_goaway_then_close_notify(&mut client, GoAwayCode::HeartbeatTimeout);
    let took = shaken.elapsed();
    assert!(
        took >= heartbeat - Duration::from_millis(300),
        "reaped {took:?} after the handshake: the heartbeat ({heartbeat:?}) counted from \
         the accept, {pause:?} earlier"
    );
    assert!(
        took <= heartbeat + Duration::from_secs(3),
        "reaped only {took:?} after the handshake"
    );
    let text = wait_for(metrics_addr(&server), "wharf_connections_reaped_total", 1.0);
    assert_eq!(handshakes(&text, "ok"), 1.0);
    assert_eq!(handshakes(&text, "timeout"), 0.0);
    server.handle().shutdown();
    assert!(!server.join().forced);
}

#[test]
fn pings_keep_a_tls_connection_alive_past_the_heartbeat() {
    let certs = Certs::new();
    let heartbeat = Duration::from_millis(1000);
    let config = Config {
        heartbeat_timeout: heartbeat,
        reap_interval: Duration::from_millis(100),
        ..config(&certs)
    };
    let (server, addr) = start_tls(config, Echo::default());
    let mut client = ClientSetup::new(&certs).connect(addr).expect("handshake");
    let start = Instant::now();
    let mut i = 0u32;
    while start.elapsed() < 3 * heartbeat {
        std::thread::sleep(heartbeat / 4);
        let payload = format!("{i}");
        client.send(PING, payload.as_bytes()).unwrap();
        assert_eq!(
            client.recv().unwrap(),
            Some((PONG, payload.into_bytes())),
            "PONG {i}, {:?} in",
            start.elapsed()
        );
        i += 1;
    }
    client.echo(b"alive after three heartbeats");
    let text = common::metrics::scrape(metrics_addr(&server));
    assert_eq!(value(&text, "wharf_connections_reaped_total"), 0.0);
    server.handle().shutdown();
    assert!(!server.join().forced);
}

#[test]
fn the_drain_sends_goaway_1_then_close_notify_to_a_resting_tls_client_at_once() {
    let certs = Certs::new();
    let (service, gate) = gate();
    let (server, addr) = start_tls(config(&certs), service);
    let mut resting = ClientSetup::new(&certs)
        .connect(addr)
        .expect("the resting client's handshake");
    resting.echo(b"then rest");
    // Both workers busy in the service: no worker can be waiting on the
    // resting client, which is in the poller.
    let mut busy = Vec::new();
    for payload in [&b"slow 1"[..], b"slow 2"] {
        let mut client = Client::connect(server.local_addr());
        client.send(DATA, payload);
        gate.wait_started(payload);
        busy.push((client, payload));
    }
    // Still handshaking when the drain starts: no handshake, no GOAWAY.
    let mut shaking = TcpStream::connect(addr).expect("connect");
    shaking
        .set_read_timeout(Some(common::READ_TIMEOUT))
        .unwrap();

    let draining = Instant::now();
    server.handle().shutdown();
    // Told at once, while both requests are still held.
    expect_goaway_then_close_notify(&mut resting, GoAwayCode::Shutdown);
    let told = draining.elapsed();
    assert!(
        told < Duration::from_secs(3),
        "the resting client got GOAWAY 1 {told:?} after the drain began"
    );
    assert_eq!(
        bytes_until_closed(&mut shaking),
        0,
        "bytes to a handshaking one"
    );

    for (mut client, payload) in busy {
        gate.release();
        let before = client.expect_goaway(GoAwayCode::Shutdown);
        assert_eq!(before.len(), 1, "{before:?}");
        assert_eq!(before[0].payload, payload);
    }
    let report = server.join();
    assert!(!report.forced, "{report}");
}

#[test]
fn the_drain_answers_a_busy_tls_client_then_sends_goaway_1_then_close_notify() {
    let certs = Certs::new();
    let (service, gate) = gate();
    let (server, addr) = start_tls(config(&certs), service);
    let mut busy = ClientSetup::new(&certs)
        .connect(addr)
        .expect("the busy client's handshake");
    busy.send(DATA, SLOW).unwrap();
    gate.wait_started(SLOW);

    server.handle().shutdown();
    gate.release();
    assert_eq!(
        busy.recv().unwrap(),
        Some((DATA, SLOW.to_vec())),
        "the reply in progress"
    );
    expect_goaway_then_close_notify(&mut busy, GoAwayCode::Shutdown);
    let report = server.join();
    assert!(!report.forced, "{report}");
}

#[test]
fn a_forced_close_sends_no_goaway_to_a_tls_request_inside_the_service() {
    let certs = Certs::new();
    let config = Config {
        grace: Duration::from_millis(500),
        ..config(&certs)
    };
    let (service, gate) = gate();
    let (server, addr) = start_tls(config, service);
    let mut busy = ClientSetup::new(&certs)
        .connect(addr)
        .expect("the busy client's handshake");
    busy.send(DATA, SLOW).unwrap();
    gate.wait_started(SLOW);

    server.handle().shutdown();
    // Past the grace the server closes it: the request may have run, so no
    // GOAWAY 1 (which would promise it did not).
    match busy.recv() {
        Ok(None) | Err(_) => {}
        Ok(Some((kind, payload))) => panic!(
            "a forced close sent a frame of kind {kind}: {:?}",
            String::from_utf8_lossy(&payload)
        ),
    }
    let report = server.join();
    assert!(report.forced, "past the grace: {report}");
    drop(gate);
}

#[test]
fn a_malformed_stream_over_tls_gets_its_goaway_then_close_notify() {
    let certs = Certs::new();
    let config = Config {
        max_frame: 1024,
        ..config(&certs)
    };
    let (server, addr) = start_tls(config, Echo::default());
    let setup = ClientSetup::new(&certs);
    // len = 0: GOAWAY 4. len > max_frame: GOAWAY 5, from the length alone.
    for (header, code) in [
        (0u32.to_be_bytes(), GoAwayCode::ProtocolError),
        (4096u32.to_be_bytes(), GoAwayCode::FrameTooLarge),
    ] {
        let mut client = setup.connect(addr).expect("handshake");
        client.echo(b"first a good one");
        std::io::Write::write_all(&mut client.0, &header).unwrap();
        std::io::Write::flush(&mut client.0).unwrap();
        expect_goaway_then_close_notify(&mut client, code);
    }
    server.handle().shutdown();
    assert!(!server.join().forced);
}

/// The TLS record content types in `raw` (TLS 1.2: an alert travels as an
/// alert record, application data as application data).
fn record_types(raw: &[u8]) -> Vec<u8> {
    let mut types = Vec::new();
    let mut at = 0;
    while at + 5 <= raw.len() {
        types.push(raw[at]);
        at += 5 + u16::from_be_bytes([raw[at + 3], raw[at + 4]]) as usize;
    }
    assert_eq!(at, raw.len(), "whole records");
    types
}

#[test]
fn over_tls_1_2_the_close_notify_alert_follows_the_last_reply_on_the_wire() {
    const APPLICATION_DATA: u8 = 23;
    const ALERT: u8 = 21;
    let certs = Certs::new();
    let (service, gate) = gate();
    let (server, addr) = start_tls(config(&certs), service);
    let mut busy = ClientSetup {
        versions: common::tls::TLS12_ONLY,
        ..ClientSetup::new(&certs)
    }
    .connect(addr)
    .expect("handshake");
    busy.send(DATA, SLOW).unwrap();
    gate.wait_started(SLOW);
    server.handle().shutdown();
    gate.release();
    // What the server sends from here on, as it comes off the socket.
    let mut raw = Vec::new();
    std::io::Read::read_to_end(&mut busy.0.sock, &mut raw).expect("read to the end");
    let types = record_types(&raw);
    assert_eq!(
        types.last(),
        Some(&ALERT),
        "the close_notify alert comes last: record types {types:?}"
    );
    assert!(
        types[..types.len() - 1]
            .iter()
            .all(|&t| t == APPLICATION_DATA)
            && types.len() >= 2,
        "the reply and the GOAWAY before the alert: record types {types:?}"
    );
    assert!(!server.join().forced);
}
