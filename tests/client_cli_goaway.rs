//! The real `wharf client` binary (docs/protocol.md, "`wharf client`")
//! against in-process servers on 127.0.0.1:0: a GOAWAY ends it with the
//! server's reason as one line on stderr and exit 10 + code. 11 for a
//! drain (which, when it cuts a pipelined batch short, also says how many
//! requests were not answered), 12 for an idle client the server reaped,
//! 13 for a busy server.
//!
//! Every child is waited for with a deadline and killed by its PID
//! (`Child::kill`) if the deadline passes or the test panics, so no process
//! outlives its test.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use common::client::stop;
use common::client_cli::{addr_arg, assert_exit, spawn_client, DEADLINE, HEARTBEAT, LINE_TIMEOUT};
use common::{config, start, start_with};
use wharf::{Client, ClientOptions, Config, Response, ServiceError};

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
