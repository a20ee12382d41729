//! TLS under stalls and limits (contract v3 §5, "The handshake is work,
//! not waiting" and "Turned away before the handshake"):
//!
//! - a client that connects and sends nothing, or stops half-way through
//!   its ClientHello, holds no worker, and is closed at the handshake
//!   timeout without the server sending a byte (`result="timeout"`);
//! - a thousand such clients do not slow a good one down;
//! - a TLS connection turned away at accept (`max_connections`), or that
//!   waits in line past its handshake deadline, gets neither a handshake
//!   nor a GOAWAY, and counts under its turn-away reason, in no handshake
//!   result.
//!
//! Real server, real sockets on 127.0.0.1; timing bounds are generous (a
//! loaded 2-core machine).

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::gate::{gate, SLOW};
use common::hostile::raise_nofile;
use common::metrics::{metrics_addr, scrape, value, wait_for, with_metrics};
use common::scrape::handshakes;
use common::tls::{bytes_until_closed, start_tls, Certs, ClientSetup};
use common::Client;
use wharf::{Config, Echo, Overload};

/// How many bytes of a real ClientHello a stalled client sends.
const HALF_HELLO: usize = 20;

fn config(certs: &Certs) -> Config {
    with_metrics(Config {
        tls: Some(certs.settings()),
        ..common::config()
    })
}

fn connect_raw(addr: std::net::SocketAddr) -> TcpStream {
    let stream = TcpStream::connect(addr).expect("connect");
    stream.set_read_timeout(Some(common::READ_TIMEOUT)).unwrap();
    stream
}

/// Whether the server still holds `stream` open having sent nothing: a
/// read without waiting finds no byte and no end.
fn open_and_silent(stream: &TcpStream) -> bool {
    stream.set_nonblocking(true).unwrap();
    let mut byte = [0u8; 1];
    let open = matches!((&*stream).read(&mut byte), Err(e) if e.kind() == ErrorKind::WouldBlock);
    stream.set_nonblocking(false).unwrap();
    open
}

#[test]
fn silent_and_half_hello_clients_hold_no_worker_and_are_closed_at_the_handshake_timeout() {
    let certs = Certs::new();
    let timeout = Duration::from_millis(1500);
    let config = Config {
        workers: 1,
        handshake_timeout: timeout,
        ..config(&certs)
    };
    let (server, addr) = start_tls(config, Echo::default());
    let setup = ClientSetup::new(&certs);
    let hello = setup.client_hello();
    assert!(
        hello.len() > HALF_HELLO,
        "a ClientHello of {} bytes",
        hello.len()
    );

    let started = Instant::now();
    let mut silent = connect_raw(addr);
    let mut half = connect_raw(addr);
    half.write_all(&hello[..HALF_HELLO]).unwrap();

    // The only worker is not theirs: a good client is served meanwhile.
    let mut good = setup.connect(addr).expect("a good client's handshake");
    good.echo(b"served while two stall");
    let served = started.elapsed();
    assert!(
        open_and_silent(&silent) && open_and_silent(&half),
        "the stalled clients are still open, and were sent nothing, when the good \
         one is served ({served:?} after they connected)"
    );

    for (name, stream) in [("silent", &mut silent), ("half hello", &mut half)] {
        let got = bytes_until_closed(stream);
        let took = started.elapsed();
        assert_eq!(got, 0, "the {name} client was sent {got} bytes");
        assert!(
            took >= timeout - Duration::from_millis(200),
            "the {name} client was closed after {took:?}, before the handshake timeout"
        );
        assert!(
            took <= timeout + Duration::from_secs(3),
            "the {name} client was closed only after {took:?}"
        );
    }
    // The good client's handshake completed: the handshake timeout no longer
    // applies to it.
    good.echo(b"still here");

    let text = wait_for(
        metrics_addr(&server),
        "wharf_tls_handshakes_total{result=\"timeout\"}",
        2.0,
    );
    assert_eq!(handshakes(&text, "ok"), 1.0);
    assert_eq!(handshakes(&text, "failed"), 0.0);
    assert_eq!(
        value(
            &text,
            "wharf_connections_rejected_total{reason=\"queue_deadline\"}"
        ),
        0.0,
        "they rested, not waited in line"
    );
    server.handle().shutdown();
    assert!(!server.join().forced);
}

#[test]
fn a_thousand_stalled_handshakes_do_not_delay_a_good_client() {
    const STALLED: usize = 1000;
    let limit = raise_nofile();
    assert!(
        limit >= 3 * STALLED as libc::rlim_t,
        "the descriptor limit ({limit}) is too low for this test"
    );
    let certs = Certs::new();
    let config = Config {
        workers: 2,
        // Room in line for all of them at once: they arrive faster than two
        // workers look at them (each is turned into a resting one in turn).
        queue: 2 * STALLED,
        max_connections: 4 * STALLED,
        handshake_timeout: Duration::from_secs(60),
        ..config(&certs)
    };
    let (server, addr) = start_tls(config, Echo::default());
    let metrics = metrics_addr(&server);
    let setup = ClientSetup::new(&certs);
    let hello = setup.client_hello();

    let opening = Instant::now();
    let mut stalled = Vec::with_capacity(STALLED);
    for i in 0..STALLED {
        let mut stream = connect_raw(addr);
        if i % 2 == 1 {
            stream.write_all(&hello[..HALF_HELLO]).unwrap();
        }
        stalled.push(stream);
    }
    let opened = opening.elapsed();
    // Every one has been looked at by a worker and put aside.
    let text = wait_for(
        metrics,
        "wharf_connections{state=\"resting\"}",
        STALLED as f64,
    );
    assert_eq!(handshakes(&text, "ok"), 0.0);
    assert_eq!(
        handshakes(&text, "failed"),
        0.0,
        "a half hello is no error yet"
    );

    let mut slowest = Duration::ZERO;
    for i in 0..5 {
        let start = Instant::now();
        let mut good = setup.connect(addr).expect("a good client's handshake");
        good.echo(format!("good client {i}").as_bytes());
        slowest = slowest.max(start.elapsed());
    }
    println!(
        "FIGURES tls stalled={STALLED} workers=2 opened_in_ms={} good_client_slowest_of_5_ms={:.1}",
        opened.as_millis(),
        slowest.as_secs_f64() * 1000.0
    );
    assert!(
        slowest < Duration::from_secs(2),
        "a good client took {slowest:?} beside {STALLED} stalled handshakes"
    );
    let text = scrape(metrics);
    assert_eq!(handshakes(&text, "ok"), 5.0);
    assert_eq!(handshakes(&text, "timeout"), 0.0);

    // The drain closes them all without a word, and does not wait for them.
    let stopping = Instant::now();
    server.handle().shutdown();
    let report = server.join();
    assert!(!report.forced, "{report}");
    let stopped = stopping.elapsed();
    assert!(
        stopped < Duration::from_secs(5),
        "the drain took {stopped:?}"
    );
    for (i, stream) in stalled.iter_mut().enumerate() {
        assert_eq!(
            bytes_until_closed(stream),
            0,
            "stalled client {i} was sent bytes"
        );
    }
}

#[test]
fn a_tls_connection_over_max_connections_gets_no_handshake_and_no_goaway() {
    let certs = Certs::new();
    let config = Config {
        max_connections: 1,
        overload: Overload::Reject,
        ..config(&certs)
    };
    let (server, addr) = start_tls(config, Echo::default());
    let setup = ClientSetup::new(&certs);
    let mut first = setup.connect(addr).expect("the first client's handshake");
    first.echo(b"the one allowed");

    // One over the limit says hello; one says nothing. Neither gets a byte.
    let mut hello = connect_raw(addr);
    hello.write_all(&setup.client_hello()).unwrap();
    assert_eq!(
        bytes_until_closed(&mut hello),
        0,
        "a ServerHello or a GOAWAY"
    );
    let mut silent = connect_raw(addr);
    assert_eq!(bytes_until_closed(&mut silent), 0, "a GOAWAY");
    // A rustls client sees the connection end, not an alert.
    let error = setup
        .connect(addr)
        .err()
        .expect("no handshake over the limit");
    assert!(
        common::tls::rustls_error(&error).is_none(),
        "a TLS error means the server spoke TLS: {error:?}"
    );

    let text = wait_for(
        metrics_addr(&server),
        "wharf_connections_rejected_total{reason=\"max_connections\"}",
        3.0,
    );
    for result in ["failed", "timeout"] {
        assert_eq!(handshakes(&text, result), 0.0, "{result}");
    }
    assert_eq!(handshakes(&text, "ok"), 1.0);
    first.echo(b"undisturbed");
    server.handle().shutdown();
    assert!(!server.join().forced);
}

#[test]
fn a_tls_connection_waiting_in_line_past_its_handshake_deadline_is_closed_silently() {
    let certs = Certs::new();
    let timeout = Duration::from_secs(1);
    let config = Config {
        workers: 1,
        handshake_timeout: timeout,
        ..config(&certs)
    };
    let (service, gate) = gate();
    let (server, addr) = start_tls(config, service);
    // The only worker is busy in the service.
    let mut busy = Client::connect(server.local_addr());
    busy.send(wharf::frame::DATA, SLOW);
    gate.wait_started(SLOW);

    let setup = ClientSetup::new(&certs);
    let started = Instant::now();
    let mut waiting = connect_raw(addr);
    waiting.write_all(&setup.client_hello()).unwrap();
    assert_eq!(
        bytes_until_closed(&mut waiting),
        0,
        "a handshake or a GOAWAY"
    );
    let took = started.elapsed();
    assert!(
        took >= timeout - Duration::from_millis(200) && took <= timeout + Duration::from_secs(3),
        "closed after {took:?}, the handshake timeout being {timeout:?}"
    );

    let text = wait_for(
        metrics_addr(&server),
        "wharf_connections_rejected_total{reason=\"queue_deadline\"}",
        1.0,
    );
    for result in ["ok", "failed", "timeout"] {
        assert_eq!(handshakes(&text, result), 0.0, "{result}");
    }

    // The busy request is answered, and TLS clients are served again.
    gate.release();
    assert_eq!(busy.recv().expect("the held reply").payload, SLOW);
    let mut later = setup
        .connect(addr)
        .expect("a handshake once a worker is free");
    later.echo(b"later");
    server.handle().shutdown();
    assert!(!server.join().forced);
}
