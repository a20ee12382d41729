//! PROXY protocol and per-address limits, end to end against the `wharf`
//! binary (the release build under `cargo bench`). Run with
//! `cargo bench --bench addresses`; `cargo test --benches` runs a short
//! version of the same to check that it still works.
//!
//! **Churn with PROXY and limits.** The churn of `compare` (scenario f: 8
//! clients, each connecting, sending one 64 B request, reading its echo and
//! closing), against `wharf serve` started twice per round: plain, and with
//! `--proxy-from 127.0.0.1 --max-connections-per-address 1000
//! --connect-rate-per-address 1000000/s`, where every connection first sends
//! a PROXY v2 header naming a client of its own (10.0.0.0, 10.0.0.1, ...;
//! the header and the request go out in one write, as a balancer sends
//! them). Both run with 4 workers and otherwise the defaults; a fresh server
//! for every point, the two alternating (plain first in odd rounds, PROXY
//! first in even ones). The limits are far above what 8 clients can reach:
//! the server's exit summary must show no connection turned away and no
//! protocol error, and every echo is verified. The goal: the PROXY variant
//! keeps at least 95 % of the plain variant's connections per second
//! (medians over the rounds).
//!
//! **Distinct sources.** `wharf serve --connect-rate-per-address 10/s
//! --max-connections 10000`; after a warm-up (1,000 connections from
//! distinct addresses of 127.2.0.0/16, then 1 s for the reaper to prune)
//! its resident memory (`VmRSS` of `/proc/PID/status`) is read, then 20,000
//! connections are made, each from a source address of its own in
//! 127.1.0.0/16 (bound before connecting; 127/8 is all loopback), 4 at a
//! time, each sending one PING and reading its PONG before closing. RSS is
//! read again right after the last connection and once more 1 s later,
//! when the reaper has pruned the rate table. The goal: RSS stays within a
//! few MiB of where it started. Last, a check that the limit was on: 15
//! connections in a row from one more address, over its burst of 10, must
//! see some turned away, and the server's count of connections over the
//! rate must be exactly those.
//!
//! Clients close with a reset (`SO_LINGER` 0), as in `benches/handoff.rs`,
//! so closed connections leave no TIME_WAIT behind to use up ports.
//!
//! `WHARF_ADDRESSES_ROUNDS` [5] and `WHARF_ADDRESSES_SECS` [2] set the
//! churn's rounds and measured window (warm-up: a quarter of it, at most
//! 0.5 s); `WHARF_ADDRESSES_SOURCES` [20000] the distinct sources. The
//! report goes to stdout and to `target/addresses.md`; progress to stderr.
//! An error, an echo that differs, a connection turned away or a server
//! that does not start or stop makes the process exit 1.

#[allow(dead_code)] // the benchmark uses part of the module
#[path = "common/mod.rs"]
mod common;

use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4, TcpStream};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use common::{machine, target_dir, thousands};
use wharf::frame::{DATA, HEADER_LEN, PING, PONG};
use wharf::Framing;

/// Churn clients, as in `compare`'s scenario f.
const CHURN_CLIENTS: usize = 8;
/// Bytes of each churn request.
const PAYLOAD: usize = 64;
/// wharf's pool in every run here.
const WORKERS: &str = "4";
/// The churn goal: the PROXY variant keeps at least this fraction.
const CHURN_GOAL: f64 = 0.95;
/// The flags of the churn's PROXY variant.
const PROXY_FLAGS: [&str; 6] = [
    "--proxy-from",
    "127.0.0.1",
    "--max-connections-per-address",
    "1000",
    "--connect-rate-per-address",
    "1000000/s",
];
/// Connections open at once in the distinct-sources run.
const SOURCE_CLIENTS: usize = 4;
/// The distinct-sources run's rate limit.
const SOURCE_RATE: &str = "10/s";
/// The check that the rate limit is on: this many connections in a row
/// from one address, more than its burst (one second's worth of 10/s).
const CONTROL_CONNECTIONS: usize = 15;
const CONTROL_SOURCE: Ipv4Addr = Ipv4Addr::new(127, 3, 0, 1);
/// Longest any one phase of connections may take.
const PHASE_LIMIT: Duration = Duration::from_secs(60);
/// How long the reaper gets to prune before RSS is read.
const SETTLE: Duration = Duration::from_secs(1);
/// Longest wait for a child to start, or to stop after SIGTERM.
const CHILD_WAIT: Duration = Duration::from_secs(20);

// ---------------------------------------------------------------------------
// The server, as a child process.

/// `wharf serve` running as a child; dropping it kills the child by its
/// PID if it is still running.
struct Wharf {
    child: Child,
    addr: SocketAddr,
    log: Arc<Mutex<String>>,
    readers: Vec<JoinHandle<()>>,
}

impl Wharf {
    /// Starts `wharf serve --bind 127.0.0.1:0 --workers 4 <args>` and waits
    /// for its listening line.
    fn start(args: &[&str]) -> Result<Wharf, String> {
        let mut command = Command::new(env!("CARGO_BIN_EXE_wharf"));
        command
            .args(["serve", "--bind", "127.0.0.1:0", "--workers", WORKERS])
            .args(args);
        // Settings in the environment would change the server measured.
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("WHARF_") {
                command.env_remove(name);
            }
        }
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot start wharf serve: {e}"))?;
        let log = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = mpsc::channel();
        let pipes: [Box<dyn Read + Send>; 2] = [
            Box::new(child.stderr.take().expect("stderr piped")),
            Box::new(child.stdout.take().expect("stdout piped")),
        ];
        let readers = pipes
            .into_iter()
            .map(|pipe| {
                let log = Arc::clone(&log);
                let tx = tx.clone();
                thread::spawn(move || {
                    for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                        if let Some(rest) = line.split("listening on ").nth(1) {
                            let _ = tx.send(rest.split_whitespace().next().map(str::to_owned));
                        }
                        let mut log = log.lock().unwrap_or_else(|e| e.into_inner());
                        log.push_str(&line);
                        log.push('\n');
                    }
                })
            })
            .collect();
        let mut wharf = Wharf {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            log,
            readers,
        };
        match rx.recv_timeout(CHILD_WAIT) {
            Ok(Some(addr)) => match addr.parse() {
                Ok(addr) => wharf.addr = addr,
                Err(_) => return Err(format!("wharf serve: listening on {addr:?}?")),
            },
            _ => {
                return Err(format!(
                    "wharf serve {args:?} did not start; its log:\n{}",
                    wharf.log()
                ))
            }
        }
        Ok(wharf)
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn log(&self) -> String {
        self.log.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// A field of `/proc/PID/status` in KiB (`VmRSS`, `VmHWM`).
    fn status_kib(&self, field: &str) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).ok()?;
        status
            .lines()
            .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))?
            .split_whitespace()
            .next()?
            .parse()
            .ok()
    }

    /// Stops the child with SIGTERM (SIGKILL after [`CHILD_WAIT`]), and
    /// returns the counters of its exit summary.
    fn stop(mut self) -> Result<HashMap<String, u64>, String> {
        let pid = libc::pid_t::try_from(self.pid()).map_err(|e| e.to_string())?;
        // SAFETY: kill(2) on the PID of our own child, not yet reaped.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        let deadline = Instant::now() + CHILD_WAIT;
        let status = loop {
            match self.child.try_wait() {
                Ok(Some(status)) => break Some(status),
                Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(10)),
                _ => break None,
            }
        };
        if status.is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        for reader in self.readers.drain(..) {
            let _ = reader.join();
        }
        let log = self.log();
        let summary = log
            .lines()
            .find_map(|l| l.split("summary: ").nth(1))
            .ok_or_else(|| format!("wharf serve left no summary; its log:\n{log}"))?;
        match status {
            Some(status) if status.success() => {}
            _ => {
                return Err(format!(
                    "wharf serve did not stop cleanly ({status:?}):\n{log}"
                ))
            }
        }
        Ok(summary
            .split_whitespace()
            .filter_map(|kv| {
                let (k, v) = kv.split_once('=')?;
                Some((k.to_owned(), v.parse().ok()?))
            })
            .collect())
    }
}

impl Drop for Wharf {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Every connection the server turned away or failed, by counter, from an
/// exit summary; empty when there were none.
fn turned_away(summary: &HashMap<String, u64>) -> Vec<String> {
    summary
        .iter()
        .filter(|(k, v)| {
            **v > 0
                && (k.starts_with("rejected_")
                    || *k == "protocol_errors"
                    || *k == "accept_errors"
                    || *k == "write_timeouts")
        })
        .map(|(k, v)| format!("{k}={v}"))
        .collect()
}

// ---------------------------------------------------------------------------
// Churn.

/// A PROXY protocol v2 header for a TCP over IPv4 connection from `src` to
/// `dst` (28 bytes).
fn proxy_v2(src: SocketAddrV4, dst: SocketAddrV4, out: &mut Vec<u8>) {
    out.extend_from_slice(b"\r\n\r\n\0\r\nQUIT\n");
    out.push(0x21); // version 2, PROXY
    out.push(0x11); // AF_INET, STREAM
    out.extend_from_slice(&12u16.to_be_bytes());
    out.extend_from_slice(&src.ip().octets());
    out.extend_from_slice(&dst.ip().octets());
    out.extend_from_slice(&src.port().to_be_bytes());
    out.extend_from_slice(&dst.port().to_be_bytes());
}

/// The `i`th client a PROXY header names: 10.0.0.0 onwards, cycling
/// through 10.0.0.0/8.
fn proxied_client(i: u32) -> SocketAddrV4 {
    let ip = Ipv4Addr::from(0x0a00_0000 | (i & 0x00ff_ffff));
    SocketAddrV4::new(ip, 1024 + (i % 60_000) as u16)
}

fn closed_with_reset(stream: &TcpStream) {
    let _ = socket2::SockRef::from(stream).set_linger(Some(Duration::ZERO));
}

/// One connection: connect, (header and) request in one write, verified
/// echo, close.
fn one_churn(
    addr: SocketAddr,
    wire: &[u8],
    request: &[u8],
    reply: &mut [u8],
) -> Result<(), String> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .map_err(|e| format!("connect: {e}"))?;
    stream.set_nodelay(true).map_err(|e| e.to_string())?;
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .map_err(|e| e.to_string())?;
    stream.write_all(wire).map_err(|e| format!("send: {e}"))?;
    stream
        .read_exact(reply)
        .map_err(|e| format!("read the echo: {e}"))?;
    closed_with_reset(&stream);
    if reply != request {
        return Err(format!(
            "the echo differs from the request (kind {:#04x})",
            reply.get(4).copied().unwrap_or(0)
        ));
    }
    Ok(())
}

struct Churn {
    per_sec: f64,
    errors: u64,
    first_error: Option<String>,
}

/// [`CHURN_CLIENTS`] clients churning for `warmup + window`; connections
/// completed within the window, per second.
fn churn(addr: SocketAddr, proxy: bool, warmup: Duration, window: Duration) -> Churn {
    let next_client = Arc::new(AtomicU32::new(0));
    let start = Instant::now();
    let (measure_from, end) = (start + warmup, start + warmup + window);
    let IpAddr::V4(server_ip) = addr.ip() else {
        unreachable!("the server listens on 127.0.0.1")
    };
    let dst = SocketAddrV4::new(server_ip, addr.port());
    let threads: Vec<_> = (0..CHURN_CLIENTS)
        .map(|_| {
            let next_client = Arc::clone(&next_client);
            thread::spawn(move || {
                let payload: Vec<u8> = (0..PAYLOAD).map(|i| i as u8).collect();
                let mut request = Vec::new();
                Framing::Length.encode(DATA, &payload, &mut request);
                let mut reply = vec![0; request.len()];
                let mut wire = Vec::with_capacity(28 + request.len());
                let (mut done, mut errors, mut first_error) = (0u64, 0u64, None);
                while Instant::now() < end {
                    wire.clear();
                    if proxy {
                        let i = next_client.fetch_add(1, Ordering::Relaxed);
                        proxy_v2(proxied_client(i), dst, &mut wire);
                    }
                    wire.extend_from_slice(&request);
                    let result = one_churn(addr, &wire, &request, &mut reply);
                    let now = Instant::now();
                    match result {
                        Ok(()) if now >= measure_from && now < end => done += 1,
                        Ok(()) => {}
                        Err(e) => {
                            errors += 1;
                            first_error.get_or_insert(e);
                            thread::sleep(Duration::from_millis(1));
                        }
                    }
                }
                (done, errors, first_error)
            })
        })
        .collect();
    let mut outcome = Churn {
        per_sec: 0.0,
        errors: 0,
        first_error: None,
    };
    let mut done = 0;
    for t in threads {
        let (d, e, first) = t.join().unwrap_or((0, 1, Some("a client panicked".into())));
        done += d;
        outcome.errors += e;
        if outcome.first_error.is_none() {
            outcome.first_error = first;
        }
    }
    outcome.per_sec = done as f64 / window.as_secs_f64();
    outcome
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    match values.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => values[n / 2],
        n => (values[n / 2 - 1] + values[n / 2]) / 2.0,
    }
}

/// Runs the churn rounds; returns the report's section.
fn churn_section(s: &Settings, errors: &mut Vec<String>) -> String {
    // rates[0]: plain, rates[1]: PROXY and limits.
    let mut rates: [Vec<f64>; 2] = Default::default();
    for round in 1..=s.rounds {
        let order = if round % 2 == 1 { [0, 1] } else { [1, 0] };
        for variant in order {
            let proxy = variant == 1;
            let name = if proxy { "PROXY v2 + limits" } else { "plain" };
            let flags: &[&str] = if proxy { &PROXY_FLAGS } else { &[] };
            let server = match Wharf::start(flags) {
                Ok(server) => server,
                Err(e) => {
                    errors.push(format!("churn round {round}, {name}: {e}"));
                    continue;
                }
            };
            let outcome = churn(server.addr, proxy, s.warmup, s.window);
            let summary = server.stop();
            eprintln!(
                "round {round}/{}  churn {name:<17} {:>8} connections/s  errors {}",
                s.rounds,
                thousands(outcome.per_sec),
                outcome.errors
            );
            if outcome.errors > 0 {
                errors.push(format!(
                    "churn round {round}, {name}: {} error(s), the first: {}",
                    outcome.errors,
                    outcome.first_error.unwrap_or_default()
                ));
            }
            match summary {
                Ok(summary) => {
                    let refused = turned_away(&summary);
                    if !refused.is_empty() {
                        errors.push(format!(
                            "churn round {round}, {name}: the server turned away or failed \
                             connections: {}",
                            refused.join(" ")
                        ));
                    }
                }
                Err(e) => errors.push(format!("churn round {round}, {name}: {e}")),
            }
            rates[variant].push(outcome.per_sec);
        }
    }
    let (plain, proxied) = (median(rates[0].clone()), median(rates[1].clone()));
    let ratio = proxied / plain;
    let paired: Vec<f64> = rates[0].iter().zip(&rates[1]).map(|(a, b)| b / a).collect();
    let per_round: Vec<String> = paired.iter().map(|r| format!("{r:.3}")).collect();
    let mut out = String::new();
    let _ = writeln!(
        out,
        "### Churn with PROXY v2 and per-address limits\n\n\
         {CHURN_CLIENTS} clients, each connect, one {PAYLOAD} B request, verified echo, close \
         (reset); `wharf serve --workers {WORKERS}`, a fresh server per point, the two variants \
         alternating, {} round(s) of {:.1} s warm-up + {:.1} s measured; medians. PROXY variant: \
         `{}`, every connection sending a v2 header naming a client of its own (10.0.0.0/8) \
         with its request in one write.\n",
        s.rounds,
        s.warmup.as_secs_f64(),
        s.window.as_secs_f64(),
        PROXY_FLAGS.join(" "),
    );
    out.push_str("| variant | connections/s (median) | lowest | highest |\n|---|---:|---:|---:|\n");
    for (variant, name) in [(0, "plain"), (1, "PROXY v2 + both limits")] {
        let lo = rates[variant].iter().copied().fold(f64::INFINITY, f64::min);
        let hi = rates[variant]
            .iter()
            .copied()
            .fold(f64::NEG_INFINITY, f64::max);
        let _ = writeln!(
            out,
            "| {name} | {} | {} | {} |",
            thousands(median(rates[variant].clone())),
            thousands(lo),
            thousands(hi)
        );
    }
    let _ = writeln!(
        out,
        "\nPROXY / plain: {ratio:.3} of the medians; round by round {} (their median \
         {:.3}: the two points of a round are seconds apart, so slow drift of the machine \
         cancels in it); goal at least {CHURN_GOAL:.2} of the medians: {}. Connections turned \
         away by the server: {}.\n",
        per_round.join(", "),
        median(paired),
        if ratio >= CHURN_GOAL {
            "met"
        } else {
            "NOT met"
        },
        if errors.iter().any(|e| e.contains("turned away")) {
            "some (see the errors)"
        } else {
            "none"
        },
    );
    out
}

// ---------------------------------------------------------------------------
// Distinct sources.

/// The `i`th source address of `net` (a /16 of 127/8): host parts with a
/// last byte of 0 or 255 are skipped.
fn source(net: u32, i: u32) -> Ipv4Addr {
    let host = (i / 254) * 256 + i % 254 + 1;
    Ipv4Addr::from(net | (host & 0xffff))
}

/// One connection from `src`: PING, PONG, close.
fn ping_from(src: Ipv4Addr, addr: SocketAddr, ping: &[u8]) -> Result<(), String> {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None).map_err(|e| e.to_string())?;
    socket
        .bind(&SocketAddr::from((src, 0)).into())
        .map_err(|e| format!("bind {src}: {e}"))?;
    socket
        .connect_timeout(&addr.into(), Duration::from_secs(5))
        .map_err(|e| format!("connect from {src}: {e}"))?;
    let mut stream: TcpStream = socket.into();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .map_err(|e| e.to_string())?;
    stream.write_all(ping).map_err(|e| format!("send: {e}"))?;
    let mut reply = vec![0; ping.len()];
    stream
        .read_exact(&mut reply)
        .map_err(|e| format!("read the PONG from {src}: {e}"))?;
    closed_with_reset(&stream);
    if reply[HEADER_LEN - 1] != PONG || reply[HEADER_LEN..] != ping[HEADER_LEN..] {
        return Err(format!(
            "from {src}: a frame of kind {:#04x} instead of the PONG",
            reply[HEADER_LEN - 1]
        ));
    }
    Ok(())
}

/// `count` connections, each from its own address of `net`, with
/// [`SOURCE_CLIENTS`] at a time; returns those answered, the errors and
/// the first of them, and the time taken. Stops at [`PHASE_LIMIT`].
fn from_sources(addr: SocketAddr, net: u32, count: u32) -> (u32, u32, Option<String>, Duration) {
    let next = Arc::new(AtomicU32::new(0));
    let start = Instant::now();
    let deadline = start + PHASE_LIMIT;
    let threads: Vec<_> = (0..SOURCE_CLIENTS)
        .map(|_| {
            let next = Arc::clone(&next);
            thread::spawn(move || {
                let mut ping = Vec::new();
                Framing::Length.encode(PING, b"addresses", &mut ping);
                let (mut ok, mut errors, mut first) = (0, 0, None);
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= count || Instant::now() >= deadline {
                        break;
                    }
                    match ping_from(source(net, i), addr, &ping) {
                        Ok(()) => ok += 1,
                        Err(e) => {
                            errors += 1;
                            first.get_or_insert(e);
                        }
                    }
                }
                (ok, errors, first)
            })
        })
        .collect();
    let (mut ok, mut errors, mut first) = (0, 0, None);
    for t in threads {
        let (o, e, f) = t.join().unwrap_or((0, 1, Some("a client panicked".into())));
        ok += o;
        errors += e;
        if first.is_none() {
            first = f;
        }
    }
    (ok, errors, first, start.elapsed())
}

fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

fn delta(from: u64, to: u64) -> String {
    let d = to as f64 - from as f64;
    format!("{}{:.2} MiB", if d >= 0.0 { "+" } else { "" }, d / 1024.0)
}

/// The distinct-sources run; returns the report's section.
fn sources_section(s: &Settings, errors: &mut Vec<String>) -> String {
    let max_connections = "10000";
    let flags = [
        "--connect-rate-per-address",
        SOURCE_RATE,
        "--max-connections",
        max_connections,
    ];
    let server = match Wharf::start(&flags) {
        Ok(server) => server,
        Err(e) => {
            errors.push(format!("distinct sources: {e}"));
            return String::new();
        }
    };
    let (warm_ok, warm_err, warm_first, _) = from_sources(server.addr, 0x7f02_0000, s.warm_sources);
    thread::sleep(SETTLE);
    let before = server.status_kib("VmRSS");
    let (ok, err, first, took) = from_sources(server.addr, 0x7f01_0000, s.sources);
    let after = server.status_kib("VmRSS");
    thread::sleep(SETTLE);
    let settled = server.status_kib("VmRSS");
    let peak = server.status_kib("VmHWM");
    // A check that the limit is on: one address going over its burst.
    let mut ping = Vec::new();
    Framing::Length.encode(PING, b"control", &mut ping);
    let limited = (0..CONTROL_CONNECTIONS)
        .filter(|_| ping_from(CONTROL_SOURCE, server.addr, &ping).is_err())
        .count() as u64;
    let summary = server.stop();
    eprintln!(
        "distinct sources: {ok}/{} answered in {:.1} s, {err} error(s); RSS {before:?} -> \
         {after:?} -> {settled:?} KiB",
        s.sources,
        took.as_secs_f64()
    );
    if warm_err > 0 || err > 0 || warm_ok < s.warm_sources || ok < s.sources {
        errors.push(format!(
            "distinct sources: {} of {} warm-up and {ok} of {} connections answered; the first \
             error: {}",
            warm_ok,
            s.warm_sources,
            s.sources,
            first
                .or(warm_first)
                .unwrap_or_else(|| "none (out of time)".into())
        ));
    }
    let mut accepted = None;
    match summary {
        Ok(mut summary) => {
            // The control's connections over the limit, and only those.
            let rate = summary.remove("rejected_per_address_rate").unwrap_or(0);
            if limited == 0 || rate != limited {
                errors.push(format!(
                    "distinct sources: {CONTROL_CONNECTIONS} connections at once from                      {CONTROL_SOURCE}: {limited} turned away, the server counted {rate} over                      the rate (want the same, and more than 0)"
                ));
            }
            let refused = turned_away(&summary);
            if !refused.is_empty() {
                errors.push(format!(
                    "distinct sources: the server turned away or failed connections: {}",
                    refused.join(" ")
                ));
            }
            accepted = summary.get("accepted").copied();
        }
        Err(e) => errors.push(format!("distinct sources: {e}")),
    }
    let (Some(before), Some(after), Some(settled)) = (before, after, settled) else {
        errors.push("distinct sources: cannot read the server's VmRSS".into());
        return String::new();
    };
    let grown = after.max(settled).saturating_sub(before);
    let mut out = String::new();
    let _ = writeln!(
        out,
        "### Distinct sources with the rate limit on\n\n\
         `wharf serve --workers {WORKERS} --connect-rate-per-address {SOURCE_RATE} \
         --max-connections {max_connections}`. Warm-up: {} connections from distinct addresses \
         of 127.2.0.0/16, then {:.0} s. Then {} connections, each from its own address of \
         127.1.0.0/16, {SOURCE_CLIENTS} at a time, each one PING and its PONG, then close \
         (reset): done in {:.1} s ({}/s). Server's RSS (`VmRSS`):\n",
        thousands(f64::from(s.warm_sources)),
        SETTLE.as_secs_f64(),
        thousands(f64::from(s.sources)),
        took.as_secs_f64(),
        thousands(f64::from(ok) / took.as_secs_f64().max(1e-9)),
    );
    out.push_str("| when | RSS | since the warm-up |\n|---|---:|---:|\n");
    let _ = writeln!(out, "| after the warm-up | {} | |", mib(before));
    let _ = writeln!(
        out,
        "| right after the last connection | {} | {} |",
        mib(after),
        delta(before, after)
    );
    let _ = writeln!(
        out,
        "| {:.0} s later (pruned) | {} | {} |",
        SETTLE.as_secs_f64(),
        mib(settled),
        delta(before, settled)
    );
    let _ = writeln!(
        out,
        "\nPeak RSS (`VmHWM`) {}; connections accepted in all {}; turned away: {}, but for \
         the check that the limit is on ({CONTROL_CONNECTIONS} connections at once from one \
         address afterwards: {limited} turned away). Goal: within a few MiB of the start \
         (taken here as 4 MiB): {}.\n",
        peak.map_or("-".into(), mib),
        accepted.map_or("-".into(), |a| thousands(a as f64)),
        if errors
            .iter()
            .any(|e| e.starts_with("distinct sources: the server"))
        {
            "some (see the errors)"
        } else {
            "none"
        },
        if grown <= 4 * 1024 { "met" } else { "NOT met" },
    );
    out
}

// ---------------------------------------------------------------------------
// Settings and `main`.

struct Settings {
    rounds: usize,
    warmup: Duration,
    window: Duration,
    warm_sources: u32,
    sources: u32,
}

fn env_or<T: std::str::FromStr>(
    name: &str,
    default: T,
    ok: impl Fn(&T) -> bool,
) -> Result<T, String> {
    match std::env::var(name) {
        Ok(v) => v
            .trim()
            .parse::<T>()
            .ok()
            .filter(|x| ok(x))
            .ok_or_else(|| format!("{name}={v:?}: out of range")),
        Err(_) => Ok(default),
    }
}

fn settings(full: bool) -> Result<Settings, String> {
    if !full {
        return Ok(Settings {
            rounds: 2,
            warmup: Duration::from_millis(100),
            window: Duration::from_millis(300),
            warm_sources: 50,
            sources: 500,
        });
    }
    let secs = env_or("WHARF_ADDRESSES_SECS", 2.0, |s: &f64| {
        s.is_finite() && *s > 0.0 && *s <= 60.0
    })?;
    Ok(Settings {
        rounds: env_or("WHARF_ADDRESSES_ROUNDS", 5, |r| (1..=50).contains(r))?,
        warmup: Duration::from_secs_f64((secs / 4.0).min(0.5)),
        window: Duration::from_secs_f64(secs),
        warm_sources: 1_000,
        sources: env_or("WHARF_ADDRESSES_SOURCES", 20_000, |n| {
            (1..=60_000).contains(n)
        })?,
    })
}

fn main() -> ExitCode {
    // `cargo bench` passes --bench; `cargo test --benches` does not, and
    // gets a short run against the debug build.
    let full = std::env::args().any(|a| a == "--bench");
    if !full {
        println!("addresses: short run (the full one: `cargo bench --bench addresses`)");
    }
    let s = match settings(full) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("addresses: {e}");
            return ExitCode::from(2);
        }
    };
    let started = Instant::now();
    let mut errors = Vec::new();
    let mut report = String::from("## PROXY protocol and per-address limits, end to end\n\n");
    report.push_str(&churn_section(&s, &mut errors));
    report.push_str(&sources_section(&s, &mut errors));
    let _ = writeln!(
        report,
        "{}. Absolute figures drift from run to run; compare the ratios.",
        machine()
    );
    if !errors.is_empty() {
        report.push_str("\nERRORS (the figures above are not valid):\n");
        for e in &errors {
            let _ = writeln!(report, "- {e}");
        }
    }
    print!("{report}");
    eprintln!("addresses: {:.0} s in all", started.elapsed().as_secs_f64());
    if full {
        let path = target_dir().join("addresses.md");
        if let Err(e) =
            std::fs::create_dir_all(target_dir()).and_then(|()| std::fs::write(&path, &report))
        {
            eprintln!("addresses: cannot write {}: {e}", path.display());
            return ExitCode::FAILURE;
        }
        eprintln!("addresses: report written to {}", path.display());
    }
    if errors.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
