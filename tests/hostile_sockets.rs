//! Hardening against misbehaviour at the socket level: a client that resets
//! in the middle of a frame, one that never reads its responses, one that
//! half-closes after pipelining, and frames at (and one byte over) the size
//! limit.
//!
//! Every test checks that the misbehaviour is dealt with within a stated
//! bound AND that a good client is served afterwards, and prints the figures
//! it observed on one line starting with `FIGURES <test name>:` (run with
//! `--nocapture`); they feed docs/reliability.md.
//!
//! The tests of this file run one at a time (see `common::hostile::serial`):
//! they depend on timing, and one counts the process's open descriptors.
//! (`cargo test` runs one test binary at a time, so the other `hostile_*`
//! files do not overlap them either.) Every loop is bounded in count and
//! time; bounds are generous.

mod common;

use std::io::{self, ErrorKind, Write};
use std::net::Shutdown as How;
use std::thread;
use std::time::{Duration, Instant};

use common::hostile::{frame, good_client, ms, serial};
use common::{config, start, Client};
use wharf::frame::DATA;
use wharf::{Config, Framing, GoAwayCode};

/// Open descriptors of this process (the test and its in-process servers).
fn fd_count() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .map(|dir| dir.count())
        .unwrap_or(0)
}

// ---------------------------------------------------------------------------
// Socket-level misbehaviour
// ---------------------------------------------------------------------------

/// One worker and a heartbeat far longer than any bound here, so that
/// nothing in these tests is freed by the reaper by accident.
fn one_worker() -> Config {
    Config {
        workers: 1,
        queue: 8,
        heartbeat_timeout: Duration::from_secs(20),
        reap_interval: Duration::from_millis(100),
        ..config()
    }
}

const RESETS: usize = 50;

/// A good client behind a resetting one is served this fast, far below the
/// 20 s heartbeat that would otherwise free the worker.
const AFTER_RESET: Duration = Duration::from_secs(3);

#[test]
fn client_resetting_mid_frame_frees_the_worker_every_time() {
    let _serial = serial();
    let server = start(one_worker());
    let addr = server.local_addr();
    // Settle: one connection round-trip, so the server's threads are up.
    good_client(addr, "warm-up", AFTER_RESET);
    thread::sleep(Duration::from_millis(300));
    let fds_before = fd_count();

    let mut half = Vec::new();
    Framing::Length.encode(DATA, &[b'h'; 100], &mut half);
    half.truncate(5 + 40);

    let mut max_good = Duration::ZERO;
    for i in 0..RESETS {
        // The resetter is served (it holds the only worker), then starts a
        // frame, and resets with SO_LINGER 0 halfway through it.
        let mut resetter = Client::connect(addr);
        resetter.echo(format!("resetter {i}").as_bytes());
        resetter.send_raw(&half);
        thread::sleep(Duration::from_millis(5));
        socket2::SockRef::from(&resetter.stream)
            .set_linger(Some(Duration::ZERO))
            .unwrap();
        drop(resetter);
        max_good = max_good.max(good_client(addr, &format!("after reset {i}"), AFTER_RESET));
    }

    // No descriptor leaked: everything the loop opened is closed again.
    let mut fds_after = fd_count();
    let settled = common::eventually(Duration::from_secs(5), || {
        fds_after = fd_count();
        fds_after <= fds_before
    });
    good_client(addr, "after the resets", AFTER_RESET);
    server.handle().shutdown();
    let report = server.join();

    println!(
        "FIGURES reset_mid_frame: attempts={RESETS} workers=1 served_after_each={RESETS} \
         max_good_after_reset_ms={} bound_ms={} fds_before={fds_before} \
         fds_after={fds_after} requests={} forced={}",
        ms(max_good),
        ms(AFTER_RESET),
        report.requests,
        report.forced,
    );
    assert!(
        settled,
        "descriptors leaked: {fds_before} before, {fds_after} after"
    );
    // warm-up + (resetter + good) per round + the last good client.
    assert_eq!(report.requests, 2 + 2 * RESETS as u64, "{report}");
    assert!(!report.forced, "{report}");
}

const WRITE_TIMEOUT: Duration = Duration::from_millis(300);

#[test]
fn client_that_never_reads_is_dropped_after_the_write_timeout() {
    let _serial = serial();
    let server = start(Config {
        write_timeout: WRITE_TIMEOUT,
        ..one_worker()
    });
    let addr = server.local_addr();

    // A tiny receive buffer so the server's writes block sooner.
    let socket = socket2::Socket::new(
        socket2::Domain::IPV4,
        socket2::Type::STREAM,
        Some(socket2::Protocol::TCP),
    )
    .unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    socket.connect(&addr.into()).expect("connect");
    let mut lazy = Client::from_stream(socket.into(), Framing::Length);
    lazy.echo(b"served: holds the only worker");

    // From now on it only writes: 64 KiB requests, never reading a reply.
    let writer = thread::spawn({
        let mut stream = lazy.stream.try_clone().unwrap();
        move || -> (usize, Duration, Option<io::Error>) {
            stream
                .set_write_timeout(Some(Duration::from_secs(1)))
                .unwrap();
            let request = frame(DATA, &[b'w'; 64 * 1024]);
            let started = Instant::now();
            let give_up = started + Duration::from_secs(20);
            let mut sent = 0;
            while sent < 1024 && Instant::now() < give_up {
                match stream.write_all(&request) {
                    Ok(()) => sent += 1,
                    Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                    Err(e) => return (sent, started.elapsed(), Some(e)),
                }
            }
            (sent, started.elapsed(), None)
        }
    });

    // A good client waits in the queue; it is served once the worker drops
    // the lazy client, well before its 20 s heartbeat.
    let bound = WRITE_TIMEOUT + Duration::from_secs(8);
    let good_took = good_client(addr, "behind a client that does not read", bound);
    let (sent, dropped_after, error) = writer.join().expect("writer");
    drop(lazy);
    good_client(addr, "afterwards", Duration::from_secs(3));
    server.handle().shutdown();
    let report = server.join();

    println!(
        "FIGURES never_reads: write_timeout_ms={} requests_written={sent} \
         lazy_client_dropped_after_ms={} good_served_ms={good_took_ms} bound_ms={} \
         write_timeouts={} writer_error={:?} forced={}",
        ms(WRITE_TIMEOUT),
        ms(dropped_after),
        ms(bound),
        report.write_timeouts,
        error.as_ref().map(|e| e.kind()),
        report.forced,
        good_took_ms = ms(good_took),
    );
    assert!(
        error.is_some(),
        "the server never dropped the client that does not read"
    );
    assert_eq!(report.write_timeouts, 1, "{report}");
    assert!(!report.forced, "{report}");
}

const PIPELINED: usize = 200;

#[test]
fn half_closed_client_gets_every_pipelined_response_then_close() {
    let _serial = serial();
    let server = start(one_worker());
    let addr = server.local_addr();

    let started = Instant::now();
    let mut client = Client::connect(addr);
    let payloads: Vec<Vec<u8>> = (0..PIPELINED)
        .map(|i| format!("request {i} ").repeat(1 + i % 50).into_bytes())
        .collect();
    let mut burst = Vec::new();
    for payload in &payloads {
        Framing::Length.encode(DATA, payload, &mut burst);
    }
    client.send_raw(&burst);
    client.stream.shutdown(How::Write).expect("half-close");
    for (i, payload) in payloads.iter().enumerate() {
        let reply = client
            .recv()
            .unwrap_or_else(|| panic!("closed before response {i}"));
        assert_eq!(reply.kind, DATA, "response {i}");
        assert_eq!(&reply.payload, payload, "response {i} in order");
    }
    client.expect_closed();
    let took = started.elapsed();
    drop(client);

    let good_took = good_client(addr, "after the half-closed client", Duration::from_secs(3));
    server.handle().shutdown();
    let report = server.join();
    println!(
        "FIGURES half_close: pipelined={PIPELINED} bytes={} answered={PIPELINED} \
         closed_after_ms={} good_served_ms={} requests={} forced={}",
        burst.len(),
        ms(took),
        ms(good_took),
        report.requests,
        report.forced
    );
    assert_eq!(report.requests, PIPELINED as u64 + 1, "{report}");
    assert!(!report.forced, "{report}");
}

const MAX_FRAME: u32 = 64 * 1024;

#[test]
fn frames_at_max_frame_are_served_and_one_byte_more_gets_goaway_5() {
    let _serial = serial();
    let server = start(Config {
        max_frame: MAX_FRAME,
        ..one_worker()
    });
    let addr = server.local_addr();
    let largest = vec![b'm'; MAX_FRAME as usize - 1]; // len = kind + payload = max

    // Exactly at the limit: served, twice on one connection, pipelined.
    let mut client = Client::connect(addr);
    client.send(DATA, &largest);
    client.send(DATA, &largest);
    for _ in 0..2 {
        let reply = client.recv().expect("echo of a max-size frame");
        assert_eq!((reply.kind, reply.payload.len()), (DATA, largest.len()));
        assert_eq!(reply.payload, largest);
    }

    // One byte more, announced by the header alone: GOAWAY 5 at once, after
    // the response to the request before it.
    let started = Instant::now();
    client.send(DATA, b"before");
    client.send_raw(&(MAX_FRAME + 1).to_be_bytes());
    client.send_raw(&[DATA]);
    let before = client.expect_goaway(GoAwayCode::FrameTooLarge);
    let goaway_took = started.elapsed();
    assert_eq!(
        before.len(),
        1,
        "the response before the GOAWAY: {before:?}"
    );
    assert_eq!(
        (before[0].kind, &before[0].payload[..]),
        (DATA, &b"before"[..])
    );
    drop(client);
    assert!(
        goaway_took <= Duration::from_secs(3),
        "GOAWAY 5 only after {goaway_took:?}: the server waited for the payload?"
    );

    // A full oversized frame too.
    let mut client = Client::connect(addr);
    let mut too_big = Vec::new();
    Framing::Length.encode(DATA, &vec![b'o'; MAX_FRAME as usize], &mut too_big);
    let _ = client.stream.write_all(&too_big); // the server may close while we write
    let frames = client.expect_goaway(GoAwayCode::FrameTooLarge);
    assert!(frames.is_empty(), "{frames:?}");
    drop(client);

    let good_took = good_client(addr, "after GOAWAY 5", Duration::from_secs(3));
    let mut client = Client::connect(addr);
    client.echo(&largest);
    drop(client);
    server.handle().shutdown();
    let report = server.join();
    println!(
        "FIGURES max_frame: max_frame={MAX_FRAME} at_limit_served=3 over_limit_goaway5=2 \
         goaway5_after_header_ms={} good_served_ms={} protocol_errors={} forced={}",
        ms(goaway_took),
        ms(good_took),
        report.protocol_errors,
        report.forced
    );
    assert_eq!(report.protocol_errors, 2, "{report}");
    assert!(!report.forced, "{report}");
}
