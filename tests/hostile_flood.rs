//! Hardening against floods of connections: thousands of connection
//! attempts as fast as several threads can make them, against the real
//! binary, and connects racing the shutdown of an in-process server. Each
//! attempt is counted by how it ended (echo, GOAWAY, refused, reset...).
//!
//! Every test checks that the misbehaviour is dealt with within a stated
//! bound AND that a good client is served afterwards, and prints the figures
//! it observed on one line starting with `FIGURES <test name>:` (run with
//! `--nocapture`); they feed docs/reliability.md.
//!
//! The tests of this file run one at a time (see `common::hostile::serial`):
//! the flood would disturb the other on a 2-core machine. (`cargo test` runs
//! one test binary at a time, so the other `hostile_*` files do not overlap
//! them either.) Every loop is bounded in count and time; bounds are
//! generous.

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use common::hostile::{
    attempt, connect_by, good_client, ms, proc_status, raise_nofile, reply_outcome, send_data,
    serial, Outcome,
};
use common::{config, spawn_wharf, start_with, Client};
use wharf::{Config, Echo};

/// Outcome counts, plus the longest attempt.
#[derive(Debug, Default)]
struct Tally {
    counts: HashMap<String, u64>,
    max: Duration,
    total: u64,
}

impl Tally {
    fn add(&mut self, outcome: &Outcome, took: Duration) {
        *self.counts.entry(outcome.name()).or_default() += 1;
        self.max = self.max.max(took);
        self.total += 1;
    }

    fn merge(&mut self, other: Tally) {
        for (name, n) in other.counts {
            *self.counts.entry(name).or_default() += n;
        }
        self.max = self.max.max(other.max);
        self.total += other.total;
    }

    fn get(&self, name: &str) -> u64 {
        self.counts.get(name).copied().unwrap_or(0)
    }

    /// Counts of every outcome not in `allowed`.
    fn unexpected(&self, allowed: &[&str]) -> Vec<(String, u64)> {
        let mut bad: Vec<_> = self
            .counts
            .iter()
            .filter(|(name, _)| !allowed.contains(&name.as_str()))
            .map(|(name, n)| (name.clone(), *n))
            .collect();
        bad.sort();
        bad
    }
}

// ---------------------------------------------------------------------------
// Connection flood
// ---------------------------------------------------------------------------

const FLOOD: usize = 5000;

const FLOOD_THREADS: usize = 8;

/// Connections each flooding thread opens before reading any reply.
const FLOOD_BATCH: usize = 25;

const FLOOD_BOUND: Duration = Duration::from_secs(10);

const FLOOD_RSS_KIB: u64 = 64 * 1024;

#[test]
fn connection_flood_is_answered_with_bounded_threads_and_memory() {
    let _serial = serial();
    let nofile = raise_nofile();
    let mut wharf = spawn_wharf(&["--workers", "4", "--queue", "16", "--log-level", "info"]);
    let addr = wharf.addr;
    let pid = wharf.child.id().to_string();

    // Thread count at startup, once it has settled.
    let mut startup = proc_status(&pid).expect("server status");
    for _ in 0..20 {
        thread::sleep(Duration::from_millis(50));
        let now = proc_status(&pid).expect("server status");
        if now.1 == startup.1 {
            startup = now;
            break;
        }
        startup = now;
    }
    let (startup_rss, startup_threads) = startup;

    // Sample RSS and threads while flooding.
    let flooding = Arc::new(AtomicBool::new(true));
    let max_rss = Arc::new(AtomicU64::new(startup_rss));
    let max_threads = Arc::new(AtomicU64::new(startup_threads));
    let samples = Arc::new(AtomicU64::new(0));
    let sampler = thread::spawn({
        let (flooding, max_rss, max_threads, samples) = (
            Arc::clone(&flooding),
            Arc::clone(&max_rss),
            Arc::clone(&max_threads),
            Arc::clone(&samples),
        );
        let pid = pid.clone();
        move || {
            let give_up = Instant::now() + Duration::from_secs(120);
            while flooding.load(Ordering::SeqCst) && Instant::now() < give_up {
                if let Some((rss, threads)) = proc_status(&pid) {
                    max_rss.fetch_max(rss, Ordering::SeqCst);
                    max_threads.fetch_max(threads, Ordering::SeqCst);
                    samples.fetch_add(1, Ordering::SeqCst);
                }
                thread::sleep(Duration::from_millis(1));
            }
        }
    });

    let started = Instant::now();
    let floods: Vec<_> = (0..FLOOD_THREADS)
        .map(|t| {
            thread::spawn(move || {
                let mut tally = Tally::default();
                let per_thread = FLOOD / FLOOD_THREADS;
                let mut done = 0;
                while done < per_thread {
                    let batch = FLOOD_BATCH.min(per_thread - done);
                    // Open the whole batch and send on each, then read.
                    let mut pending = Vec::with_capacity(batch);
                    for i in 0..batch {
                        let began = Instant::now();
                        let deadline = began + FLOOD_BOUND;
                        let payload = format!("flood {t}/{}", done + i).into_bytes();
                        let stream = connect_by(addr, deadline).and_then(|mut stream| {
                            send_data(&mut stream, &payload, deadline).map(|()| stream)
                        });
                        pending.push((began, deadline, payload, stream));
                    }
                    for (began, deadline, payload, stream) in pending {
                        let outcome = match stream {
                            Err(outcome) => outcome,
                            Ok(mut stream) => reply_outcome(&mut stream, &payload, deadline),
                        };
                        tally.add(&outcome, began.elapsed());
                    }
                    done += batch;
                }
                tally
            })
        })
        .collect();
    let mut tally = Tally::default();
    for flood in floods {
        tally.merge(flood.join().expect("flood thread"));
    }
    let flood_time = started.elapsed();

    // After the flood: a good client is served and the process answers.
    let good_took = good_client(addr, "after the flood", Duration::from_secs(5));
    let mut client = Client::connect(addr);
    client.ping(b"still there?");
    client.echo(b"and still serving");
    drop(client);
    thread::sleep(Duration::from_millis(300));
    flooding.store(false, Ordering::SeqCst);
    sampler.join().expect("sampler");
    let (after_rss, after_threads) = proc_status(&pid).expect("server status after the flood");
    let max_rss = max_rss.load(Ordering::SeqCst).max(after_rss);
    let max_threads = max_threads.load(Ordering::SeqCst).max(after_threads);

    wharf.signal(libc::SIGTERM);
    let status = wharf.wait_exit(Duration::from_secs(15));
    let log = wharf.log();
    let summary = log
        .lines()
        .find_map(|line| line.split("summary: ").nth(1))
        .unwrap_or("(no summary)")
        .to_owned();

    println!(
        "FIGURES connection_flood: attempts={} threads={FLOOD_THREADS} batch={FLOOD_BATCH} \
         served={} rejected_goaway3={} refused={} reset={} other={:?} max_attempt_ms={} \
         bound_ms={} flood_ms={} startup_threads={startup_threads} max_threads={max_threads} \
         after_threads={after_threads} startup_rss_kib={startup_rss} max_rss_kib={max_rss} \
         after_rss_kib={after_rss} rss_bound_kib={FLOOD_RSS_KIB} samples={} \
         good_served_ms={} client_nofile={nofile} exit={status:?} server_summary=[{summary}]",
        tally.total,
        tally.get("echo"),
        tally.get("goaway3"),
        tally.get("refused"),
        tally.get("reset"),
        tally.unexpected(&["echo", "goaway3", "refused", "reset"]),
        ms(tally.max),
        ms(FLOOD_BOUND),
        ms(flood_time),
        samples.load(Ordering::SeqCst),
        ms(good_took),
    );

    assert_eq!(tally.total, FLOOD as u64);
    assert_eq!(
        tally.get("echo") + tally.get("goaway3") + tally.get("refused") + tally.get("reset"),
        FLOOD as u64,
        "every attempt ends with its echo, GOAWAY 3, or a refused/reset connection: {:?}",
        tally.unexpected(&["echo", "goaway3", "refused", "reset"])
    );
    assert!(tally.max <= FLOOD_BOUND, "an attempt took {:?}", tally.max);
    assert!(tally.get("echo") > 0, "some of the flood was served");
    assert_eq!(
        max_threads, startup_threads,
        "the server's thread count moved during the flood"
    );
    assert_eq!(after_threads, startup_threads);
    assert!(
        max_rss <= FLOOD_RSS_KIB,
        "server RSS reached {max_rss} KiB (bound {FLOOD_RSS_KIB} KiB)"
    );
    assert_eq!(
        status.map(|s| s.code()),
        Some(Some(0)),
        "clean exit after SIGTERM; log:\n{log}"
    );
}

// ---------------------------------------------------------------------------
// Connects racing shutdown
// ---------------------------------------------------------------------------

const RACERS: usize = 4;

const RACE_BOUND: Duration = Duration::from_secs(5);

#[test]
fn connects_racing_shutdown_all_end_promptly_and_the_drain_is_clean() {
    let _serial = serial();
    let server = start_with(
        Config {
            workers: 2,
            queue: 8,
            ..config()
        },
        Echo {
            delay: Duration::from_millis(5),
            ..Echo::default()
        },
    );
    let addr = server.local_addr();
    let grace = server.config().grace;

    let stop = Arc::new(AtomicBool::new(false));
    let attempts = Arc::new(AtomicUsize::new(0));
    let racers: Vec<_> = (0..RACERS)
        .map(|r| {
            let (stop, attempts) = (Arc::clone(&stop), Arc::clone(&attempts));
            thread::spawn(move || {
                let mut tally = Tally::default();
                let give_up = Instant::now() + Duration::from_secs(30);
                let mut refused_in_a_row = 0;
                for i in 0..2000 {
                    // Once the listener is gone for good, a few refusals
                    // in a row are enough.
                    if stop.load(Ordering::SeqCst)
                        || refused_in_a_row >= 25
                        || Instant::now() >= give_up
                    {
                        break;
                    }
                    let (outcome, took) =
                        attempt(addr, format!("race {r}/{i}").as_bytes(), RACE_BOUND);
                    if outcome == Outcome::Refused {
                        refused_in_a_row += 1;
                    } else {
                        refused_in_a_row = 0;
                    }
                    tally.add(&outcome, took);
                    attempts.fetch_add(1, Ordering::SeqCst);
                }
                tally
            })
        })
        .collect();

    // Let them get going, then shut down in the middle of the stream.
    assert!(common::eventually(Duration::from_secs(10), || {
        attempts.load(Ordering::SeqCst) >= 200
    }));
    let before_shutdown = attempts.load(Ordering::SeqCst);
    let shutdown_at = Instant::now();
    server.handle().shutdown();
    let report = server.join();
    let join_took = shutdown_at.elapsed();
    // The racers keep connecting after the server is gone (refused) and
    // stop by themselves after a few refusals in a row.
    let mut tally = Tally::default();
    let racers_done = common::eventually(Duration::from_secs(20), || {
        racers.iter().all(|racer| racer.is_finished())
    });
    stop.store(true, Ordering::SeqCst);
    for racer in racers {
        tally.merge(racer.join().expect("racer"));
    }

    // The address is free again at once: a restarted server binds it and
    // serves a good client.
    let restarted = wharf::Server::start(addr, config(), Echo::default()).expect("restart");
    let good_took = good_client(addr, "restarted on the same port", Duration::from_secs(3));
    restarted.handle().shutdown();
    let restarted_report = restarted.join();

    let allowed = ["echo", "goaway1", "refused", "reset", "eof"];
    println!(
        "FIGURES shutdown_race: attempts={} racers={RACERS} before_shutdown={before_shutdown} \
         served={} goaway1={} refused={} reset={} eof={} hang={} other={:?} max_attempt_ms={} \
         bound_ms={} join_ms={} forced={} report_requests={} restart_good_served_ms={}",
        tally.total,
        tally.get("echo"),
        tally.get("goaway1"),
        tally.get("refused"),
        tally.get("reset"),
        tally.get("eof"),
        tally.get("hang"),
        tally.unexpected(&allowed),
        ms(tally.max),
        ms(RACE_BOUND),
        ms(join_took),
        report.forced,
        report.requests,
        ms(good_took),
    );
    assert!(
        tally.unexpected(&allowed).is_empty(),
        "attempts that hung or ended otherwise: {:?}",
        tally.unexpected(&allowed)
    );
    assert!(tally.max <= RACE_BOUND, "an attempt took {:?}", tally.max);
    assert!(racers_done, "the racers did not finish by themselves");
    assert!(!report.forced, "{report}");
    assert!(join_took < grace, "the drain took {join_took:?}");
    assert!(tally.get("echo") > 0);
    assert!(
        tally.get("refused") > 0,
        "connects after the drain are refused"
    );
    assert!(!restarted_report.forced);
}
