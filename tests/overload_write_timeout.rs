//! Overload rules (the protocol, "Overload" and the `--write-timeout`
//! flag): a client that does not read, or reads only a trickle, is dropped
//! after the write timeout, and the worker it held is free again.
//!
//! The tests of this file run one at a time (see
//! `common::overload::serial`): they depend on timing.

mod common;

use std::io::{ErrorKind, Write};
use std::net::TcpStream;
use std::thread;
use std::time::{Duration, Instant};

use common::overload::{one_worker, serial};
use common::{start, Client};
use wharf::{Config, Framing, Overload};

#[test]
fn a_client_that_does_not_read_is_dropped_after_the_write_timeout() {
    let _serial = serial();
    let server = start(Config {
        write_timeout: Duration::from_millis(300),
        ..one_worker(1, Overload::Reject)
    });
    assert_eq!(server.config().write_timeout, Duration::from_millis(300));
    let addr = server.local_addr();

    // 64 KiB echo requests, pipelined, never reading a response. At most
    // 1024 of them (64 MiB), far more than the socket buffers hold.
    let mut request = Vec::new();
    Framing::Length.encode_data(&vec![0x5a; 64 * 1024 - 1], &mut request);
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_write_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let started = Instant::now();
    let mut sent = 0usize;
    let error = loop {
        if sent == 1024 {
            panic!("sent 64 MiB without the server dropping a client that never reads");
        }
        match stream.write_all(&request) {
            Ok(()) => sent += 1,
            Err(e) => break e,
        }
    };
    let dropped_after = started.elapsed();
    assert!(
        matches!(
            error.kind(),
            ErrorKind::ConnectionReset | ErrorKind::BrokenPipe
        ),
        "writing failed with {error} ({:?}) rather than a dropped connection",
        error.kind()
    );
    assert!(
        dropped_after >= Duration::from_millis(300) - Duration::from_millis(50),
        "dropped after {dropped_after:?}, before the write timeout"
    );
    assert!(
        dropped_after <= Duration::from_secs(10),
        "dropped only after {dropped_after:?}"
    );
    assert!(sent > 1, "sent only {sent} requests");
    drop(stream);

    // The only worker is free again.
    let mut next = Client::connect(addr);
    next.echo(b"served after the write timeout");
    drop(next);

    server.handle().shutdown();
    let report = server.join();
    assert!(report.write_timeouts >= 1, "{report}");
    assert_eq!(report.reaped, 0, "{report}");
}

/// A client that reads, but only a trickle, is dropped once one batch of
/// responses has taken longer than the write timeout, although each single
/// write makes progress. (A regression: the timeout once bounded each write
/// call, so a trickling reader could hold a worker for ever.)
#[test]
fn a_client_that_reads_only_a_trickle_is_dropped_after_the_write_timeout() {
    use std::io::Read;
    let _serial = serial();
    let write_timeout = Duration::from_millis(500);
    let server = start(Config {
        write_timeout,
        ..one_worker(4, Overload::Reject)
    });
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    socket.connect(&server.local_addr().into()).unwrap();
    let mut stream: TcpStream = socket.into();
    stream
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    // 4 MiB of responses; at 20 KiB/s the batch would take minutes.
    let mut requests = Vec::new();
    for _ in 0..64 {
        Framing::Length.encode_data(&[7u8; 64 * 1024], &mut requests);
    }
    let writer = {
        let mut stream = stream.try_clone().unwrap();
        thread::spawn(move || {
            let _ = stream.write_all(&requests);
        })
    };
    let started = Instant::now();
    let mut chunk = [0u8; 1024];
    let dropped_after = loop {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "a trickling reader was still connected after 20 s"
        );
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => break started.elapsed(),
            Ok(_) => thread::sleep(Duration::from_millis(50)),
        }
    };
    let _ = stream.shutdown(std::net::Shutdown::Both);
    let _ = writer.join();
    println!("trickling reader dropped after {dropped_after:?}");
    // Within a few write timeouts (one per batch of responses), not minutes.
    assert!(dropped_after < Duration::from_secs(10), "{dropped_after:?}");
    server.handle().shutdown();
    let report = server.join();
    assert_eq!(report.write_timeouts, 1, "{report}");
}
