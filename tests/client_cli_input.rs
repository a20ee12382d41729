//! The real `wharf client` binary (docs/protocol.md, "`wharf client`")
//! against in-process servers on 127.0.0.1:0: what it reads. Each `--send`
//! and each stdin line is echoed, in order, and the client exits 0: also
//! with an empty stdin, with a slow reply still owed when stdin ends, and
//! with megabytes piped in at once; a long idle stdin is kept alive by
//! PINGs.
//!
//! Every child is waited for with a deadline and killed by its PID
//! (`Child::kill`) if the deadline passes or the test panics, so no process
//! outlives its test.

mod common;

use std::io::Write;
use std::thread;
use std::time::Duration;

use common::client::stop;
use common::client_cli::{
    addr_arg, assert_exit, run_client, spawn_client, HEARTBEAT, HEARTBEAT_ARG, IDLE, LINE_TIMEOUT,
};
use common::{config, start, start_with};
use wharf::{Client, ClientOptions, Config, Echo};

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
