//! The load engine behind `wharf bench` (`wharf::bench::load`) against
//! in-process servers: the open loop keeps its schedule and measures from
//! it, so a stall shows where the closed loop hides it; thousands of idle
//! clients on one thread; starved clients count; the first error's cause.
//!
//! Bounds are generous (a loaded 2-core machine): they tell the open loop
//! from the closed loop and a served client from a starved one, not fast
//! from slow. Each run is bounded by its warm-up and window.

use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use wharf::bench::{load, BenchError, BenchOptions, BenchPoint};
use wharf::{Config, Echo, Response, Server, Service, ServiceError};

/// Starts `service` on 127.0.0.1:0, runs `options` against it, stops it.
fn run(config: Config, service: impl Service, options: &BenchOptions) -> BenchPoint {
    let server = Server::start("127.0.0.1:0", config, service).expect("server starts");
    let result = load(server.local_addr(), options);
    server.handle().shutdown();
    server.join();
    let point = result.expect("the load runs");
    eprintln!("{point:?}");
    point
}

fn config(workers: usize) -> Config {
    Config {
        workers,
        queue: 4096,
        ..Config::default()
    }
}

#[test]
fn open_loop_keeps_its_schedule_and_measures_the_service_delay() {
    let options = BenchOptions {
        clients: 4,
        rate: Some(100.0),
        warmup: Duration::from_millis(200),
        duration: Duration::from_secs(1),
        ..BenchOptions::default()
    };
    let echo = Echo {
        delay: Duration::from_millis(20),
        ..Echo::default()
    };
    let point = run(config(8), echo, &options);
    assert_eq!(point.errors, 0, "{point:?}");
    assert_eq!(point.offered_rps, Some(100.0));
    assert_eq!(point.clients, 4);
    assert_eq!(point.clients_served, 4, "{point:?}");
    // 100 req/s over a 1 s window, whatever the service does.
    let expected = 100.0 * point.seconds;
    assert!(
        (point.requests as f64) >= expected * 0.7 && (point.requests as f64) <= expected * 1.3,
        "{} requests, expected about {expected:.0}",
        point.requests
    );
    assert!(
        (20_000..60_000).contains(&point.p50_us),
        "p50 {} us for a 20 ms service",
        point.p50_us
    );
}

/// An echo that takes 2 ms, and once, the first time it is called after
/// `stall_at`, 200 ms more: the only worker is held, and every client waits.
fn stalling(stall_at: Instant) -> impl Service {
    let stalled = AtomicBool::new(false);
    move |request: &[u8], response: &mut Response<'_>| -> Result<(), ServiceError> {
        thread::sleep(Duration::from_millis(2));
        if Instant::now() >= stall_at && !stalled.swap(true, Ordering::SeqCst) {
            thread::sleep(Duration::from_millis(200));
        }
        response.extend_from_slice(request);
        Ok(())
    }
}

#[test]
fn a_stall_shows_in_the_open_loop_where_the_closed_loop_hides_it() {
    let window = Duration::from_millis(1500);
    let warmup = Duration::from_millis(200);
    // Stall about a third of the way into the window.
    let stall_in = warmup + window / 3;

    // Closed loop: one client, about 400 req/s on a 2 ms service. During
    // the stall it waits with one request, so one sample sees it.
    let closed = BenchOptions {
        clients: 1,
        warmup,
        duration: window,
        ..BenchOptions::default()
    };
    let closed = run(config(1), stalling(Instant::now() + stall_in), &closed);

    // Open loop at a similar 300 req/s: requests keep coming during the
    // stall and wait behind it, each measured from when it was due.
    let open = BenchOptions {
        clients: 4,
        rate: Some(300.0),
        warmup,
        duration: window,
        ..BenchOptions::default()
    };
    let open = run(config(1), stalling(Instant::now() + stall_in), &open);

    for point in [&closed, &open] {
        assert_eq!(point.errors, 0, "{point:?}");
        assert!(point.requests > 100, "{point:?}");
    }
    assert!(open.max_us >= 200_000, "open loop max {} us", open.max_us);
    // Dozens of the ~450 open-loop samples waited 150 ms or more (more than
    // 1%); of the closed loop's ~500, only the one in flight did.
    assert!(
        open.p99_us >= 150_000,
        "open loop p99 {} us: the stall's queue is missing",
        open.p99_us
    );
    assert!(
        closed.max_us >= 150_000,
        "closed loop max {} us: the stall did not happen",
        closed.max_us
    );
    assert!(
        closed.p99_us < 150_000,
        "closed loop p99 {} us: more than 1% of its samples saw the stall",
        closed.p99_us
    );
}

#[test]
fn two_thousand_idle_clients_are_answered_on_a_small_pool() {
    const IDLE: usize = 2000;
    // Both ends of every connection are in this process.
    let needed = 2 * (IDLE as u64 + 8) + 200;
    let limit = rlimit::increase_nofile_limit(u64::MAX).unwrap_or(0);
    if limit < needed {
        eprintln!("SKIPPED: the descriptor limit is {limit}; {IDLE} idle clients need {needed}");
        return;
    }
    let options = BenchOptions {
        clients: 2,
        idle: IDLE,
        idle_ping: Duration::from_millis(200),
        warmup: Duration::from_millis(300),
        duration: Duration::from_secs(1),
        ..BenchOptions::default()
    };
    let echo = Echo {
        delay: Duration::from_millis(1),
        ..Echo::default()
    };
    let point = run(config(2), echo, &options);
    let idle = point.idle.expect("idle figures");
    assert_eq!(point.errors, 0, "{point:?}");
    assert_eq!(point.clients_served, 2, "{point:?}");
    assert!(point.requests > 0, "{point:?}");
    // Every idle client PINGs 5 times a second: about 10,000 in the window.
    let expected = IDLE as f64 * point.seconds / 0.2;
    assert!(
        idle.pongs as f64 >= expected * 0.8,
        "{} PONGs, expected about {expected:.0}",
        idle.pongs
    );
    assert!(
        idle.missed <= idle.pongs / 100,
        "{} PINGs missed of {}",
        idle.missed,
        idle.pongs
    );
    assert!(idle.latency.p50_us > 0 && idle.latency.max_us >= idle.latency.p99_us);
}

#[test]
fn starved_clients_count_as_unserved_and_in_the_latency() {
    // 8 closed-loop clients, 2 workers, 250 ms per request: in a 600 ms
    // window each worker answers at most 3 requests, so at least 2 clients
    // are never served; they wait in the line the whole window.
    let options = BenchOptions {
        clients: 8,
        warmup: Duration::ZERO,
        duration: Duration::from_millis(600),
        ..BenchOptions::default()
    };
    let echo = Echo {
        delay: Duration::from_millis(250),
        ..Echo::default()
    };
    let point = run(config(2), echo, &options);
    assert_eq!(point.errors, 0, "{point:?}");
    assert_eq!(point.clients, 8);
    assert!(
        (1..8).contains(&point.clients_served),
        "{} of 8 clients served by 2 workers",
        point.clients_served
    );
    // A starved client's request waited about the whole window, and the
    // starved are a quarter or more of the samples.
    assert!(
        point.max_us >= 500_000,
        "max {} us: the starved clients' wait is missing",
        point.max_us
    );
    assert!(point.p90_us >= 500_000, "p90 {} us", point.p90_us);
}

#[test]
fn closed_loop_with_pipelining_and_reconnects_verifies_every_reply() {
    let options = BenchOptions {
        clients: 4,
        pipeline: 4,
        batches_per_connection: Some(3),
        payload: 100,
        warmup: Duration::from_millis(100),
        duration: Duration::from_millis(500),
        ..BenchOptions::default()
    };
    let point = run(config(2), Echo::default(), &options);
    assert_eq!(point.errors, 0, "{point:?}");
    assert_eq!(point.first_error, None);
    assert_eq!(point.clients_served, 4, "{point:?}");
    assert!(point.requests >= 100, "{point:?}");
    assert_eq!(point.offered_rps, None);
    assert_eq!(point.idle, None);
}

#[test]
fn a_refused_connection_is_the_error_with_its_cause() {
    let addr: SocketAddr = {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("local address")
    };
    let options = BenchOptions {
        clients: 3,
        warmup: Duration::from_millis(50),
        duration: Duration::from_millis(100),
        ..BenchOptions::default()
    };
    let started = Instant::now();
    let error = load(addr, &options).expect_err("nothing listens there");
    let text = error.to_string();
    assert!(
        matches!(error, BenchError::Connect { .. }),
        "{error:?}: {text}"
    );
    assert!(text.contains(&addr.to_string()), "{text}");
    assert!(text.to_lowercase().contains("refused"), "{text}");
    assert!(started.elapsed() < Duration::from_secs(5), "failed fast");
}
