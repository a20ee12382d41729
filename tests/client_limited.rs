//! GOAWAY 6 (LIMITED) on the client side (docs/protocol.md, "Retrying
//! safely"): a server that turns a client's address away over a
//! per-address limit promises, like GOAWAY 1 and 3, that no unanswered
//! request started, and says in its reason when to come back
//! (`retry after N ms`). The library and `wharf client` wait at least that
//! long, resend exactly the unanswered requests, and exit 16 when the
//! retries run out (or at once without retries), in both framings.
//!
//! The servers are fakes on 127.0.0.1:0 (`common::fake` for length
//! framing, a small line server here), so each test decides exactly which
//! request is answered before the GOAWAY. The hint is measured on the fake:
//! the time between its two accepts. Every read has a timeout and every
//! child a deadline; bounds are generous (a busy 2-core machine).

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use common::client_cli::{assert_exit, run_client};
use common::fake::{causes, datas, finish_keep, lock, record_reconnects, reply, script, Fake};
use common::READ_TIMEOUT;
use wharf::{Client, ClientError, ClientOptions, Framing, GoAwayCode};

/// The hint the fakes send, and the least gap between their accepts.
const HINT: Duration = Duration::from_millis(300);

/// The reason of a GOAWAY 6 whose hint is `ms`.
fn limited(ms: u64) -> String {
    format!("retry after {ms} ms: connections per address")
}

/// Retries on, with a backoff far shorter than the hint, so any wait of
/// the hint's length is the hint's doing.
fn retrying(retries: u32) -> ClientOptions {
    ClientOptions {
        read_timeout: Some(READ_TIMEOUT),
        retries,
        retry_backoff: Duration::from_millis(5),
        retry_backoff_max: Duration::from_millis(10),
        ..ClientOptions::default()
    }
}

/// The gap between the fake's first two accepts: at least the hint (the
/// GOAWAY went out after the first accept), and not absurdly more.
fn assert_waited_the_hint(accepted: &[Instant]) {
    assert!(accepted.len() >= 2, "{accepted:?}");
    let gap = accepted[1] - accepted[0];
    assert!(gap >= HINT, "reconnected after {gap:?}, before the hint");
    assert!(gap < Duration::from_secs(10), "reconnected after {gap:?}");
}

/// A fake that reads one request on each of two connections and answers
/// it with GOAWAY 6 hinting `ms`.
fn turned_away_twice(ms: u64) -> Fake {
    let turn_away = || {
        script(move |mut c| {
            c.read(1);
            c.goaway_saying(GoAwayCode::Limited, &limited(ms));
        })
    };
    Fake::start(vec![turn_away(), turn_away()])
}

/// A fake that reads three requests, answers the first, sends GOAWAY 6
/// hinting 300 ms, then serves the next connection to its end.
fn answers_one_then_turns_away() -> Fake {
    Fake::start(vec![
        script(|mut c| {
            let frames = c.read(3);
            c.answer(&frames[..1]);
            c.goaway_saying(GoAwayCode::Limited, &limited(300));
        }),
        script(|mut c| c.serve_to_end()),
    ])
}

/// What the fake got after "a" was answered and a GOAWAY 6 left "b" and
/// "c" unanswered: "a" never sent again, "b" and "c" once more each, the
/// second connection no sooner than the hint, and no third.
fn assert_resent_the_unanswered(fake: &mut Fake) {
    let accepted = fake.accepted_at();
    let frames = finish_keep(fake);
    assert_eq!(frames, [datas(&["a", "b", "c"]), datas(&["b", "c"])]);
    assert_waited_the_hint(&accepted);
    fake.assert_no_more_connections();
}

// ---------------------------------------------------------------------------
// The library, length framing.

#[test]
fn library_waits_for_the_hint_and_resends_exactly_the_unanswered() {
    let mut fake = answers_one_then_turns_away();
    let mut client = Client::connect(fake.addr, retrying(3)).unwrap();
    let reports = record_reconnects(&mut client);
    for payload in ["a", "b", "c"] {
        client.send(payload.as_bytes()).unwrap();
    }
    client.flush().unwrap();
    for payload in ["a", "b", "c"] {
        assert_eq!(client.recv().unwrap(), reply(payload));
    }
    assert_eq!(client.reconnects(), 1);
    assert_eq!(client.resent(), 2);
    assert_eq!(causes(&reports), [("GOAWAY 6".to_owned(), 1, 2)]);
    let delay = lock(&reports)[0].3;
    assert!(delay >= HINT, "slept {delay:?}, less than the hint");
    client.shutdown_write().unwrap();
    drop(client);

    assert_resent_the_unanswered(&mut fake);
}

#[test]
fn library_returns_goaway_6_with_its_hint_when_retries_run_out() {
    let mut fake = turned_away_twice(100);
    let mut client = Client::connect(fake.addr, retrying(1)).unwrap();
    let e = client.request(b"x").unwrap_err();
    assert_eq!(e.goaway_code(), Some(6), "{e}");
    assert!(e.goaway_retryable());
    assert_eq!(e.retry_after(), Some(Duration::from_millis(100)));
    assert_eq!(client.reconnects(), 1);
    drop(client);
    let frames = finish_keep(&mut fake);
    assert_eq!(frames, [datas(&["x"]), datas(&["x"])]);
    fake.assert_no_more_connections();
}

#[test]
fn library_without_retries_returns_goaway_6_at_once() {
    let mut fake = Fake::start(vec![script(|mut c| {
        c.read(1);
        c.goaway_saying(GoAwayCode::Limited, &limited(250));
    })]);
    let mut client = Client::connect(fake.addr, ClientOptions::default()).unwrap();
    let started = Instant::now();
    let e = client.request(b"x").unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(matches!(e, ClientError::GoAway { code: 6, .. }), "{e}");
    assert_eq!(e.retry_after(), Some(Duration::from_millis(250)));
    drop(client);
    finish_keep(&mut fake);
    fake.assert_no_more_connections();
}

// ---------------------------------------------------------------------------
// Line framing: `GOAWAY 6 retry after N ms: ...` as a line.

/// A line server on 127.0.0.1:0 for two connections: the first answers
/// its first line, then sends the GOAWAY 6 line and closes; the second
/// echoes every line until the client closes. It records the lines each
/// connection received and when it was accepted.
/// When each connection was accepted, and the lines it received.
type LinesSeen = Arc<Mutex<Vec<(Instant, Vec<String>)>>>;

struct LineFake {
    addr: SocketAddr,
    seen: LinesSeen,
    thread: Option<JoinHandle<()>>,
}

impl LineFake {
    fn start(first_reads: usize) -> LineFake {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let seen: LinesSeen = Arc::default();
        let record = Arc::clone(&seen);
        let thread = thread::spawn(move || {
            for index in 0..2 {
                let (stream, _) = listener.accept().expect("line fake accepts");
                lock(&record).push((Instant::now(), Vec::new()));
                stream.set_read_timeout(Some(READ_TIMEOUT)).unwrap();
                let mut out = stream.try_clone().unwrap();
                let mut lines = BufReader::new(stream).lines();
                let mut got = 0;
                while let Some(Ok(line)) = lines.next() {
                    lock(&record)[index].1.push(line.clone());
                    got += 1;
                    if index == 1 {
                        out.write_all(format!("{line}\n").as_bytes()).unwrap();
                        continue;
                    }
                    if got == 1 {
                        out.write_all(format!("{line}\n").as_bytes()).unwrap();
                    }
                    if got == first_reads {
                        out.write_all(format!("GOAWAY 6 {}\n", limited(300)).as_bytes())
                            .unwrap();
                        let _ = out.shutdown(Shutdown::Write);
                        // Discard until the client closes, like the server.
                        for _ in lines.by_ref().take(1000) {}
                        break;
                    }
                }
            }
        });
        LineFake {
            addr,
            seen,
            thread: Some(thread),
        }
    }

    /// Joins the server (a failed one fails the test); what each
    /// connection received, and when each was accepted.
    fn finish(mut self) -> (Vec<Instant>, Vec<Vec<String>>) {
        if let Some(thread) = self.thread.take() {
            if let Err(panic) = thread.join() {
                std::panic::resume_unwind(panic);
            }
        }
        let seen = lock(&self.seen);
        (
            seen.iter().map(|(at, _)| *at).collect(),
            seen.iter().map(|(_, lines)| lines.clone()).collect(),
        )
    }
}

impl Drop for LineFake {
    fn drop(&mut self) {
        // Unblocks an accept still waiting, so the thread ends.
        if self.thread.is_some() {
            let _ = TcpStream::connect(self.addr);
        }
    }
}

#[test]
fn library_honours_the_line_framing_goaway_6() {
    let fake = LineFake::start(2);
    let options = ClientOptions {
        framing: Framing::Line,
        ..retrying(2)
    };
    let mut client = Client::connect(fake.addr, options).unwrap();
    client.send(b"one").unwrap();
    client.send(b"two").unwrap();
    client.flush().unwrap();
    assert_eq!(client.recv().unwrap(), reply("one"));
    assert_eq!(client.recv().unwrap(), reply("two"));
    assert_eq!(client.reconnects(), 1);
    assert_eq!(client.resent(), 1);
    client.shutdown_write().unwrap();
    drop(client);
    let (accepted, lines) = fake.finish();
    assert_eq!(lines, [vec!["one", "two"], vec!["two"]]);
    assert_waited_the_hint(&accepted);
}

// ---------------------------------------------------------------------------
// `wharf client`.

#[test]
fn binary_without_retries_exits_16_naming_the_hint() {
    let mut fake = Fake::start(vec![script(|mut c| {
        let frames = c.read(2);
        c.answer(&frames[..1]);
        c.goaway_saying(GoAwayCode::Limited, &limited(250));
    })]);
    let addr = fake.addr.to_string();
    let done = run_client(&["--connect", &addr, "--send", "a", "--send", "b"], b"");
    assert_exit(&done, 16);
    assert_eq!(done.stdout, "a\n");
    assert_eq!(
        done.stderr.lines().collect::<Vec<_>>(),
        [
            "wharf client: turned away: per-address limit (GOAWAY 6 LIMITED), retry after 250 ms \
             (connections per address)",
            "wharf client: GOAWAY 6 LIMITED: 1 of 2 request(s) not answered \
             (never started; safe to resend)",
        ],
        "{done:#?}"
    );
    finish_keep(&mut fake);
    fake.assert_no_more_connections();
}

#[test]
fn binary_retries_after_the_hint_and_resends_the_unanswered() {
    let mut fake = answers_one_then_turns_away();
    let addr = fake.addr.to_string();
    let done = run_client(
        &[
            "--connect",
            &addr,
            "--retries",
            "2",
            "--send",
            "a",
            "--send",
            "b",
            "--send",
            "c",
        ],
        b"",
    );
    assert_exit(&done, 0);
    assert_eq!(done.stdout, "a\nb\nc\n");
    assert_eq!(
        done.stderr.lines().collect::<Vec<_>>(),
        [
            "reconnecting after GOAWAY 6 LIMITED, retry after 300 ms (attempt 1 of 2), \
             2 request(s) to resend",
            "wharf client: 1 reconnect(s), 2 request(s) resent",
        ],
        "{done:#?}"
    );
    assert_resent_the_unanswered(&mut fake);
}

#[test]
fn binary_exits_16_when_the_retries_run_out() {
    let mut fake = turned_away_twice(300);
    let addr = fake.addr.to_string();
    let done = run_client(&["--connect", &addr, "--retries", "1", "--send", "x"], b"");
    assert_exit(&done, 16);
    assert_eq!(done.stdout, "");
    assert_eq!(
        done.stderr.lines().collect::<Vec<_>>(),
        [
            "reconnecting after GOAWAY 6 LIMITED, retry after 300 ms (attempt 1 of 1), \
             1 request(s) to resend",
            "wharf client: 1 reconnect(s), 1 request(s) resent",
            "wharf client: turned away: per-address limit (GOAWAY 6 LIMITED), retry after 300 ms \
             (connections per address)",
            "wharf client: GOAWAY 6 LIMITED: 1 of 1 request(s) not answered \
             (never started; safe to resend)",
        ],
        "{done:#?}"
    );
    let accepted = fake.accepted_at();
    let frames = finish_keep(&mut fake);
    assert_eq!(frames, [datas(&["x"]), datas(&["x"])]);
    assert_waited_the_hint(&accepted);
    fake.assert_no_more_connections();
}

#[test]
fn binary_honours_the_line_framing_goaway_6() {
    let fake = LineFake::start(2);
    let addr = fake.addr.to_string();
    let done = run_client(
        &[
            "--connect",
            &addr,
            "--framing",
            "line",
            "--retries",
            "1",
            "--send",
            "one",
            "--send",
            "two",
        ],
        b"",
    );
    assert_exit(&done, 0);
    assert_eq!(done.stdout, "one\ntwo\n");
    assert!(
        done.stderr.starts_with(
            "reconnecting after GOAWAY 6 LIMITED, retry after 300 ms (attempt 1 of 1), \
             1 request(s) to resend\n"
        ),
        "{done:#?}"
    );
    let (accepted, lines) = fake.finish();
    assert_eq!(lines, [vec!["one", "two"], vec!["two"]]);
    assert_waited_the_hint(&accepted);
}
