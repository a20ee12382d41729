//! Fault injection against the real `wharf` binary (the protocol,
//! "Graceful shutdown"): SIGTERM in the middle of heavy pipelined load.
//! Each client gets a correct, in-order prefix of its responses, then
//! GOAWAY 1, and the process exits 0 within the grace period.
//!
//! Every test checks that a good client is served once the fault is over (or,
//! after a shutdown, that the listener is really gone), and prints one
//! `FIGURES <test>: ...` line with what it observed, for docs/reliability.md.
//! Every loop is bounded in count and time, every bound is generous (CI is a
//! loaded 2-core machine), and no test asserts on speed. Children are killed
//! by PID if a test fails midway.

mod common;

use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::faults::{counter, dump_log, summary};
use common::{eventually, spawn_wharf, Client};
use wharf::frame::{DATA, GOAWAY};
use wharf::{Framing, GoAwayCode};

// ---------------------------------------------------------------------------
// SIGTERM under pipelined load.
// ---------------------------------------------------------------------------

const LOAD_CLIENTS: usize = 64;

const BATCH: usize = 8;

/// Upper bounds on one client's loop.
const MAX_BATCHES: usize = 200_000;

const CLIENT_TIME_LIMIT: Duration = Duration::from_secs(60);

/// What one load client saw.
#[derive(Debug)]
struct ClientRun {
    /// Responses received, all correct and in order: requests 0..answered.
    answered: usize,
    /// Requests written.
    sent: usize,
}

/// One client: pipelines batches of numbered requests until the server says
/// GOAWAY. Every response must match the next request in order; after the
/// GOAWAY 1 the connection must close. Returns an error string on any
/// deviation.
fn load_client(addr: SocketAddr, id: usize, warmed: &AtomicUsize) -> Result<ClientRun, String> {
    let stream = TcpStream::connect(addr).map_err(|e| format!("c{id}: connect: {e}"))?;
    stream.set_nodelay(true).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let mut client = Client::from_stream(stream, Framing::Length);
    client
        .stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let started = Instant::now();
    let (mut sent, mut answered) = (0usize, 0usize);
    let mut writing = true;
    for batch in 0..MAX_BATCHES {
        if started.elapsed() > CLIENT_TIME_LIMIT {
            return Err(format!(
                "c{id}: no GOAWAY within {CLIENT_TIME_LIMIT:?} ({answered} answered)"
            ));
        }
        if writing {
            let mut buf = Vec::with_capacity(BATCH * 16);
            for n in sent..sent + BATCH {
                Framing::Length.encode_data(format!("c{id}-{n}").as_bytes(), &mut buf);
            }
            match client.stream.write_all(&buf) {
                Ok(()) => sent += BATCH,
                // The server stopped reading and closed: read what it sent.
                // Part of the batch may have gone out, so count it as sent.
                Err(_) => {
                    sent += BATCH;
                    writing = false;
                }
            }
        }
        while answered < sent || !writing {
            let frame = match client.try_recv() {
                Ok(Some(frame)) => frame,
                Ok(None) => {
                    return Err(format!(
                        "c{id}: closed without GOAWAY after {answered} responses"
                    ))
                }
                Err(e) => return Err(format!("c{id}: read after {answered} responses: {e}")),
            };
            match frame.kind {
                DATA => {
                    let expected = format!("c{id}-{answered}");
                    if frame.payload != expected.as_bytes() {
                        return Err(format!(
                            "c{id}: response #{answered} is {:?}, expected {expected:?}",
                            String::from_utf8_lossy(&frame.payload)
                        ));
                    }
                    if answered >= sent {
                        return Err(format!("c{id}: response #{answered} to a request not sent"));
                    }
                    answered += 1;
                }
                GOAWAY => {
                    let goaway = frame
                        .goaway(Framing::Length)
                        .ok_or_else(|| format!("c{id}: malformed GOAWAY"))?;
                    if goaway.code != GoAwayCode::Shutdown.as_u16() {
                        return Err(format!("c{id}: GOAWAY {goaway:?}, expected 1"));
                    }
                    return match client.try_recv() {
                        Ok(None) => Ok(ClientRun { answered, sent }),
                        Ok(Some(f)) => Err(format!("c{id}: frame after GOAWAY: {f:?}")),
                        Err(e) => Err(format!("c{id}: no close after GOAWAY: {e}")),
                    };
                }
                other => return Err(format!("c{id}: unexpected frame kind {other}")),
            }
        }
        if batch == 0 {
            warmed.fetch_add(1, Ordering::SeqCst);
        }
    }
    Err(format!("c{id}: no GOAWAY after {MAX_BATCHES} batches"))
}

#[test]
fn sigterm_under_pipelined_load_answers_a_prefix_then_goaway() {
    let mut server = spawn_wharf(&["--workers", "64", "--queue", "64", "--grace", "10s"]);
    let addr = server.addr;
    let warmed = Arc::new(AtomicUsize::new(0));
    let clients: Vec<_> = (0..LOAD_CLIENTS)
        .map(|id| {
            let warmed = Arc::clone(&warmed);
            std::thread::spawn(move || load_client(addr, id, &warmed))
        })
        .collect();

    // Every client has had a full batch answered, then a second of load.
    let all_warm = eventually(Duration::from_secs(30), || {
        warmed.load(Ordering::SeqCst) == LOAD_CLIENTS
    });
    std::thread::sleep(Duration::from_secs(1));
    server.signal(libc::SIGTERM);
    let signalled = Instant::now();
    let status = server.wait_exit(Duration::from_secs(20));
    let exit_after = signalled.elapsed();

    let mut results = Vec::new();
    let mut failures = Vec::new();
    for client in clients {
        match client.join().expect("client thread") {
            Ok(run) => results.push(run),
            Err(e) => failures.push(e),
        }
    }
    let log = server.log();
    dump_log(&log);
    assert!(all_warm, "not every client got its first batch answered");
    assert!(failures.is_empty(), "{failures:#?}\nlog:\n{log}");
    let status = status.unwrap_or_else(|| panic!("no exit within 20 s of SIGTERM; log:\n{log}"));
    assert_eq!(
        status.code(),
        Some(0),
        "exit status (0 = drained within the grace); log:\n{log}"
    );
    assert!(
        exit_after < Duration::from_secs(10) + Duration::from_secs(2),
        "exit {exit_after:?} after SIGTERM, grace 10 s"
    );
    let summary = summary(&log);
    let served = counter(&summary, "requests").expect("requests in summary");

    // The listener is gone: a good client cannot connect any more.
    let refused = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).is_err();
    assert!(refused, "a connection was accepted after the server exited");

    let total: usize = results.iter().map(|r| r.answered).sum();
    let unanswered: usize = results.iter().map(|r| r.sent - r.answered).sum();
    let mut prefixes: Vec<usize> = results.iter().map(|r| r.answered).collect();
    prefixes.sort_unstable();
    let mid_batch = results.iter().filter(|r| r.answered % BATCH != 0).count();
    assert!(
        served >= total as u64,
        "the summary counts {served} requests, the clients received {total}"
    );
    println!(
        "FIGURES sigterm_under_pipelined_load_answers_a_prefix_then_goaway: {LOAD_CLIENTS} \
         clients x batches of {BATCH}; exit 0 {:.3}s after SIGTERM (grace 10s); {total} \
         correct in-order responses, {unanswered} requests sent but unanswered; per-client \
         prefix min/median/max {}/{}/{}; {mid_batch} clients cut mid-batch; summary \
         requests={served}; new connections refused after exit",
        exit_after.as_secs_f64(),
        prefixes[0],
        prefixes[prefixes.len() / 2],
        prefixes[prefixes.len() - 1],
    );
}
