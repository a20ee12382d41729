//! The real `wharf client` binary (docs/protocol.md, "`wharf client`")
//! against servers on 127.0.0.1:0, in-process or the real binary: the
//! framing. `--framing line` sends, reads stdin and keeps an idle stdin
//! alive like length framing; a client and a server that disagree on the
//! framing get a message that names the likely cause (a GOAWAY 5 with the
//! server's hint, a reply that looks like text, a reply timeout before any
//! reply) instead of a bare error.
//!
//! Every child is waited for with a deadline and killed by its PID
//! (`Child::kill`) if the deadline passes or the test panics, so no process
//! outlives its test.

mod common;

use std::thread;
use std::time::{Duration, Instant};

use common::client::stop;
use common::client_cli::{
    addr_arg, assert_exit, fail_on_bad, run_client, spawn_client, DEADLINE, HEARTBEAT,
    HEARTBEAT_ARG, IDLE,
};
use common::{config, spawn_wharf, start, start_with};
use wharf::{Config, Framing, Response, ServiceError};

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
