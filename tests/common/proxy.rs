//! The end-to-end rig of the retry tests (`retry_end_to_end.rs`,
//! `retry_cli.rs`): a small forwarding proxy (a stand-in for a load
//! balancer) in front of real in-process servers, services that record
//! every request they run, and a drain of the first server once it has
//! requests in flight, with new connections sent to a second server.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use wharf::{Config, Response, Server, ServiceError};

use super::fake::lock;
use crate::common;

/// A stand-in for a load balancer: forwards each connection to the current
/// target, so a test can move new connections to a second server.
pub struct Proxy {
    pub addr: SocketAddr,
    target: Arc<Mutex<SocketAddr>>,
}

impl Proxy {
    pub fn start(target: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let target = Arc::new(Mutex::new(target));
        let current = Arc::clone(&target);
        thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { return };
                let to = *lock(&current);
                let Ok(server) = TcpStream::connect(to) else {
                    continue; // dropping the client refuses it, roughly
                };
                for (from, to) in [
                    (client.try_clone().unwrap(), server.try_clone().unwrap()),
                    (server, client),
                ] {
                    thread::spawn(move || pipe(from, to));
                }
            }
        });
        Proxy { addr, target }
    }
}

/// Copies one direction; passes an end of stream on as a half-close.
fn pipe(mut from: TcpStream, mut to: TcpStream) {
    let mut buf = [0u8; 16 * 1024];
    loop {
        match from.read(&mut buf) {
            Ok(0) => {
                let _ = to.shutdown(Shutdown::Write);
                return;
            }
            Ok(n) => {
                if to.write_all(&buf[..n]).is_err() {
                    let _ = from.shutdown(Shutdown::Both);
                    return;
                }
            }
            Err(_) => {
                let _ = to.shutdown(Shutdown::Both);
                return;
            }
        }
    }
}

/// An echo service that records every request it runs and takes `delay`
/// over each, so a drain finds requests in flight.
pub fn recording(delay: Duration) -> (impl wharf::Service, Arc<Mutex<Vec<Vec<u8>>>>) {
    let log = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&log);
    let service = move |request: &[u8], response: &mut Response<'_>| {
        lock(&sink).push(request.to_vec());
        thread::sleep(delay);
        response.extend_from_slice(request);
        Ok::<(), ServiceError>(())
    };
    (service, log)
}

pub fn server_config() -> Config {
    Config {
        workers: 1,
        ..common::config()
    }
}

/// Drains `server` from another thread; the handle joins it.
fn drain(server: Server) -> JoinHandle<wharf::Report> {
    server.handle().shutdown();
    thread::spawn(move || server.join())
}

/// Once `server` has started `started` requests (as `ran` records), points
/// the proxy at `next` and drains `server`; the handle joins it.
pub fn drain_after(
    server: Server,
    started: usize,
    ran: &Arc<Mutex<Vec<Vec<u8>>>>,
    proxy: &Proxy,
    next: SocketAddr,
) -> JoinHandle<wharf::Report> {
    let ran = Arc::clone(ran);
    let target = Arc::clone(&proxy.target);
    thread::spawn(move || {
        assert!(
            common::eventually(Duration::from_secs(20), || lock(&ran).len() >= started),
            "the server never started {started} requests"
        );
        *lock(&target) = next;
        drain(server).join().unwrap()
    })
}

/// Checks that A ran a prefix of `all` and B exactly the rest, in order:
/// every request ran once, whichever server ran it. Returns how many A ran.
pub fn ran_once_each(all: &[String], ran_a: &[Vec<u8>], ran_b: &[Vec<u8>]) -> usize {
    let all: Vec<Vec<u8>> = all.iter().map(|r| r.as_bytes().to_vec()).collect();
    let k = ran_a.len();
    assert_eq!(ran_a, &all[..k], "A ran a prefix, in order");
    assert_eq!(
        ran_b,
        &all[k..],
        "B ran exactly the rest, in order, once each"
    );
    k
}
