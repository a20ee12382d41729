//! Heartbeat rules (the protocol, "Heartbeat"): deadlines, what moves them,
//! what does not, the reaper's GOAWAY 2 / GOAWAY 3, and the reap interval cap.
//!
//! Settings are short (heartbeat well under a second, reap interval 50 ms).
//! Lower bounds are measured from a point that is certainly no later than the
//! server's own start of the deadline, so they hold on a loaded machine; upper
//! bounds get two seconds of slack.

mod common;

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use common::{config, start, start_with, Client};
use wharf::frame::{DATA, PING};
use wharf::{Config, Echo, Framing, GoAwayCode};

/// How early a reap may come compared with the exact deadline (clock
/// granularity: the server counts whole milliseconds).
const EARLY: Duration = Duration::from_millis(50);
/// Extra time allowed on top of `heartbeat_timeout + reap_interval`.
const SLACK: Duration = Duration::from_secs(2);

fn hb_config(heartbeat_ms: u64) -> Config {
    Config {
        heartbeat_timeout: Duration::from_millis(heartbeat_ms),
        reap_interval: Duration::from_millis(50),
        ..config()
    }
}

/// The latest a missed deadline may be acted on, counted from the start of
/// the deadline.
fn reap_bound(config: &Config) -> Duration {
    config.heartbeat_timeout + config.reap_interval + SLACK
}

fn stop(server: wharf::Server) -> wharf::Report {
    server.handle().shutdown();
    server.join()
}

#[test]
fn idle_client_is_sent_heartbeat_timeout_and_closed_not_before_its_deadline() {
    let server = start(hb_config(700));
    let cfg = server.config().clone();
    let before_connect = Instant::now();
    let mut client = Client::connect(server.local_addr());
    let frames = client.expect_goaway(GoAwayCode::HeartbeatTimeout);
    let elapsed = before_connect.elapsed();
    assert!(frames.is_empty(), "nothing before the GOAWAY: {frames:?}");
    assert!(
        elapsed >= cfg.heartbeat_timeout - EARLY,
        "reaped after {elapsed:?}, before the deadline {:?}",
        cfg.heartbeat_timeout
    );
    assert!(
        elapsed <= reap_bound(&cfg),
        "reaped (GOAWAY + close) only after {elapsed:?}"
    );
    let report = stop(server);
    assert_eq!(report.reaped, 1, "{report}");
}

#[test]
fn dribbling_an_unfinished_frame_does_not_keep_a_client_alive() {
    let server = start(hb_config(700));
    let cfg = server.config().clone();
    let before_connect = Instant::now();
    let mut client = Client::connect(server.local_addr());
    // A DATA frame announcing 1000 bytes, of which only the header and then
    // one byte every 100 ms ever arrive: never a complete frame.
    client.send_raw(&[0, 0, 3, 0xe8, DATA]);
    let done = Arc::new(AtomicBool::new(false));
    let dribbler = {
        let mut stream = client.stream.try_clone().unwrap();
        let done = Arc::clone(&done);
        thread::spawn(move || {
            let mut sent = 0;
            // At most 60 bytes (about 6 s): far fewer than the 999 announced.
            while sent < 60 && !done.load(Ordering::SeqCst) {
                thread::sleep(Duration::from_millis(100));
                if stream.write_all(b"x").is_err() {
                    break;
                }
                sent += 1;
            }
            sent
        })
    };
    let frames = client.expect_goaway(GoAwayCode::HeartbeatTimeout);
    let elapsed = before_connect.elapsed();
    done.store(true, Ordering::SeqCst);
    let sent = dribbler.join().unwrap();
    assert!(frames.is_empty(), "nothing before the GOAWAY: {frames:?}");
    assert!(sent >= 3, "the dribbler sent only {sent} bytes");
    assert!(
        elapsed >= cfg.heartbeat_timeout - EARLY,
        "reaped after {elapsed:?}, before the deadline"
    );
    assert!(
        elapsed <= reap_bound(&cfg),
        "a dribbling client was kept alive for {elapsed:?}"
    );
    let report = stop(server);
    assert_eq!(report.reaped, 1, "{report}");
    assert_eq!(report.requests, 0, "{report}");
}

#[test]
fn dribbling_a_line_without_its_newline_does_not_keep_a_client_alive() {
    let server = start(Config {
        framing: Framing::Line,
        ..hb_config(700)
    });
    let cfg = server.config().clone();
    let before_connect = Instant::now();
    let mut client = Client::connect_with(server.local_addr(), Framing::Line);
    let done = Arc::new(AtomicBool::new(false));
    let dribbler = {
        let mut stream = client.stream.try_clone().unwrap();
        let done = Arc::clone(&done);
        thread::spawn(move || {
            // At most 60 bytes (about 6 s), never a newline.
            for _ in 0..60 {
                if done.load(Ordering::SeqCst) || stream.write_all(b"x").is_err() {
                    break;
                }
                thread::sleep(Duration::from_millis(100));
            }
        })
    };
    let frames = client.expect_goaway(GoAwayCode::HeartbeatTimeout);
    let elapsed = before_connect.elapsed();
    done.store(true, Ordering::SeqCst);
    dribbler.join().unwrap();
    assert!(frames.is_empty(), "nothing before the GOAWAY: {frames:?}");
    assert!(elapsed >= cfg.heartbeat_timeout - EARLY, "{elapsed:?}");
    assert!(elapsed <= reap_bound(&cfg), "kept alive for {elapsed:?}");
    let report = stop(server);
    assert_eq!(report.reaped, 1, "{report}");
}

/// Keeps `client` busy with `step` every `heartbeat / 3` until more than
/// three heartbeat timeouts have passed; bounded in rounds.
fn keep_alive_for_three_timeouts(client: &mut Client, heartbeat: Duration, step: fn(&mut Client)) {
    let start = Instant::now();
    let mut rounds = 0;
    while start.elapsed() <= heartbeat * 3 + heartbeat / 2 {
        assert!(rounds < 40, "too many rounds: the loop is not progressing");
        thread::sleep(heartbeat / 3);
        step(client);
        rounds += 1;
    }
    assert!(rounds >= 9, "only {rounds} rounds");
}

#[test]
fn pinging_every_third_of_the_timeout_keeps_a_client_alive() {
    let server = start(hb_config(900));
    let heartbeat = server.config().heartbeat_timeout;
    let mut client = Client::connect(server.local_addr());
    keep_alive_for_three_timeouts(&mut client, heartbeat, |c| c.ping(b"alive"));
    client.echo(b"still served");
    drop(client);
    let report = stop(server);
    assert_eq!(report.reaped, 0, "{report}");
}

#[test]
fn data_requests_every_third_of_the_timeout_keep_a_client_alive() {
    let server = start(hb_config(900));
    let heartbeat = server.config().heartbeat_timeout;
    let mut client = Client::connect(server.local_addr());
    keep_alive_for_three_timeouts(&mut client, heartbeat, |c| c.echo(b"work"));
    client.ping(b"");
    client.echo(b"still served");
    drop(client);
    let report = stop(server);
    assert_eq!(report.reaped, 0, "{report}");
}

#[test]
fn a_running_service_is_never_reaped_and_the_deadline_restarts_from_its_response() {
    let cfg = hb_config(600);
    let service_time = cfg.heartbeat_timeout * 2;
    let server = start_with(
        cfg,
        Echo {
            delay: service_time,
            ..Echo::default()
        },
    );
    let cfg = server.config().clone();
    let mut client = Client::connect(server.local_addr());
    let sent = Instant::now();
    client.send(DATA, b"slow");
    let reply = client.recv().expect("a response, not end-of-stream");
    assert_eq!(reply.kind, DATA, "reaped while the service ran: {reply:?}");
    assert_eq!(reply.payload, b"slow");
    assert!(sent.elapsed() >= service_time, "the service did not sleep");
    // Idle from here on: reaped one heartbeat after the response, which was
    // sent no earlier than `service_time` after the request.
    client.expect_goaway(GoAwayCode::HeartbeatTimeout);
    let elapsed = sent.elapsed();
    assert!(
        elapsed >= service_time + cfg.heartbeat_timeout - EARLY,
        "reaped {elapsed:?} after the request: the deadline did not restart from the response"
    );
    assert!(
        elapsed <= service_time + reap_bound(&cfg),
        "reaped only {elapsed:?} after the request"
    );
    let report = stop(server);
    assert_eq!(report.reaped, 1, "{report}");
    assert_eq!(report.requests, 1, "{report}");
}

#[test]
fn a_connection_waiting_in_the_queue_past_its_deadline_is_sent_busy() {
    let (service, gate) = common::gate::gate();
    let server = start_with(
        Config {
            workers: 1,
            queue: 4,
            ..hb_config(800)
        },
        service,
    );
    let cfg = server.config().clone();
    let addr = server.local_addr();

    // A keeps the only worker busy with a slow request, held by the service
    // until the test releases it (a quiet A would not hold the worker, and a
    // running service is never reaped).
    const HOLD: &[u8] = b"slow: a keeps the only worker busy";
    let mut a = Client::connect(addr);
    a.ping(b"a");
    a.send(DATA, HOLD);
    gate.wait_started(HOLD);

    let before_connect = Instant::now();
    let mut b = Client::connect(addr);
    let frames = b.expect_goaway(GoAwayCode::Busy);
    let elapsed = before_connect.elapsed();
    assert!(frames.is_empty(), "B was served while queued: {frames:?}");
    assert!(
        elapsed >= cfg.heartbeat_timeout - EARLY,
        "B turned away after {elapsed:?}, before its deadline"
    );
    assert!(
        elapsed <= reap_bound(&cfg),
        "B turned away only after {elapsed:?}"
    );

    // A was never disturbed: its request is answered and it is still served.
    gate.release();
    let reply = a.recv().expect("A's slow reply");
    assert_eq!((reply.kind, reply.payload.as_slice()), (DATA, HOLD));
    a.echo(b"a is still served");
    drop(a);

    // B never took the worker: a new client gets it once A is done.
    let mut c = Client::connect(addr);
    c.echo(b"c");
    drop(c);

    let report = stop(server);
    assert_eq!(report.rejected_busy, 1, "{report}");
    assert_eq!(report.rejected_queue_deadline, 1, "{report}");
    assert_eq!(report.reaped, 0, "{report}");
}

#[test]
fn report_counts_each_reaped_connection() {
    // Enough workers that no client waits in the queue (that would be BUSY).
    let server = start(Config {
        workers: 5,
        ..hb_config(600)
    });
    let addr = server.local_addr();
    let mut idle: Vec<Client> = (0..3).map(|_| Client::connect(addr)).collect();
    // A client that leaves before its deadline is not a reap.
    let mut polite = Client::connect(addr);
    polite.ping(b"");
    drop(polite);
    for client in &mut idle {
        client.expect_goaway(GoAwayCode::HeartbeatTimeout);
    }
    let report = stop(server);
    assert_eq!(report.reaped, 3, "{report}");
}

#[test]
fn a_reap_interval_above_a_quarter_of_the_heartbeat_is_lowered() {
    let server = start(Config {
        heartbeat_timeout: Duration::from_millis(800),
        reap_interval: Duration::from_secs(1),
        ..config()
    });
    assert_eq!(server.config().reap_interval, Duration::from_millis(200));
    assert_eq!(
        server.config().heartbeat_timeout,
        Duration::from_millis(800)
    );
    // And the lowered interval is the one in force: an idle client is
    // reaped within heartbeat + 200 ms (+ slack), not heartbeat + 1 s.
    let cfg = server.config().clone();
    let before_connect = Instant::now();
    let mut client = Client::connect(server.local_addr());
    client.expect_goaway(GoAwayCode::HeartbeatTimeout);
    let elapsed = before_connect.elapsed();
    assert!(elapsed >= cfg.heartbeat_timeout - EARLY, "{elapsed:?}");
    assert!(elapsed <= reap_bound(&cfg), "{elapsed:?}");
    drop(server);
}

#[test]
fn an_interval_already_within_the_cap_is_kept() {
    let server = start(Config {
        heartbeat_timeout: Duration::from_millis(800),
        reap_interval: Duration::from_millis(200),
        ..config()
    });
    assert_eq!(server.config().reap_interval, Duration::from_millis(200));
    drop(server);
}

/// PING is a frame like any other: it counts even when a DATA request is
/// never sent, and the PONG carries the payload.
#[test]
fn ping_alone_moves_the_deadline() {
    let server = start(hb_config(600));
    let cfg = server.config().clone();
    let mut client = Client::connect(server.local_addr());
    thread::sleep(cfg.heartbeat_timeout / 2);
    let last_ping = Instant::now();
    client.send(PING, b"p");
    let pong = client.recv().expect("PONG");
    assert_eq!(pong.kind, wharf::frame::PONG);
    client.expect_goaway(GoAwayCode::HeartbeatTimeout);
    let elapsed = last_ping.elapsed();
    assert!(
        elapsed >= cfg.heartbeat_timeout - EARLY,
        "reaped {elapsed:?} after the last PING"
    );
    drop(server);
}
