//! Soak test: the real `wharf` binary under mixed load for a long time, with
//! its memory, thread count and open descriptors sampled every second. It
//! fails if any of them trends upward (a leak), or if any echo comes back
//! wrong.
//!
//! Ignored by default; run it with
//!
//! ```sh
//! WHARF_SOAK_SECS=600 cargo test --release --test soak -- --ignored --nocapture
//! ```
//!
//! (`WHARF_SOAK_SECS` defaults to 600.) The load, all bounded in rate and in
//! threads, runs against `--workers 2 --queue 32 --heartbeat-timeout 2s`:
//! far more clients than workers, so connections rest in the poller and are
//! woken all the time (the exit summary counts the rests and wake-ups).
//!
//! - steady clients: request/response (sometimes 4 pipelined), ~1 ms apart;
//! - churn: connect, 1-3 requests, close, every ~10 ms;
//! - idlers: PING every 600 ms (a third of the heartbeat), a request now and
//!   then, reconnecting every ~10 s;
//! - hostile: a dribbler (one header byte every 300 ms, reaped with GOAWAY 2),
//!   half-frames followed by a reset, oversized frames (GOAWAY 5), `len = 0`
//!   frames (GOAWAY 4) and unknown kinds (ERROR).
//!
//! Trend check: the median of the last 20% of samples against the median of
//! the 20%-40% window (after warm-up): RSS may grow by less than 10% + 1 MiB,
//! the thread count must be equal (and never above workers + 6), the open
//! descriptors may grow by fewer than 16.

mod common;

use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{spawn_wharf, Client, Received};
use wharf::frame::{DATA, ERROR, GOAWAY, PING, PONG};
use wharf::{Framing, GoAwayCode};

const WORKERS: usize = 2;
const MAX_FRAME: u32 = 65_536;
const HEARTBEAT: Duration = Duration::from_secs(2);
/// Read timeout of every load client: a hung server fails fast enough.
const READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Error messages kept for the report.
const KEEP_ERRORS: usize = 20;

/// What the load saw, shared by the load threads.
struct Tally {
    began: Instant,
    requests: AtomicU64,
    pings: AtomicU64,
    connections: AtomicU64,
    busy: AtomicU64,
    hostile: AtomicU64,
    errors: AtomicU64,
    mismatches: AtomicU64,
    first_errors: Mutex<Vec<String>>,
}

impl Tally {
    fn new() -> Tally {
        Tally {
            began: Instant::now(),
            requests: AtomicU64::new(0),
            pings: AtomicU64::new(0),
            connections: AtomicU64::new(0),
            busy: AtomicU64::new(0),
            hostile: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            mismatches: AtomicU64::new(0),
            first_errors: Mutex::new(Vec::new()),
        }
    }

    fn error(&self, what: String) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        let mut kept = self.first_errors.lock().unwrap();
        if kept.len() < KEEP_ERRORS {
            kept.push(format!(
                "at {:.1}s: {what}",
                self.began.elapsed().as_secs_f64()
            ));
        }
    }

    fn mismatch(&self, what: String) {
        self.mismatches.fetch_add(1, Ordering::Relaxed);
        self.error(what);
    }
}

/// A small deterministic PRNG (xorshift64*), so the load needs no crate.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) % n.max(1)
    }
}

fn connect(addr: SocketAddr, tally: &Tally) -> Option<Client> {
    match TcpStream::connect_timeout(&addr, Duration::from_secs(5)) {
        Ok(stream) => {
            tally.connections.fetch_add(1, Ordering::Relaxed);
            let client = Client::from_stream(stream, Framing::Length);
            client.stream.set_read_timeout(Some(READ_TIMEOUT)).unwrap();
            Some(client)
        }
        Err(e) => {
            tally.error(format!("connect: {e}"));
            None
        }
    }
}

/// The client's own address: the peer address in the server's log.
fn local(client: &Client) -> String {
    client
        .stream
        .local_addr()
        .map_or_else(|_| "?".to_owned(), |a| a.to_string())
}

/// Whether a frame is GOAWAY 3 (the queue was full): back off, not an error.
fn is_busy(frame: &Received) -> bool {
    frame
        .goaway(Framing::Length)
        .is_some_and(|g| g.code == GoAwayCode::Busy.as_u16())
}

/// Sends `payloads` pipelined and checks the echoes. `Err(true)` means the
/// connection is unusable because the server was busy, `Err(false)` any
/// other failure (already counted).
fn exchange(
    client: &mut Client,
    payloads: &[Vec<u8>],
    tally: &Tally,
    who: &str,
) -> Result<(), bool> {
    let mut buf = Vec::new();
    for p in payloads {
        Framing::Length.encode_data(p, &mut buf);
    }
    if let Err(e) = client.stream.write_all(&buf) {
        tally.error(format!("{who}: write: {e}"));
        return Err(false);
    }
    for p in payloads {
        match client.try_recv() {
            Ok(Some(frame)) if frame.kind == DATA => {
                if &frame.payload != p {
                    tally.mismatch(format!(
                        "{who}: echo of {} bytes came back as {} different bytes",
                        p.len(),
                        frame.payload.len()
                    ));
                    return Err(false);
                }
                tally.requests.fetch_add(1, Ordering::Relaxed);
            }
            Ok(Some(frame)) if is_busy(&frame) => {
                tally.busy.fetch_add(1, Ordering::Relaxed);
                return Err(true);
            }
            Ok(Some(frame)) => {
                tally.error(format!("{who}: unexpected {:?}", summarize(&frame)));
                return Err(false);
            }
            Ok(None) => {
                tally.error(format!("{who}: closed without GOAWAY"));
                return Err(false);
            }
            Err(e) => {
                tally.error(format!("{who}: read: {e}"));
                return Err(false);
            }
        }
    }
    Ok(())
}

fn summarize(frame: &Received) -> String {
    match frame.goaway(Framing::Length) {
        Some(g) => format!("GOAWAY {} {}", g.code, g.reason),
        None => format!("kind {} with {} bytes", frame.kind, frame.payload.len()),
    }
}

fn payload(rng: &mut Rng, tag: &str, n: u64) -> Vec<u8> {
    let mut p = format!("{tag}-{n}-").into_bytes();
    let extra = match rng.below(10) {
        0 => rng.below(16 * 1024),
        _ => rng.below(200),
    };
    p.extend((0..extra).map(|i| b'a' + ((n + i) % 26) as u8));
    p
}

/// Request/response on a long-lived connection, sometimes pipelined.
fn steady(addr: SocketAddr, id: u64, stop: &AtomicBool, tally: &Tally) {
    let mut rng = Rng::new(id + 1);
    let tag = format!("steady{id}");
    let mut n = 0;
    while !stop.load(Ordering::Relaxed) {
        let Some(mut client) = connect(addr, tally) else {
            std::thread::sleep(Duration::from_millis(200));
            continue;
        };
        let who = format!("{tag} {}", local(&client));
        while !stop.load(Ordering::Relaxed) {
            let count = if rng.below(4) == 0 { 4 } else { 1 };
            let batch: Vec<Vec<u8>> = (0..count).map(|i| payload(&mut rng, &who, n + i)).collect();
            n += count;
            if let Err(busy) = exchange(&mut client, &batch, tally, &who) {
                std::thread::sleep(Duration::from_millis(if busy { 100 } else { 200 }));
                break;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

/// Short connections: connect, a few requests, close.
fn churn(addr: SocketAddr, stop: &AtomicBool, tally: &Tally) {
    let mut rng = Rng::new(99);
    let mut n = 0;
    while !stop.load(Ordering::Relaxed) {
        if let Some(mut client) = connect(addr, tally) {
            for _ in 0..1 + rng.below(3) {
                let p = payload(&mut rng, "churn", n);
                n += 1;
                if let Err(busy) = exchange(&mut client, &[p], tally, "churn") {
                    if busy {
                        std::thread::sleep(Duration::from_millis(50));
                    }
                    break;
                }
            }
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Mostly idle connections kept alive by PING, reconnecting every ~10 s.
fn idler(addr: SocketAddr, id: u64, stop: &AtomicBool, tally: &Tally) {
    let mut rng = Rng::new(1000 + id);
    let tag = format!("idler{id}");
    let mut n = 0;
    while !stop.load(Ordering::Relaxed) {
        let Some(mut client) = connect(addr, tally) else {
            std::thread::sleep(Duration::from_millis(200));
            continue;
        };
        let who = format!("{tag} {}", local(&client));
        let since = Instant::now();
        'conn: while !stop.load(Ordering::Relaxed) && since.elapsed() < Duration::from_secs(10) {
            std::thread::sleep(HEARTBEAT / 3 - Duration::from_millis(66));
            if rng.below(5) == 0 {
                let p = payload(&mut rng, &tag, n);
                n += 1;
                if let Err(busy) = exchange(&mut client, &[p], tally, &who) {
                    std::thread::sleep(Duration::from_millis(if busy { 100 } else { 200 }));
                    break 'conn;
                }
                continue;
            }
            client.send(PING, b"idle");
            match client.try_recv() {
                Ok(Some(f)) if f.kind == PONG && f.payload == b"idle" => {
                    tally.pings.fetch_add(1, Ordering::Relaxed);
                }
                Ok(Some(f)) if is_busy(&f) => {
                    tally.busy.fetch_add(1, Ordering::Relaxed);
                    std::thread::sleep(Duration::from_millis(100));
                    break 'conn;
                }
                other => {
                    tally.error(format!("{who}: PING got {other:?}"));
                    break 'conn;
                }
            }
        }
    }
}

/// Reads the next frame, which must be a GOAWAY, and returns its code.
fn goaway_code(client: &mut Client) -> Result<u16, String> {
    match client.try_recv() {
        Ok(Some(frame)) if frame.kind == GOAWAY => frame
            .goaway(Framing::Length)
            .map(|g| g.code)
            .ok_or_else(|| "malformed GOAWAY".to_owned()),
        Ok(Some(frame)) => Err(format!("unexpected {}", summarize(&frame))),
        Ok(None) => Err("closed without GOAWAY".to_owned()),
        Err(e) => Err(format!("read: {e}")),
    }
}

/// Expects GOAWAY `code` (or BUSY), counting anything else as an error.
fn expect_goaway(client: &mut Client, code: GoAwayCode, who: &str, tally: &Tally) {
    match goaway_code(client) {
        Ok(c) if c == code.as_u16() => {
            tally.hostile.fetch_add(1, Ordering::Relaxed);
        }
        Ok(c) if c == GoAwayCode::Busy.as_u16() => {
            tally.busy.fetch_add(1, Ordering::Relaxed);
        }
        Ok(c) => tally.error(format!("{who}: GOAWAY {c}, expected {}", code.as_u16())),
        Err(e) => tally.error(format!("{who}: {e}")),
    }
}

/// Sends one header byte every 300 ms; the server must reap it (GOAWAY 2).
fn dribbler(addr: SocketAddr, stop: &AtomicBool, tally: &Tally) {
    let header = [0u8, 0, 0, 9, DATA];
    while !stop.load(Ordering::Relaxed) {
        let Some(mut client) = connect(addr, tally) else {
            std::thread::sleep(Duration::from_millis(200));
            continue;
        };
        // Dribble bytes of a frame that never completes, until the server
        // closes (it reaps within heartbeat + reap interval).
        let since = Instant::now();
        for i in 0..40 {
            let byte = if i < header.len() { header[i] } else { b'x' };
            if client.stream.write_all(&[byte]).is_err() {
                break;
            }
            std::thread::sleep(Duration::from_millis(300));
            // Once the frame would complete, stop before it does.
            if i + 1 >= header.len() + 7 || since.elapsed() > HEARTBEAT * 3 {
                break;
            }
        }
        expect_goaway(&mut client, GoAwayCode::HeartbeatTimeout, "dribbler", tally);
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Half-frames with a reset, oversized frames, `len = 0`, unknown kinds.
fn hostile(addr: SocketAddr, stop: &AtomicBool, tally: &Tally) {
    let mut round = 0u64;
    while !stop.load(Ordering::Relaxed) {
        round += 1;
        let Some(mut client) = connect(addr, tally) else {
            std::thread::sleep(Duration::from_millis(200));
            continue;
        };
        match round % 4 {
            0 => {
                // A header announcing 1000 bytes, 10 of them, then a reset.
                let mut bytes = 1000u32.to_be_bytes().to_vec();
                bytes.push(DATA);
                bytes.extend_from_slice(&[b'h'; 9]);
                let _ = client.stream.write_all(&bytes);
                std::thread::sleep(Duration::from_millis(20));
                let socket = socket2::SockRef::from(&client.stream);
                let _ = socket.set_linger(Some(Duration::ZERO));
                drop(client);
                tally.hostile.fetch_add(1, Ordering::Relaxed);
            }
            1 => {
                client.send_raw(&(MAX_FRAME + 1).to_be_bytes());
                expect_goaway(&mut client, GoAwayCode::FrameTooLarge, "oversized", tally);
            }
            2 => {
                client.send_raw(&[0, 0, 0, 0, DATA]);
                expect_goaway(&mut client, GoAwayCode::ProtocolError, "len=0", tally);
            }
            _ => {
                // An unknown kind gets ERROR; the connection stays usable.
                client.send(0x7f, b"what");
                match client.try_recv() {
                    Ok(Some(f)) if f.kind == ERROR => {
                        tally.hostile.fetch_add(1, Ordering::Relaxed);
                        let _ = exchange(&mut client, &[b"after-error".to_vec()], tally, "hostile");
                    }
                    Ok(Some(f)) if is_busy(&f) => {
                        tally.busy.fetch_add(1, Ordering::Relaxed);
                    }
                    other => tally.error(format!("unknown kind: got {other:?}")),
                }
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// One load thread's body.
type Load = Box<dyn FnOnce(&AtomicBool, &Tally) + Send>;

/// One sample of the server process.
#[derive(Debug, Clone, Copy)]
struct Sample {
    rss_kib: u64,
    threads: u64,
    fds: u64,
}

fn sample(pid: u32) -> Option<Sample> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| -> Option<u64> {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))?
            .split_whitespace()
            .next()?
            .parse()
            .ok()
    };
    Some(Sample {
        rss_kib: field("VmRSS:")?,
        threads: field("Threads:")?,
        fds: std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count() as u64,
    })
}

fn median(mut values: Vec<u64>) -> u64 {
    values.sort_unstable();
    values[values.len() / 2]
}

/// min/median/max of one metric.
fn spread(values: &[u64]) -> (u64, u64, u64) {
    let min = *values.iter().min().unwrap();
    let max = *values.iter().max().unwrap();
    (min, median(values.to_vec()), max)
}

#[test]
#[ignore = "soak: run with --release -- --ignored --nocapture (WHARF_SOAK_SECS, default 600)"]
fn soak_mixed_load_has_no_upward_trend() {
    let secs: u64 = std::env::var("WHARF_SOAK_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(600);
    assert!(secs >= 10, "WHARF_SOAK_SECS must be at least 10");
    let workers = WORKERS.to_string();
    let max_frame = MAX_FRAME.to_string();
    let mut server = spawn_wharf(&[
        "--workers",
        &workers,
        "--queue",
        "32",
        "--heartbeat-timeout",
        "2s",
        "--max-frame",
        &max_frame,
        "--reap-interval",
        "500ms",
        "--grace",
        "10s",
    ]);
    let pid = server.child.id();
    let addr = server.addr;
    let stop = Arc::new(AtomicBool::new(false));
    let tally = Arc::new(Tally::new());

    let mut threads = Vec::new();
    let mut start = |f: Load| {
        let (stop, tally) = (Arc::clone(&stop), Arc::clone(&tally));
        threads.push(std::thread::spawn(move || f(&stop, &tally)));
    };
    for id in 0..2 {
        start(Box::new(move |s, t| steady(addr, id, s, t)));
        start(Box::new(move |s, t| idler(addr, id, s, t)));
    }
    start(Box::new(move |s, t| churn(addr, s, t)));
    start(Box::new(move |s, t| dribbler(addr, s, t)));
    start(Box::new(move |s, t| hostile(addr, s, t)));

    let began = Instant::now();
    let mut samples = Vec::new();
    // How late the sampler woke at worst: a stall detector for the machine.
    let mut late_max = Duration::ZERO;
    let mut late_at = 0;
    for tick in 1..=secs {
        let at = began + Duration::from_secs(tick);
        std::thread::sleep(at.saturating_duration_since(Instant::now()));
        let late = Instant::now().saturating_duration_since(at);
        if late > late_max {
            (late_max, late_at) = (late, tick);
        }
        if let Ok(Some(status)) = server.child.try_wait() {
            stop.store(true, Ordering::Relaxed);
            panic!(
                "server exited during the soak: {status}; log:\n{}",
                server.log()
            );
        }
        if let Some(s) = sample(pid) {
            samples.push(s);
        }
        if tick % 60 == 0 {
            eprintln!(
                "soak {tick}/{secs}s: {:?}, {} requests, {} errors",
                samples.last(),
                tally.requests.load(Ordering::Relaxed),
                tally.errors.load(Ordering::Relaxed)
            );
        }
    }
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        t.join().expect("load thread");
    }
    server.signal(libc::SIGTERM);
    let status = server.wait_exit(Duration::from_secs(20));
    let log = server.log();
    let status = status.unwrap_or_else(|| panic!("no exit within 20 s of SIGTERM; log:\n{log}"));
    let summary = log
        .lines()
        .find_map(|l| l.split("summary: ").nth(1))
        .unwrap_or("(no summary line)")
        .to_owned();

    // The figures.
    let n = samples.len();
    assert!(n >= 10, "only {n} samples");
    let rss: Vec<u64> = samples.iter().map(|s| s.rss_kib).collect();
    let threads_n: Vec<u64> = samples.iter().map(|s| s.threads).collect();
    let fds: Vec<u64> = samples.iter().map(|s| s.fds).collect();
    let (mid, late) = (n / 5..2 * n / 5, 4 * n / 5..n);
    let window = |v: &[u64], r: std::ops::Range<usize>| median(v[r].to_vec());
    let (rss_mid, rss_late) = (window(&rss, mid.clone()), window(&rss, late.clone()));
    let (thr_mid, thr_late) = (
        window(&threads_n, mid.clone()),
        window(&threads_n, late.clone()),
    );
    let (fds_mid, fds_late) = (window(&fds, mid), window(&fds, late));
    let rss_bound = rss_mid + rss_mid / 10 + 1024;
    let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
    let errors = tally.first_errors.lock().unwrap().clone();
    let (r, t, f) = (spread(&rss), spread(&threads_n), spread(&fds));
    println!(
        "FIGURES soak_mixed_load_has_no_upward_trend: {secs}s, {n} samples; RSS KiB \
         min/median/max {}/{}/{} (20-40% median {rss_mid}, last-20% median {rss_late}, bound \
         {rss_bound}); threads {}/{}/{} ({thr_mid} -> {thr_late}); fds {}/{}/{} ({fds_mid} -> \
         {fds_late}, bound +16); client side: {} requests echoed, {} PONGs, {} connections, \
         {} BUSY, {} hostile rounds answered as specified, {} errors ({} wrong echoes); \
         {status}; sampler woke at most {:.3}s late (at {late_at}s); server summary: {summary}",
        r.0,
        r.1,
        r.2,
        t.0,
        t.1,
        t.2,
        f.0,
        f.1,
        f.2,
        get(&tally.requests),
        get(&tally.pings),
        get(&tally.connections),
        get(&tally.busy),
        get(&tally.hostile),
        get(&tally.errors),
        get(&tally.mismatches),
        late_max.as_secs_f64(),
    );
    if !errors.is_empty() {
        println!("first errors: {errors:#?}");
        // What the server logged about those connections.
        for e in &errors {
            let Some(peer) = e.split_whitespace().find(|w| w.starts_with("127.0.0.1:")) else {
                continue;
            };
            let peer = peer.trim_end_matches(':');
            for line in log.lines().filter(|l| l.contains(peer)) {
                println!("  server on {peer}: {line}");
            }
        }
    }

    assert_eq!(get(&tally.mismatches), 0, "wrong echoes: {errors:#?}");
    assert!(get(&tally.requests) > 0, "no request was served");
    assert!(
        rss_late < rss_bound,
        "RSS grew: median {rss_mid} KiB at 20-40%, {rss_late} KiB in the last 20%"
    );
    assert_eq!(thr_mid, thr_late, "thread count changed");
    assert!(
        t.2 <= WORKERS as u64 + 6,
        "{} threads at most, expected at most workers + 6",
        t.2
    );
    assert!(
        fds_late < fds_mid + 16,
        "open descriptors grew: median {fds_mid} at 20-40%, {fds_late} in the last 20%"
    );
    assert_eq!(status.code(), Some(0), "exit status; log:\n{log}");
}
