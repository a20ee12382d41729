//! Metrics and probes through a drain (docs/operating.md, "Metrics and
//! probes" and "Drain delay"): from the signal (or the library's shutdown)
//! `/ready` is 503 and `/live` 200 until the process exits; with a drain
//! delay `wharf_stopping` is 1 from the signal on while `wharf_draining`
//! is 0 as long as the server still accepts and serves, and 1 once the
//! drain starts; the endpoint goes with the server.
//!
//! Every test talks to a real server, the library's or the real binary,
//! over real sockets on 127.0.0.1, port 0. The gauges are counted at most
//! every 100 ms, so checks of them poll.

mod common;

use std::net::TcpStream;
use std::thread;
use std::time::{Duration, Instant};

use common::gate::{gate, SLOW};
use common::metrics::{
    call, get, logged_metrics_addr, metrics_addr, scrape, value, wait_for, with_metrics, WITHIN,
};
use common::{config, eventually, spawn_wharf, start_with, Client};
use wharf::GoAwayCode;

#[test]
fn ready_is_503_and_live_200_throughout_a_drain() {
    let (service, gate) = gate();
    let server = start_with(with_metrics(config()), service);
    let addr = metrics_addr(&server);
    let mut client = Client::connect(server.local_addr());
    client.send(wharf::frame::DATA, SLOW);
    gate.wait_started(SLOW);
    assert_eq!(get(addr, "/ready").status, 200);

    server.handle().shutdown();
    // The drain lasts as long as the request is held: ask repeatedly.
    let until = Instant::now() + Duration::from_millis(500);
    while Instant::now() < until {
        let ready = get(addr, "/ready");
        assert_eq!(ready.status, 503, "{ready:?}");
        assert_eq!(ready.header("Connection"), Some("close"));
        assert_eq!(call(addr, "HEAD", "/ready").status, 503);
        assert_eq!(get(addr, "/live").status, 200);
        let text = scrape(addr);
        assert_eq!(value(&text, "wharf_draining"), 1.0);
        assert_eq!(value(&text, "wharf_stopping"), 1.0);
        assert_eq!(value(&text, "wharf_workers_busy"), 1.0);
    }
    gate.release();
    let before = client.expect_goaway(GoAwayCode::Shutdown);
    assert_eq!(before.len(), 1, "the held request's reply, then GOAWAY 1");
    let report = server.join();
    assert!(!report.forced, "{report}");
    assert_eq!(report.data_requests, 1, "{report}");
    // Once the server is joined, the endpoint is gone too.
    assert!(
        TcpStream::connect_timeout(&addr, Duration::from_secs(2)).is_err(),
        "the metrics endpoint outlived the server"
    );
}

/// Operations, "Drain delay" with "Metrics and probes", through the
/// binary: from the signal on `/ready` is 503 and `/live` 200, and
/// `wharf_draining` is 0 while the server still accepts and serves for the
/// delay; once the drain starts it is 1, and the probes stay as they were
/// until the process exits.
///
/// `--delay 3s` holds every DATA request in the service for 3 s, so one
/// started during the 1.5 s delay is still running when the drain starts
/// and keeps the drain (and so the endpoint) going for another 1.5 s: long
/// enough to look on a loaded machine, without guessing at sleeps.
#[test]
fn the_drain_delay_shows_not_ready_then_draining() {
    const DRAIN_DELAY: Duration = Duration::from_millis(1500);
    const SERVICE: Duration = Duration::from_secs(3);
    let mut wharf = spawn_wharf(&[
        "--workers",
        "2",
        "--metrics",
        "127.0.0.1:0",
        "--drain-delay",
        "1500ms",
        "--grace",
        "10s",
        "--delay",
        "3s",
    ]);
    let addr = logged_metrics_addr(&wharf.log());
    assert_eq!(get(addr, "/ready").status, 200);
    let text = scrape(addr);
    assert_eq!(value(&text, "wharf_draining"), 0.0);
    assert_eq!(value(&text, "wharf_stopping"), 0.0);

    // Taken before the signal: the drain cannot start before this plus the
    // delay.
    let signalled = Instant::now();
    wharf.signal(libc::SIGTERM);
    // The signal is handled on the server's own thread: not ready at once,
    // long before the delay is over.
    assert!(
        eventually(DRAIN_DELAY / 2, || get(addr, "/ready").status == 503),
        "/ready still 200 {:?} after the signal; log:\n{}",
        signalled.elapsed(),
        wharf.log()
    );

    // During the delay. A new connection is accepted and served: its PING
    // is answered at once, and its DATA request goes into the service.
    let mut late = Client::connect(wharf.addr);
    late.ping(b"during the delay");
    late.send(wharf::frame::DATA, b"accepted during the delay");
    wait_for(addr, "wharf_workers_busy", 1.0);
    // Ask repeatedly, for a while, but well before the delay is over.
    let mut rounds = 0;
    while rounds == 0 || signalled.elapsed() < Duration::from_millis(800) {
        rounds += 1;
        let ready = get(addr, "/ready");
        assert_eq!(ready.status, 503, "{ready:?}");
        assert_eq!(call(addr, "HEAD", "/ready").status, 503);
        assert_eq!(get(addr, "/live").status, 200);
        let text = scrape(addr);
        let at = signalled.elapsed();
        assert_eq!(
            value(&text, "wharf_draining"),
            0.0,
            "draining {at:?} after the signal, during a delay of {DRAIN_DELAY:?}"
        );
        assert_eq!(
            value(&text, "wharf_stopping"),
            1.0,
            "not stopping {at:?} after the signal, during a delay of {DRAIN_DELAY:?}"
        );
    }
    assert!(
        signalled.elapsed() < DRAIN_DELAY,
        "the checks took too long to prove anything: {:?}",
        signalled.elapsed()
    );

    // The drain: the request above is still in the service (it started
    // after the signal and takes 3 s), so the drain goes on until then.
    let mut last = String::new();
    let draining = eventually(WITHIN, || {
        last = scrape(addr);
        value(&last, "wharf_draining") == 1.0
    });
    let drained = signalled.elapsed();
    assert!(draining, "wharf_draining never became 1:\n{last}");
    assert!(drained >= DRAIN_DELAY, "draining after {drained:?}");
    let mut rounds = 0;
    while rounds == 0 || signalled.elapsed() < SERVICE - Duration::from_millis(700) {
        rounds += 1;
        let ready = get(addr, "/ready");
        assert_eq!(ready.status, 503, "{ready:?}");
        assert_eq!(call(addr, "HEAD", "/ready").status, 503);
        assert_eq!(get(addr, "/live").status, 200);
        let text = scrape(addr);
        assert_eq!(value(&text, "wharf_draining"), 1.0, "{text}");
        assert_eq!(value(&text, "wharf_stopping"), 1.0, "{text}");
        // What keeps the drain going.
        assert_eq!(value(&text, "wharf_workers_busy"), 1.0, "{text}");
        thread::sleep(Duration::from_millis(20));
    }

    // The request accepted during the delay is answered, then GOAWAY 1.
    let before = late.expect_goaway(GoAwayCode::Shutdown);
    assert_eq!(before.len(), 1, "{before:?}");
    assert_eq!(before[0].payload, b"accepted during the delay");
    assert!(signalled.elapsed() >= SERVICE);
    let status = wharf.wait_exit(Duration::from_secs(20)).expect("exits");
    assert_eq!(status.code(), Some(0), "{}", wharf.log());
    let log = wharf.log();
    assert!(log.contains("shutdown: draining"), "{log}");
}
