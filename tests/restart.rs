//! Same-port restart under load, losing nothing (docs/operating.md,
//! "Restarts without losing a request"): the two documented ways, each
//! with clients sending requests the whole time, and counted: no
//! connection refused, none reset, and no request left unanswered without
//! a GOAWAY.
//!
//! The clients here are deliberately simple and do not use the library
//! client: each keeps a few requests in flight on one connection and checks
//! every reply against what it sent, in order. On GOAWAY 1 it reconnects
//! and resends the requests that were not answered (GOAWAY 1 promises that
//! they were never started), so in the end every request is answered
//! exactly once.
//!
//! - Socket activation: the test holds the listening socket, as systemd
//!   does, and passes it to each instance as descriptor 3. It SIGTERMs the
//!   old instance and starts the new one at once on the same socket;
//!   connections made meanwhile wait in the socket's backlog.
//! - `--reuse-port`: in a network namespace of its own (to set
//!   `net.ipv4.tcp_migrate_req = 1` there and bind a fixed port), the new
//!   instance binds the address while the old one runs; once its listening
//!   line is out, the old one is SIGTERMed.

mod common;

use std::collections::VecDeque;
use std::io::{self, BufReader, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::netns;
use common::systemd::activated_command;
use common::{serve_command, spawn_wharf_command, Wharf};
use wharf::frame::{GoAway, DATA, GOAWAY};
use wharf::{Framing, GoAwayCode};

/// Clients, and requests each keeps in flight.
const CLIENTS: usize = 8;
const WINDOW: usize = 4;
/// A client closes its connection (once every reply is in) and opens a new
/// one after this many replies, so new connections keep arriving while the
/// instances change hands, not only the reconnects after GOAWAY.
const CHURN: u64 = 40;

/// What the clients saw, added up.
#[derive(Debug, Default, Clone, Copy)]
struct Tally {
    /// Distinct requests sent (a resend is not counted again).
    sent: u64,
    /// Requests answered with their echo, in order.
    answered: u64,
    /// GOAWAY 1 received.
    goaways: u64,
    /// Requests resent after a GOAWAY 1 had left them unanswered.
    retried: u64,
    /// Requests left unanswered by a connection that ended without GOAWAY.
    lost: u64,
    /// Connection attempts refused.
    refused: u64,
    /// Connections reset (on connect, write or read).
    reset: u64,
    /// Connections opened.
    connections: u64,
    /// Anything else unexpected (wrong reply, other GOAWAY, timeout).
    other: u64,
}

impl Tally {
    fn add(&mut self, o: &Tally) {
        self.sent += o.sent;
        self.answered += o.answered;
        self.goaways += o.goaways;
        self.retried += o.retried;
        self.lost += o.lost;
        self.refused += o.refused;
        self.reset += o.reset;
        self.connections += o.connections;
        self.other += o.other;
    }
}

/// How a connection ended.
enum Ended {
    GoAway,
    /// Closed without GOAWAY.
    Closed,
    Reset,
    Other(String),
    /// The test is over and nothing is owed.
    Done,
    /// Closed by the client after [`CHURN`] replies, nothing owed.
    Churn,
}

/// One load client: runs until `stop` is set and every request it sent has
/// been answered (or 20 s pass).
fn client(id: usize, addr: SocketAddr, stop: Arc<AtomicBool>) -> (Tally, Vec<String>) {
    let mut tally = Tally::default();
    let mut problems = Vec::new();
    let mut next = 0u64;
    // Sent and not answered yet, oldest first.
    let mut owed: VecDeque<u64> = VecDeque::new();
    let give_up = Instant::now() + Duration::from_secs(60);
    'connections: while Instant::now() < give_up {
        if stop.load(Ordering::SeqCst) && owed.is_empty() {
            break;
        }
        let stream = match TcpStream::connect_timeout(&addr, Duration::from_secs(5)) {
            Ok(stream) => stream,
            Err(e) => {
                match e.kind() {
                    ErrorKind::ConnectionRefused => tally.refused += 1,
                    ErrorKind::ConnectionReset => tally.reset += 1,
                    _ => tally.other += 1,
                }
                problems.push(format!("client {id}: connect: {e}"));
                std::thread::sleep(Duration::from_millis(10));
                continue;
            }
        };
        tally.connections += 1;
        let mut replies = 0;
        let local = stream.local_addr().map(|a| a.port()).unwrap_or(0);
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        stream.set_nodelay(true).unwrap();
        let mut writer = stream.try_clone().unwrap();
        let mut reader = BufReader::new(stream);
        // What GOAWAY left unanswered, first, in order.
        tally.retried += owed.len() as u64;
        let mut batch = Vec::new();
        for &n in &owed {
            Framing::Length.encode_data(payload(id, n).as_bytes(), &mut batch);
        }
        let ended = 'requests: loop {
            let churn = replies >= CHURN;
            if !stop.load(Ordering::SeqCst) && !churn {
                while owed.len() < WINDOW {
                    Framing::Length.encode_data(payload(id, next).as_bytes(), &mut batch);
                    owed.push_back(next);
                    tally.sent += 1;
                    next += 1;
                }
            }
            if !batch.is_empty() {
                if let Err(e) = writer.write_all(&batch) {
                    problems.push(format!(
                        "client {id} (port {local}): write after {replies} replies: {e}"
                    ));
                    break 'requests classify(e);
                }
                batch.clear();
            }
            if owed.is_empty() {
                break if churn { Ended::Churn } else { Ended::Done };
            }
            match read_frame(&mut reader) {
                Ok(Some((DATA, body))) => {
                    let expected = payload(id, owed[0]);
                    if body != expected.as_bytes() {
                        break Ended::Other(format!(
                            "expected {expected}, got {:?}",
                            String::from_utf8_lossy(&body)
                        ));
                    }
                    owed.pop_front();
                    tally.answered += 1;
                    replies += 1;
                }
                Ok(Some((GOAWAY, body))) => {
                    match GoAway::parse(Framing::Length, &body) {
                        Some(g) if g.code == GoAwayCode::Shutdown.as_u16() => {}
                        other => break Ended::Other(format!("unexpected {other:?}")),
                    }
                    break Ended::GoAway;
                }
                Ok(Some((kind, _))) => break Ended::Other(format!("frame of kind {kind}")),
                Ok(None) => break Ended::Closed,
                Err(e) => {
                    problems.push(format!(
                        "client {id} (port {local}): read after {replies} replies: {e}"
                    ));
                    break classify(e);
                }
            }
        };
        match ended {
            Ended::Done => break 'connections,
            Ended::Churn => continue 'connections,
            Ended::GoAway => tally.goaways += 1,
            Ended::Closed | Ended::Reset | Ended::Other(_) => {
                let what = match &ended {
                    Ended::Closed => "closed without GOAWAY".to_owned(),
                    Ended::Reset => {
                        tally.reset += 1;
                        "reset".to_owned()
                    }
                    Ended::Other(why) => {
                        tally.other += 1;
                        why.clone()
                    }
                    Ended::GoAway | Ended::Done | Ended::Churn => unreachable!(),
                };
                problems.push(format!(
                    "client {id}: {what} with {} request(s) unanswered",
                    owed.len()
                ));
                // They may have run: never resent.
                tally.lost += owed.len() as u64;
                owed.clear();
            }
        }
    }
    if !owed.is_empty() {
        problems.push(format!("client {id}: gave up with {} owed", owed.len()));
        tally.lost += owed.len() as u64;
    }
    (tally, problems)
}

fn payload(client: usize, n: u64) -> String {
    format!("client {client} request {n}")
}

fn classify(e: io::Error) -> Ended {
    match e.kind() {
        ErrorKind::ConnectionReset | ErrorKind::BrokenPipe | ErrorKind::ConnectionAborted => {
            Ended::Reset
        }
        ErrorKind::UnexpectedEof => Ended::Closed,
        _ => Ended::Other(e.to_string()),
    }
}

/// One frame, or `None` at a clean end of stream.
fn read_frame(reader: &mut impl Read) -> io::Result<Option<(u8, Vec<u8>)>> {
    let mut header = [0u8; 5];
    let mut got = 0;
    while got < header.len() {
        match reader.read(&mut header[got..])? {
            0 if got == 0 => return Ok(None),
            0 => return Err(ErrorKind::UnexpectedEof.into()),
            n => got += n,
        }
    }
    let len = u32::from_be_bytes([header[0], header[1], header[2], header[3]]) as usize;
    let mut body = vec![0; len.saturating_sub(1)];
    reader.read_exact(&mut body)?;
    Ok(Some((header[4], body)))
}

/// The load: `CLIENTS` clients on `addr` until [`Load::finish`].
struct Load {
    stop: Arc<AtomicBool>,
    clients: Vec<JoinHandle<(Tally, Vec<String>)>>,
}

impl Load {
    fn start(addr: SocketAddr) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let clients = (0..CLIENTS)
            .map(|id| {
                let stop = Arc::clone(&stop);
                std::thread::spawn(move || client(id, addr, stop))
            })
            .collect();
        Load { stop, clients }
    }

    /// Stops sending, waits for every owed reply, and adds up.
    fn finish(self) -> (Tally, Vec<String>) {
        self.stop.store(true, Ordering::SeqCst);
        let mut total = Tally::default();
        let mut problems = Vec::new();
        for client in self.clients {
            let (tally, mut seen) = client.join().expect("a client thread panicked");
            total.add(&tally);
            problems.append(&mut seen);
        }
        (total, problems)
    }
}

/// Waits for the old instance to exit 0 after its drain.
fn drained(old: &mut Wharf) {
    let status = old
        .wait_exit(Duration::from_secs(20))
        .unwrap_or_else(|| panic!("the old instance did not exit; log:\n{}", old.log()));
    assert_eq!(status.code(), Some(0), "old instance; log:\n{}", old.log());
}

/// The value of `key=N` in the summary line.
fn summary_count(log: &str, key: &str) -> u64 {
    let line = log
        .lines()
        .rev()
        .find(|l| l.contains("summary:"))
        .unwrap_or("");
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(key)?.strip_prefix('='))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no {key} in the summary:\n{log}"))
}

/// Checks the tally, and prints the figures where they are seen.
fn check(way: &str, tally: Tally, problems: &[String], old: &Wharf, new: &Wharf) {
    let figures = format!(
        "FIGURES: {way}: connections={} sent={} answered={} goaway={} goaway_retried={} \
         lost={} refused={} reset={} other={}; old served {} requests, new {}",
        tally.connections,
        tally.sent,
        tally.answered,
        tally.goaways,
        tally.retried,
        tally.lost,
        tally.refused,
        tally.reset,
        tally.other,
        summary_count(&old.log(), "requests"),
        summary_count(&new.log(), "requests"),
    );
    println!("{figures}");
    let _ = writeln!(io::stderr(), "{figures}");
    assert!(
        problems.is_empty(),
        "{figures}\n{problems:#?}\nold:\n{}\nnew:\n{}",
        old.log(),
        new.log()
    );
    assert_eq!(tally.refused, 0, "{figures}");
    assert_eq!(tally.reset, 0, "{figures}");
    assert_eq!(tally.lost, 0, "{figures}");
    assert_eq!(tally.other, 0, "{figures}");
    assert_eq!(tally.answered, tally.sent, "{figures}");
    assert!(
        tally.goaways > 0,
        "the restart was not under load: {figures}"
    );
    assert!(
        summary_count(&old.log(), "requests") > 0 && summary_count(&new.log(), "requests") > 0,
        "both instances must have served: {figures}"
    );
}

/// How long the load runs on each side of a restart.
const PHASE: Duration = Duration::from_millis(1000);

/// Settings of both instances: a request takes a millisecond of service, so
/// the drain finds work in progress.
const ARGS: &[&str] = &["--workers", "4", "--delay", "1ms", "--grace", "10s"];

/// The old instance also serves at most 4 of the 8 clients at once and
/// stops accepting meanwhile (`--overload block`): the others wait, with
/// their requests sent, in the kernel's queue of its listener. When it
/// stops, those must go to the new instance, neither reset nor refused.
const OLD_ONLY: &[&str] = &["--overload", "block", "--max-connections", "4"];

fn old_args(extra: &[&'static str]) -> Vec<&'static str> {
    [ARGS, OLD_ONLY, extra].concat()
}

/// Operations, socket activation: "on drain the server stops accepting and
/// closes its own descriptor, but never shuts the inherited listening
/// socket down ...; connections that arrive meanwhile wait in its backlog
/// for the next instance".
#[test]
fn socket_activation_restart_under_load_loses_nothing() {
    // The holder of the socket (systemd's part), with a roomy backlog.
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket
        .bind(&SocketAddr::from(([127, 0, 0, 1], 0)).into())
        .unwrap();
    socket.listen(1024).unwrap();
    let addr = socket.local_addr().unwrap().as_socket().unwrap();
    let fd = socket.as_raw_fd();

    let mut old = spawn_wharf_command(activated_command(&[fd], &old_args(&[])));
    let load = Load::start(addr);
    std::thread::sleep(PHASE);

    // Stop the old one and start the new one on the same socket while the
    // old one drains.
    old.signal(libc::SIGTERM);
    let mut new = spawn_wharf_command(activated_command(&[fd], ARGS));
    drained(&mut old);
    std::thread::sleep(PHASE);

    let (tally, problems) = load.finish();
    new.signal(libc::SIGTERM);
    drained(&mut new);
    check("socket activation", tally, &problems, &old, &new);
}

/// Operations, `--reuse-port`: "start the new one, wait for its listening
/// line ..., then SIGTERM the old one", with net.ipv4.tcp_migrate_req = 1.
#[test]
fn reuse_port_restart_under_load_loses_nothing() {
    if !netns::enter("reuse_port_restart_under_load_loses_nothing") {
        return;
    }
    if let Err(e) = netns::sysctl("net/ipv4/tcp_migrate_req", "1") {
        netns::skipped(&format!("cannot set net.ipv4.tcp_migrate_req here: {e}"));
        return;
    }
    // A fixed port: this namespace is the test's own.
    let bind = "127.0.0.1:7878";
    // The metrics address is shared the same way: both instances hold it
    // during the overlap.
    let shared = ["--reuse-port", "--metrics", "127.0.0.1:9878"];
    let args = [ARGS, &shared].concat();
    let mut old = spawn_wharf_command(serve_command(bind, &old_args(&shared)));
    assert!(!old.log().contains("tcp_migrate_req"), "{}", old.log());
    let load = Load::start(bind.parse().unwrap());
    std::thread::sleep(PHASE);

    // The new one binds the same address while the old one serves...
    let mut new = spawn_wharf_command(serve_command(bind, &args));
    std::thread::sleep(PHASE / 4);
    // ...then the old one stops.
    old.signal(libc::SIGTERM);
    drained(&mut old);
    std::thread::sleep(PHASE);

    let (tally, problems) = load.finish();
    new.signal(libc::SIGTERM);
    drained(&mut new);
    check("reuse-port", tally, &problems, &old, &new);
}

/// Operations: the server warns at startup when `--reuse-port` is given
/// and net.ipv4.tcp_migrate_req is not 1 (0 in a fresh namespace), and not
/// when it is 1.
#[test]
fn reuse_port_warns_unless_tcp_migrate_req_is_1() {
    let test = "reuse_port_warns_unless_tcp_migrate_req_is_1";
    // Where the host's own setting is 0, that case needs no namespace.
    let host = std::fs::read_to_string("/proc/sys/net/ipv4/tcp_migrate_req");
    if !netns::inside(test) && host.is_ok_and(|v| v.trim() == "0") {
        check_migrate_req_warning("0", true);
    }
    if !netns::enter(test) {
        return;
    }
    for (value, warned) in [("0", true), ("1", false)] {
        if let Err(e) = netns::sysctl("net/ipv4/tcp_migrate_req", value) {
            netns::skipped(&format!("cannot set net.ipv4.tcp_migrate_req here: {e}"));
            return;
        }
        check_migrate_req_warning(value, warned);
    }
}

/// Starts `wharf serve --reuse-port` (and one without it) and checks for
/// the tcp_migrate_req warning.
fn check_migrate_req_warning(value: &str, warned: bool) {
    let mut wharf = spawn_wharf_command(serve_command("127.0.0.1:0", &["--reuse-port"]));
    let log = wharf.log();
    let warning = log
        .lines()
        .find(|l| l.contains("WARN") && l.contains("tcp_migrate_req"));
    assert_eq!(warning.is_some(), warned, "tcp_migrate_req={value}:\n{log}");
    if let Some(line) = warning {
        assert!(line.contains("is 0, not 1"), "{line}");
    }
    // Without --reuse-port there is nothing to warn about.
    let mut plain = spawn_wharf_command(serve_command("127.0.0.1:0", &[]));
    assert!(!plain.log().contains("tcp_migrate_req"), "{}", plain.log());
    for w in [&mut wharf, &mut plain] {
        w.signal(libc::SIGTERM);
        assert!(w.wait_exit(Duration::from_secs(10)).is_some());
    }
}
