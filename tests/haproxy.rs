//! A rolling restart behind a real HAProxy loses nothing.
//!
//! Two `wharf serve` backends sit behind HAProxy, configured with
//! `deploy/haproxy.cfg` as shipped (TCP mode, the PROXY protocol v2, a
//! binary PING/PONG health check, `retries` and `option redispatch`). Eight clients use
//! `wharf::Client` with retries on, each keeping a few requests in flight.
//! Each backend in turn is stopped with SIGTERM and a new process started on
//! the same port, under load.
//!
//! Counted: requests sent, answered, resent after a GOAWAY (retried), lost
//! (a client gave up on them), and duplicates (run by a server more often
//! than sent, from the servers' own `data_requests` counts). Lost and
//! duplicates must be 0, and every reply must be the echo of its request.
//!
//! The config binds fixed ports, so the test runs in a network namespace of
//! its own (as root, see `common::netns`). Where HAProxy is not installed
//! (`.ci/run` installs it) or namespaces are not allowed, the test says
//! `SKIPPED:` loudly and passes.

mod common;

use std::collections::{HashSet, VecDeque};
use std::io::{self, Write};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use common::haproxy::{self, Haproxy};
use common::{netns, serve_command, spawn_wharf_command, Wharf};
use wharf::client::{Client, ClientOptions, Reply};

/// The shipped config, as an operator would use it.
const CONFIG: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/haproxy.cfg");
/// The addresses in that config.
const FRONT: &str = "127.0.0.1:7878";
const BACKENDS: [&str; 2] = ["127.0.0.1:7001", "127.0.0.1:7002"];

const CLIENTS: usize = 8;
/// Requests each client keeps in flight (pipelined requests count too).
const WINDOW: usize = 4;
/// Load before the first restart, between the two, and after the second.
const PHASE: Duration = Duration::from_millis(1500);
/// Each request spends this long in the service, so a drain finds work.
/// The config sends a PROXY v2 header from 127.0.0.1 on every connection.
const ARGS: &[&str] = &[
    "--workers",
    "4",
    "--delay",
    "1ms",
    "--grace",
    "10s",
    "--proxy-from",
    "127.0.0.1",
];

/// What one client saw.
#[derive(Debug, Default, Clone, Copy)]
struct Tally {
    sent: u64,
    answered: u64,
    /// Requests resent after a GOAWAY had left them unanswered.
    retried: u64,
    reconnects: u64,
    /// Requests still unanswered when the client gave up.
    lost: u64,
    /// Replies that were not the echo of the request they answered.
    wrong: u64,
}

/// One client: keeps `WINDOW` requests in flight until `stop`, then
/// collects the last replies. Stops at the first error, counting what was
/// unanswered as lost.
fn client(id: usize, stop: Arc<AtomicBool>) -> (Tally, Option<String>) {
    let mut tally = Tally::default();
    let options = ClientOptions {
        retries: 20,
        read_timeout: Some(Duration::from_secs(20)),
        ..ClientOptions::default()
    };
    let mut client = match Client::connect(FRONT, options) {
        Ok(client) => client,
        Err(e) => return (tally, Some(format!("client {id}: connect: {e}"))),
    };
    let mut expected: VecDeque<Vec<u8>> = VecDeque::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut error = None;
    loop {
        let stopping = stop.load(Ordering::Relaxed) || Instant::now() >= deadline;
        if !stopping {
            while expected.len() < WINDOW {
                let payload = format!("client {id} request {}", tally.sent).into_bytes();
                if let Err(e) = client.send(&payload) {
                    error = Some(format!("client {id}: send: {e}"));
                    break;
                }
                expected.push_back(payload);
                tally.sent += 1;
            }
            if error.is_none() {
                if let Err(e) = client.flush() {
                    error = Some(format!("client {id}: flush: {e}"));
                }
            }
        }
        if error.is_some() || expected.is_empty() {
            break;
        }
        match client.recv() {
            Ok(Reply::Data(data)) => {
                let want = expected.pop_front().unwrap_or_default();
                if data != want {
                    tally.wrong += 1;
                }
                tally.answered += 1;
            }
            Ok(other) => {
                error = Some(format!("client {id}: unexpected reply {other:?}"));
                break;
            }
            Err(e) => {
                error = Some(format!("client {id}: {e}"));
                break;
            }
        }
    }
    tally.lost = expected.len() as u64;
    tally.retried = client.resent();
    tally.reconnects = client.reconnects();
    (tally, error)
}

/// HAProxy with the shipped config; its log is followed line by line.
struct Balancer {
    haproxy: Haproxy,
    /// Servers HAProxy has marked DOWN and not UP again since (it starts
    /// with every server UP and logs only changes).
    down: HashSet<String>,
}

impl Balancer {
    fn start() -> Balancer {
        Balancer {
            haproxy: Haproxy::start(Path::new(CONFIG)),
            down: HashSet::new(),
        }
    }

    /// Reads the log lines that came, noting servers going DOWN and UP.
    fn read(&mut self, wait: Duration) {
        for line in self.haproxy.new_lines(wait) {
            if let Some(rest) = line.split("Server wharf/").nth(1) {
                let name = rest.split_whitespace().next().unwrap_or("").to_owned();
                if rest.contains(" is DOWN") {
                    self.down.insert(name);
                } else if rest.contains(" is UP") {
                    self.down.remove(&name);
                }
            }
        }
    }

    /// Gives the health checks a few rounds (200 ms apart in the config),
    /// then waits until no server is DOWN: both take clients again.
    fn wait_all_up(&mut self) {
        let settle = Instant::now() + Duration::from_secs(1);
        while Instant::now() < settle {
            self.read(Duration::from_millis(50));
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        while !self.down.is_empty() {
            assert!(
                Instant::now() < deadline,
                "{:?} never came back UP:\n{}",
                self.down,
                self.haproxy.output()
            );
            self.read(Duration::from_millis(50));
        }
    }
}

fn backend(addr: &str) -> Wharf {
    spawn_wharf_command(serve_command(addr, ARGS))
}

/// SIGTERMs `old` and waits for its clean exit; returns its DATA requests.
fn stop(mut old: Wharf) -> u64 {
    old.signal(libc::SIGTERM);
    let status = old
        .wait_exit(Duration::from_secs(30))
        .unwrap_or_else(|| panic!("a backend did not exit; log:\n{}", old.log()));
    assert_eq!(status.code(), Some(0), "backend log:\n{}", old.log());
    data_requests(&old.log())
}

/// `data_requests=N` from the exit summary.
fn data_requests(log: &str) -> u64 {
    log.lines()
        .rev()
        .find(|l| l.contains("summary:"))
        .and_then(|l| {
            l.split_whitespace()
                .find_map(|w| w.strip_prefix("data_requests="))
        })
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no data_requests in the summary:\n{log}"))
}

#[test]
fn rolling_restart_behind_haproxy_loses_nothing() {
    let test = "rolling_restart_behind_haproxy_loses_nothing";
    if haproxy::version(test).is_none() || !netns::enter(test) {
        return;
    }
    let mut backends: Vec<Wharf> = BACKENDS.iter().map(|addr| backend(addr)).collect();
    let mut haproxy = Balancer::start();
    haproxy.wait_all_up();

    let stop_load = Arc::new(AtomicBool::new(false));
    let clients: Vec<JoinHandle<(Tally, Option<String>)>> = (0..CLIENTS)
        .map(|id| {
            let stop_load = Arc::clone(&stop_load);
            thread::spawn(move || client(id, stop_load))
        })
        .collect();
    thread::sleep(PHASE);

    // Restart each backend in turn: SIGTERM, then a new process on its port
    // once the old one has drained, and back in HAProxy's rotation.
    let mut served = 0;
    for (i, addr) in BACKENDS.into_iter().enumerate() {
        let old = backends.remove(i);
        served += stop(old);
        backends.insert(i, backend(addr));
        haproxy.wait_all_up();
        thread::sleep(PHASE);
    }

    stop_load.store(true, Ordering::Relaxed);
    let mut total = Tally::default();
    let mut errors = Vec::new();
    for client in clients {
        let (tally, error) = client.join().expect("client thread");
        total.sent += tally.sent;
        total.answered += tally.answered;
        total.retried += tally.retried;
        total.reconnects += tally.reconnects;
        total.lost += tally.lost;
        total.wrong += tally.wrong;
        errors.extend(error);
    }
    let haproxy_log = haproxy.haproxy.stop();
    served += backends.into_iter().map(stop).sum::<u64>();

    let duplicates = served.saturating_sub(total.answered + total.lost);
    let figures = format!(
        "FIGURES: haproxy rolling restart: sent={} answered={} retried={} reconnects={} \
         lost={} duplicates={} wrong={} (backends ran {} requests)",
        total.sent,
        total.answered,
        total.retried,
        total.reconnects,
        total.lost,
        duplicates,
        total.wrong,
        served
    );
    println!("{figures}");
    let _ = writeln!(io::stderr(), "{figures}");
    assert!(
        errors.is_empty(),
        "{figures}\n{errors:#?}\nhaproxy:\n{haproxy_log}"
    );
    assert_eq!(total.lost, 0, "{figures}");
    assert_eq!(total.wrong, 0, "{figures}");
    assert_eq!(total.answered, total.sent, "{figures}");
    assert_eq!(served, total.sent, "run once each: {figures}");
    assert!(
        total.reconnects > 0,
        "no restart happened under load: {figures}"
    );
}
