//! What the operator reads in the log of the real `wharf` binary (the
//! docs/operating.md, "Logs"): startup failures and warnings in `--log-file` as on
//! stderr, warnings only about settings the operator made, overload at
//! warn level without a line per connection, the access log at debug
//! level, and the form of the lines.
//!
//! Every child is started by this test process and stopped by PID: the
//! `Wharf` helper kills its child on drop, and `run_wharf` kills its own
//! child if it outlives its time bound.

mod common;

use common::{run_wharf, TempLog};

use std::net::{Ipv4Addr, TcpListener};
use std::time::{Duration, Instant};

/// A log line without its leading time stamp.
fn unstamped(line: &str) -> &str {
    line.split_once(' ').map_or(line, |(_, rest)| rest)
}

/// The lines of `text` that are not blank.
fn lines(text: &str) -> Vec<&str> {
    text.lines().filter(|l| !l.trim().is_empty()).collect()
}

/// A failure to start reaches `--log-file` as well as stderr: the same one
/// error line in both, and exit 1.
#[test]
fn a_failure_to_start_is_in_the_log_file_too() {
    let taken = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind 127.0.0.1:0");
    let addr = taken.local_addr().unwrap().to_string();
    let file = TempLog::new("in-use");
    let run = run_wharf(
        &["serve", "--bind", &addr, "--log-file", file.as_str()],
        Duration::from_secs(10),
    );
    drop(taken);
    assert_eq!(run.status.code(), Some(1), "stderr:\n{}", run.stderr);
    let on_stderr = lines(&run.stderr);
    assert_eq!(
        on_stderr.len(),
        1,
        "stderr is not one line:\n{}",
        run.stderr
    );
    assert!(on_stderr[0].contains("ERROR"), "{}", on_stderr[0]);
    assert!(on_stderr[0].contains("in use"), "{}", on_stderr[0]);
    assert!(on_stderr[0].contains(&addr), "{}", on_stderr[0]);
    // Each destination stamps its own copy, so the millisecond may differ.
    let logged = file.read();
    assert_eq!(
        lines(&logged)
            .into_iter()
            .map(unstamped)
            .collect::<Vec<_>>(),
        on_stderr.into_iter().map(unstamped).collect::<Vec<_>>(),
        "the log file does not hold the line stderr got:\n{logged}"
    );
}

/// A log file that cannot be opened cannot hold its own error: that one line
/// goes to stderr, naming the path, and the server does not start.
#[test]
fn a_log_file_that_cannot_be_opened_is_reported_on_stderr() {
    let dir = TempLog::new("no-such-dir");
    let path = dir.path().join("wharf.log");
    let path = path.to_str().expect("UTF-8 temp path");
    let run = run_wharf(
        &["serve", "--bind", "127.0.0.1:0", "--log-file", path],
        Duration::from_secs(10),
    );
    assert_eq!(run.status.code(), Some(1), "stderr:\n{}", run.stderr);
    let on_stderr = lines(&run.stderr);
    assert_eq!(
        on_stderr.len(),
        1,
        "stderr is not one line:\n{}",
        run.stderr
    );
    assert!(on_stderr[0].contains(path), "{}", on_stderr[0]);
    assert!(!run.stderr.contains("listening on"), "{}", run.stderr);
}

/// Stops a running `wharf` with SIGTERM and waits for exit 0.
fn stop(wharf: &mut common::Wharf) {
    wharf.signal(libc::SIGTERM);
    let status = wharf.wait_exit(Duration::from_secs(10));
    assert_eq!(
        status.and_then(|s| s.code()),
        Some(0),
        "exit after SIGTERM; log:\n{}",
        wharf.log()
    );
}

/// `--heartbeat-timeout 3s` alone lowers the default reap interval without
/// a word: the operator set no reap interval to be warned about.
#[test]
fn no_warning_about_a_reap_interval_that_was_not_given() {
    let mut wharf = common::spawn_wharf(&["--workers", "1", "--heartbeat-timeout", "3s"]);
    stop(&mut wharf);
    let log = wharf.log();
    assert!(!log.contains("reap-interval"), "{log}");
}

/// An explicit `--reap-interval` above heartbeat-timeout / 4 is lowered with
/// a warning, in words, on stderr and in the log file alike.
#[test]
fn an_explicit_reap_interval_too_long_is_warned_about_on_stderr_and_in_the_log_file() {
    let file = TempLog::new("reap");
    let mut wharf = common::spawn_wharf(&[
        "--workers",
        "1",
        "--heartbeat-timeout",
        "3s",
        "--reap-interval",
        "1s",
        "--log-file",
        file.as_str(),
    ]);
    stop(&mut wharf);
    let expected = "reap-interval 1.0 s is more than heartbeat-timeout / 4 (750 ms)";
    for (place, text) in [("stderr", wharf.log()), ("log file", file.read())] {
        let warning = text
            .lines()
            .find(|l| l.contains(expected))
            .unwrap_or_else(|| panic!("{place} lacks the warning:\n{text}"));
        assert!(warning.contains("[WARN]"), "{place}: {warning}");
        assert!(text.contains("listening on"), "{place}:\n{text}");
    }
}

/// The counts of the `turned away N connection(s) with BUSY ...: <reason>`
/// lines of `log` whose reason contains `reason`.
fn turned_away_counts(log: &str, reason: &str) -> Vec<u64> {
    log.lines()
        .filter(|l| l.contains(reason))
        .filter_map(|l| l.split("turned away ").nth(1))
        .filter_map(|rest| rest.split_whitespace().next()?.parse().ok())
        .collect()
}

/// The value of `key=N` in the summary line.
fn summary_count(log: &str, key: &str) -> Option<u64> {
    let line = log.lines().rev().find(|l| l.contains("summary:"))?;
    line.split_whitespace()
        .find_map(|word| word.strip_prefix(key)?.strip_prefix('='))
        .and_then(|n| n.parse().ok())
}

/// Overload is visible at the default level: 40 clients turned away for
/// `--max-connections` give a few warn lines, not 40, whose counts add up
/// to the summary's; the end of the burst is reported without waiting for
/// another turn-away or for the drain.
#[test]
fn turned_away_connections_are_warned_about_about_once_a_second() {
    const TURNED_AWAY: u64 = 40;
    let mut wharf = common::spawn_wharf(&["--workers", "1", "--max-connections", "2"]);
    let mut held: Vec<common::Client> = (0..2)
        .map(|i| {
            let mut client = common::Client::connect(wharf.addr);
            client.echo(format!("held {i}").as_bytes());
            client
        })
        .collect();
    let began = Instant::now();
    for _ in 0..TURNED_AWAY {
        let mut client = common::Client::connect(wharf.addr);
        client.expect_goaway(wharf::GoAwayCode::Busy);
    }
    let burst = began.elapsed();
    let reason = "max connections reached (2)";
    // Within about a second of the last line, the reaper's turn reports
    // what the burst left pending.
    let reported = common::eventually(Duration::from_secs(10), || {
        turned_away_counts(&wharf.log(), reason).iter().sum::<u64>() == TURNED_AWAY
    });
    let log = wharf.log();
    assert!(reported, "the turn-aways were not all reported:\n{log}");
    let lines = turned_away_counts(&log, reason);
    // At most one line a second, plus the first one at once.
    let bound = burst.as_secs() + 2;
    assert!(
        lines.len() as u64 <= bound,
        "{} lines for a burst of {burst:?}:\n{log}",
        lines.len()
    );
    for line in log.lines().filter(|l| l.contains(reason)) {
        assert!(line.contains("[WARN] turned away "), "{line}");
    }
    // The access log is for debug level only.
    assert!(!log.contains(": opened, "), "{log}");
    for client in &mut held {
        client.echo(b"still served");
    }
    drop(held);
    stop(&mut wharf);
    let log = wharf.log();
    assert_eq!(
        summary_count(&log, "rejected_max_connections"),
        Some(TURNED_AWAY),
        "{log}"
    );
    assert_eq!(
        turned_away_counts(&log, reason).iter().sum::<u64>(),
        TURNED_AWAY,
        "{log}"
    );
}

/// The access log lines (`... from <addr>: opened...` and `... from <addr>:
/// closed...`) of the client whose address is `addr`.
fn access_lines(log: &str, addr: std::net::SocketAddr) -> (Vec<String>, Vec<String>) {
    let opened = format!("from {addr}: opened");
    let closed = format!("from {addr}: closed after ");
    let pick = |needle: &str| -> Vec<String> {
        log.lines()
            .filter(|l| l.contains(needle))
            .map(str::to_owned)
            .collect()
    };
    (pick(&opened), pick(&closed))
}

/// `conn 7` in `... conn 7 from ...`.
fn conn_id(line: &str) -> Option<&str> {
    line.split("conn ").nth(1)?.split_whitespace().next()
}

/// At debug level the log is an access log: one line when a connection
/// opens (with its wait in line, or that it was turned away) and one when it
/// closes, with the requests answered and how it ended.
#[test]
fn debug_level_logs_one_open_and_one_close_line_per_connection() {
    use common::Client;
    use wharf::frame::DATA;
    use wharf::GoAwayCode;

    let mut wharf = common::spawn_wharf(&[
        "--workers",
        "2",
        "--max-connections",
        "3",
        "--log-level",
        "debug",
    ]);
    let wait_closed = |wharf: &common::Wharf, addr| {
        let closed = common::eventually(Duration::from_secs(10), || {
            !access_lines(&wharf.log(), addr).1.is_empty()
        });
        assert!(closed, "no close line for {addr}:\n{}", wharf.log());
    };
    // Three requests, then the client closes.
    let mut polite = Client::connect(wharf.addr);
    let polite_addr = polite.stream.local_addr().unwrap();
    for i in 0..3 {
        polite.echo(format!("request {i}").as_bytes());
    }
    drop(polite);
    wait_closed(&wharf, polite_addr);
    // A frame over --max-frame: GOAWAY 5.
    let mut oversized = Client::connect(wharf.addr);
    let oversized_addr = oversized.stream.local_addr().unwrap();
    oversized.send_raw(&(1u32 << 30).to_be_bytes());
    oversized.send_raw(&[DATA]);
    oversized.expect_goaway(GoAwayCode::FrameTooLarge);
    drop(oversized);
    wait_closed(&wharf, oversized_addr);
    // A connection's place under --max-connections is given back just
    // after its close line is written.
    std::thread::sleep(Duration::from_millis(100));
    // Three held open until the drain, the first with two requests...
    let mut held: Vec<(Client, u64)> = Vec::new();
    for requests in [2, 1, 1] {
        let mut client = Client::connect(wharf.addr);
        client.ping(b"ping");
        if requests == 2 {
            client.echo(b"and data");
        }
        held.push((client, requests));
    }
    // ... so a fourth is turned away.
    let mut busy = Client::connect(wharf.addr);
    let busy_addr = busy.stream.local_addr().unwrap();
    busy.expect_goaway(GoAwayCode::Busy);
    drop(busy);
    wait_closed(&wharf, busy_addr);

    let held_addrs: Vec<_> = held
        .iter()
        .map(|(client, requests)| (client.stream.local_addr().unwrap(), *requests))
        .collect();
    stop(&mut wharf);
    for (client, _) in &mut held {
        client.expect_goaway(GoAwayCode::Shutdown);
    }
    let log = wharf.log();

    let mut expected = vec![
        (polite_addr, "waited", "3 requests: closed by the client"),
        (
            oversized_addr,
            "waited",
            "0 requests: GOAWAY 5 FRAME_TOO_LARGE: ",
        ),
        (
            busy_addr,
            "turned away",
            "0 requests: GOAWAY 3 BUSY: max connections reached (3)",
        ),
    ];
    let shutdown_2 = "2 requests: GOAWAY 1 SHUTDOWN: ";
    let shutdown_1 = "1 request: GOAWAY 1 SHUTDOWN: ";
    for (addr, requests) in held_addrs {
        let ending = if requests == 2 {
            shutdown_2
        } else {
            shutdown_1
        };
        expected.push((addr, "waited", ending));
    }
    for (addr, open_says, close_says) in expected {
        let (opened, closed) = access_lines(&log, addr);
        assert_eq!(opened.len(), 1, "{addr}: open lines {opened:?}\n{log}");
        assert_eq!(closed.len(), 1, "{addr}: close lines {closed:?}\n{log}");
        assert!(opened[0].contains("[DEBUG]"), "{}", opened[0]);
        assert!(opened[0].contains(open_says), "{addr}: {}", opened[0]);
        assert!(closed[0].contains(close_says), "{addr}: {}", closed[0]);
        assert_eq!(conn_id(&opened[0]), conn_id(&closed[0]), "{addr}");
    }
    assert_eq!(log.matches(": opened, ").count(), 6, "{log}");
    assert_eq!(log.matches(": closed after ").count(), 6, "{log}");
}
