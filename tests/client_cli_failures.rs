//! The real `wharf client` binary (docs/protocol.md, "`wharf client`")
//! against in-process servers on 127.0.0.1:0: the other ways a session ends
//! badly, each with its documented exit status. A server that closes
//! without a GOAWAY is exit 4, whether a reply is owed or stdin is still
//! open; a refused connection is one line on stderr and exit 3; an ERROR
//! reply is printed, the remaining requests are still answered, and the
//! exit is 5.
//!
//! Every child is waited for with a deadline and killed by its PID
//! (`Child::kill`) if the deadline passes or the test panics, so no process
//! outlives its test.

mod common;

use std::net::{SocketAddr, TcpListener};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use common::client::stop;
use common::client_cli::{addr_arg, assert_exit, fail_on_bad, run_client, spawn_client, DEADLINE};
use common::{config, start_with};

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
