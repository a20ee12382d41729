//! Graceful shutdown through the library: the time it may take
//! (the protocol, "Graceful shutdown"). Past `--grace` the remaining
//! connections are closed at once and the report says forced, as after
//! `.force()` (a second signal); the drain delay keeps serving before the
//! drain starts, and the grace counts from the start of the drain. Every
//! join is bounded in time, so a drain that hangs fails its test.
//!
//! Services here tell the test when a request has started, so "shutdown while
//! the service runs" is an observed fact rather than a guess based on sleeps.

mod common;

use std::time::{Duration, Instant};

use common::gate::gate;
use common::shutdown::{
    config_with, join_within, notifying, read_to_close, wait_started, JOIN_WITHIN,
};
use common::{config, start, start_with, Client, Received};
use wharf::frame::DATA;
use wharf::{Config, Framing, GoAwayCode, Server};

/// After a forced close the client may see GOAWAY 1 (best effort) but never
/// a response, and the connection must be closed.
fn assert_forced_close(client: &mut Client) {
    let frames = read_to_close(client);
    assert!(
        frames.len() <= 1,
        "at most one frame (GOAWAY) after a forced close, got {frames:?}"
    );
    if let Some(frame) = frames.first() {
        let goaway = frame
            .goaway(Framing::Length)
            .unwrap_or_else(|| panic!("expected GOAWAY, got {frame:?}"));
        assert_eq!(goaway.code, GoAwayCode::Shutdown.as_u16(), "{goaway:?}");
    }
}

/// A server with the given grace, and a client whose three-second request
/// the service has just started.
fn three_second_request_in_flight(grace: Duration) -> (Server, Client) {
    let (service, started) = notifying(Duration::from_secs(3));
    let server = start_with(config_with(2, grace), service);
    let mut client = Client::connect(server.local_addr());
    client.send(DATA, b"takes three seconds");
    wait_started(&started, b"takes three seconds");
    (server, client)
}

/// Promised: "If work is still running after --grace ... closes every
/// remaining connection at once" and the report says forced (exit 1).
#[test]
fn grace_exceeded_forces_close() {
    let (server, mut client) = three_second_request_in_flight(Duration::from_millis(300));

    let handle = server.handle();
    let began = Instant::now();
    handle.shutdown();
    let report = join_within(server, JOIN_WITHIN);
    let took = began.elapsed();
    assert!(
        took < Duration::from_millis(2500),
        "join waited {took:?}, as if for the 3 s service instead of the 300 ms grace"
    );
    assert!(report.forced, "grace ran out but not forced: {report:?}");
    assert_forced_close(&mut client);
}

/// Promised: a second signal (here `force()`) during a drain closes every
/// remaining connection at once and reports forced.
#[test]
fn force_during_drain_closes_at_once() {
    let (server, mut client) = three_second_request_in_flight(Duration::from_secs(30));

    let handle = server.handle();
    handle.shutdown();
    // The drain is under way and would wait up to 30 s.
    std::thread::sleep(Duration::from_millis(200));
    let began = Instant::now();
    handle.force();
    let report = join_within(server, JOIN_WITHIN);
    let took = began.elapsed();
    assert!(
        took < Duration::from_secs(2),
        "join took {took:?} after force()"
    );
    assert!(report.forced, "force() but not forced: {report:?}");
    assert_forced_close(&mut client);
}

/// Operations, drain delay through the library: after `shutdown()` the
/// server is stopping (not ready) but still accepts and serves for the
/// delay; then it drains (GOAWAY 1), and is not forced.
#[test]
fn drain_delay_keeps_serving_then_drains() {
    let delay = Duration::from_millis(600);
    let server = start(Config {
        drain_delay: delay,
        ..config()
    });
    let addr = server.local_addr();
    let handle = server.handle();
    let mut existing = Client::connect(addr);
    existing.echo(b"before");
    assert!(!handle.is_stopping() && !handle.is_draining());

    let began = Instant::now();
    handle.shutdown();
    assert!(handle.is_stopping(), "stopping at once");
    assert!(!handle.is_draining(), "but not draining during the delay");
    let mut late = Client::connect(addr);
    late.echo(b"accepted during the delay");
    existing.echo(b"served during the delay");
    assert!(
        began.elapsed() < delay,
        "the checks took too long to prove anything"
    );

    existing.expect_goaway(GoAwayCode::Shutdown);
    assert!(
        began.elapsed() >= delay,
        "drained after {:?}",
        began.elapsed()
    );
    assert!(handle.is_draining());
    late.expect_goaway(GoAwayCode::Shutdown);
    let report = join_within(server, JOIN_WITHIN);
    assert!(!report.forced, "{report:?}");
    assert_eq!(report.requests, 3, "{report:?}");
}

/// Operations: "`--grace` counts from the start of the drain", not from
/// the signal. A request that starts during a 2 s delay is held until 2.5 s
/// after the signal: past a 1.5 s grace counted from the signal (which
/// would force the close, with no reply), but only 0.5 s into the drain,
/// well within the grace counted from there (until 3.5 s). So it must end
/// with its reply, then GOAWAY 1, and the drain must not be forced. Each
/// reading is at least 0.5 s from its limit.
#[test]
fn grace_counts_from_the_start_of_the_drain_not_from_the_signal() {
    const DRAIN_DELAY: Duration = Duration::from_secs(2);
    const GRACE: Duration = Duration::from_millis(1500);
    const RELEASE_AT: Duration = Duration::from_millis(2500);
    const HELD: &[u8] = b"slow: started during the drain delay";
    let (service, gate) = gate();
    let server = start_with(
        Config {
            drain_delay: DRAIN_DELAY,
            grace: GRACE,
            ..config()
        },
        service,
    );
    let handle = server.handle();
    let signalled = Instant::now();
    handle.shutdown();

    let mut client = Client::connect(server.local_addr());
    client.send(DATA, HELD);
    gate.wait_started(HELD);
    assert!(
        !handle.is_draining(),
        "the request started only {:?} after the stop, once the drain had",
        signalled.elapsed()
    );

    std::thread::sleep(RELEASE_AT.saturating_sub(signalled.elapsed()));
    assert!(handle.is_draining(), "the drain started while it was held");
    gate.release();
    let before = client.expect_goaway(GoAwayCode::Shutdown);
    let answered = signalled.elapsed();
    assert_eq!(
        before,
        vec![Received {
            kind: DATA,
            payload: HELD.to_vec()
        }],
        "the held request's reply, then GOAWAY 1 ({answered:?} after the stop)"
    );
    let report = join_within(server, JOIN_WITHIN);
    assert!(
        !report.forced,
        "forced, as if the grace counted from the stop: {report:?}"
    );
    assert_eq!(report.requests, 1, "{report:?}");
}

/// `force()` during the drain delay stops at once, as a second signal does.
#[test]
fn force_cuts_the_drain_delay_short() {
    let server = start(Config {
        drain_delay: Duration::from_secs(30),
        ..config()
    });
    let mut client = Client::connect(server.local_addr());
    client.echo(b"connected");
    let handle = server.handle();
    handle.shutdown();
    std::thread::sleep(Duration::from_millis(100));
    let began = Instant::now();
    handle.force();
    let report = join_within(server, JOIN_WITHIN);
    assert!(
        began.elapsed() < Duration::from_secs(2),
        "{:?}",
        began.elapsed()
    );
    assert!(report.forced, "{report:?}");
    assert_forced_close(&mut client);
}
