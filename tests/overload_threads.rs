//! Overload rules (the protocol, "Overload"): the thread count does not
//! grow with the number of clients.
//!
//! The test reads the whole process's thread count, which other tests'
//! servers would disturb: it is alone in its test binary (and takes
//! `common::overload::serial` like every overload test).

mod common;

use std::thread;
use std::time::Duration;

use common::overload::serial;
use common::{config, start, Client};
use wharf::{Config, Overload};

/// Threads of this process, from /proc/self/task.
fn thread_count() -> usize {
    std::fs::read_dir("/proc/self/task")
        .expect("/proc/self/task")
        .count()
}

#[test]
fn the_thread_count_does_not_grow_with_the_number_of_clients() {
    let _serial = serial();
    let server = start(Config {
        workers: 4,
        queue: 256,
        overload: Overload::Reject,
        heartbeat_timeout: Duration::from_secs(30),
        reap_interval: Duration::from_millis(100),
        ..config()
    });
    let addr = server.local_addr();
    let before = thread_count();

    let mut clients: Vec<Client> = (0..200).map(|_| Client::connect(addr)).collect();
    // The first four are being served at once, one per worker.
    for (i, client) in clients.iter_mut().take(4).enumerate() {
        client.ping(format!("client {i}").as_bytes());
    }
    // Sample for a while: the count stays put with 200 clients connected.
    let mut peak = thread_count();
    for _ in 0..20 {
        thread::sleep(Duration::from_millis(20));
        peak = peak.max(thread_count());
    }
    assert!(
        peak <= before + 2,
        "threads grew from {before} to {peak} with 200 clients connected"
    );
    // None of them was turned away.
    for client in clients.iter_mut().take(4) {
        client.echo(b"still served");
    }

    server.handle().shutdown();
    let report = server.join();
    drop(clients);
    assert_eq!(report.accepted, 200, "{report}");
    assert_eq!(report.rejected_busy, 0, "{report}");
}
