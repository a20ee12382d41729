//! Operations (docs/operating.md) through the real binary: what
//! each signal does. The first SIGTERM starts the drain delay (STOPPING=1
//! at once, serving on), a second one stops at once; SIGHUP reopens
//! `--log-file`; SIGUSR1 logs the counters; none of them disturbs a
//! connection, even with a request in the service.

mod common;

use std::time::{Duration, Instant};

use common::ops::{exit_code, wait_log};
use common::systemd::NotifySocket;
use common::{eventually, serve_command, spawn_wharf_command, Client, TempLog};
use wharf::frame::DATA;
use wharf::GoAwayCode;

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
