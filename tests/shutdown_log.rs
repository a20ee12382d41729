//! The drain's log lines through the real binary, as an operator reads
//! them during an incident: the counts in `shutdown: N quiet connection(s)
//! sent GOAWAY 1; waiting ... for M connection(s) with a request in the
//! service` add up to the connections open at that moment, each counted
//! once; without a drain delay no line speaks of one; with a drain delay a
//! signal is reported once, not twice.

mod common;

use std::time::{Duration, Instant};

use common::{spawn_wharf, Client, Wharf};
use wharf::frame::DATA;
use wharf::GoAwayCode;

/// The counts of the drain's line: (quiet, with a request in the service).
fn drain_counts(log: &str) -> Option<(u64, u64)> {
    let line = log
        .lines()
        .find(|l| l.contains("quiet connection(s) sent GOAWAY 1"))?;
    let after = line.split("shutdown: ").nth(1)?;
    let quiet = after.split_whitespace().next()?.parse().ok()?;
    let held = line
        .split(" for ")
        .last()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    Some((quiet, held))
}

/// Waits (at most 10 s) for the drain's line and for the process to exit.
fn stopped(mut wharf: Wharf) -> String {
    let status = wharf.wait_exit(Duration::from_secs(10));
    assert!(status.is_some(), "did not exit:\n{}", wharf.log());
    wharf.log()
}

#[test]
fn idle_clients_are_all_counted_quiet_every_time() {
    for idle in [1, 5] {
        let wharf = spawn_wharf(&["--workers", "2"]);
        let mut clients: Vec<Client> = (0..idle).map(|_| Client::connect(wharf.addr)).collect();
        for client in &mut clients {
            client.echo(b"then idle");
        }
        // Let every worker let go of its connection.
        std::thread::sleep(Duration::from_millis(200));
        wharf.signal(libc::SIGTERM);
        for client in &mut clients {
            client.expect_goaway(GoAwayCode::Shutdown);
        }
        let log = stopped(wharf);
        assert_eq!(drain_counts(&log), Some((idle, 0)), "{log}");
    }
}

#[test]
fn a_request_in_the_service_is_counted_apart_from_the_idle_ones() {
    let wharf = spawn_wharf(&["--workers", "2", "--delay", "1500ms"]);
    let mut idle: Vec<Client> = (0..2).map(|_| Client::connect(wharf.addr)).collect();
    for client in &mut idle {
        client.ping(b"idle");
    }
    let mut busy = Client::connect(wharf.addr);
    busy.send(DATA, b"slow");
    // The service holds it for 1.5 s: signal well inside that.
    std::thread::sleep(Duration::from_millis(400));
    wharf.signal(libc::SIGTERM);
    for client in &mut idle {
        client.expect_goaway(GoAwayCode::Shutdown);
    }
    let replies = busy.expect_goaway(GoAwayCode::Shutdown);
    assert_eq!(replies.len(), 1, "the slow request is answered first");
    let log = stopped(wharf);
    assert_eq!(drain_counts(&log), Some((2, 1)), "{log}");
}

#[test]
fn without_a_drain_delay_no_line_speaks_of_one() {
    // The line came from a race between the stop and the drain (about 2
    // runs in 10): a few runs in a row would have shown it.
    let began = Instant::now();
    for _ in 0..6 {
        if began.elapsed() > Duration::from_secs(30) {
            break;
        }
        let wharf = spawn_wharf(&["--workers", "1"]);
        Client::connect(wharf.addr).echo(b"x");
        wharf.signal(libc::SIGTERM);
        let log = stopped(wharf);
        assert!(!log.contains("drain delay"), "{log}");
        assert_eq!(
            log.matches("received SIGTERM").count(),
            1,
            "one line for the signal:\n{log}"
        );
    }
}

#[test]
fn with_a_drain_delay_one_signal_is_reported_once() {
    let wharf = spawn_wharf(&["--workers", "1", "--drain-delay", "300ms"]);
    Client::connect(wharf.addr).echo(b"x");
    wharf.signal(libc::SIGTERM);
    let log = stopped(wharf);
    assert_eq!(
        log.matches("drain delay of").count(),
        1,
        "the drain delay is announced once:\n{log}"
    );
}
