//! Hardening: hostile and broken clients (slowloris armies, connection
//! floods, resets, clients that never read, half-closes, frames at the size
//! limit, a panicking service, connects racing shutdown).
//!
//! Every test checks that the misbehaviour is dealt with within a stated
//! bound AND that a good client is served afterwards, and prints the figures
//! it observed on one line starting with `FIGURES <test name>:` (run with
//! `--nocapture`); they feed docs/reliability.md.
//!
//! The tests of this file run one at a time (see [`serial`]): several of them
//! depend on timing, and the flood would disturb the others on a 2-core
//! machine. Every loop is bounded in count and time; bounds are generous.

mod common;

use std::collections::HashMap;
use std::io::{self, ErrorKind, Read, Write};
use std::net::{Shutdown as How, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Condvar, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

use common::{config, spawn_wharf, start, start_with, Client};
use wharf::frame::{DATA, ERROR, GOAWAY};
use wharf::{Config, Echo, Framing, GoAwayCode, Response, ServiceError};

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

/// Marks the panics the test service raises on purpose.
const PLANNED_PANIC: &str = "hostile test: planned panic";

/// Taken by every test of this file so that they do not overlap. Also keeps
/// the planned service panics out of the output (any other panic is
/// reported as usual).
fn serial() -> MutexGuard<'static, ()> {
    static SERIAL: Mutex<()> = Mutex::new(());
    static HOOK: std::sync::Once = std::sync::Once::new();
    HOOK.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let planned = info
                .payload()
                .downcast_ref::<String>()
                .is_some_and(|message| message.starts_with(PLANNED_PANIC));
            if !planned {
                default(info);
            }
        }));
    });
    SERIAL
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Raises this process's soft RLIMIT_NOFILE to the hard limit; returns it.
fn raise_nofile() -> libc::rlim_t {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit with a valid pointer to a local rlimit.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return 0;
        }
        if limit.rlim_cur < limit.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: limit.rlim_max,
                rlim_max: limit.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                limit = raised;
            }
        }
    }
    limit.rlim_cur
}

/// `(VmRSS in KiB, Threads)` of a process, from /proc/<pid>/status.
fn proc_status(pid: &str) -> Option<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| -> Option<u64> {
        status
            .lines()
            .find_map(|line| line.strip_prefix(name))?
            .split_whitespace()
            .next()?
            .parse()
            .ok()
    };
    Some((field("VmRSS:")?, field("Threads:")?))
}

/// Open descriptors of this process (the test and its in-process servers).
fn fd_count() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .map(|dir| dir.count())
        .unwrap_or(0)
}

/// One length frame, encoded.
fn frame(kind: u8, payload: &[u8]) -> Vec<u8> {
    let mut buf = Vec::new();
    Framing::Length.encode(kind, payload, &mut buf);
    buf
}

/// Parses a GOAWAY frame at the start of `bytes`, if there is one.
fn goaway_code(bytes: &[u8]) -> Option<u16> {
    if bytes.len() >= 7 && bytes[4] == GOAWAY {
        Some(u16::from_be_bytes([bytes[5], bytes[6]]))
    } else {
        None
    }
}

/// How one connection attempt ended, as the client saw it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Outcome {
    /// The DATA request was echoed.
    Echo,
    /// The server sent GOAWAY with this code before anything else.
    GoAway(u16),
    /// `connect` was refused.
    Refused,
    /// The connection was reset (at connect, send or receive).
    Reset,
    /// End-of-stream with no reply at all.
    Eof,
    /// No outcome within the per-attempt bound.
    Hang,
    /// Anything else (unexpected reply, unexpected error).
    Other(String),
}

impl Outcome {
    fn name(&self) -> String {
        match self {
            Outcome::Echo => "echo".into(),
            Outcome::GoAway(code) => format!("goaway{code}"),
            Outcome::Refused => "refused".into(),
            Outcome::Reset => "reset".into(),
            Outcome::Eof => "eof".into(),
            Outcome::Hang => "hang".into(),
            Outcome::Other(what) => format!("other({what})"),
        }
    }
}

fn classify_io(e: &io::Error) -> Outcome {
    match e.kind() {
        ErrorKind::ConnectionRefused => Outcome::Refused,
        ErrorKind::ConnectionReset | ErrorKind::ConnectionAborted | ErrorKind::BrokenPipe => {
            Outcome::Reset
        }
        ErrorKind::UnexpectedEof => Outcome::Eof,
        ErrorKind::WouldBlock | ErrorKind::TimedOut => Outcome::Hang,
        _ => Outcome::Other(e.to_string()),
    }
}

/// Time left until `deadline`, never zero (a zero timeout is an error).
fn left(deadline: Instant) -> Duration {
    deadline
        .saturating_duration_since(Instant::now())
        .max(Duration::from_millis(1))
}

/// Connects within the time left before `deadline`.
fn connect_by(addr: SocketAddr, deadline: Instant) -> Result<TcpStream, Outcome> {
    let stream = TcpStream::connect_timeout(&addr, left(deadline)).map_err(|e| classify_io(&e))?;
    stream.set_nodelay(true).map_err(|e| classify_io(&e))?;
    Ok(stream)
}

/// Sends one DATA request.
fn send_data(stream: &mut TcpStream, payload: &[u8], deadline: Instant) -> Result<(), Outcome> {
    stream
        .set_write_timeout(Some(left(deadline)))
        .map_err(|e| classify_io(&e))?;
    stream
        .write_all(&frame(DATA, payload))
        .map_err(|e| classify_io(&e))
}

/// Reads the reply to `payload` and says how the attempt ended.
fn reply_outcome(stream: &mut TcpStream, payload: &[u8], deadline: Instant) -> Outcome {
    let mut read = |buf: &mut [u8]| -> Result<(), Outcome> {
        let mut at = 0;
        while at < buf.len() {
            stream
                .set_read_timeout(Some(left(deadline)))
                .map_err(|e| classify_io(&e))?;
            match stream.read(&mut buf[at..]) {
                Ok(0) => return Err(Outcome::Eof),
                Ok(n) => at += n,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(classify_io(&e)),
            }
        }
        Ok(())
    };
    let mut header = [0u8; 5];
    if let Err(outcome) = read(&mut header) {
        return outcome;
    }
    let len = u32::from_be_bytes([header[0], header[1], header[2], header[3]]) as usize;
    if len == 0 || len > 1 << 20 {
        return Outcome::Other(format!("reply length {len}"));
    }
    let mut body = vec![0u8; len - 1];
    if let Err(outcome) = read(&mut body) {
        return outcome;
    }
    match header[4] {
        DATA if body == payload => Outcome::Echo,
        GOAWAY if body.len() >= 2 => Outcome::GoAway(u16::from_be_bytes([body[0], body[1]])),
        kind => Outcome::Other(format!("reply kind 0x{kind:02x}")),
    }
}

/// One whole attempt: connect, send one DATA, read the outcome, close.
fn attempt(addr: SocketAddr, payload: &[u8], bound: Duration) -> (Outcome, Duration) {
    let started = Instant::now();
    let deadline = started + bound;
    let outcome = match connect_by(addr, deadline) {
        Err(outcome) => outcome,
        Ok(mut stream) => match send_data(&mut stream, payload, deadline) {
            Err(outcome) => outcome,
            Ok(()) => reply_outcome(&mut stream, payload, deadline),
        },
    };
    (outcome, started.elapsed())
}

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

/// A good client: connects, is echoed within `bound`; returns how long it took.
fn good_client(addr: SocketAddr, what: &str, bound: Duration) -> Duration {
    let payload = format!("good client: {what}");
    let (outcome, took) = attempt(addr, payload.as_bytes(), bound);
    assert_eq!(
        outcome,
        Outcome::Echo,
        "{what}: a good client was not served (after {took:?})"
    );
    assert!(
        took <= bound,
        "{what}: good client served only after {took:?}"
    );
    took
}

fn ms(d: Duration) -> u128 {
    d.as_millis()
}

// ---------------------------------------------------------------------------
// 1. Slowloris army
// ---------------------------------------------------------------------------

const ARMY: usize = 200;
const ARMY_WORKERS: usize = 4;
const ARMY_HEARTBEAT: Duration = Duration::from_secs(1);
const ARMY_REAP: Duration = Duration::from_millis(100);
/// Slack on top of heartbeat + reap interval, for a loaded 2-core machine.
const ARMY_SLACK: Duration = Duration::from_secs(2);

/// One dribbling connection, driven without blocking.
struct Dribbler {
    stream: TcpStream,
    connected: Instant,
    next_send: Instant,
    every: Duration,
    sent: usize,
    received: Vec<u8>,
    closed: Option<Instant>,
}

/// What the army's driver thread reports at the end.
#[derive(Debug, Default)]
struct ArmyResult {
    goaway2: u64,
    goaway3: u64,
    plain_close: u64,
    other: Vec<String>,
    never_closed: u64,
    max_close: Duration,
    bytes_dribbled: usize,
    /// Most threads this whole test process (server included) had.
    max_threads: u64,
}

#[test]
fn slowloris_army_is_dropped_and_a_good_client_is_served_when_a_worker_frees() {
    let _serial = serial();
    raise_nofile();
    let server = start(Config {
        workers: ARMY_WORKERS,
        queue: 256,
        heartbeat_timeout: ARMY_HEARTBEAT,
        reap_interval: ARMY_REAP,
        ..config()
    });
    let addr = server.local_addr();
    let bound = ARMY_HEARTBEAT + ARMY_REAP + ARMY_SLACK;

    // The frame every dribbler starts and never finishes: 1000 bytes of
    // payload announced, one byte sent every 100..200 ms.
    let mut unfinished = Vec::new();
    Framing::Length.encode(DATA, &[b'x'; 1000], &mut unfinished);

    let open = Arc::new(AtomicUsize::new(0));
    let (army_ready, army_connected) = mpsc::channel::<Instant>();
    let driver = thread::spawn({
        let open = Arc::clone(&open);
        move || -> ArmyResult {
            let mut army = Vec::with_capacity(ARMY);
            for i in 0..ARMY {
                let stream = TcpStream::connect(addr).expect("dribbler connects");
                let connected = Instant::now();
                stream.set_nodelay(true).unwrap();
                stream.set_nonblocking(true).unwrap();
                let every = Duration::from_millis(100 + (i as u64 * 37) % 101);
                army.push(Dribbler {
                    stream,
                    connected,
                    next_send: connected,
                    every,
                    sent: 0,
                    received: Vec::new(),
                    closed: None,
                });
                open.fetch_add(1, Ordering::SeqCst);
            }
            let _ = army_ready.send(Instant::now());

            // One thread drives all of them, round-robin, never blocking.
            let give_up = Instant::now() + Duration::from_secs(30);
            let mut scratch = [0u8; 256];
            let mut max_threads = 0;
            let mut round = 0u64;
            while army.iter().any(|d| d.closed.is_none()) && Instant::now() < give_up {
                for d in army.iter_mut().filter(|d| d.closed.is_none()) {
                    let now = Instant::now();
                    if now >= d.next_send && d.sent < unfinished.len() - 1 {
                        match (&d.stream).write(&unfinished[d.sent..d.sent + 1]) {
                            Ok(n) => d.sent += n,
                            Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                            Err(_) => d.closed = Some(now),
                        }
                        d.next_send = now + d.every;
                    }
                    while d.closed.is_none() {
                        match (&d.stream).read(&mut scratch) {
                            Ok(0) => d.closed = Some(Instant::now()),
                            Ok(n) => d.received.extend_from_slice(&scratch[..n]),
                            Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                            Err(e) if e.kind() == ErrorKind::Interrupted => {}
                            Err(_) => d.closed = Some(Instant::now()),
                        }
                    }
                    if d.closed.is_some() {
                        open.fetch_sub(1, Ordering::SeqCst);
                    }
                }
                if round.is_multiple_of(10) {
                    if let Some((_, threads)) = proc_status("self") {
                        max_threads = max_threads.max(threads);
                    }
                }
                round += 1;
                thread::sleep(Duration::from_millis(5));
            }

            let mut result = ArmyResult {
                max_threads,
                ..ArmyResult::default()
            };
            for d in &army {
                result.bytes_dribbled += d.sent;
                let Some(closed) = d.closed else {
                    result.never_closed += 1;
                    continue;
                };
                result.max_close = result.max_close.max(closed - d.connected);
                match (goaway_code(&d.received), d.received.is_empty()) {
                    (Some(2), _) => result.goaway2 += 1,
                    (Some(3), _) => result.goaway3 += 1,
                    (None, true) => result.plain_close += 1,
                    (code, _) => result
                        .other
                        .push(format!("code {code:?}, {} bytes", d.received.len())),
                }
            }
            result
        }
    });

    // The good client arrives after the whole army, while most of it is
    // still waiting in the queue. Its deadline is then later than every
    // dribbler's by more than a reap interval, so it is served as soon as
    // the dribblers ahead of it have been dropped: about one heartbeat after
    // the army arrived, not after 200 / 4 heartbeats.
    let army_done = army_connected
        .recv_timeout(Duration::from_secs(30))
        .expect("the army connects");
    thread::sleep(Duration::from_millis(400));
    let open_at_good = open.load(Ordering::SeqCst);
    let since_army = army_done.elapsed();
    let good_took = good_client(addr, "after the slowloris army", bound);

    let result = driver.join().expect("driver thread");
    // Long after the army: still served, at once.
    let after_took = good_client(addr, "after the army is gone", Duration::from_secs(3));
    server.handle().shutdown();
    let report = server.join();

    println!(
        "FIGURES slowloris_army: attempts={ARMY} driver_threads=1 workers={ARMY_WORKERS} \
         heartbeat_ms={} reap_ms={} goaway2={} goaway3={} plain_close={} other={} \
         never_closed={} max_close_ms={} bound_ms={} bytes_dribbled={} \
         open_dribblers_at_good_connect={open_at_good} good_connect_after_army_ms={} \
         good_served_ms={} good2_served_ms={} report_reaped={} \
         report_rejected_busy={} forced={} max_process_threads={}",
        ms(ARMY_HEARTBEAT),
        ms(ARMY_REAP),
        result.goaway2,
        result.goaway3,
        result.plain_close,
        result.other.len(),
        result.never_closed,
        ms(result.max_close),
        ms(bound),
        result.bytes_dribbled,
        ms(since_army),
        ms(good_took),
        ms(after_took),
        report.reaped,
        report.rejected_busy,
        report.forced,
        result.max_threads,
    );

    assert_eq!(result.never_closed, 0, "dribblers never closed: {result:?}");
    assert!(result.other.is_empty(), "unexpected endings: {result:?}");
    assert!(
        result.max_close <= bound,
        "a dribbler held on for {:?} (bound {bound:?})",
        result.max_close
    );
    // The dribblers that got a worker are reaped with GOAWAY 2; the ones
    // whose deadline passed in the queue get GOAWAY 3, from the reaper or
    // from a worker that dequeues them between scans. Either way they are
    // closed within the bound, which is what this test is about.
    assert_eq!(
        result.goaway2 + result.goaway3 + result.plain_close,
        ARMY as u64
    );
    assert!(
        result.goaway2 >= ARMY_WORKERS as u64,
        "the first dribblers were served, then reaped: {result:?}"
    );
    assert!(
        open_at_good > ARMY_WORKERS,
        "the good client must arrive while dribblers are still queued ({open_at_good} open)"
    );
    // No thread per client: the server's threads, the test harness's and
    // the one driver, far below the 200 connections.
    assert!(
        result.max_threads < 50,
        "{} threads in this process with {ARMY} dribblers",
        result.max_threads
    );
    // Every dribbler was either reaped while served or turned away from the
    // queue; nothing else.
    assert_eq!(
        report.reaped + report.rejected_busy,
        ARMY as u64,
        "{report}"
    );
    assert!(!report.forced, "{report}");
}

/// Promised: "A connection still waiting in the queue when its deadline
/// passes is sent GOAWAY 3 and closed; it never occupies a worker." That
/// must hold even when a worker frees between the deadline and the reaper's
/// next scan (a regression: the pool once dequeued without looking at the
/// deadline, and the next scan reaped the connection with GOAWAY 2). This
/// test makes that window deterministic: it learns when the reaper scans,
/// lets B's deadline pass in the queue just after a scan, and frees the only
/// worker before the next. The worker is kept busy by A's slow request, held
/// by the service until the test releases it (a quiet connection does not
/// hold a worker, since v2).
#[test]
fn connection_expired_in_the_queue_gets_busy_even_if_a_worker_frees_before_the_scan() {
    let _serial = serial();
    const HEARTBEAT: Duration = Duration::from_secs(2);
    const REAP: Duration = Duration::from_millis(500);
    const HOLD: &[u8] = b"slow: a keeps the only worker busy";
    let (service, gate) = common::gate::gate();
    let server = start_with(
        Config {
            workers: 1,
            queue: 8,
            heartbeat_timeout: HEARTBEAT,
            reap_interval: REAP,
            ..config()
        },
        service,
    );
    let addr = server.local_addr();

    // When does the reaper scan? A silent probe is reaped at a scan.
    let mut probe = Client::connect(addr);
    probe.expect_goaway(GoAwayCode::HeartbeatTimeout);
    let scan = Instant::now();
    drop(probe);

    // A keeps the only worker busy (a running service is never reaped).
    let mut a = Client::connect(addr);
    a.send(DATA, HOLD);
    gate.wait_started(HOLD);
    // B's deadline falls 150 ms after a scan; A's request ends 150 ms after
    // that, 200 ms before the next scan.
    let next_scans = scan + 4 * REAP;
    let b_deadline = next_scans + Duration::from_millis(150);
    let a_leaves = b_deadline + Duration::from_millis(150);
    thread::sleep(left(b_deadline - HEARTBEAT));
    let mut b = Client::connect(addr);
    let b_connected = Instant::now();
    b.send_raw(&[0, 0]); // the start of a frame; it never completes
    thread::sleep(left(a_leaves));
    gate.release();
    let a_reply = a.recv().expect("A's slow reply");
    assert_eq!((a_reply.kind, a_reply.payload.as_slice()), (DATA, HOLD));
    drop(a);

    let reply = b.recv().expect("B gets a GOAWAY");
    let b_closed = b_connected.elapsed();
    let code = reply.goaway(Framing::Length).map(|g| g.code);
    b.expect_closed();
    let good_took = good_client(addr, "after B", Duration::from_secs(3));
    server.handle().shutdown();
    let report = server.join();
    println!(
        "FIGURES expired_in_queue: heartbeat_ms={} reap_ms={} b_goaway={code:?} \
         b_closed_after_ms={} a_left_after_b_deadline_ms=150 reaped={} rejected_busy={} \
         good_served_ms={}",
        ms(HEARTBEAT),
        ms(REAP),
        ms(b_closed),
        report.reaped,
        report.rejected_busy,
        ms(good_took),
    );
    assert_eq!(
        code,
        Some(GoAwayCode::Busy.as_u16()),
        "B's deadline passed while it waited in the queue: GOAWAY 3 expected, got {reply:?} \
         ({report})"
    );
    assert_eq!(report.reaped, 1, "only the probe is reaped: {report}");
    assert_eq!(report.rejected_queue_deadline, 1, "{report}");
}

// ---------------------------------------------------------------------------
// 2. Connection flood
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
// 3. Socket-level misbehaviour
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

// ---------------------------------------------------------------------------
// 4. A service that panics
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

// ---------------------------------------------------------------------------
// 5. Connects racing shutdown
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
