//! Operations (docs/operating.md) through the real binary: socket activation,
//! systemd notifications, the drain delay, SIGHUP and SIGUSR1. The
//! same-port restarts under load are in `restart.rs`.
//!
//! The test plays systemd: it binds listening sockets and passes them as
//! descriptor 3 (see `common::systemd::activated_command`), and reads the
//! notifications on a datagram socket it names in `NOTIFY_SOCKET`.

mod common;

use std::io::Read;
use std::net::{Ipv4Addr, TcpListener, TcpStream, UdpSocket};
use std::os::fd::{AsRawFd, FromRawFd};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::systemd::{activated_command, NotifySocket};
use common::{eventually, serve_command, spawn_wharf_command, Client, TempLog, Wharf};
use wharf::frame::DATA;
use wharf::GoAwayCode;

/// Waits for the child to exit; its exit code.
fn exit_code(wharf: &mut Wharf, within: Duration) -> i32 {
    match wharf.wait_exit(within) {
        Some(status) => status
            .code()
            .unwrap_or_else(|| panic!("killed by a signal: {status:?}\n{}", wharf.log())),
        None => panic!("no exit within {within:?}; log:\n{}", wharf.log()),
    }
}

/// Waits until the child's log contains `text`.
fn wait_log(wharf: &Wharf, text: &str) {
    assert!(
        eventually(Duration::from_secs(10), || wharf.log().contains(text)),
        "log never contained {text:?}:\n{}",
        wharf.log()
    );
}

/// A listening socket on 127.0.0.1, as a systemd socket unit holds it.
fn listening_socket() -> TcpListener {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind 127.0.0.1:0")
}

/// A request that the service (`--delay`) is working on when this returns.
fn request_in_flight(wharf: &Wharf, payload: &[u8]) -> Client {
    let mut client = Client::connect(wharf.addr);
    client.ping(b"are you there");
    client.send(DATA, payload);
    std::thread::sleep(Duration::from_millis(300));
    client
}

/// Operations: with `LISTEN_PID` this process and `LISTEN_FDS` >= 1, the
/// server serves descriptor 3 instead of `--bind`, the listening line shows
/// its address, further descriptors are ignored with a warning, and the
/// drain leaves the socket open: after wharf has exited, the holder's
/// socket still takes connections into its backlog.
#[test]
fn socket_activation_serves_descriptor_3_and_leaves_it_open() {
    let listener = listening_socket();
    let addr = listener.local_addr().unwrap();
    let extra = listening_socket();
    let mut command = activated_command(
        &[listener.as_raw_fd(), extra.as_raw_fd()],
        // --bind would fail: the address is taken (by the test's socket).
        &["--workers", "2", "--bind", &addr.to_string()],
    );
    command.env("LISTEN_FDNAMES", "web:spare");
    let mut wharf = spawn_wharf_command(command);
    assert_eq!(wharf.addr, addr, "{}", wharf.log());
    wait_log(&wharf, "serving descriptor 3 (web)");
    wait_log(&wharf, "ignoring descriptor 4 (spare)");
    let warning = wharf.log();
    assert!(
        warning
            .lines()
            .any(|l| l.contains("WARN") && l.contains("ignoring descriptor 4")),
        "{warning}"
    );

    let mut client = Client::connect(addr);
    client.echo(b"served on an inherited socket");
    wharf.signal(libc::SIGTERM);
    client.expect_goaway(GoAwayCode::Shutdown);
    assert_eq!(exit_code(&mut wharf, Duration::from_secs(10)), 0);
    let log = wharf.log();
    assert!(
        log.contains("inherited listening socket stays open"),
        "{log}"
    );

    // The holder's socket was not shut down: a new connection waits in its
    // backlog, where the next instance (here, the test) accepts it.
    let waiting = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .expect("the inherited socket still takes connections");
    listener.set_nonblocking(false).unwrap();
    let (accepted, peer) = listener.accept().expect("accept from the backlog");
    assert_eq!(peer, waiting.local_addr().unwrap());
    drop(accepted);
}

/// Runs a command to its exit (at most 10 s); its status code and stderr.
fn run_to_exit(mut command: Command) -> (Option<i32>, String) {
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("wharf starts");
    let mut stderr = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("still running after 10 s");
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    (status.code(), reader.join().unwrap_or_default())
}

/// Operations: "a descriptor 3 that is not a listening TCP socket is a
/// startup failure (exit 1)", with a one-line cause.
#[test]
fn socket_activation_with_a_wrong_descriptor_3_exits_1_with_one_line() {
    let udp = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    let not_listening =
        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    let file = std::fs::File::open("/dev/null").unwrap();
    let cases = [
        ("a UDP socket", udp.as_raw_fd()),
        (
            "a TCP socket that does not listen",
            not_listening.as_raw_fd(),
        ),
        ("a file", file.as_raw_fd()),
    ];
    for (what, fd) in cases {
        let (code, stderr) = run_to_exit(activated_command(&[fd], &["--workers", "1"]));
        assert_eq!(code, Some(1), "{what}: {stderr}");
        let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
        assert_eq!(lines.len(), 1, "{what}: not one line:\n{stderr}");
        assert!(lines[0].contains("descriptor 3"), "{what}: {stderr}");
        assert!(!stderr.contains("panicked"), "{what}: {stderr}");
    }
    // Without LISTEN_PID naming this process, LISTEN_FDS is not for us.
    let mut command = serve_command("127.0.0.1:0", &["--workers", "1"]);
    command
        .env("LISTEN_FDS", "1")
        .env("LISTEN_PID", "1")
        .stdin(Stdio::null());
    let mut wharf = spawn_wharf_command(command);
    assert!(
        !wharf.log().contains("socket activation"),
        "{}",
        wharf.log()
    );
    Client::connect(wharf.addr).echo(b"bound --bind as usual");
    wharf.signal(libc::SIGTERM);
    assert_eq!(exit_code(&mut wharf, Duration::from_secs(10)), 0);
}

/// Operations: "further descriptors are ignored with a warning", also
/// when `LISTEN_FDS` counts more descriptors than are open: here
/// `LISTEN_FDS=3` with only descriptor 3 passed, so 4 and 5 are not open.
/// Descriptor 3 itself must be open: `LISTEN_FDS=1` with nothing passed
/// is a startup failure (exit 1) with one line.
#[test]
fn socket_activation_ignores_counted_descriptors_that_are_not_open() {
    let listener = listening_socket();
    let addr = listener.local_addr().unwrap();
    let mut command = activated_command(&[listener.as_raw_fd()], &["--workers", "1"]);
    command.env("LISTEN_FDS", "3");
    let mut wharf = spawn_wharf_command(command);
    assert_eq!(wharf.addr, addr, "{}", wharf.log());
    wait_log(&wharf, "descriptor(s) 4-5 are not open");
    let log = wharf.log();
    assert!(
        log.lines()
            .any(|l| l.contains("WARN") && l.contains("LISTEN_FDS is 3")),
        "{log}"
    );
    Client::connect(addr).echo(b"served although LISTEN_FDS says 3");
    wharf.signal(libc::SIGTERM);
    assert_eq!(exit_code(&mut wharf, Duration::from_secs(10)), 0);

    // Nothing passed: activated_command sets LISTEN_FDS=0; say 1.
    let mut nothing = activated_command(&[], &["--workers", "1"]);
    nothing.env("LISTEN_FDS", "1");
    let (code, stderr) = run_to_exit(nothing);
    assert_eq!(code, Some(1), "{stderr}");
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "not one line:\n{stderr}");
    assert!(lines[0].contains("descriptor 3 is not open"), "{stderr}");
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

/// Operations, drain delay: on the first signal the server reports
/// not-ready at once (STOPPING=1) but keeps accepting and serving for the
/// delay, then drains (GOAWAY 1) and exits 0.
#[test]
fn drain_delay_keeps_serving_then_drains() {
    let mut notify = NotifySocket::new("delay");
    let mut command = serve_command(
        "127.0.0.1:0",
        &["--workers", "2", "--drain-delay", "1500ms", "--grace", "5s"],
    );
    command.env("NOTIFY_SOCKET", notify.path());
    let mut wharf = spawn_wharf_command(command);
    assert!(notify.wait_for("READY=1", Duration::from_secs(5)).is_some());
    let mut existing = Client::connect(wharf.addr);
    existing.echo(b"before the signal");

    let signalled = Instant::now();
    wharf.signal(libc::SIGTERM);
    assert!(
        notify
            .wait_for("STOPPING=1", Duration::from_secs(1))
            .is_some(),
        "STOPPING=1 at once; log:\n{}",
        wharf.log()
    );
    wait_log(&wharf, "drain delay");
    // During the delay: new connections are accepted and served, and so are
    // the existing ones.
    std::thread::sleep(Duration::from_millis(300));
    let mut late = Client::connect(wharf.addr);
    late.echo(b"connected during the delay");
    existing.echo(b"still served during the delay");
    assert!(
        signalled.elapsed() < Duration::from_millis(1400),
        "the checks took too long to prove anything"
    );
    assert!(
        !wharf.log().contains("shutdown: draining"),
        "{}",
        wharf.log()
    );

    // Then the drain: both get GOAWAY 1, not before the delay is over.
    existing.expect_goaway(GoAwayCode::Shutdown);
    let drained = signalled.elapsed();
    assert!(
        drained >= Duration::from_millis(1450),
        "drained after {drained:?}"
    );
    late.expect_goaway(GoAwayCode::Shutdown);
    assert_eq!(exit_code(&mut wharf, Duration::from_secs(10)), 0);
    let log = wharf.log();
    assert!(log.contains("shutdown: draining"), "{log}");
}

/// A second signal during the drain delay closes at once (exit 1).
#[test]
fn second_signal_during_the_drain_delay_stops_at_once() {
    let mut wharf = common::spawn_wharf(&["--workers", "2", "--drain-delay", "30s"]);
    let mut client = Client::connect(wharf.addr);
    client.echo(b"connected");
    wharf.signal(libc::SIGTERM);
    wait_log(&wharf, "drain delay");
    let began = Instant::now();
    wharf.signal(libc::SIGTERM);
    let code = exit_code(&mut wharf, Duration::from_secs(10));
    assert_eq!(code, 1, "{}", wharf.log());
    assert!(
        began.elapsed() < Duration::from_secs(3),
        "{:?}",
        began.elapsed()
    );
    // A forced close sends GOAWAY 1 where it can (best effort: not to a
    // connection a worker holds), then closes.
    if let Some(frame) = client.recv() {
        let goaway = frame.goaway(wharf::Framing::Length);
        assert_eq!(goaway.map(|g| g.code), Some(1), "{frame:?}");
        client.expect_closed();
    }
}

/// Operations: SIGHUP reopens --log-file (logrotate renamed it: new lines
/// go to a new file at the path), is logged, and disturbs no connection.
#[test]
fn sighup_reopens_the_log_file() {
    let log = TempLog::new("sighup");
    let path = log.as_str().to_owned();
    let mut wharf = common::spawn_wharf(&["--workers", "2", "--log-file", &path]);
    let mut client = Client::connect(wharf.addr);
    client.echo(b"before the rotation");

    std::fs::rename(log.path(), log.rotated()).expect("rotate the log file");
    wharf.signal(libc::SIGHUP);
    assert!(
        eventually(Duration::from_secs(10), || std::fs::read_to_string(
            log.path()
        )
        .is_ok_and(|t| t.contains("reopened the log file"))),
        "no new log file at the path; log:\n{}",
        wharf.log()
    );
    client.echo(b"after the rotation");
    wharf.signal(libc::SIGTERM);
    client.expect_goaway(GoAwayCode::Shutdown);
    assert_eq!(exit_code(&mut wharf, Duration::from_secs(10)), 0);

    let old = std::fs::read_to_string(log.rotated()).unwrap();
    let new = std::fs::read_to_string(log.path()).unwrap();
    assert!(old.contains("listening on"), "{old}");
    assert!(old.contains("received SIGHUP; reopening"), "{old}");
    assert!(!old.contains("summary:"), "written to the old file:\n{old}");
    assert!(new.contains("summary:"), "{new}");
    assert!(!new.contains("listening on"), "{new}");
}

/// Operations: SIGUSR1 logs at once one line with the counters of the exit
/// summary, and neither stops the server nor disturbs a connection; nor do
/// SIGHUP without a log file and SIGUSR2 (logged, ignored).
#[test]
fn sigusr1_logs_the_counters_and_disturbs_nothing() {
    let mut wharf = common::spawn_wharf(&["--workers", "2"]);
    let mut client = Client::connect(wharf.addr);
    client.echo(b"one");
    client.echo(b"two");
    wharf.signal(libc::SIGUSR1);
    wait_log(&wharf, "received SIGUSR1; counters:");
    let log = wharf.log();
    let line = log
        .lines()
        .find(|l| l.contains("received SIGUSR1"))
        .unwrap();
    for counter in ["accepted=1", "rejected_busy=0", "reaped=0", "requests=2"] {
        assert!(line.contains(counter), "{line}");
    }
    client.echo(b"three");
    // SIGHUP without --log-file is logged, and harmless too.
    wharf.signal(libc::SIGHUP);
    wait_log(&wharf, "no --log-file to reopen");
    client.echo(b"four");
    // SIGUSR2, whose default action would kill the server, is logged and
    // ignored.
    wharf.signal(libc::SIGUSR2);
    wait_log(
        &wharf,
        "received SIGUSR2; it means nothing to wharf and is ignored",
    );
    client.echo(b"five");
    wharf.signal(libc::SIGTERM);
    client.expect_goaway(GoAwayCode::Shutdown);
    assert_eq!(exit_code(&mut wharf, Duration::from_secs(10)), 0);
    assert!(wharf.log().contains("requests=5"), "{}", wharf.log());
}

/// Operations: SIGHUP and SIGUSR1 neither stop the server nor disturb a
/// connection, also while a request is inside the service (`--delay 1s`):
/// both are handled (the log is reopened, the counters logged) before the
/// service is done, the request still gets its reply, the connection goes
/// on serving, and the server keeps accepting.
#[test]
fn sighup_and_sigusr1_during_a_request_disturb_nothing() {
    let log = TempLog::new("signals-in-flight");
    let path = log.as_str().to_owned();
    let mut wharf = common::spawn_wharf(&["--workers", "2", "--delay", "1s", "--log-file", &path]);
    let mut client = Client::connect(wharf.addr);
    client.ping(b"are you there");
    let sent = Instant::now();
    client.send(DATA, b"in the service while signalled");
    std::thread::sleep(Duration::from_millis(200));

    std::fs::rename(log.path(), log.rotated()).expect("rotate the log file");
    wharf.signal(libc::SIGHUP);
    wharf.signal(libc::SIGUSR1);
    assert!(
        eventually(Duration::from_secs(5), || {
            let log = wharf.log();
            log.contains("reopened the log file") && log.contains("received SIGUSR1; counters:")
        }),
        "log:\n{}",
        wharf.log()
    );
    let handled = sent.elapsed();
    assert!(
        handled < Duration::from_millis(900),
        "the signals were handled after {handled:?}, not while the request was in the service"
    );

    let reply = client.recv().expect("the reply, not end-of-stream");
    assert_eq!(reply.kind, DATA, "{reply:?}");
    assert_eq!(reply.payload, b"in the service while signalled");
    assert!(
        sent.elapsed() >= Duration::from_millis(950),
        "the reply came before the service was done: {:?}",
        sent.elapsed()
    );
    // The connection is still usable, and the server still serving.
    client.ping(b"still there");
    client.echo(b"and still served");
    Client::connect(wharf.addr).echo(b"a new connection");
    assert!(wharf.child.try_wait().unwrap().is_none(), "{}", wharf.log());
    let text = wharf.log();
    assert!(!text.contains("shutdown:"), "{text}");
    assert!(!text.contains("ERROR"), "{text}");

    wharf.signal(libc::SIGTERM);
    client.expect_goaway(GoAwayCode::Shutdown);
    assert_eq!(exit_code(&mut wharf, Duration::from_secs(10)), 0);
    let summary = wharf.log();
    assert!(summary.contains("requests=3"), "{summary}");
    // The reopen done while the request was in the service took effect:
    // what came after went to the new file.
    let new = std::fs::read_to_string(log.path()).unwrap();
    assert!(new.contains("summary:"), "{new}");
}
