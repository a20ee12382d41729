//! Fault injection against the real `wharf` binary (the protocol,
//! "Overload"): running out of file descriptors. Accept errors are logged
//! with backoff (no spin, no log flood), existing clients keep working, and
//! service resumes by itself once descriptors are free.
//!
//! Every test checks that a good client is served once the fault is over (or,
//! after a shutdown, that the listener is really gone), and prints one
//! `FIGURES <test>: ...` line with what it observed, for docs/reliability.md.
//! Every loop is bounded in count and time, every bound is generous (CI is a
//! loaded 2-core machine), and no test asserts on speed. Children are killed
//! by PID if a test fails midway.

mod common;

use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use common::faults::{counter, dump_log, summary};
use common::{eventually, spawn_wharf, Client};
use wharf::frame::DATA;
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

fn count_lines(log: &str, needle: &str) -> usize {
    log.lines().filter(|l| l.contains(needle)).count()
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
// File-descriptor exhaustion.
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
