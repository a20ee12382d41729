//! Metrics and probes (docs/operating.md, "Metrics and probes"): the two
//! histograms, `wharf_service_seconds` and `wharf_queue_wait_seconds`, are
//! in seconds, and the wait in line of a resting connection's request is
//! timed from the request's arrival.
//!
//! Every test talks to a real server over real sockets on 127.0.0.1, port
//! 0, with one worker kept busy by a service that sleeps. The bounds on the
//! sums are generous: the machine is shared and busy.

mod common;

use std::thread;
use std::time::Duration;

use common::metrics::{metrics_addr, scrape, value, with_metrics};
use common::{config, start_with, Client};
use wharf::{Config, Echo};

#[test]
fn the_histograms_are_in_seconds() {
    // One worker, busy for 300 ms with a request that sleeps: the second
    // connection waits in line all that time.
    let server = start_with(
        with_metrics(Config {
            workers: 1,
            ..config()
        }),
        Echo {
            delay: Duration::from_millis(300),
            spin: Duration::ZERO,
        },
    );
    let addr = metrics_addr(&server);
    let data = server.local_addr();
    let first = thread::spawn(move || Client::connect(data).echo(b"first"));
    thread::sleep(Duration::from_millis(100));
    Client::connect(data).echo(b"second");
    first.join().unwrap();

    let text = scrape(addr);
    assert_eq!(value(&text, "wharf_service_seconds_count"), 2.0);
    let sum = value(&text, "wharf_service_seconds_sum");
    assert!((0.6..5.0).contains(&sum), "service time sum {sum} s");
    assert_eq!(
        value(&text, "wharf_service_seconds_bucket{le=\"0.25\"}"),
        0.0,
        "{text}"
    );
    assert_eq!(value(&text, "wharf_service_seconds_bucket{le=\"10\"}"), 2.0);
    let waited = value(&text, "wharf_queue_wait_seconds_sum");
    assert!(
        (0.05..5.0).contains(&waited),
        "queue wait sum {waited} s:\n{text}"
    );
    assert!(value(&text, "wharf_queue_wait_seconds_bucket{le=\"+Inf\"}") >= 2.0);
    server.handle().shutdown();
    server.join();
}

/// A resting connection's request that waits for the only worker is timed
/// from its arrival: it joins the line in the kernel, which stamps the
/// arrival, with no thread in between to stamp it.
#[test]
fn a_resting_connections_wait_in_line_is_timed_from_its_requests_arrival() {
    let server = start_with(
        with_metrics(Config {
            workers: 1,
            ..config()
        }),
        Echo {
            delay: Duration::from_millis(300),
            spin: Duration::ZERO,
        },
    );
    let addr = metrics_addr(&server);
    let data = server.local_addr();
    let mut a = Client::connect(data);
    let mut b = Client::connect(data);
    a.ping(b"a rests");
    b.ping(b"b rests");
    thread::sleep(Duration::from_millis(50));
    let before = scrape(addr);
    // A's request holds the worker for 300 ms; B's arrives 100 ms in and
    // waits about 200 ms in line.
    a.send(wharf::frame::DATA, b"a");
    thread::sleep(Duration::from_millis(100));
    b.echo(b"b");
    assert_eq!(a.recv().unwrap().payload, b"a");
    let after = scrape(addr);
    let count = value(&after, "wharf_queue_wait_seconds_count")
        - value(&before, "wharf_queue_wait_seconds_count");
    let waited = value(&after, "wharf_queue_wait_seconds_sum")
        - value(&before, "wharf_queue_wait_seconds_sum");
    assert_eq!(count, 2.0, "A and B each waited once:\n{after}");
    assert!(
        (0.15..5.0).contains(&waited),
        "B waited about 0.2 s, the histogram has {waited} s:\n{after}"
    );
    server.handle().shutdown();
    server.join();
}
