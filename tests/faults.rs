//! Fault-injection tests against the real `wharf` binary (the protocol,
//! "Overload" and "Graceful shutdown"): running out of file descriptors,
//! SIGTERM in the middle of heavy pipelined load, and the periodic stats log.
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

use common::{eventually, spawn_wharf, Client};
use wharf::frame::{DATA, GOAWAY};
use wharf::{Framing, GoAwayCode};

// ---------------------------------------------------------------------------
// The descriptor limit of a running `wharf serve` child.
// ---------------------------------------------------------------------------

/// Sets the soft RLIMIT_NOFILE of the running process `pid` (our child) to
/// `soft`, keeping its hard limit; returns the previous soft limit.
fn set_soft_nofile(pid: libc::pid_t, soft: libc::rlim_t) -> libc::rlim_t {
    let mut old = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: prlimit(2) on our own child, reading into a valid rlimit.
    let rc = unsafe { libc::prlimit(pid, libc::RLIMIT_NOFILE, std::ptr::null(), &mut old) };
    let error = std::io::Error::last_os_error();
    assert_eq!(rc, 0, "prlimit({pid}) get: {error}");
    let new = libc::rlimit {
        rlim_cur: soft,
        rlim_max: old.rlim_max,
    };
    // SAFETY: as above, writing a valid rlimit (soft <= hard is checked by
    // the kernel).
    let rc = unsafe { libc::prlimit(pid, libc::RLIMIT_NOFILE, &new, std::ptr::null_mut()) };
    let error = std::io::Error::last_os_error();
    assert_eq!(rc, 0, "prlimit({pid}) set: {error}");
    old.rlim_cur
}

/// CPU time (user + system) a process has used so far, from /proc/<pid>/stat.
fn cpu_time(pid: libc::pid_t) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("read /proc/pid/stat");
    // The command name may contain spaces; the fields we want follow its ')'.
    let rest = &stat[stat.rfind(')').expect("stat has a comm field") + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After the comm: state is field 3, so utime (14) and stime (15) are at
    // indices 11 and 12 here.
    let utime: u64 = fields[11].parse().expect("utime");
    let stime: u64 = fields[12].parse().expect("stime");
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    let ticks = u64::try_from(ticks).ok().filter(|&t| t > 0).unwrap_or(100);
    Duration::from_secs_f64((utime + stime) as f64 / ticks as f64)
}

/// Open descriptors of a process.
fn open_fds(pid: libc::pid_t) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count())
}

/// Prints a server's whole log when `WHARF_FAULTS_LOG` is set.
fn dump_log(log: &str) {
    if std::env::var_os("WHARF_FAULTS_LOG").is_some() {
        eprintln!("--- server log ---\n{log}--- end of log ---");
    }
}

fn count_lines(log: &str, needle: &str) -> usize {
    log.lines().filter(|l| l.contains(needle)).count()
}

/// The value of `name=<n>` in a log line.
fn counter(line: &str, name: &str) -> Option<u64> {
    line.split_whitespace()
        .find_map(|word| word.strip_prefix(name)?.strip_prefix('='))
        .and_then(|v| v.parse().ok())
}

/// The `summary:` line of an exited server's log.
fn summary(log: &str) -> String {
    log.lines()
        .find(|l| l.contains("summary:"))
        .unwrap_or_else(|| panic!("no summary line; log:\n{log}"))
        .to_owned()
}

/// Connects and gets one echo, retrying (for up to `within`) while the server
/// cannot take the connection yet. Returns how long it took.
fn served_within(addr: SocketAddr, within: Duration) -> Option<Duration> {
    let started = Instant::now();
    let deadline = started + within;
    while Instant::now() < deadline {
        if let Ok(stream) = TcpStream::connect_timeout(&addr, Duration::from_secs(5)) {
            let left = deadline.saturating_duration_since(Instant::now());
            stream
                .set_read_timeout(Some(left.max(Duration::from_millis(100))))
                .unwrap();
            let mut client = Client::from_stream(stream, Framing::Length);
            // `from_stream` sets the common 10 s timeout; keep ours if longer.
            client
                .stream
                .set_read_timeout(Some(left.max(Duration::from_millis(100))))
                .unwrap();
            client.send(DATA, b"good client");
            if let Ok(Some(reply)) = client.try_recv() {
                if reply.kind == DATA && reply.payload == b"good client" {
                    return Some(started.elapsed());
                }
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    None
}

// ---------------------------------------------------------------------------
// a) File-descriptor exhaustion.
// ---------------------------------------------------------------------------

/// Descriptors the server may still open when its limit is lowered: that
/// many more connections are accepted, then `accept` fails.
const SPARE_FDS: libc::rlim_t = 4;
/// Upper bound on extra connections opened to exhaust the server.
const MAX_EXTRA: usize = 200;
/// Clients connected (and served by a worker) before the exhaustion.
const HELD: usize = 3;
/// How long the exhaustion is kept up and measured.
const EXHAUSTED_FOR: Duration = Duration::from_secs(2);
/// Spin check: CPU the whole server may use over `EXHAUSTED_FOR`. A spinning
/// acceptor would use about a full core (2 s); a backing-off one a few ms.
const MAX_CPU: Duration = Duration::from_millis(500);

/// Running out of descriptors for real. A server started with a low
/// descriptor limit no longer gets there: it lowers `--max-connections` at
/// startup to what the limit allows and answers BUSY instead (since v2).
/// Descriptors can still run out under it (a limit lowered while it
/// runs, descriptors its service opens), so the test starts the server with
/// the normal limit, connects the held clients, and then lowers the running
/// child's soft limit (`prlimit`) to just above the descriptors it has open:
/// after a few more connections, `accept` fails with EMFILE, with
/// `--max-connections` far away.
#[test]
fn fd_exhaustion_backs_off_and_resumes() {
    // A large queue and the default `--max-connections` keep every accepted
    // connection open (no BUSY closes that would free descriptors), and the
    // default 30 s heartbeat keeps them from being reaped. Idle connections
    // rest in the poller, so the 4 workers are free to serve the held
    // clients and to close the extra connections once they go.
    let mut server = spawn_wharf(&["--workers", "4", "--queue", "512", "--log-level", "info"]);
    let pid = server.pid();
    let fds_at_start = open_fds(pid);

    let mut held: Vec<Client> = (0..HELD)
        .map(|i| {
            let mut c = Client::connect(server.addr);
            c.echo(format!("held-{i}").as_bytes());
            c
        })
        .collect();

    // Leave the server a few spare descriptors, no more.
    let fds_before_limit = open_fds(pid);
    let nofile = fds_before_limit as libc::rlim_t + SPARE_FDS;
    let normal_nofile = set_soft_nofile(pid, nofile);
    assert!(
        normal_nofile > nofile,
        "the server's limit {normal_nofile} is already at most {nofile}"
    );

    // Open connections until the server logs that accept fails.
    let mut extra = Vec::new();
    let exhausted = loop {
        if server.log().contains("accept failed") {
            break true;
        }
        if extra.len() >= MAX_EXTRA {
            // Give the acceptor a last moment to catch up with the backlog.
            break eventually(Duration::from_secs(10), || {
                server.log().contains("accept failed")
            });
        }
        match TcpStream::connect_timeout(&server.addr, Duration::from_secs(5)) {
            Ok(stream) => extra.push(stream),
            Err(e) => panic!("connect #{} failed: {e}", extra.len()),
        }
        if extra.len() % 8 == 0 {
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    assert!(
        exhausted,
        "no 'accept failed' after {} extra connections; log:\n{}",
        extra.len(),
        server.log()
    );
    let fds_exhausted = open_fds(pid);

    // Keep it exhausted for a while: measure CPU and the log rate, and check
    // the held clients are still served meanwhile.
    let failed_before = count_lines(&server.log(), "accept failed");
    let cpu_before = cpu_time(pid);
    let window = Instant::now();
    let mut echoes = 0;
    while window.elapsed() < EXHAUSTED_FOR {
        for (i, c) in held.iter_mut().enumerate() {
            c.echo(format!("held-{i}-{echoes}").as_bytes());
        }
        echoes += 1;
        std::thread::sleep(Duration::from_millis(100));
    }
    let window_len = window.elapsed();
    let cpu = cpu_time(pid).saturating_sub(cpu_before);
    let failed_in_window = count_lines(&server.log(), "accept failed") - failed_before;
    assert!(
        cpu < MAX_CPU,
        "server used {cpu:?} of CPU over {window_len:?} while out of descriptors (spinning?)"
    );
    // About one line a second, plus slack for the window edges.
    let max_lines = window_len.as_secs() as usize + 2;
    assert!(
        failed_in_window <= max_lines,
        "{failed_in_window} 'accept failed' lines in {window_len:?} (at most {max_lines}); \
         log:\n{}",
        server.log()
    );
    assert!(
        failed_in_window >= 1,
        "the condition lasted {window_len:?} but was not logged again; log:\n{}",
        server.log()
    );

    // Free the descriptors: the spare worker reads end-of-stream from each
    // queued connection, the acceptor takes the rest of the backlog, and a
    // new client is served, all without help.
    let extra_opened = extra.len();
    drop(extra);
    let resumed_after = served_within(server.addr, Duration::from_secs(30));
    assert!(
        resumed_after.is_some(),
        "no new client served within 30 s after the descriptors were freed; log:\n{}",
        server.log()
    );
    assert!(
        eventually(Duration::from_secs(10), || server
            .log()
            .contains("accepting connections again")),
        "no 'accepting connections again' line; log:\n{}",
        server.log()
    );
    for (i, c) in held.iter_mut().enumerate() {
        c.echo(format!("held-{i}-after").as_bytes());
    }
    let fds_after = open_fds(pid);

    server.signal(libc::SIGTERM);
    for c in &mut held {
        c.expect_goaway(GoAwayCode::Shutdown);
    }
    let status = server
        .wait_exit(Duration::from_secs(15))
        .expect("server exits within 15 s of SIGTERM");
    let log = server.log();
    assert_eq!(status.code(), Some(0), "exit status; log:\n{log}");
    let summary = summary(&log);
    let accept_errors = counter(&summary, "accept_errors").expect("accept_errors in summary");
    assert!(accept_errors > 0, "summary: {summary}");
    let failed_total = count_lines(&log, "accept failed");
    dump_log(&log);

    println!(
        "FIGURES fd_exhaustion_backs_off_and_resumes: soft RLIMIT_NOFILE {normal_nofile} \
         lowered to {nofile} with {fds_before_limit} open; server fds {fds_at_start} at start, \
         {fds_exhausted} exhausted, {fds_after} after recovery; \
         exhausted after {extra_opened} extra connections; over {:.2}s exhausted: cpu {:.3}s \
         (bound {:.1}s), {failed_in_window} 'accept failed' lines (bound {max_lines}), \
         {} echoes to {HELD} held clients; new client served {:.2}s after freeing; \
         {failed_total} 'accept failed' lines in total, summary accept_errors={accept_errors}",
        window_len.as_secs_f64(),
        cpu.as_secs_f64(),
        MAX_CPU.as_secs_f64(),
        echoes * HELD,
        resumed_after.unwrap().as_secs_f64(),
    );
}

// ---------------------------------------------------------------------------
// b) SIGTERM under pipelined load.
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

// ---------------------------------------------------------------------------
// c) --stats-interval.
// ---------------------------------------------------------------------------

const STAT_COUNTERS: [&str; 8] = [
    "accepted",
    "active",
    "queued",
    "rejected_busy",
    "reaped",
    "protocol_errors",
    "write_timeouts",
    "accept_errors",
];

fn stats_lines(log: &str) -> Vec<String> {
    log.lines()
        .filter(|l| l.contains("stats:"))
        .map(str::to_owned)
        .collect()
}

#[test]
fn stats_interval_logs_counters_that_follow_activity() {
    let mut server = spawn_wharf(&["--workers", "2", "--stats-interval", "200ms"]);
    let started = Instant::now();

    // Periodic lines appear with every counter, all zero before any client.
    assert!(
        eventually(Duration::from_secs(10), || stats_lines(&server.log()).len()
            >= 2),
        "fewer than 2 stats lines; log:\n{}",
        server.log()
    );
    let first = stats_lines(&server.log())[0].clone();
    for name in STAT_COUNTERS.iter().chain(&["requests"]) {
        assert_eq!(counter(&first, name), Some(0), "{name} in {first:?}");
    }

    // One client, served, still connected and quiet: accepted=1, open=1 and
    // resting (a quiet connection holds no worker), requests>=2.
    let mut client = Client::connect(server.addr);
    client.echo(b"one");
    client.ping(b"two");
    let with_client = Instant::now();
    let seen_active = eventually(Duration::from_secs(10), || {
        stats_lines(&server.log()).iter().any(|l| {
            counter(l, "accepted") == Some(1)
                && counter(l, "open") == Some(1)
                && counter(l, "resting") == Some(1)
                && counter(l, "requests").is_some_and(|n| n >= 2)
        })
    });
    assert!(
        seen_active,
        "no stats line with accepted=1 open=1 resting=1 requests>=2; log:\n{}",
        server.log()
    );
    let active_after = with_client.elapsed();

    // The client leaves: active goes back to 0, accepted stays 1.
    drop(client);
    let seen_gone = eventually(Duration::from_secs(10), || {
        stats_lines(&server.log()).iter().any(|l| {
            counter(l, "accepted") == Some(1)
                && counter(l, "active") == Some(0)
                && counter(l, "requests").is_some_and(|n| n >= 2)
        })
    });
    assert!(
        seen_gone,
        "no stats line with active=0 after the client left; log:\n{}",
        server.log()
    );

    // A good client is still served.
    Client::connect(server.addr).echo(b"good client");

    let elapsed = started.elapsed();
    server.signal(libc::SIGTERM);
    let status = server.wait_exit(Duration::from_secs(15)).expect("exit");
    let log = server.log();
    dump_log(&log);
    assert_eq!(status.code(), Some(0), "log:\n{log}");
    let lines = stats_lines(&log);
    // Periodic, not a flood: about one per 200 ms; bounds are loose.
    let expected = elapsed.as_secs_f64() / 0.2;
    assert!(
        (lines.len() as f64) <= expected * 1.5 + 5.0,
        "{} stats lines in {elapsed:?}",
        lines.len()
    );
    let last = lines.last().unwrap().clone();
    for name in STAT_COUNTERS {
        assert!(counter(&last, name).is_some(), "{name} missing in {last:?}");
    }

    // Without the flag: no stats lines at all.
    let mut quiet = spawn_wharf(&["--workers", "2"]);
    Client::connect(quiet.addr).echo(b"good client");
    std::thread::sleep(Duration::from_millis(1000));
    quiet.signal(libc::SIGTERM);
    let status = quiet.wait_exit(Duration::from_secs(15)).expect("exit");
    let quiet_log = quiet.log();
    assert_eq!(status.code(), Some(0), "log:\n{quiet_log}");
    assert_eq!(
        stats_lines(&quiet_log).len(),
        0,
        "stats lines without --stats-interval:\n{quiet_log}"
    );

    println!(
        "FIGURES stats_interval_logs_counters_that_follow_activity: {} stats lines in {:.2}s \
         at 200ms (expected ~{expected:.0}); client reflected (accepted=1 open=1 resting=1) within \
         {:.2}s; last line: {}; 0 stats lines without the flag",
        lines.len(),
        elapsed.as_secs_f64(),
        active_after.as_secs_f64(),
        last.split("stats: ").nth(1).unwrap_or(&last),
    );
}
