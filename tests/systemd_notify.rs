//! Operations (docs/operating.md) through the real binary: systemd
//! notifications. READY=1, STATUS=, WATCHDOG=1 (not for another PID),
//! STOPPING=1, and EXTEND_TIMEOUT_USEC during a long drain, but no longer
//! than a stop that outlives its grace.
//!
//! The test plays systemd: it binds listening sockets and passes them as
//! descriptor 3 (see `common::systemd::activated_command`), and reads the
//! notifications on a datagram socket it names in `NOTIFY_SOCKET`.

mod common;

use std::os::fd::{AsRawFd, FromRawFd};
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::ops::{exit_code, listening_socket};
use common::systemd::{activated_command, NotifySocket};
use common::{serve_command, spawn_wharf_command, Client, Wharf};
use wharf::frame::DATA;
use wharf::GoAwayCode;

/// A request that the service (`--delay`) is working on when this returns.
fn request_in_flight(wharf: &Wharf, payload: &[u8]) -> Client {
    let mut client = Client::connect(wharf.addr);
    client.ping(b"are you there");
    client.send(DATA, payload);
    std::thread::sleep(Duration::from_millis(300));
    client
}

/// Operations, systemd: READY=1 once listening, STATUS= every
/// --stats-interval, WATCHDOG=1 at about half of WATCHDOG_USEC, STOPPING=1
/// when the drain starts, and EXTEND_TIMEOUT_USEC during a long drain, with
/// the watchdog still fed while the reaper runs.
#[test]
fn notify_ready_status_watchdog_stopping_and_extend() {
    let mut notify = NotifySocket::new("all");
    let mut command = serve_command(
        "127.0.0.1:0",
        &[
            "--workers",
            "2",
            "--delay",
            "2500ms",
            "--grace",
            "20s",
            "--stats-interval",
            "200ms",
        ],
    );
    command
        .env("NOTIFY_SOCKET", notify.path())
        .env("WATCHDOG_USEC", "1000000")
        .env_remove("WATCHDOG_PID");
    let mut wharf = spawn_wharf_command(command);
    let ready = notify.wait_for("READY=1", Duration::from_secs(5));
    assert!(ready.is_some(), "no READY=1; log:\n{}", wharf.log());

    let running = Instant::now();
    notify.collect(Duration::from_millis(1600));
    let status = notify.lines_since(running, "STATUS=");
    assert!(status.len() >= 4, "STATUS every 200 ms: {status:?}");
    assert!(
        status
            .iter()
            .all(|(_, l)| l.contains("accepted=") && l.contains("requests=")),
        "{status:?}"
    );
    let watchdog = notify.lines_since(running, "WATCHDOG=1");
    assert!(
        (2..=5).contains(&watchdog.len()),
        "WATCHDOG=1 about every 500 ms over 1.6 s: {watchdog:?}"
    );

    let mut client = request_in_flight(&wharf, b"a long request");
    let signalled = Instant::now();
    wharf.signal(libc::SIGTERM);
    let stopping = notify.wait_for("STOPPING=1", Duration::from_secs(2));
    assert!(stopping.is_some(), "no STOPPING=1; log:\n{}", wharf.log());
    assert!(signalled.elapsed() < Duration::from_secs(1));
    // The request takes 2.5 s: the drain goes on for about 2 s.
    notify.collect(Duration::from_millis(1500));
    let extend = notify.lines_since(signalled, "EXTEND_TIMEOUT_USEC=");
    assert!(extend.len() >= 2, "EXTEND_TIMEOUT_USEC renewed: {extend:?}");
    for (_, line) in &extend {
        let usec: u64 = line["EXTEND_TIMEOUT_USEC=".len()..].parse().unwrap();
        // Within the 20 s grace: at least what is left of it, and never
        // more than the grace plus the 5 s margin.
        assert!((15_000_000..=25_000_000).contains(&usec), "{line}");
    }
    let fed = notify.lines_since(signalled + Duration::from_millis(300), "WATCHDOG=1");
    assert!(!fed.is_empty(), "WATCHDOG=1 during the drain: {fed:?}");
    let draining = notify.lines_since(signalled, "STATUS=draining");
    assert!(!draining.is_empty(), "{:?}", notify.received);

    let before = client.expect_goaway(GoAwayCode::Shutdown);
    assert_eq!(before.len(), 1, "the answer: {before:?}");
    assert_eq!(exit_code(&mut wharf, Duration::from_secs(10)), 0);
}

/// A pipe (read end, write end), both close-on-exec.
fn pipe() -> (std::fs::File, std::fs::File) {
    let mut fds = [0; 2];
    // SAFETY: pipe2(2) writes two new descriptors into the array, which are
    // then owned by the files below and nowhere else.
    let rc = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) };
    assert_eq!(rc, 0, "pipe2: {}", std::io::Error::last_os_error());
    // SAFETY: just created, owned by nothing else.
    unsafe {
        (
            std::fs::File::from_raw_fd(fds[0]),
            std::fs::File::from_raw_fd(fds[1]),
        )
    }
}

/// A child process killed (by its PID) if the test ends while it runs.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// docs/operating.md, "systemd": EXTEND_TIMEOUT_USEC keeps systemd from
/// killing a drain that is still inside --grace, and no more: once
/// --drain-delay + --grace have passed, a stop still running is wedged and
/// must be left to systemd's TimeoutStopSec. Renewing the extension for
/// ever would keep it alive for ever.
///
/// A drain cannot wedge by itself (past the grace period it stops waiting
/// for a worker stuck in its service), so the test wedges it the way a
/// stuck journal would: wharf's stderr is a pipe that nobody reads any
/// more, filled up once the drain has started, so the drain blocks in its
/// next log line at the end of the grace period. The main thread, which
/// sends the notifications, keeps running.
#[test]
fn extend_timeout_usec_stops_once_the_stop_outlives_its_grace() {
    const GRACE: Duration = Duration::from_secs(1);
    const MARGIN: Duration = Duration::from_secs(5); // EXTEND_MARGIN
    let mut notify = NotifySocket::new("wedge");
    let listener = listening_socket();
    let addr = listener.local_addr().unwrap();
    let (log_read, log_write) = pipe();
    let mut command = activated_command(
        &[listener.as_raw_fd()],
        // The request stays in the service far beyond the grace period.
        &["--workers", "1", "--delay", "60s", "--grace", "1s"],
    );
    command
        .env("NOTIFY_SOCKET", notify.path())
        .env_remove("WATCHDOG_USEC")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log_write.try_clone().unwrap());
    let mut wharf = KillOnDrop(command.spawn().expect("wharf starts"));
    drop(command);

    // Reads the log until the drain has started, then stops reading (and
    // keeps the read end open, so that writes block rather than fail).
    let log = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let (drain_tx, drain_rx) = std::sync::mpsc::channel();
    let reader = {
        let log = log.clone();
        std::thread::spawn(move || {
            let mut lines = std::io::BufReader::new(log_read);
            let mut line = String::new();
            while matches!(std::io::BufRead::read_line(&mut lines, &mut line), Ok(n) if n > 0) {
                log.lock().unwrap().push_str(&line);
                if line.contains("shutdown: draining") {
                    let _ = drain_tx.send(Instant::now());
                    break;
                }
                line.clear();
            }
            lines
        })
    };
    let log = move || log.lock().unwrap().clone();

    assert!(
        notify
            .wait_for("READY=1", Duration::from_secs(10))
            .is_some(),
        "no READY=1; log:\n{}",
        log()
    );
    let mut client = Client::connect(addr);
    client.ping(b"are you there");
    client.send(DATA, b"a request that outlives the grace period");
    std::thread::sleep(Duration::from_millis(300));

    let signalled = Instant::now();
    // SAFETY: kill(2) with the PID of a child this test started and has
    // not reaped.
    assert_eq!(
        unsafe { libc::kill(wharf.0.id() as libc::pid_t, libc::SIGTERM) },
        0
    );
    let drained = drain_rx
        .recv_timeout(Duration::from_secs(5))
        .unwrap_or_else(|_| panic!("the drain never started; log:\n{}", log()));
    // Fill the pipe: the writer blocks once it is full, and so does wharf's
    // next log line.
    let filler = std::thread::spawn(move || {
        let mut log_write = log_write;
        let _ = std::io::Write::write_all(&mut log_write, &vec![b'.'; 1 << 20]);
    });

    // Past the grace and the margin, and on for a few more renewals.
    let watched_until = drained + GRACE + MARGIN + Duration::from_millis(2500);
    notify.collect(watched_until.saturating_duration_since(Instant::now()));
    assert!(
        wharf.0.try_wait().unwrap().is_none(),
        "wharf exited: the stop did not wedge, so this proves nothing; log:\n{}",
        log()
    );
    let extend = notify.lines_since(signalled, "EXTEND_TIMEOUT_USEC=");
    assert!(!extend.is_empty(), "{:?}", notify.received);
    for (_, line) in &extend {
        let usec: u64 = line["EXTEND_TIMEOUT_USEC=".len()..].parse().unwrap();
        assert!(
            usec <= (GRACE + MARGIN).as_micros() as u64,
            "more than --grace + the margin: {line}"
        );
    }
    let limit = drained + GRACE + MARGIN;
    let late: Vec<_> = extend
        .iter()
        .filter(|(at, _)| *at > limit)
        .map(|(at, line)| (at.duration_since(drained), line))
        .collect();
    assert!(
        late.is_empty(),
        "EXTEND_TIMEOUT_USEC after the drain start + --grace + the margin, that is \
         after {:?} (times from the drain start): {late:?}",
        GRACE + MARGIN
    );

    // The stop is wedged: end it as systemd would, then unblock the filler.
    drop(wharf);
    drop(reader.join().unwrap());
    filler.join().unwrap();
}

/// WATCHDOG_USEC is for another process when WATCHDOG_PID names another
/// one: then no WATCHDOG=1 is sent (the rest still is).
#[test]
fn watchdog_is_not_fed_for_another_pid() {
    let mut notify = NotifySocket::new("pid");
    let mut command = serve_command("127.0.0.1:0", &["--workers", "1"]);
    command
        .env("NOTIFY_SOCKET", notify.path())
        .env("WATCHDOG_USEC", "400000")
        .env("WATCHDOG_PID", "1");
    let mut wharf = spawn_wharf_command(command);
    assert!(notify.wait_for("READY=1", Duration::from_secs(5)).is_some());
    let since = Instant::now();
    notify.collect(Duration::from_millis(1000));
    assert!(
        notify.lines_since(since, "WATCHDOG").is_empty(),
        "{:?}",
        notify.received
    );
    wharf.signal(libc::SIGTERM);
    assert!(notify
        .wait_for("STOPPING=1", Duration::from_secs(5))
        .is_some());
    assert_eq!(exit_code(&mut wharf, Duration::from_secs(10)), 0);
}
