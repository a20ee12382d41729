//! Connections, workers and limits (docs/design.md, "How it works"): a resting
//! connection needs no worker to be ended. It is reaped with GOAWAY 2 at
//! its deadline, and sent GOAWAY 1 at once when the drain starts, even
//! while the only worker is inside a long request.
//!
//! Every test here fails on a server where a worker serves one connection
//! from accept to close (v1): there, a client beyond the pool size is never
//! served while the others stay connected. Time bounds are generous (CI is a
//! loaded 2-core machine); the protocol's "well under a millisecond" for a
//! hand-off is measured by the benchmarks, not asserted here.

mod common;

use std::thread;
use std::time::{Duration, Instant};

use common::resting::{one_worker, slow_echo};
use common::{start_with, Client};
use wharf::frame::DATA;
use wharf::{Config, GoAwayCode};

#[test]
fn resting_connections_are_reaped_with_goaway_2_while_the_only_worker_is_busy() {
    let heartbeat = Duration::from_millis(600);
    let interval = Duration::from_millis(50);
    let server = start_with(
        Config {
            heartbeat_timeout: heartbeat,
            reap_interval: interval,
            ..one_worker()
        },
        slow_echo,
    );
    let addr = server.local_addr();
    let mut quiet: Vec<Client> = (0..5)
        .map(|_| {
            let mut client = Client::connect(addr);
            client.ping(b"then silence");
            client
        })
        .collect();
    let went_quiet = Instant::now();
    // The only worker is inside the service for far longer than the
    // heartbeat: reaping the quiet ones must not need it.
    let mut busy = Client::connect(addr);
    busy.send(DATA, b"slow 3000");
    for client in &mut quiet {
        client.expect_goaway(GoAwayCode::HeartbeatTimeout);
    }
    let reaped_after = went_quiet.elapsed();
    println!("FIGURES resting_reaped: all 5 reaped after {reaped_after:?}");
    assert!(
        reaped_after >= heartbeat,
        "reaped before the deadline: {reaped_after:?}"
    );
    assert!(
        reaped_after < Duration::from_millis(2500),
        "reaped only after {reaped_after:?}, while the worker was busy until 3 s"
    );
    assert_eq!(busy.recv().expect("the slow reply").payload, b"slow 3000");
    server.handle().shutdown();
    let report = server.join();
    assert_eq!(report.reaped, 5, "{report}");
}

#[test]
fn resting_connections_get_goaway_1_at_once_when_the_drain_starts() {
    let server = start_with(one_worker(), slow_echo);
    let addr = server.local_addr();
    let mut quiet: Vec<Client> = (0..10)
        .map(|_| {
            let mut client = Client::connect(addr);
            client.ping(b"quiet");
            client
        })
        .collect();
    let mut busy = Client::connect(addr);
    busy.send(DATA, b"slow 2000");
    thread::sleep(Duration::from_millis(200));
    let handle = server.handle();
    let started = Instant::now();
    handle.shutdown();
    for client in &mut quiet {
        let before = client.expect_goaway(GoAwayCode::Shutdown);
        assert!(before.is_empty(), "{before:?}");
    }
    let quiet_done = started.elapsed();
    // The request in progress still finishes, then GOAWAY 1.
    let before = busy.expect_goaway(GoAwayCode::Shutdown);
    assert_eq!(before.len(), 1);
    assert_eq!(before[0].payload, b"slow 2000");
    println!("FIGURES resting_drained: 10 quiet connections closed in {quiet_done:?}");
    assert!(
        quiet_done < Duration::from_millis(1500),
        "quiet connections waited {quiet_done:?}, as if for the busy worker"
    );
    let report = server.join();
    assert!(!report.forced, "{report}");
}
