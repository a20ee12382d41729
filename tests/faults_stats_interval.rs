//! The periodic stats log of the real `wharf` binary (`--stats-interval`):
//! every counter, following activity, periodic and not a flood; nothing is
//! logged without the flag.
//!
//! Every test checks that a good client is served once the fault is over (or,
//! after a shutdown, that the listener is really gone), and prints one
//! `FIGURES <test>: ...` line with what it observed, for docs/reliability.md.
//! Every loop is bounded in count and time, every bound is generous (CI is a
//! loaded 2-core machine), and no test asserts on speed. Children are killed
//! by PID if a test fails midway.

mod common;

use std::time::{Duration, Instant};

use common::faults::{counter, dump_log};
use common::{eventually, spawn_wharf, Client};

// ---------------------------------------------------------------------------
// --stats-interval.
// ---------------------------------------------------------------------------

const STAT_COUNTERS: [&str; 8] = [
    "accepted",
    "active",
    "queued",
    "rejected_busy",
    "reaped",
    "protocol_errors",
    "write_timeouts",
    "accept_errors",
];

fn stats_lines(log: &str) -> Vec<String> {
    log.lines()
        .filter(|l| l.contains("stats:"))
        .map(str::to_owned)
        .collect()
}

#[test]
fn stats_interval_logs_counters_that_follow_activity() {
    let mut server = spawn_wharf(&["--workers", "2", "--stats-interval", "200ms"]);
    let started = Instant::now();

    // Periodic lines appear with every counter, all zero before any client.
    assert!(
        eventually(Duration::from_secs(10), || stats_lines(&server.log()).len()
            >= 2),
        "fewer than 2 stats lines; log:\n{}",
        server.log()
    );
    let first = stats_lines(&server.log())[0].clone();
    for name in STAT_COUNTERS.iter().chain(&["requests"]) {
        assert_eq!(counter(&first, name), Some(0), "{name} in {first:?}");
    }

    // One client, served, still connected and quiet: accepted=1, open=1 and
    // resting (a quiet connection holds no worker), requests>=2.
    let mut client = Client::connect(server.addr);
    client.echo(b"one");
    client.ping(b"two");
    let with_client = Instant::now();
    let seen_active = eventually(Duration::from_secs(10), || {
        stats_lines(&server.log()).iter().any(|l| {
            counter(l, "accepted") == Some(1)
                && counter(l, "open") == Some(1)
                && counter(l, "resting") == Some(1)
                && counter(l, "requests").is_some_and(|n| n >= 2)
        })
    });
    assert!(
        seen_active,
        "no stats line with accepted=1 open=1 resting=1 requests>=2; log:\n{}",
        server.log()
    );
    let active_after = with_client.elapsed();

    // The client leaves: active goes back to 0, accepted stays 1.
    drop(client);
    let seen_gone = eventually(Duration::from_secs(10), || {
        stats_lines(&server.log()).iter().any(|l| {
            counter(l, "accepted") == Some(1)
                && counter(l, "active") == Some(0)
                && counter(l, "requests").is_some_and(|n| n >= 2)
        })
    });
    assert!(
        seen_gone,
        "no stats line with active=0 after the client left; log:\n{}",
        server.log()
    );

    // A good client is still served.
    Client::connect(server.addr).echo(b"good client");

    let elapsed = started.elapsed();
    server.signal(libc::SIGTERM);
    let status = server.wait_exit(Duration::from_secs(15)).expect("exit");
    let log = server.log();
    dump_log(&log);
    assert_eq!(status.code(), Some(0), "log:\n{log}");
    let lines = stats_lines(&log);
    // Periodic, not a flood: about one per 200 ms; bounds are loose.
    let expected = elapsed.as_secs_f64() / 0.2;
    assert!(
        (lines.len() as f64) <= expected * 1.5 + 5.0,
        "{} stats lines in {elapsed:?}",
        lines.len()
    );
    let last = lines.last().unwrap().clone();
    for name in STAT_COUNTERS {
        assert!(counter(&last, name).is_some(), "{name} missing in {last:?}");
    }

    // Without the flag: no stats lines at all.
    let mut quiet = spawn_wharf(&["--workers", "2"]);
    Client::connect(quiet.addr).echo(b"good client");
    std::thread::sleep(Duration::from_millis(1000));
    quiet.signal(libc::SIGTERM);
    let status = quiet.wait_exit(Duration::from_secs(15)).expect("exit");
    let quiet_log = quiet.log();
    assert_eq!(status.code(), Some(0), "log:\n{quiet_log}");
    assert_eq!(
        stats_lines(&quiet_log).len(),
        0,
        "stats lines without --stats-interval:\n{quiet_log}"
    );

    println!(
        "FIGURES stats_interval_logs_counters_that_follow_activity: {} stats lines in {:.2}s \
         at 200ms (expected ~{expected:.0}); client reflected (accepted=1 open=1 resting=1) within \
         {:.2}s; last line: {}; 0 stats lines without the flag",
        lines.len(),
        elapsed.as_secs_f64(),
        active_after.as_secs_f64(),
        last.split("stats: ").nth(1).unwrap_or(&last),
    );
}
