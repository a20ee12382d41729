//! Helpers of the graceful shutdown tests (`shutdown_*.rs`): services that
//! tell the test when a request has started, `server.join()` bounded in
//! time, and the checks of what a client sees once the server stops.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::mpsc::{self, Receiver};
use std::sync::Mutex;
use std::time::Duration;

use wharf::{Config, Framing, Report, Response, Server, Service, ServiceError};

use super::{config, Client, Received};

/// How long a test waits for the service to report that a request started.
pub const STARTED_WITHIN: Duration = Duration::from_secs(10);

/// An echo service that reports each request's payload on a channel as soon
/// as it starts, then sleeps `delay` before answering.
pub fn notifying(delay: Duration) -> (impl Service, Receiver<Vec<u8>>) {
    let (tx, rx) = mpsc::channel();
    let tx = Mutex::new(tx);
    let service = move |request: &[u8], response: &mut Response<'_>| -> Result<(), ServiceError> {
        let _ = tx.lock().unwrap().send(request.to_vec());
        std::thread::sleep(delay);
        response.extend_from_slice(request);
        Ok(())
    };
    (service, rx)
}

/// Waits for the service to report that it started on `payload`.
pub fn wait_started(started: &Receiver<Vec<u8>>, payload: &[u8]) {
    let got = started
        .recv_timeout(STARTED_WITHIN)
        .expect("the service starts the request");
    assert_eq!(got, payload, "the request the service started");
}

/// `server.join()` bounded in time: a drain that never finishes fails the
/// test instead of hanging it (the joining thread is left behind).
pub fn join_within(server: Server, within: Duration) -> Report {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(server.join());
    });
    rx.recv_timeout(within)
        .unwrap_or_else(|_| panic!("server.join() did not return within {within:?}"))
}

/// How long any drain in these tests may take before the test fails.
pub const JOIN_WITHIN: Duration = Duration::from_secs(15);

/// Reads frames until end-of-stream (or reset); panics on a read timeout.
pub fn read_to_close(client: &mut Client) -> Vec<Received> {
    let mut frames = Vec::new();
    for _ in 0..1000 {
        match client.recv() {
            Some(frame) => frames.push(frame),
            None => return frames,
        }
    }
    panic!("the server never closed the connection; got {frames:?}");
}

/// A config whose only difference from `config()` is the worker count and
/// the grace period.
pub fn config_with(workers: usize, grace: Duration) -> Config {
    Config {
        workers,
        grace,
        ..config()
    }
}

/// Asserts that a new connection to `addr` is never served: either the
/// connect is refused, or the connection reads end-of-stream / reset at once
/// instead of a reply.
pub fn assert_not_served(addr: SocketAddr) {
    let mut stream = match TcpStream::connect_timeout(&addr, Duration::from_secs(5)) {
        Err(e) => {
            assert_eq!(
                e.kind(),
                ErrorKind::ConnectionRefused,
                "connect after shutdown failed, but not by refusal: {e}"
            );
            return;
        }
        Ok(stream) => stream,
    };
    // Connected (a race with the kernel's accept queue): it must still not be
    // served. A write may already fail; that is fine.
    let mut request = Vec::new();
    Framing::Length.encode_data(b"late", &mut request);
    let _ = stream.write_all(&request);
    stream
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    let mut buf = [0u8; 64];
    match stream.read(&mut buf) {
        Ok(0) => {}
        Ok(n) => panic!(
            "a connection made after shutdown got {n} bytes: {:?}",
            &buf[..n]
        ),
        Err(e) if matches!(e.kind(), ErrorKind::ConnectionReset | ErrorKind::BrokenPipe) => {}
        Err(e) => panic!("a connection made after shutdown was neither refused nor closed: {e}"),
    }
}
