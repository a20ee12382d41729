//! Hardening against a service that panics: every panic is answered with
//! ERROR, and the pool never shrinks.
//!
//! The test checks that the misbehaviour is dealt with within a stated
//! bound AND that a good client is served afterwards, and prints the figures
//! it observed on one line starting with `FIGURES <test name>:` (run with
//! `--nocapture`); they feed docs/reliability.md.
//!
//! It takes `common::hostile::serial` like every hardening test, which also
//! keeps its planned panics out of the output. Every loop is bounded in
//! count and time; bounds are generous.

mod common;

use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use common::hostile::{good_client, left, ms, serial, PLANNED_PANIC};
use common::{config, start_with, Client};
use wharf::frame::{DATA, ERROR};
use wharf::{Config, Response, ServiceError};

// ---------------------------------------------------------------------------
// A service that panics
// ---------------------------------------------------------------------------

const PANIC_WORKERS: usize = 4;

const BOOMS_PER_CONN: usize = 5;

/// Observes how many "slow" requests are inside the service at once.
#[derive(Default)]
struct Gate {
    state: Mutex<GateState>,
    changed: Condvar,
}

#[derive(Default)]
struct GateState {
    inside: usize,
    arrived: usize,
    max_inside: usize,
}

#[test]
fn panicking_service_answers_error_and_the_pool_never_shrinks() {
    let _serial = serial();
    let gate = Arc::new(Gate::default());
    let service = {
        let gate = Arc::clone(&gate);
        move |request: &[u8], response: &mut Response<'_>| -> Result<(), ServiceError> {
            if request.starts_with(b"boom") {
                panic!("{PLANNED_PANIC} on {request:?}");
            }
            if request.starts_with(b"slow") {
                // Wait (bounded) until every worker is in here at once.
                let mut state = gate.state.lock().unwrap();
                state.inside += 1;
                state.arrived += 1;
                state.max_inside = state.max_inside.max(state.inside);
                gate.changed.notify_all();
                let give_up = Instant::now() + Duration::from_secs(10);
                while state.arrived < PANIC_WORKERS && Instant::now() < give_up {
                    state = gate.changed.wait_timeout(state, left(give_up)).unwrap().0;
                }
                let met = state.arrived >= PANIC_WORKERS;
                drop(state);
                thread::sleep(Duration::from_millis(300));
                gate.state.lock().unwrap().inside -= 1;
                response.extend_from_slice(if met { b"met" } else { b"alone" });
                return Ok(());
            }
            response.extend_from_slice(request);
            Ok(())
        }
    };
    let server = start_with(
        Config {
            workers: PANIC_WORKERS,
            queue: 8,
            ..config()
        },
        service,
    );
    let addr = server.local_addr();

    // Four connections held open at once: each has its own worker (a queued
    // one would get no answer until another closed), so every worker takes
    // panics, and each connection stays usable after its ERRORs.
    let mut clients: Vec<Client> = (0..PANIC_WORKERS).map(|_| Client::connect(addr)).collect();
    let mut errors = 0;
    for (c, client) in clients.iter_mut().enumerate() {
        for b in 0..BOOMS_PER_CONN {
            let reply = client.request(format!("boom {c}/{b}").as_bytes());
            assert_eq!(reply.kind, ERROR, "a panic is answered with ERROR");
            errors += 1;
        }
        client.echo(format!("client {c} still served").as_bytes());
    }
    drop(clients);

    // The pool never shrank: `workers` requests are inside the service at
    // the same time (observed by the service, not by timing).
    let slow: Vec<_> = (0..PANIC_WORKERS)
        .map(|i| {
            thread::spawn(move || {
                let mut client = Client::connect(addr);
                client.request(format!("slow {i}").as_bytes())
            })
        })
        .collect();
    let replies: Vec<_> = slow
        .into_iter()
        .map(|t| t.join().expect("slow client"))
        .collect();
    let max_inside = gate.state.lock().unwrap().max_inside;

    let good_took = good_client(addr, "after the panics", Duration::from_secs(3));
    server.handle().shutdown();
    let report = server.join();
    println!(
        "FIGURES service_panics: workers={PANIC_WORKERS} panics_sent={} errors_received={errors} \
         service_panics={} max_concurrent_in_service={max_inside} good_served_ms={} forced={}",
        PANIC_WORKERS * BOOMS_PER_CONN,
        report.service_panics,
        ms(good_took),
        report.forced
    );
    for reply in &replies {
        assert_eq!(
            (reply.kind, &reply.payload[..]),
            (DATA, &b"met"[..]),
            "all {PANIC_WORKERS} slow requests were in the service at once: {replies:?}"
        );
    }
    assert_eq!(max_inside, PANIC_WORKERS);
    assert_eq!(
        report.service_panics,
        (PANIC_WORKERS * BOOMS_PER_CONN) as u64,
        "{report}"
    );
    assert!(!report.forced, "{report}");
}
