//! The real `wharf client` binary against in-process servers on
//! 127.0.0.1:0: `--send`, stdin lines (including a long idle stdin kept
//! alive by PINGs), `--ping`, `--framing line`, and the documented exit
//! codes (0 success, 3 cannot connect, 4 closed, 5 ERROR reply, 10 + code
//! for a GOAWAY).
//!
//! Every child is waited for with a deadline and killed by its PID
//! (`Child::kill`) if the deadline passes or the test panics, so no process
//! outlives its test.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use common::{config, spawn_wharf, start, start_with};
use wharf::{Client, ClientOptions, Config, Echo, Framing, Response, Server, ServiceError};

/// The longest a child may run before the test kills it and fails.
const DEADLINE: Duration = Duration::from_secs(30);

/// The longest a test waits for one line of the child's output.
const LINE_TIMEOUT: Duration = Duration::from_secs(10);

/// The server's heartbeat timeout in the idle tests, and the matching
/// `--heartbeat-timeout` of the client (which PINGs every third of it).
/// Shorter values flake on a heavily loaded 2-core machine: a client or
/// worker thread descheduled for a few hundred ms misses the deadline.
const HEARTBEAT: Duration = Duration::from_secs(1);
const HEARTBEAT_ARG: &str = "1s";

/// Idle for longer than three heartbeat timeouts.
const IDLE: Duration = Duration::from_millis(3200);

/// A running `wharf client`, killed by PID when dropped if still running.
struct Proc {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<String>,
    stdout: Arc<Mutex<String>>,
    stderr: Arc<Mutex<String>>,
    readers: Vec<JoinHandle<()>>,
}

/// What a finished child left behind.
#[derive(Debug)]
struct Finished {
    status: ExitStatus,
    stdout: String,
    stderr: String,
}

impl Finished {
    fn code(&self) -> Option<i32> {
        self.status.code()
    }
}

/// Starts `wharf client <args>` with piped stdin, stdout and stderr.
fn spawn_client(args: &[&str]) -> Proc {
    let mut child = Command::new(env!("CARGO_BIN_EXE_wharf"))
        .arg("client")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("wharf client starts");
    let stdin = child.stdin.take();
    let stdout = Arc::new(Mutex::new(String::new()));
    let stderr = Arc::new(Mutex::new(String::new()));
    let (tx, lines) = mpsc::channel();
    let out_pipe = child.stdout.take().unwrap();
    let err_pipe = child.stderr.take().unwrap();
    let readers = vec![
        {
            let stdout = Arc::clone(&stdout);
            thread::spawn(move || {
                for line in BufReader::new(out_pipe).lines().map_while(Result::ok) {
                    let mut all = lock(&stdout);
                    all.push_str(&line);
                    all.push('\n');
                    let _ = tx.send(line);
                }
            })
        },
        {
            let stderr = Arc::clone(&stderr);
            thread::spawn(move || {
                let mut text = String::new();
                let mut pipe = err_pipe;
                let _ = pipe.read_to_string(&mut text);
                lock(&stderr).push_str(&text);
            })
        },
    ];
    Proc {
        child,
        stdin,
        lines,
        stdout,
        stderr,
        readers,
    }
}

impl Proc {
    /// Writes to the child's stdin.
    fn write(&mut self, bytes: &[u8]) {
        let stdin = self.stdin.as_mut().expect("stdin still open");
        stdin.write_all(bytes).expect("write to the client's stdin");
        stdin.flush().unwrap();
    }

    /// Closes the child's stdin (end of input).
    fn close_stdin(&mut self) {
        self.stdin.take();
    }

    /// The next stdout line, or a failure (with the output so far) after
    /// LINE_TIMEOUT.
    fn line(&mut self) -> String {
        match self.lines.recv_timeout(LINE_TIMEOUT) {
            Ok(line) => line,
            Err(e) => {
                // Let the child's stderr arrive before reporting.
                thread::sleep(Duration::from_millis(200));
                let status = self.child.try_wait();
                let stdout = lock(&self.stdout).clone();
                let stderr = lock(&self.stderr).clone();
                panic!("no stdout line ({e}); status {status:?}; stdout so far:\n{stdout}\nstderr:\n{stderr}")
            }
        }
    }

    /// Waits for the child to exit within DEADLINE; on timeout kills it by
    /// PID and fails.
    fn finish(mut self) -> Finished {
        self.close_stdin();
        let deadline = Instant::now() + DEADLINE;
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                break status;
            }
            if Instant::now() >= deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!(
                    "wharf client still running after {DEADLINE:?}; killed. stdout:\n{}\nstderr:\n{}",
                    lock(&self.stdout),
                    lock(&self.stderr)
                );
            }
            thread::sleep(Duration::from_millis(10));
        };
        // The pipes close with the child, so the readers end.
        for reader in self.readers.drain(..) {
            let _ = reader.join();
        }
        let stdout = lock(&self.stdout).clone();
        let stderr = lock(&self.stderr).clone();
        Finished {
            status,
            stdout,
            stderr,
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Locks a mutex even if a panicking test poisoned it.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Runs `wharf client <args>` with `input` on stdin and waits for it.
fn run_client(args: &[&str], input: &[u8]) -> Finished {
    let mut proc = spawn_client(args);
    proc.write(input);
    proc.finish()
}

fn addr_arg(server: &Server) -> String {
    server.local_addr().to_string()
}

fn stop(server: Server) {
    server.handle().shutdown();
    server.join();
}

/// Echoes, except that a request starting with `bad` gets ERROR.
fn fail_on_bad(request: &[u8], response: &mut Response<'_>) -> Result<(), ServiceError> {
    if request.starts_with(b"bad") {
        return Err(ServiceError::from("no bad requests"));
    }
    response.extend_from_slice(request);
    Ok(())
}

fn assert_exit(finished: &Finished, code: i32) {
    assert_eq!(finished.code(), Some(code), "exit status; {finished:#?}");
}

// ---------------------------------------------------------------------------

#[test]
fn send_prints_each_reply_and_exits_0() {
    let server = start(config());
    let addr = addr_arg(&server);
    let done = run_client(&["--connect", &addr, "--send", "a", "--send", "b"], b"");
    assert_exit(&done, 0);
    assert_eq!(done.stdout, "a\nb\n");
    assert_eq!(done.stderr, "");
    stop(server);
}

#[test]
fn stdin_lines_are_echoed_in_order_then_exit_0_at_eof() {
    let server = start(config());
    let addr = addr_arg(&server);
    let input: String = (0..50).map(|i| format!("line {i}\n")).collect();
    let done = run_client(&["--connect", &addr], input.as_bytes());
    assert_exit(&done, 0);
    assert_eq!(done.stdout, input);
    // A trailing \r is dropped, like the server does in line framing.
    let done = run_client(&["--connect", &addr], b"crlf\r\nplain\n");
    assert_exit(&done, 0);
    assert_eq!(done.stdout, "crlf\nplain\n");
    stop(server);
}

#[test]
fn empty_stdin_exits_0_with_no_output() {
    let server = start(config());
    let done = run_client(&["--connect", &addr_arg(&server)], b"");
    assert_exit(&done, 0);
    assert_eq!(done.stdout, "");
    stop(server);
}

#[test]
fn idle_stdin_is_kept_alive_by_pings() {
    let server = start(Config {
        heartbeat_timeout: HEARTBEAT,
        reap_interval: Duration::from_millis(50),
        ..config()
    });
    let addr = addr_arg(&server);

    // A raw library client without heartbeat: proves this server reaps
    // idle connections within the time the wharf client stays idle.
    let mut silent = Client::connect(
        server.local_addr(),
        ClientOptions {
            read_timeout: Some(LINE_TIMEOUT),
            ..ClientOptions::default()
        },
    )
    .unwrap();

    let mut proc = spawn_client(&["--connect", &addr, "--heartbeat-timeout", HEARTBEAT_ARG]);
    proc.write(b"one\n");
    assert_eq!(proc.line(), "one");
    thread::sleep(IDLE);
    assert_eq!(
        silent.recv().unwrap_err().goaway_code(),
        Some(2),
        "the silent control client is reaped"
    );
    proc.write(b"two\n");
    assert_eq!(proc.line(), "two");
    thread::sleep(Duration::from_millis(1000));
    proc.write(b"three\n");
    assert_eq!(proc.line(), "three");
    let done = proc.finish();
    assert_exit(&done, 0);
    assert_eq!(done.stdout, "one\ntwo\nthree\n");
    assert!(!done.stderr.contains("GOAWAY"), "{}", done.stderr);
    stop(server);
}

#[test]
fn stdin_eof_while_a_slow_reply_is_owed_exits_0() {
    let server = start_with(
        Config {
            heartbeat_timeout: Duration::from_secs(20),
            ..config()
        },
        Echo {
            delay: Duration::from_millis(1000),
            ..Echo::default()
        },
    );
    let addr = addr_arg(&server);
    // Heartbeat every 100 ms: several ticks while the reply is pending.
    let done = run_client(
        &["--connect", &addr, "--heartbeat-timeout", "300ms"],
        b"slow\n",
    );
    assert_eq!(done.stdout, "slow\n");
    assert_exit(&done, 0);
    stop(server);
}

#[test]
fn ping_prints_each_round_trip_and_a_summary() {
    let server = start(config());
    let addr = addr_arg(&server);
    let done = run_client(
        &[
            "--connect",
            &addr,
            "--ping",
            "--count",
            "3",
            "--interval",
            "50ms",
        ],
        b"",
    );
    assert_exit(&done, 0);
    let lines: Vec<&str> = done.stdout.lines().collect();
    assert_eq!(lines.len(), 4, "3 pings and a summary: {lines:#?}");
    for (seq, line) in lines[..3].iter().enumerate() {
        assert!(
            line.starts_with(&format!("PONG from {addr}: seq={seq} time=")),
            "{line}"
        );
        assert!(line.ends_with(" ms"), "{line}");
    }
    let summary = lines[3];
    assert!(
        summary.starts_with("3 pings, 3 pongs; rtt min/avg/max = "),
        "{summary}"
    );
    let numbers = summary.rsplit("= ").next().unwrap().trim_end_matches(" ms");
    let values: Vec<f64> = numbers
        .split('/')
        .map(|v| v.parse().unwrap_or_else(|_| panic!("number in {summary}")))
        .collect();
    assert_eq!(values.len(), 3, "{summary}");
    assert!(
        values[0] <= values[1] && values[1] <= values[2],
        "min <= avg <= max: {summary}"
    );
    stop(server);
}

#[test]
fn ping_in_line_framing() {
    let server = start(Config {
        framing: Framing::Line,
        ..config()
    });
    let done = run_client(
        &[
            "--connect",
            &addr_arg(&server),
            "--framing",
            "line",
            "--ping",
            "--count",
            "2",
            "--interval",
            "10ms",
        ],
        b"",
    );
    assert_exit(&done, 0);
    assert_eq!(done.stdout.lines().count(), 3, "{}", done.stdout);
    assert!(done.stdout.contains("2 pings, 2 pongs"), "{}", done.stdout);
    stop(server);
}

#[test]
fn busy_server_goaway_3_on_stderr_and_exit_13() {
    const HOLD: &[u8] = b"slow: hold the only worker";
    let (service, gate) = common::gate::gate();
    let server = start_with(
        Config {
            workers: 1,
            queue: 0,
            heartbeat_timeout: Duration::from_secs(20),
            ..config()
        },
        service,
    );
    // With queue 0 a connection made before the worker waits for one is
    // turned away (a known server race), so retry until the holder is served.
    let mut holder = None;
    for _ in 0..100 {
        let mut client = Client::connect(server.local_addr(), ClientOptions::default()).unwrap();
        match client.request(b"hold the only worker") {
            Ok(_) => {
                holder = Some(client);
                break;
            }
            Err(e) if e.goaway_code() == Some(3) => thread::sleep(Duration::from_millis(20)),
            Err(e) => panic!("holder: {e}"),
        }
    }
    let mut holder = holder.expect("the holder is served");
    // A quiet connection does not hold a worker (since v2): the
    // holder keeps the only worker busy with a slow request, which the
    // service holds until the gate releases it.
    holder.send(HOLD).unwrap();
    holder.flush().unwrap();
    gate.wait_started(HOLD);

    // Idle stdin: the client only reads, so it sees the GOAWAY whatever the timing.
    let mut proc = spawn_client(&["--connect", &addr_arg(&server)]);
    // Keep stdin open until the child has exited on its own.
    let deadline = Instant::now() + DEADLINE;
    while proc.child.try_wait().unwrap().is_none() && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(10));
    }
    let done = proc.finish();
    assert_exit(&done, 13);
    assert_eq!(
        done.stderr, "GOAWAY 3 BUSY: server busy, try again later\n",
        "{done:#?}"
    );
    assert_eq!(done.stdout, "");
    gate.release();
    assert_eq!(holder.recv().unwrap(), wharf::Reply::Data(HOLD.to_vec()));
    drop(holder);
    stop(server);
}

#[test]
fn drain_goaway_1_on_stderr_and_exit_11() {
    let server = start(config());
    let mut proc = spawn_client(&["--connect", &addr_arg(&server)]);
    proc.write(b"before the drain\n");
    assert_eq!(proc.line(), "before the drain");
    let handle = server.handle();
    let joiner = thread::spawn(move || server.join());
    handle.shutdown();
    // Keep stdin open: the exit comes from the GOAWAY, not from EOF.
    let deadline = Instant::now() + DEADLINE;
    while proc.child.try_wait().unwrap().is_none() && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(10));
    }
    let done = proc.finish();
    assert_exit(&done, 11);
    assert_eq!(
        done.stderr, "GOAWAY 1 SHUTDOWN: server is shutting down\n",
        "{done:#?}"
    );
    assert_eq!(done.stdout, "before the drain\n");
    joiner.join().unwrap();
}

#[test]
fn idle_without_pings_long_enough_is_goaway_2_exit_12() {
    // The client believes the timeout is long (PINGs every 20 s), the
    // server reaps after HEARTBEAT.
    let server = start(Config {
        heartbeat_timeout: HEARTBEAT,
        reap_interval: HEARTBEAT / 4,
        ..config()
    });
    let mut proc = spawn_client(&[
        "--connect",
        &addr_arg(&server),
        "--heartbeat-timeout",
        "60s",
    ]);
    let deadline = Instant::now() + DEADLINE;
    while proc.child.try_wait().unwrap().is_none() && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(10));
    }
    let done = proc.finish();
    assert_exit(&done, 12);
    assert!(
        done.stderr.starts_with("GOAWAY 2 HEARTBEAT_TIMEOUT: "),
        "{done:#?}"
    );
    stop(server);
}

/// A fake server that accepts one connection and, after `after`, closes it
/// without a GOAWAY and without reading anything.
fn closes_without_goaway(after: Duration) -> (SocketAddr, JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let server = thread::spawn(move || {
        let (stream, _) = listener.accept().unwrap();
        thread::sleep(after);
        drop(stream);
    });
    (addr, server)
}

#[test]
fn server_close_without_goaway_with_a_reply_owed_exits_4() {
    let (addr, fake) = closes_without_goaway(Duration::from_millis(300));
    let done = run_client(&["--connect", &addr.to_string(), "--send", "x"], b"");
    fake.join().unwrap();
    assert_exit(&done, 4);
    assert_eq!(done.stdout, "");
    assert_eq!(done.stderr.lines().count(), 1, "{:?}", done.stderr);
    assert!(
        done.stderr.starts_with("wharf client: "),
        "{:?}",
        done.stderr
    );
}

#[test]
fn server_close_without_goaway_while_stdin_is_open_exits_4() {
    let (addr, fake) = closes_without_goaway(Duration::from_millis(300));
    let mut proc = spawn_client(&["--connect", &addr.to_string()]);
    // stdin stays open: the user has not finished, the server went away.
    let deadline = Instant::now() + DEADLINE;
    while proc.child.try_wait().unwrap().is_none() && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(10));
    }
    let done = proc.finish();
    fake.join().unwrap();
    assert_exit(&done, 4);
    assert!(
        done.stderr.starts_with("wharf client: "),
        "one line naming the cause: {:?}",
        done.stderr
    );
}

#[test]
fn refused_connection_is_one_line_on_stderr_and_exit_3() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    drop(listener);
    let done = run_client(&["--connect", &addr.to_string(), "--send", "x"], b"");
    assert_exit(&done, 3);
    assert_eq!(done.stdout, "");
    assert_eq!(done.stderr.lines().count(), 1, "{:?}", done.stderr);
    assert!(
        done.stderr
            .starts_with(&format!("wharf client: cannot connect to {addr}: ")),
        "{:?}",
        done.stderr
    );
    assert!(!done.stderr.contains("panicked"), "{}", done.stderr);
}

#[test]
fn error_reply_prints_error_and_exits_5() {
    let server = start_with(config(), fail_on_bad);
    let addr = addr_arg(&server);
    let done = run_client(
        &[
            "--connect",
            &addr,
            "--send",
            "good",
            "--send",
            "bad",
            "--send",
            "fine",
        ],
        b"",
    );
    assert_exit(&done, 5);
    assert_eq!(done.stdout, "good\nERROR no bad requests\nfine\n");

    // The same in stdin mode: every line answered, then exit 5.
    let done = run_client(&["--connect", &addr], b"one\nbad two\nthree\n");
    assert_exit(&done, 5);
    assert_eq!(done.stdout, "one\nERROR no bad requests\nthree\n");

    // And 0 when nothing failed.
    let done = run_client(&["--connect", &addr], b"one\n");
    assert_exit(&done, 0);
    stop(server);
}

#[test]
fn line_framing_send_and_stdin() {
    let server = start_with(
        Config {
            framing: Framing::Line,
            ..config()
        },
        fail_on_bad,
    );
    let addr = addr_arg(&server);
    let done = run_client(
        &[
            "--connect",
            &addr,
            "--framing",
            "line",
            "--send",
            "hello",
            "--send",
            "PONG",
        ],
        b"",
    );
    assert_exit(&done, 0);
    assert_eq!(done.stdout, "hello\nPONG\n");

    let done = run_client(
        &["--connect", &addr, "--framing", "line"],
        b"first\nPONG\nlast\n",
    );
    assert_exit(&done, 0);
    assert_eq!(done.stdout, "first\nPONG\nlast\n");

    let done = run_client(
        &["--connect", &addr, "--framing", "line", "--send", "bad one"],
        b"",
    );
    assert_exit(&done, 5);
    assert_eq!(done.stdout, "ERROR no bad requests\n");
    stop(server);
}

#[test]
fn line_framing_idle_stdin_is_kept_alive() {
    let server = start(Config {
        framing: Framing::Line,
        heartbeat_timeout: HEARTBEAT,
        reap_interval: Duration::from_millis(50),
        ..config()
    });
    let mut proc = spawn_client(&[
        "--connect",
        &addr_arg(&server),
        "--framing",
        "line",
        "--heartbeat-timeout",
        HEARTBEAT_ARG,
    ]);
    proc.write(b"one\n");
    assert_eq!(proc.line(), "one");
    thread::sleep(IDLE);
    proc.write(b"PONG\n");
    assert_eq!(proc.line(), "PONG");
    let done = proc.finish();
    assert_exit(&done, 0);
    // The heartbeat PONGs are not printed: only the two echoes.
    assert_eq!(done.stdout, "one\nPONG\n");
    stop(server);
}

/// Megabytes piped in at once: the stdin thread blocks writing while the
/// server, in turn, blocks writing replies the client has not read yet. The
/// client must keep reading replies meanwhile (a regression: the reader once
/// waited for the lock the blocked writer held, and both sides stalled until
/// the server's write timeout).
#[test]
fn a_large_piped_input_does_not_stall() {
    let server = start(config());
    let addr = addr_arg(&server);
    let mut proc = spawn_client(&["--connect", &addr]);
    let line = "x".repeat(199);
    let lines = 50_000;
    let mut stdin = proc.stdin.take().expect("stdin is piped");
    let writer = thread::spawn(move || {
        for _ in 0..lines {
            if writeln!(stdin, "{line}").is_err() {
                return; // the client died; finish() reports it
            }
        }
    });
    let done = proc.finish();
    let _ = writer.join();
    assert_exit(&done, 0);
    assert_eq!(done.stdout.lines().count(), lines, "every line echoed");
    stop(server);
}

/// `wharf client --framing line` against a length server (both the real
/// binary): the server reads the line "hello" as a length header ("hell")
/// and says so in its GOAWAY 5, which the client prints (it used to report
/// only "connection closed by the server", exit 4).
#[test]
fn line_client_against_a_length_server_prints_the_servers_framing_hint() {
    let server = spawn_wharf(&[]);
    let addr = server.addr.to_string();
    let expected = "GOAWAY 5 FRAME_TOO_LARGE: frame larger than max-frame; the header looks \
                    like text (\"hell\"): is the client using --framing line?\n";
    let done = run_client(
        &["--connect", &addr, "--framing", "line", "--send", "hello"],
        b"",
    );
    assert_exit(&done, 15);
    assert_eq!(done.stderr, expected, "{done:#?}");
    assert_eq!(done.stdout, "");
    // The same from stdin, its end not yet reached when the GOAWAY comes.
    let mut proc = spawn_client(&["--connect", &addr, "--framing", "line"]);
    proc.write(b"hello\n");
    let deadline = Instant::now() + DEADLINE;
    while proc.child.try_wait().unwrap().is_none() && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(10));
    }
    let done = proc.finish();
    assert_exit(&done, 15);
    assert_eq!(done.stderr, expected, "{done:#?}");
}

/// `wharf client` (length) against a `--framing line` server (both the
/// real binary): the server waits for a newline that never comes and, at
/// its heartbeat timeout, sends the line "GOAWAY 2 ...". The client sees
/// text where a length header should be and says so at once (it used to
/// report "reply frame length 1196376407 out of range").
#[test]
fn length_client_against_a_line_server_says_the_reply_looks_like_text() {
    let server = spawn_wharf(&["--framing", "line", "--heartbeat-timeout", "1s"]);
    let addr = server.addr.to_string();
    let done = run_client(
        &[
            "--connect",
            &addr,
            "--send",
            "hello",
            "--reply-timeout",
            "20s",
        ],
        b"",
    );
    assert_exit(&done, 1);
    assert_eq!(
        done.stderr,
        "wharf client: protocol violation: the reply looks like text (\"GOAWAY 2 no complete \
         frame within the heartbeat timeout\"): is the server using --framing line?\n",
        "{done:#?}"
    );
    assert_eq!(done.stdout, "");
}

/// An address that cannot parse or resolve is a bad flag, as for
/// `serve --bind`: exit 2 with clap's message naming the flag and the
/// input (it used to be "cannot connect to (unresolved)", exit 3).
#[test]
fn an_address_that_cannot_parse_or_resolve_is_a_bad_flag() {
    for bad in [
        "nowhere",
        "127.0.0.1",
        "127.0.0.1:notaport",
        "[::1",
        "no-such-host.invalid:7878",
    ] {
        let done = run_client(&["--connect", bad, "--send", "x"], b"");
        assert_exit(&done, 2);
        assert!(
            done.stderr.starts_with(&format!(
                "error: invalid value '{bad}' for '--connect <ADDR>'"
            )),
            "{bad}: {done:#?}"
        );
        assert_eq!(done.stdout, "");
    }
}

/// `--count` and `--interval` belong to `--ping`: without it they are bad
/// flags (exit 2, clap's message), with `--send` as in stdin mode. They
/// used to be ignored silently next to `--send`.
#[test]
fn ping_only_flags_without_ping_are_bad_flags() {
    let cases: &[(&[&str], &str)] = &[
        (
            &["--count", "3", "--send", "x"],
            "error: the argument '--count <N>' cannot be used with '--send <TEXT>'",
        ),
        (
            &["--send", "x", "--interval", "10ms"],
            "error: the argument '--send <TEXT>' cannot be used with '--interval <D>'",
        ),
        (
            &["--count", "3"],
            "error: the following required arguments were not provided:\n  --ping",
        ),
    ];
    for (args, message) in cases {
        // No server is needed: the flags are refused before any connect.
        let mut all = vec!["--connect", "127.0.0.1:9"];
        all.extend_from_slice(args);
        let done = run_client(&all, b"");
        assert_exit(&done, 2);
        assert!(done.stderr.starts_with(message), "{args:?}: {done:#?}");
    }
}

/// Echoes after 500 ms, counting in `started` the requests it has started,
/// so a test can start a drain while requests are in flight.
fn counting_slow_echo(
    started: Arc<AtomicUsize>,
) -> impl Fn(&[u8], &mut Response<'_>) -> Result<(), ServiceError> + Send + Sync + 'static {
    move |request: &[u8], response: &mut Response<'_>| {
        started.fetch_add(1, Ordering::SeqCst);
        thread::sleep(Duration::from_millis(500));
        response.extend_from_slice(request);
        Ok(())
    }
}

/// Splits `wharf client: GOAWAY 1 SHUTDOWN: N of M request(s) not answered
/// (never started; safe to resend)` into N and M.
fn not_answered(line: &str) -> (usize, usize) {
    let rest = line
        .strip_prefix("wharf client: GOAWAY 1 SHUTDOWN: ")
        .and_then(|rest| {
            rest.strip_suffix(" request(s) not answered (never started; safe to resend)")
        })
        .unwrap_or_else(|| panic!("not the unanswered line: {line:?}"));
    let (n, m) = rest
        .split_once(" of ")
        .unwrap_or_else(|| panic!("{line:?}"));
    (n.parse().unwrap(), m.parse().unwrap())
}

/// A drain that cuts a pipelined batch short (retries off): after the
/// GOAWAY line, the client says how many requests were not answered and
/// that they never started. One worker answers every 500 ms; the drain
/// starts once the first request is in the service, so most are still owed.
#[test]
fn a_drain_cutting_a_batch_short_says_how_many_were_not_answered() {
    const N: usize = 10;
    for stdin_mode in [false, true] {
        let started = Arc::new(AtomicUsize::new(0));
        let service = counting_slow_echo(Arc::clone(&started));
        let server = start_with(
            Config {
                workers: 1,
                heartbeat_timeout: Duration::from_secs(20),
                ..config()
            },
            service,
        );
        let addr = addr_arg(&server);
        let requests: Vec<String> = (0..N).map(|i| format!("r{i}")).collect();
        let mut proc = if stdin_mode {
            let mut proc = spawn_client(&["--connect", &addr]);
            let input: String = requests.iter().map(|r| format!("{r}\n")).collect();
            proc.write(input.as_bytes());
            proc
        } else {
            let mut args = vec!["--connect", addr.as_str()];
            for r in &requests {
                args.extend(["--send", r.as_str()]);
            }
            spawn_client(&args)
        };
        // The first request is in the service: the drain lets it finish
        // and answers nothing after it (the replies of one read go out
        // together, so the test cannot wait for the first one instead).
        assert!(
            common::eventually(LINE_TIMEOUT, || started.load(Ordering::SeqCst) >= 1),
            "no request started"
        );
        let handle = server.handle();
        let joiner = thread::spawn(move || server.join());
        handle.shutdown();
        // Keep stdin open: the exit comes from the GOAWAY, not from EOF.
        let deadline = Instant::now() + DEADLINE;
        while proc.child.try_wait().unwrap().is_none() && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(10));
        }
        let done = proc.finish();
        joiner.join().unwrap();
        assert_exit(&done, 11);
        let answered = done.stdout.lines().count();
        let expected: String = requests[..answered]
            .iter()
            .map(|r| format!("{r}\n"))
            .collect();
        assert_eq!(done.stdout, expected, "replies in order");
        let lines: Vec<&str> = done.stderr.lines().collect();
        assert_eq!(lines.len(), 2, "{done:#?}");
        assert_eq!(lines[0], "GOAWAY 1 SHUTDOWN: server is shutting down");
        let (missing, sent) = not_answered(lines[1]);
        assert_eq!(sent, N, "{done:#?}");
        assert_eq!(missing, N - answered, "{done:#?}");
        assert!(missing >= 1, "the drain cut the batch short: {done:#?}");
    }
}

/// In length framing, a reply timeout before any reply asks whether the
/// server uses line framing (which waits for a newline that never comes).
/// Once a reply has arrived the framing is right, and the timeout is plain.
#[test]
fn a_reply_timeout_before_any_reply_asks_about_the_framing() {
    let server = spawn_wharf(&["--framing", "line"]);
    let done = run_client(
        &[
            "--connect",
            &server.addr.to_string(),
            "--send",
            "hello",
            "--reply-timeout",
            "1s",
        ],
        b"",
    );
    assert_exit(&done, 4);
    assert_eq!(
        done.stderr,
        "wharf client: no reply within 1.0 s (no reply at all yet: is the server using \
         --framing line?)\n",
        "{done:#?}"
    );

    // Replies of one batch go out together: the slow request is sent only
    // after the fast one's reply has arrived.
    let slow = start_with(config(), |request: &[u8], response: &mut Response<'_>| {
        if request.starts_with(b"slow") {
            thread::sleep(Duration::from_secs(3));
        }
        response.extend_from_slice(request);
        Ok::<(), ServiceError>(())
    });
    let mut proc = spawn_client(&["--connect", &addr_arg(&slow), "--reply-timeout", "1s"]);
    proc.write(b"fast\n");
    assert_eq!(proc.line(), "fast");
    proc.write(b"slow\n");
    let deadline = Instant::now() + DEADLINE;
    while proc.child.try_wait().unwrap().is_none() && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(10));
    }
    let done = proc.finish();
    assert_exit(&done, 4);
    assert_eq!(done.stdout, "fast\n");
    assert_eq!(
        done.stderr, "wharf client: no reply within 1.0 s\n",
        "{done:#?}"
    );
    stop(slow);
}

/// `wharf client --help` (and `-h`) lists every exit status of the table in
/// docs/protocol.md ("`wharf client`"), with the same meaning, so the two
/// cannot drift apart.
#[test]
fn help_lists_the_exit_statuses_the_readme_documents() {
    let chapter = include_str!("../docs/protocol.md");
    let table = chapter
        .split("| exit status | meaning |")
        .nth(1)
        .expect("the exit status table of docs/protocol.md");
    let rows: Vec<(String, String)> = table
        .lines()
        .skip(2) // the rest of the header line, and the |---| line
        .take_while(|line| line.starts_with('|'))
        .map(|line| {
            let cells: Vec<&str> = line.trim_matches('|').split(" | ").collect();
            assert_eq!(cells.len(), 2, "{line}");
            (cells[0].trim().to_owned(), cells[1].trim().replace('`', ""))
        })
        .collect();
    assert!(rows.len() >= 7, "{rows:?}");
    for flag in ["--help", "-h"] {
        let done = run_client(&[flag], b"");
        assert_exit(&done, 0);
        let help: Vec<String> = done
            .stdout
            .lines()
            .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
            .collect();
        assert!(help.iter().any(|l| l == "Exit status:"), "{}", done.stdout);
        for (status, meaning) in &rows {
            let line = format!("{status} {meaning}");
            assert!(
                help.contains(&line),
                "{flag}: no line {line:?} in:\n{}",
                done.stdout
            );
        }
    }
}
