//! Safe retries (docs/protocol.md, "Retrying safely") in the binary: `wharf client
//! --retries N [--idempotent]`, its reconnect lines on stderr and its exit
//! codes, in `--send`, stdin and `--ping` modes.
//!
//! Most tests talk to a scripted fake server (`common::fake`) on
//! 127.0.0.1:0; the last one pipelines through a forwarding proxy to a real
//! server that is drained, while a second one answers the rest
//! (`common::proxy`). Every child process has a deadline (then it is
//! killed by its PID), so a broken client fails a test instead of hanging
//! it. Time bounds are generous: CI is a busy 2-core machine.

mod common;

use std::io::{Read, Write};
use std::process::{Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use common::fake::{datas, finish_keep, lock, lose, script, Fake, Loss};
use common::proxy::{drain_after, ran_once_each, recording, server_config, Proxy};
use wharf::{GoAwayCode, Server};

/// The longest a child process may run.
const DEADLINE: Duration = Duration::from_secs(30);

// ---------------------------------------------------------------------------
// The binary: `wharf client --retries N [--idempotent]`.

/// What a finished `wharf client` left behind.
#[derive(Debug)]
struct Finished {
    status: ExitStatus,
    stdout: String,
    stderr: String,
}

/// Runs `wharf client <args>` with `input` on stdin (then closed), within
/// DEADLINE; a child still running then is killed by its PID.
fn run_client(args: &[&str], input: &[u8]) -> Finished {
    let mut child = Command::new(env!("CARGO_BIN_EXE_wharf"))
        .arg("client")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("wharf client starts");
    let mut stdin = child.stdin.take().unwrap();
    let input = input.to_vec();
    let writer = thread::spawn(move || {
        let _ = stdin.write_all(&input);
    });
    let mut out_pipe = child.stdout.take().unwrap();
    let mut err_pipe = child.stderr.take().unwrap();
    let out = thread::spawn(move || {
        let mut text = String::new();
        let _ = out_pipe.read_to_string(&mut text);
        text
    });
    let err = thread::spawn(move || {
        let mut text = String::new();
        let _ = err_pipe.read_to_string(&mut text);
        text
    });
    let deadline = Instant::now() + DEADLINE;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "wharf client {args:?} still running after {DEADLINE:?}; killed. stderr:\n{}",
                err.join().unwrap()
            );
        }
        thread::sleep(Duration::from_millis(10));
    };
    let _ = writer.join();
    Finished {
        status,
        stdout: out.join().unwrap(),
        stderr: err.join().unwrap(),
    }
}

fn assert_exit(done: &Finished, code: i32) {
    assert_eq!(done.status.code(), Some(code), "exit status; {done:#?}");
}

/// The stderr line for a reconnect.
fn reconnect_line(cause: &str, attempt: u32, of: u32, resend: usize) -> String {
    format!("reconnecting after {cause} (attempt {attempt} of {of}), {resend} request(s) to resend")
}

/// `--retries 2` against a server that always answers GOAWAY `code`:
/// two reconnects, then the exit status of that GOAWAY.
fn binary_runs_out_of_retries_on(code: GoAwayCode, exit: i32) {
    let turn_away = move || {
        script(move |mut c| {
            c.read(2);
            c.goaway(code);
        })
    };
    let mut fake = Fake::start((0..3).map(|_| turn_away()).collect());
    let addr = fake.addr.to_string();
    let done = run_client(
        &[
            "--connect",
            &addr,
            "--retries",
            "2",
            "--send",
            "x",
            "--send",
            "y",
        ],
        b"",
    );
    assert_exit(&done, exit);
    assert_eq!(done.stdout, "");
    let cause = format!("GOAWAY {} {}", code.as_u16(), code.name());
    let expected = [
        reconnect_line(&cause, 1, 2, 2),
        reconnect_line(&cause, 2, 2, 2),
        "wharf client: 2 reconnect(s), 4 request(s) resent".to_owned(),
        format!("{cause}: {}", code.reason()),
        format!(
            "wharf client: {cause}: 2 of 2 request(s) not answered (never started; safe to resend)"
        ),
    ];
    assert_eq!(
        done.stderr.lines().collect::<Vec<_>>(),
        expected,
        "{done:#?}"
    );
    let frames = finish_keep(&mut fake);
    assert_eq!(frames, vec![datas(&["x", "y"]); 3]);
    fake.assert_no_more_connections();
}

#[test]
fn binary_out_of_retries_after_goaway_1_exits_11() {
    binary_runs_out_of_retries_on(GoAwayCode::Shutdown, 11);
}

#[test]
fn binary_out_of_retries_after_goaway_3_exits_13() {
    binary_runs_out_of_retries_on(GoAwayCode::Busy, 13);
}

#[test]
fn binary_out_of_retries_on_a_refused_reconnect_exits_3() {
    let fake = Fake::start(vec![script(|mut c| {
        c.read(1);
        c.stop_listening();
        c.goaway(GoAwayCode::Shutdown);
    })]);
    let addr = fake.addr.to_string();
    let done = run_client(&["--connect", &addr, "--retries", "2", "--send", "x"], b"");
    assert_exit(&done, 3);
    let lines: Vec<&str> = done.stderr.lines().collect();
    assert_eq!(lines.len(), 3, "{done:#?}");
    assert_eq!(lines[0], reconnect_line("GOAWAY 1 SHUTDOWN", 1, 2, 1));
    assert!(
        lines[1].starts_with(&format!("reconnecting after cannot connect to {addr}: "))
            && lines[1].ends_with("(attempt 2 of 2), 1 request(s) to resend"),
        "{}",
        lines[1]
    );
    assert!(
        lines[2].starts_with(&format!("wharf client: cannot connect to {addr}: ")),
        "{}",
        lines[2]
    );
    fake.finish();
}

#[test]
fn binary_goaway_1_is_not_retried_without_retries_exit_11() {
    let mut fake = Fake::start(vec![script(|mut c| {
        c.read(1);
        c.goaway(GoAwayCode::Shutdown);
    })]);
    let done = run_client(&["--connect", &fake.addr.to_string(), "--send", "x"], b"");
    assert_exit(&done, 11);
    assert_eq!(
        done.stderr,
        "GOAWAY 1 SHUTDOWN: server is shutting down\n\
         wharf client: GOAWAY 1 SHUTDOWN: 1 of 1 request(s) not answered \
         (never started; safe to resend)\n"
    );
    finish_keep(&mut fake);
    fake.assert_no_more_connections();
}

#[test]
fn binary_reset_without_goaway_exits_4_and_is_not_retried() {
    let mut fake = Fake::start(vec![script(|mut c| {
        c.read(2);
        lose(c, Loss::Reset);
    })]);
    let addr = fake.addr.to_string();
    let done = run_client(
        &[
            "--connect",
            &addr,
            "--retries",
            "3",
            "--send",
            "a",
            "--send",
            "b",
        ],
        b"",
    );
    assert_exit(&done, 4);
    assert_eq!(
        done.stderr, "wharf client: connection closed by the server\n",
        "no reconnect line: {done:#?}"
    );
    finish_keep(&mut fake);
    fake.assert_no_more_connections();
}

#[test]
fn binary_reset_with_idempotent_is_retried() {
    let fake = Fake::start(vec![
        script(|mut c| {
            let requests = c.read(2);
            c.answer(&requests[..1]);
            thread::sleep(Duration::from_millis(100));
            lose(c, Loss::Reset);
        }),
        script(|mut c| c.serve_to_end()),
    ]);
    let addr = fake.addr.to_string();
    let done = run_client(
        &[
            "--connect",
            &addr,
            "--retries",
            "3",
            "--idempotent",
            "--send",
            "a",
            "--send",
            "b",
        ],
        b"",
    );
    assert_exit(&done, 0);
    assert_eq!(done.stdout, "a\nb\n");
    assert_eq!(
        done.stderr.lines().collect::<Vec<_>>(),
        [
            reconnect_line("connection closed by the server", 1, 3, 1),
            "wharf client: 1 reconnect(s), 1 request(s) resent".to_owned(),
        ]
    );
    let frames = fake.finish();
    assert_eq!(frames[1], datas(&["b"]));
}

#[test]
fn binary_goaway_2_is_not_retried_exit_12() {
    let mut fake = Fake::start(vec![script(|mut c| {
        c.read(1);
        c.goaway(GoAwayCode::HeartbeatTimeout);
    })]);
    let addr = fake.addr.to_string();
    let done = run_client(
        &[
            "--connect",
            &addr,
            "--retries",
            "3",
            "--idempotent",
            "--send",
            "x",
        ],
        b"",
    );
    assert_exit(&done, 12);
    assert!(!done.stderr.contains("reconnecting"), "{done:#?}");
    finish_keep(&mut fake);
    fake.assert_no_more_connections();
}

/// stdin mode: three lines, one answered before GOAWAY 1; the other two are
/// resent, and the end of stdin (a half-close) is passed on to the new
/// connection after them.
#[test]
fn binary_stdin_lines_are_resent_after_goaway_1() {
    let fake = Fake::start(vec![
        script(|mut c| {
            let requests = c.read(3);
            c.answer(&requests[..1]);
            c.goaway(GoAwayCode::Shutdown);
        }),
        script(|mut c| {
            let resent = c.read(2);
            assert_eq!(c.read_frame(), None, "half-closed after the resend");
            c.answer(&resent);
            c.close();
        }),
    ]);
    let addr = fake.addr.to_string();
    let done = run_client(
        &["--connect", &addr, "--retries", "1"],
        b"one\ntwo\nthree\n",
    );
    assert_exit(&done, 0);
    assert_eq!(done.stdout, "one\ntwo\nthree\n");
    assert_eq!(
        done.stderr.lines().next(),
        Some(reconnect_line("GOAWAY 1 SHUTDOWN", 1, 1, 2).as_str()),
        "{done:#?}"
    );
    let frames = fake.finish();
    assert_eq!(frames[1], datas(&["two", "three"]));
}

#[test]
fn binary_ping_mode_goes_on_after_goaway_1() {
    let fake = Fake::start(vec![
        script(|mut c| {
            let first = c.read(1);
            c.answer(&first);
            c.read(1);
            c.goaway(GoAwayCode::Shutdown);
        }),
        script(|mut c| c.serve_to_end()),
    ]);
    let addr = fake.addr.to_string();
    let done = run_client(
        &[
            "--connect",
            &addr,
            "--retries",
            "1",
            "--ping",
            "--count",
            "3",
            "--interval",
            "10ms",
        ],
        b"",
    );
    assert_exit(&done, 0);
    let lines: Vec<&str> = done.stdout.lines().collect();
    assert_eq!(lines.len(), 4, "{done:#?}");
    for (seq, line) in lines[..3].iter().enumerate() {
        assert!(
            line.starts_with(&format!("PONG from {addr}: seq={seq} time=")),
            "{line}"
        );
    }
    assert!(lines[3].starts_with("3 pings, 3 pongs"), "{}", lines[3]);
    assert_eq!(
        done.stderr.lines().next(),
        Some(reconnect_line("GOAWAY 1 SHUTDOWN", 1, 1, 1).as_str())
    );
    fake.finish();
}

/// End to end through the binary: `--send` pipelines twenty requests to a
/// real server that is drained after a few; a second server answers the
/// rest, and every reply is printed once, in order.
#[test]
fn binary_end_to_end_across_a_drain() {
    const N: usize = 20;
    let (service_a, ran_a) = recording(Duration::from_millis(50));
    let (service_b, ran_b) = recording(Duration::ZERO);
    let a = Server::start("127.0.0.1:0", server_config(), service_a).unwrap();
    let b = Server::start("127.0.0.1:0", server_config(), service_b).unwrap();
    let proxy = Proxy::start(a.local_addr());
    let requests: Vec<String> = (0..N).map(|i| format!("q{i}")).collect();
    let mut args = vec!["--connect".to_owned(), proxy.addr.to_string()];
    args.extend(["--retries".to_owned(), "3".to_owned()]);
    for r in &requests {
        args.extend(["--send".to_owned(), r.clone()]);
    }
    let drainer = drain_after(a, 3, &ran_a, &proxy, b.local_addr());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let done = run_client(&args, b"");
    let report_a = drainer.join().unwrap();
    assert_exit(&done, 0);
    let expected: String = requests.iter().map(|r| format!("{r}\n")).collect();
    assert_eq!(done.stdout, expected, "every reply once, in order");
    let k = ran_once_each(&requests, &lock(&ran_a), &lock(&ran_b));
    assert!(k < N, "the drain found requests in flight");
    assert!(!report_a.forced, "{report_a}");
    assert_eq!(
        done.stderr.lines().collect::<Vec<_>>(),
        [
            reconnect_line("GOAWAY 1 SHUTDOWN", 1, 3, N - k),
            format!("wharf client: 1 reconnect(s), {} request(s) resent", N - k),
        ]
    );
    b.handle().shutdown();
    b.join();
}
