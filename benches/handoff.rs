//! Hand-offs, end to end on a real in-process server: what it costs a
//! request when its connection changes hands. Run with
//! `cargo bench --bench handoff`.
//!
//! - `request_on_open_connection`: one 64 B round trip on an open
//!   connection, 4 workers. The connection rests between requests, so each
//!   request is a whole hand-off: the kernel puts the resting connection in
//!   line and wakes a waiting worker, which reads, answers, writes and arms
//!   it again.
//! - `connect_request_close`: the same, on a new connection each time; the
//!   difference is what a new connection costs: connect and accept, the
//!   line, and a worker picking it up (plus the client's connect and close).
//! - `two_connections_in_turn_on_one_worker`: one worker, two open
//!   connections used in turn: the same hand-off with the one worker
//!   serving both.
//!
//! The client closes with a reset (`SO_LINGER` 0) rather than a FIN. With
//! a FIN the client side keeps every closed connection in TIME_WAIT, and
//! the tens of thousands of connections criterion makes in a few seconds
//! use up the ephemeral ports to the one server address: `connect()` then
//! stalls for hundreds of milliseconds now and then (the kernel reuses a
//! TIME_WAIT port only once it is about 1 s old), and those stalls, not
//! the server, dominated the mean. The server sees the reset after it has
//! written the echo, as it would from a health checker.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use wharf::{Config, Echo, Framing, Server};

const PAYLOAD: usize = 64;

fn connect(addr: SocketAddr) -> TcpStream {
    let stream =
        TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connect to wharf");
    stream.set_nodelay(true).expect("TCP_NODELAY");
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("read timeout");
    stream
}

/// One request and its verified echo.
fn round_trip(stream: &mut TcpStream, request: &[u8], reply: &mut [u8]) {
    stream.write_all(request).expect("send request");
    stream.read_exact(reply).expect("read echo");
    assert_eq!(reply, request, "the echo differs from the request");
}

fn handoff(c: &mut Criterion) {
    let config = Config {
        workers: 4,
        ..Config::default()
    };
    let server = Server::start("127.0.0.1:0", config, Echo::default()).expect("start wharf");
    let addr = server.local_addr();
    let payload: Vec<u8> = (0..PAYLOAD).map(|i| i as u8).collect();
    let mut request = Vec::new();
    Framing::Length.encode_data(&payload, &mut request);
    let mut reply = vec![0; request.len()];

    let mut group = c.benchmark_group("handoff");
    group
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    group.bench_function("request_on_open_connection", |b| {
        let mut stream = connect(addr);
        b.iter(|| round_trip(&mut stream, &request, &mut reply));
    });
    group.bench_function("connect_request_close", |b| {
        b.iter(|| {
            let mut stream = connect(addr);
            round_trip(&mut stream, &request, &mut reply);
            socket2::SockRef::from(&stream)
                .set_linger(Some(Duration::ZERO))
                .expect("SO_LINGER");
        });
    });
    group.finish();
    server.handle().shutdown();
    let report = server.join();
    assert!(!report.forced, "the server did not drain cleanly");

    let mut group = c.benchmark_group("handoff");
    group
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    let one_worker = Config {
        workers: 1,
        ..Config::default()
    };
    let server = Server::start("127.0.0.1:0", one_worker, Echo::default()).expect("start wharf");
    group.bench_function("two_connections_in_turn_on_one_worker", |b| {
        let mut streams = [connect(server.local_addr()), connect(server.local_addr())];
        let mut turn = 0;
        b.iter(|| {
            turn ^= 1;
            round_trip(&mut streams[turn], &request, &mut reply);
        });
    });
    group.finish();
    server.handle().shutdown();
    let report = server.join();
    eprintln!("handoff: one worker, two connections in turn: {report}");
}

criterion_group!(benches, handoff);
criterion_main!(benches);
