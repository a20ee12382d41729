//! The real `wharf` binary (the protocol, "Command line" and "Graceful
//! shutdown"): flag errors, startup failures, the listening line, signals,
//! exit codes, the log file and the fixed thread count.
//!
//! Every child is started by this test process and stopped by PID: the
//! `Wharf` helper kills its child on drop, and `run_to_exit` kills its own
//! child if it outlives its time bound.

mod common;

use std::net::{Ipv4Addr, Ipv6Addr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use common::{eventually, run_wharf, spawn_wharf, spawn_wharf_bound, Client, TempLog, Wharf};
use wharf::frame::DATA;
use wharf::{Framing, GoAwayCode};

/// Waits for the child to exit after a signal, failing with its log if not.
fn exit_code(wharf: &mut Wharf, within: Duration) -> i32 {
    match wharf.wait_exit(within) {
        Some(status) => status
            .code()
            .unwrap_or_else(|| panic!("killed by a signal: {status:?}\n{}", wharf.log())),
        None => panic!(
            "wharf did not exit within {within:?}; log:\n{}",
            wharf.log()
        ),
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

/// Puts a request into the service of a running `wharf --delay ...` and
/// returns once it is (almost certainly) running: a PING answered first
/// proves a worker is reading this connection, so the DATA that follows is
/// read at once.
fn request_in_flight(wharf: &Wharf, payload: &[u8]) -> Client {
    let mut client = Client::connect(wharf.addr);
    client.ping(b"are you there");
    client.send(DATA, payload);
    std::thread::sleep(Duration::from_millis(300));
    client
}

/// The value of `key=N` in the summary line.
fn summary_count(log: &str, key: &str) -> Option<u64> {
    let line = log.lines().rev().find(|l| l.contains("summary:"))?;
    line.split_whitespace()
        .find_map(|word| word.strip_prefix(key)?.strip_prefix('='))
        .and_then(|n| n.parse().ok())
}

/// Promised: "Bad flags exit 2 with clap's error naming the flag".
#[test]
fn bad_flags_exit_2_naming_the_flag() {
    let cases: &[(&[&str], &str)] = &[
        (&["--workers", "0"], "--workers"),
        (&["--workers", "abc"], "--workers"),
        (&["--overload", "maybe"], "--overload"),
        (&["--heartbeat-timeout", "soon"], "--heartbeat-timeout"),
        (&["--framing", "xml"], "--framing"),
        (&["--queue", "100000000000"], "--queue"),
        (&["--max-frame", "0"], "--max-frame"),
        (&["--max-frame", "2GiB"], "--max-frame"),
        (&["--max-frame", "64KB"], "--max-frame"),
        (&["--workers", "100000"], "--workers"),
        (&["--max-connections", "0"], "--max-connections"),
        (&["--max-buffered", "64KB"], "--max-buffered"),
        // A budget smaller than one frame could never complete that frame.
        (&["--max-buffered", "1KiB"], "--max-buffered"),
        // A deadline this far away would overflow the clock.
        (&["--grace", "1000years"], "--grace"),
        (&["--write-timeout", "500000000000y"], "--write-timeout"),
        (&["--no-such-flag"], "--no-such-flag"),
    ];
    for (flags, named) in cases {
        let mut args = vec!["serve", "--bind", "127.0.0.1:0"];
        args.extend_from_slice(flags);
        let run = run_wharf(&args, Duration::from_secs(10));
        assert_eq!(
            run.status.code(),
            Some(2),
            "{flags:?}: exit status {:?}; stderr:\n{}",
            run.status,
            run.stderr
        );
        assert!(
            run.stderr.contains(named),
            "{flags:?}: stderr does not name {named}:\n{}",
            run.stderr
        );
        assert!(
            !run.stderr.contains("listening on") && !run.stdout.contains("listening on"),
            "{flags:?}: started listening despite a bad flag"
        );
    }
}

/// Promised: "a runtime failure at startup (address in use ...) exits 1 with
/// a one-line cause, never a panic or backtrace".
#[test]
fn address_in_use_exits_1_with_one_line() {
    let taken = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind 127.0.0.1:0");
    let addr = taken.local_addr().unwrap().to_string();
    let run = run_wharf(&["serve", "--bind", addr.as_str()], Duration::from_secs(10));
    drop(taken);
    assert_eq!(
        run.status.code(),
        Some(1),
        "exit status {:?}; stderr:\n{}",
        run.status,
        run.stderr
    );
    let lines: Vec<&str> = run
        .stderr
        .lines()
        .filter(|l| !l.trim().is_empty())
        .collect();
    assert_eq!(lines.len(), 1, "stderr is not one line:\n{}", run.stderr);
    let line = lines[0].to_lowercase();
    assert!(line.contains("in use"), "cause not named: {line}");
    assert!(line.contains(&addr), "address not named: {line}");
    assert!(
        !run.stderr.contains("panicked") && !run.stderr.contains("backtrace"),
        "{}",
        run.stderr
    );
    assert!(!run.stdout.contains("listening on"), "{}", run.stdout);
}

/// The one-line cause names the OS error once, not twice.
#[test]
fn address_in_use_names_the_cause_once() {
    let taken = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind 127.0.0.1:0");
    let addr = taken.local_addr().unwrap().to_string();
    let run = run_wharf(&["serve", "--bind", addr.as_str()], Duration::from_secs(10));
    drop(taken);
    assert_eq!(run.status.code(), Some(1), "{}", run.stderr);
    assert_eq!(
        run.stderr.matches("in use").count(),
        1,
        "cause repeated: {}",
        run.stderr
    );
}

/// Promised: "logs one line containing `listening on <ip>:<port>` with the
/// real bound address", port 0 picking a free port.
#[test]
fn listening_line_shows_real_port_ipv4() {
    let mut wharf = spawn_wharf(&["--workers", "2"]);
    assert_eq!(wharf.addr.ip(), Ipv4Addr::LOCALHOST, "{}", wharf.log());
    assert_ne!(wharf.addr.port(), 0, "{}", wharf.log());
    Client::connect(wharf.addr).echo(b"over IPv4");
    wharf.signal(libc::SIGTERM);
    assert_eq!(exit_code(&mut wharf, Duration::from_secs(10)), 0);
}

/// Promised: "IPv6 (`[::1]:0`) works".
#[test]
fn listening_line_shows_real_port_ipv6() {
    if let Err(e) = TcpListener::bind((Ipv6Addr::LOCALHOST, 0)) {
        println!("skipped: ::1 is not available here ({e})");
        return;
    }
    let mut wharf = spawn_wharf_bound("[::1]:0", &["--workers", "2"]);
    assert_eq!(wharf.addr.ip(), Ipv6Addr::LOCALHOST, "{}", wharf.log());
    assert_ne!(wharf.addr.port(), 0, "{}", wharf.log());
    Client::connect(wharf.addr).echo(b"over IPv6");
    wharf.signal(libc::SIGTERM);
    assert_eq!(exit_code(&mut wharf, Duration::from_secs(10)), 0);
}

/// Promised: SIGTERM/SIGINT on an idle server: exit 0 at once, each drain
/// stage logged, and a summary with the counts.
fn idle_signal_exits_0(signal: i32) {
    let mut wharf = spawn_wharf(&["--workers", "2"]);
    let mut client = Client::connect(wharf.addr);
    client.echo(b"one");
    client.ping(b"two");
    drop(client);
    // Let the worker see the close, so the server is idle.
    std::thread::sleep(Duration::from_millis(100));

    let began = Instant::now();
    wharf.signal(signal);
    let code = exit_code(&mut wharf, Duration::from_secs(3));
    let took = began.elapsed();
    let log = wharf.log();
    assert_eq!(code, 0, "exit code after one signal; log:\n{log}");
    assert!(took < Duration::from_secs(3), "took {took:?}");
    let name = if signal == libc::SIGINT {
        "SIGINT"
    } else {
        "SIGTERM"
    };
    for stage in [
        name,
        "shutdown: draining",
        "listener closed",
        "quiet connection(s) sent GOAWAY 1",
        "shutdown: done",
        "summary:",
    ] {
        assert!(log.contains(stage), "log lacks {stage:?}:\n{log}");
    }
    assert_eq!(summary_count(&log, "accepted"), Some(1), "{log}");
    assert_eq!(summary_count(&log, "rejected_busy"), Some(0), "{log}");
    assert_eq!(summary_count(&log, "reaped"), Some(0), "{log}");
    assert_eq!(summary_count(&log, "requests"), Some(2), "{log}");
    assert!(!log.contains("panicked"), "{log}");
}

#[test]
fn sigterm_idle_exits_0_with_stages_and_summary() {
    idle_signal_exits_0(libc::SIGTERM);
}

#[test]
fn sigint_idle_exits_0_with_stages_and_summary() {
    idle_signal_exits_0(libc::SIGINT);
}

/// Drain step 3 through the binary: the request in flight is answered,
/// then GOAWAY 1, and the process exits 0.
#[test]
fn sigterm_with_request_in_flight_answers_then_goaway() {
    let mut wharf = spawn_wharf(&["--workers", "2", "--delay", "1s"]);
    let mut client = request_in_flight(&wharf, b"in flight");
    wharf.signal(libc::SIGTERM);
    // Step 1: while the drain waits for the request, new connections are refused.
    wait_log(&wharf, "listener closed");
    match TcpStream::connect_timeout(&wharf.addr, Duration::from_secs(5)) {
        Err(e) => assert_eq!(e.kind(), std::io::ErrorKind::ConnectionRefused, "{e}"),
        Ok(_) => panic!("a new connection was accepted during the drain"),
    }
    let before = client.expect_goaway(GoAwayCode::Shutdown);
    assert_eq!(before.len(), 1, "{before:?}");
    assert_eq!(before[0].kind, DATA);
    assert_eq!(before[0].payload, b"in flight");
    let code = exit_code(&mut wharf, Duration::from_secs(10));
    let log = wharf.log();
    assert_eq!(code, 0, "log:\n{log}");
    // PING and DATA.
    assert_eq!(summary_count(&log, "requests"), Some(2), "{log}");
}

/// Promised: work still running after --grace: close at once, exit 1.
#[test]
fn grace_exceeded_exits_1() {
    let mut wharf = spawn_wharf(&["--workers", "2", "--delay", "5s", "--grace", "300ms"]);
    let mut client = request_in_flight(&wharf, b"takes five seconds");
    let began = Instant::now();
    wharf.signal(libc::SIGTERM);
    let code = exit_code(&mut wharf, Duration::from_secs(10));
    let took = began.elapsed();
    let log = wharf.log();
    assert_eq!(code, 1, "log:\n{log}");
    assert!(
        took < Duration::from_secs(4),
        "exited after {took:?}: waited for the 5 s service, not the 300 ms grace"
    );
    assert!(log.contains("grace period"), "{log}");
    // The client saw no response; at most GOAWAY 1, then the close.
    let mut frames = Vec::new();
    while let Some(frame) = client.recv() {
        frames.push(frame);
        assert!(frames.len() < 10, "{frames:?}");
    }
    assert!(frames.iter().all(|f| f.kind != DATA), "{frames:?}");
}

/// Promised: "or a second SIGINT/SIGTERM arrives": close at once, exit 1.
fn second_signal_exits_1(second: i32) {
    let mut wharf = spawn_wharf(&["--workers", "2", "--delay", "5s", "--grace", "30s"]);
    let _client = request_in_flight(&wharf, b"takes five seconds");
    wharf.signal(libc::SIGTERM);
    // The first one is handled (and not merged with the second).
    wait_log(&wharf, "stopping (send it again");
    let began = Instant::now();
    wharf.signal(second);
    let code = exit_code(&mut wharf, Duration::from_secs(10));
    let took = began.elapsed();
    let log = wharf.log();
    assert_eq!(code, 1, "log:\n{log}");
    assert!(
        took < Duration::from_secs(3),
        "exited {took:?} after the second signal"
    );
    assert!(log.contains("again"), "{log}");
}

#[test]
fn second_sigterm_exits_1_promptly() {
    second_signal_exits_1(libc::SIGTERM);
}

#[test]
fn sigint_after_sigterm_exits_1_promptly() {
    second_signal_exits_1(libc::SIGINT);
}

/// SIGTERM and SIGINT sent back to back, without waiting for the first to be
/// handled: two different signals are never merged, so this still forces.
#[test]
fn sigint_immediately_after_sigterm_exits_1() {
    let mut wharf = spawn_wharf(&["--workers", "2", "--delay", "5s", "--grace", "30s"]);
    let _client = request_in_flight(&wharf, b"takes five seconds");
    let began = Instant::now();
    wharf.signal(libc::SIGTERM);
    wharf.signal(libc::SIGINT);
    let code = exit_code(&mut wharf, Duration::from_secs(10));
    let took = began.elapsed();
    assert_eq!(code, 1, "log:\n{}", wharf.log());
    assert!(
        took < Duration::from_secs(3),
        "exited {took:?} after the signals"
    );
}

/// Promised: `--log-file PATH` also appends the log to this file.
#[test]
fn log_file_gets_the_log_and_is_appended() {
    let file = TempLog::new("log-file");
    let path = file.path().to_str().expect("UTF-8 temp path").to_owned();
    for run in 1..=2 {
        let mut wharf = spawn_wharf(&["--workers", "1", "--log-file", path.as_str()]);
        Client::connect(wharf.addr).echo(format!("run {run}").as_bytes());
        wharf.signal(libc::SIGTERM);
        assert_eq!(exit_code(&mut wharf, Duration::from_secs(10)), 0);
        let text = std::fs::read_to_string(file.path()).expect("log file exists");
        let listening = text.matches("listening on").count();
        let summaries = text.matches("summary:").count();
        assert_eq!(listening, run, "listening lines after run {run}:\n{text}");
        assert_eq!(summaries, run, "summary lines after run {run}:\n{text}");
        assert!(
            text.contains(&format!("listening on {}", wharf.addr)),
            "run {run}'s address missing:\n{text}"
        );
    }
}

/// Line framing through the binary: `--framing line` answers lines.
#[test]
fn line_framing_via_binary() {
    let mut wharf = spawn_wharf(&["--workers", "2", "--framing", "line"]);
    let mut client = Client::connect_with(wharf.addr, Framing::Line);
    // Raw bytes, as `nc` would send them; a trailing `\r` is dropped.
    client.send_raw(b"hello, line\r\n");
    let reply = client.recv().expect("a reply line");
    assert_eq!(reply.kind, DATA, "{reply:?}");
    assert_eq!(reply.payload, b"hello, line");
    client.send_raw(b"PING\n");
    let pong = client.recv().expect("PONG line");
    assert_eq!(pong.kind, wharf::frame::PONG, "{pong:?}");
    client.echo(b"again");
    wharf.signal(libc::SIGTERM);
    let before = client.expect_goaway(GoAwayCode::Shutdown);
    assert!(before.is_empty(), "{before:?}");
    assert_eq!(exit_code(&mut wharf, Duration::from_secs(10)), 0);
}

/// The number of threads of process `pid`.
#[cfg(target_os = "linux")]
fn thread_count(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .expect("read /proc/<pid>/task")
        .count()
}

/// Promised: `--workers N` threads are "all started before the listening
/// line", and the thread count never grows with the number of clients.
#[cfg(target_os = "linux")]
#[test]
fn all_workers_exist_at_listening_and_clients_add_no_threads() {
    let mut wharf = spawn_wharf(&["--workers", "8", "--queue", "128"]);
    let pid = wharf.child.id();
    let at_start = thread_count(pid);
    // 8 workers; acceptor, reaper, closer and the drain's coordinator; the
    // binary's signal thread and main thread. No poller thread: idle
    // workers wait on the epoll set themselves.
    assert_eq!(
        at_start,
        8 + 6,
        "threads at the listening line; expected 8 workers + 6"
    );

    let mut clients: Vec<TcpStream> = (0..100)
        .map(|i| TcpStream::connect(wharf.addr).unwrap_or_else(|e| panic!("connection {i}: {e}")))
        .collect();
    // Let the acceptor take them all; the first few go to workers.
    std::thread::sleep(Duration::from_millis(500));
    let mut first = Client::from_stream(clients.remove(0), Framing::Length);
    first.echo(b"still served");
    let with_clients = thread_count(pid);
    assert!(
        with_clients <= at_start,
        "thread count grew from {at_start} to {with_clients} with 100 clients"
    );

    drop(first);
    drop(clients);
    wharf.signal(libc::SIGTERM);
    assert_eq!(exit_code(&mut wharf, Duration::from_secs(10)), 0);
    assert_eq!(
        summary_count(&wharf.log(), "rejected_busy"),
        Some(0),
        "{}",
        wharf.log()
    );
}

/// `--grace 0` with nothing in progress is a clean stop, not a forced one:
/// exit 0 with no connection, and with quiet clients, each of which gets
/// GOAWAY 1. (A regression: every stop with `--grace 0` once exited 1.)
#[test]
fn grace_0_with_nothing_in_progress_exits_0() {
    for clients in [0, 3] {
        let mut wharf = spawn_wharf(&["--workers", "2", "--grace", "0"]);
        let mut quiet: Vec<Client> = (0..clients)
            .map(|i| {
                let mut client = Client::connect(wharf.addr);
                client.echo(format!("quiet {i}").as_bytes());
                client
            })
            .collect();
        wharf.signal(libc::SIGTERM);
        let code = exit_code(&mut wharf, Duration::from_secs(10));
        assert_eq!(code, 0, "{clients} client(s); log:\n{}", wharf.log());
        for client in &mut quiet {
            client.expect_goaway(GoAwayCode::Shutdown);
        }
    }
}

/// `--grace 0` with a request in its service is forced: exit 1.
#[test]
fn grace_0_with_a_request_in_progress_exits_1() {
    let mut wharf = spawn_wharf(&["--workers", "2", "--delay", "3s", "--grace", "0"]);
    let _client = request_in_flight(&wharf, b"three seconds");
    wharf.signal(libc::SIGTERM);
    assert_eq!(
        exit_code(&mut wharf, Duration::from_secs(10)),
        1,
        "{}",
        wharf.log()
    );
}

/// Limits: `--max-connections` is never more than the descriptor
/// limit allows; a lowered value is logged as a warning at startup.
#[test]
fn max_connections_is_lowered_to_the_descriptor_limit_with_a_warning() {
    use std::os::unix::process::CommandExt;
    let mut command = common::serve_command("127.0.0.1:0", &["--max-connections", "10000"]);
    // SAFETY: setrlimit(2) is async-signal-safe; the closure touches nothing
    // but its own stack.
    unsafe {
        command.pre_exec(|| {
            let limit = libc::rlimit {
                rlim_cur: 256,
                rlim_max: 256,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut wharf = common::spawn_wharf_command(command);
    let log = wharf.log();
    let warning = log
        .lines()
        .find(|l| l.contains("max-connections 10000") && l.contains("lowered to"))
        .unwrap_or_else(|| panic!("no warning:\n{log}"));
    assert!(warning.contains("WARN"), "{warning}");
    let lowered: usize = warning
        .split("lowered to ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{warning}"));
    assert!(lowered > 0 && lowered < 256, "{warning}");
    assert!(
        log.contains(&format!("max-connections {lowered},")),
        "the listening line shows the lowered value:\n{log}"
    );
    let mut client = Client::connect(wharf.addr);
    client.echo(b"served within the limit");
    wharf.signal(libc::SIGTERM);
    assert_eq!(exit_code(&mut wharf, Duration::from_secs(10)), 0);
}

/// Command line: byte sizes accept a bare number or a KiB, MiB or GiB suffix.
#[test]
fn byte_size_flags_accept_binary_suffixes() {
    let mut wharf = spawn_wharf(&["--max-frame", "64KiB", "--max-buffered", "1MiB"]);
    let mut client = Client::connect(wharf.addr);
    // len counts the kind byte: a payload of 64 KiB - 1 is the largest.
    client.echo(&vec![b'x'; 64 * 1024 - 1]);
    client.send(DATA, &vec![b'x'; 64 * 1024]);
    client.expect_goaway(GoAwayCode::FrameTooLarge);
    wharf.signal(libc::SIGTERM);
    assert_eq!(exit_code(&mut wharf, Duration::from_secs(10)), 0);
}

/// A busy `--metrics` address is named as the metrics address, in the same
/// one line as any other startup failure.
#[test]
fn a_busy_metrics_address_is_named_as_such() {
    let taken = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind 127.0.0.1:0");
    let addr = taken.local_addr().unwrap().to_string();
    let run = run_wharf(
        &["serve", "--bind", "127.0.0.1:0", "--metrics", addr.as_str()],
        Duration::from_secs(10),
    );
    drop(taken);
    assert_eq!(run.status.code(), Some(1), "{}", run.stderr);
    let lines: Vec<&str> = run
        .stderr
        .lines()
        .filter(|l| !l.trim().is_empty())
        .collect();
    assert_eq!(lines.len(), 1, "stderr is not one line:\n{}", run.stderr);
    let expected = format!("cannot listen on {addr} (--metrics): ");
    assert!(lines[0].contains(&expected), "{}", lines[0]);
    assert!(lines[0].to_lowercase().contains("in use"), "{}", lines[0]);
    assert!(!run.stdout.contains("listening on"), "{}", run.stdout);
}

/// Flag errors say what is expected in words: `--workers` a range "between
/// 1 and 4096" (not Rust's `1..=4096`), a duration without a unit the
/// documented spelling (`5s`, not `5sec`).
#[test]
fn flag_errors_say_what_is_expected_in_the_documented_words() {
    let max = wharf::config::MAX_WORKERS;
    for workers in ["0", "100000"] {
        let run = run_wharf(
            &["serve", "--bind", "127.0.0.1:0", "--workers", workers],
            Duration::from_secs(10),
        );
        assert_eq!(run.status.code(), Some(2), "{}", run.stderr);
        assert!(
            run.stderr.contains(&format!("between 1 and {max}")),
            "{}",
            run.stderr
        );
        assert!(!run.stderr.contains("..="), "{}", run.stderr);
    }
    for flag in ["--grace", "--heartbeat-timeout", "--drain-delay"] {
        let run = run_wharf(
            &["serve", "--bind", "127.0.0.1:0", flag, "5"],
            Duration::from_secs(10),
        );
        assert_eq!(run.status.code(), Some(2), "{flag}: {}", run.stderr);
        assert!(run.stderr.contains(flag), "{flag}: {}", run.stderr);
        assert!(run.stderr.contains("5s"), "{flag}: {}", run.stderr);
        assert!(!run.stderr.contains("5sec"), "{flag}: {}", run.stderr);
    }
}
