//! Safe retries (docs/protocol.md, "Retrying safely"), in `wharf::Client` and
//! `wharf client --retries N`, over real sockets on 127.0.0.1:0.
//!
//! Most tests talk to a scripted fake server: a std `TcpListener` in the
//! test whose every accepted connection follows a script that reads the
//! client's frames (and records them), answers some, then sends an exact
//! GOAWAY, closes, or resets. That proves what the client does frame by
//! frame: exactly the unanswered requests are resent, in order, never an
//! answered one; replies come back in order across the reconnect; the count
//! of attempts starts again after a reply; the backoff stays within its
//! bounds; only GOAWAY 1 and 3 (and, when the caller says its requests are
//! idempotent, a lost connection) are retried; and the binary's exit codes.
//! The end-to-end tests drain a real in-process server with requests in
//! flight while a small forwarding proxy (a stand-in for a load balancer)
//! sends new connections to a second server on another port, and keep a
//! real server busy until the client, turned away with GOAWAY 3, gets in.
//!
//! Every read has a timeout and every child process a deadline (then it is
//! killed by its PID), so a broken client fails a test instead of hanging
//! it. Time bounds are generous: CI is a busy 2-core machine.

mod common;

use std::io::{self, ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use wharf::frame::{DATA, PING, PONG};
use wharf::{
    Client, ClientError, ClientOptions, Config, Framing, GoAwayCode, Reply, Response, Server,
    ServiceError,
};

/// The longest any read waits, in the client and in the fake server.
const READ_TIMEOUT: Duration = Duration::from_secs(10);

/// The longest a child process may run.
const DEADLINE: Duration = Duration::from_secs(30);

/// Retries on, with a read timeout so that nothing hangs.
fn retrying(retries: u32) -> ClientOptions {
    ClientOptions {
        read_timeout: Some(READ_TIMEOUT),
        retries,
        ..ClientOptions::default()
    }
}

/// Locks a mutex even if a panicking thread poisoned it.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

// ---------------------------------------------------------------------------
// The scripted fake server.

/// One frame as the fake server received it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Frame {
    kind: u8,
    payload: Vec<u8>,
}

fn data(payload: &str) -> Frame {
    Frame {
        kind: DATA,
        payload: payload.as_bytes().to_vec(),
    }
}

fn ping(payload: &str) -> Frame {
    Frame {
        kind: PING,
        payload: payload.as_bytes().to_vec(),
    }
}

/// DATA frames carrying each of `payloads`.
fn datas(payloads: &[&str]) -> Vec<Frame> {
    payloads.iter().map(|p| data(p)).collect()
}

/// What the fake server saw, shared with the test.
#[derive(Default)]
struct Seen {
    /// The frames each connection received, by connection in accept order.
    frames: Vec<Vec<Frame>>,
    /// When each connection was accepted.
    accepted: Vec<Instant>,
}

/// One accepted connection, as a script sees it.
struct Conn {
    stream: TcpStream,
    index: usize,
    seen: Arc<Mutex<Seen>>,
    listener: Arc<Mutex<Option<TcpListener>>>,
}

type Script = Box<dyn FnOnce(Conn) + Send>;

fn script(f: impl FnOnce(Conn) + Send + 'static) -> Script {
    Box::new(f)
}

impl Conn {
    /// Reads one frame (length framing) and records it; `None` at
    /// end-of-stream or reset.
    fn read_frame(&mut self) -> Option<Frame> {
        let mut header = [0u8; 5];
        match self.stream.read_exact(&mut header) {
            Ok(()) => {}
            Err(e) if is_end(&e) => return None,
            Err(e) => panic!("fake server, connection {}: {e}", self.index),
        }
        let len = u32::from_be_bytes([header[0], header[1], header[2], header[3]]) as usize;
        let mut payload = vec![0; len - 1];
        self.stream
            .read_exact(&mut payload)
            .expect("the rest of the frame");
        let frame = Frame {
            kind: header[4],
            payload,
        };
        lock(&self.seen).frames[self.index].push(frame.clone());
        Some(frame)
    }

    /// Reads exactly `n` frames.
    fn read(&mut self, n: usize) -> Vec<Frame> {
        (0..n)
            .map(|i| {
                self.read_frame().unwrap_or_else(|| {
                    panic!("connection {}: stream ended before frame {i}", self.index)
                })
            })
            .collect()
    }

    /// Answers each request like the echo service: DATA with the same DATA,
    /// PING with a PONG carrying its payload.
    fn answer(&mut self, requests: &[Frame]) {
        let mut out = Vec::new();
        for request in requests {
            let kind = if request.kind == PING { PONG } else { DATA };
            Framing::Length.encode(kind, &request.payload, &mut out);
        }
        self.stream.write_all(&out).expect("fake server answers");
    }

    /// Answers every frame until the client closes its side, then closes.
    fn serve_to_end(&mut self) {
        while let Some(frame) = self.read_frame() {
            self.answer(&[frame]);
        }
        let _ = self.stream.shutdown(Shutdown::Both);
    }

    /// Sends GOAWAY `code` and closes like the real server: shut down the
    /// sending side, then discard input until the client closes (bounded),
    /// so the GOAWAY is not destroyed by a reset.
    fn goaway(&mut self, code: GoAwayCode) {
        let mut out = Vec::new();
        Framing::Length.encode_goaway(code, code.reason(), &mut out);
        self.stream
            .write_all(&out)
            .expect("fake server sends GOAWAY");
        let _ = self.stream.shutdown(Shutdown::Write);
        self.stream
            .set_read_timeout(Some(Duration::from_secs(2)))
            .unwrap();
        let mut sink = [0u8; 4096];
        while let Ok(n) = self.stream.read(&mut sink) {
            if n == 0 {
                break;
            }
        }
    }

    /// Closes without GOAWAY: a plain FIN.
    fn close(&mut self) {
        let _ = self.stream.shutdown(Shutdown::Both);
    }

    /// Resets the connection: SO_LINGER 0, then close sends RST.
    fn reset(self) {
        socket2::SockRef::from(&self.stream)
            .set_linger(Some(Duration::ZERO))
            .unwrap();
        drop(self.stream);
    }

    /// Closes the listener: from now on connecting is refused.
    fn stop_listening(&mut self) {
        lock(&self.listener).take();
    }
}

fn is_end(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        ErrorKind::UnexpectedEof | ErrorKind::ConnectionReset | ErrorKind::ConnectionAborted
    )
}

/// A fake server on 127.0.0.1:0 that runs one script per accepted
/// connection, in order, one connection at a time.
struct Fake {
    addr: SocketAddr,
    seen: Arc<Mutex<Seen>>,
    listener: Arc<Mutex<Option<TcpListener>>>,
    thread: Option<JoinHandle<()>>,
}

impl Fake {
    fn start(scripts: Vec<Script>) -> Fake {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Seen::default()));
        let listener = Arc::new(Mutex::new(Some(listener)));
        let thread = {
            let seen = Arc::clone(&seen);
            let listener = Arc::clone(&listener);
            thread::spawn(move || {
                for (index, script) in scripts.into_iter().enumerate() {
                    let accepted = {
                        // Accept without holding the lock across a long
                        // wait: a script may close the listener.
                        let guard = lock(&listener);
                        let Some(l) = guard.as_ref() else { return };
                        l.accept()
                    };
                    let (stream, _) = accepted.expect("fake server accepts");
                    stream.set_read_timeout(Some(READ_TIMEOUT)).unwrap();
                    stream.set_nodelay(true).unwrap();
                    {
                        let mut seen = lock(&seen);
                        seen.frames.push(Vec::new());
                        seen.accepted.push(Instant::now());
                    }
                    script(Conn {
                        stream,
                        index,
                        seen: Arc::clone(&seen),
                        listener: Arc::clone(&listener),
                    });
                }
            })
        };
        Fake {
            addr,
            seen,
            listener,
            thread: Some(thread),
        }
    }

    /// Waits for every script to finish (a failed script fails the test),
    /// then returns the frames each connection received.
    fn finish(mut self) -> Vec<Vec<Frame>> {
        if let Some(thread) = self.thread.take() {
            if let Err(panic) = thread.join() {
                std::panic::resume_unwind(panic);
            }
        }
        lock(&self.seen).frames.clone()
    }

    /// When each connection was accepted.
    fn accepted_at(&self) -> Vec<Instant> {
        lock(&self.seen).accepted.clone()
    }

    /// Asserts that no connection beyond the scripted ones was made: the
    /// handshake of any further attempt would have completed in the
    /// listener's backlog. Call after `finish`-ing the scripts' thread.
    fn assert_no_more_connections(&self) {
        let guard = lock(&self.listener);
        if let Some(listener) = guard.as_ref() {
            listener.set_nonblocking(true).unwrap();
            match listener.accept() {
                Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                Ok((_, peer)) => panic!("an unexpected reconnect from {peer}"),
                Err(e) => panic!("accept: {e}"),
            }
        }
    }
}

/// Joins the fake's thread and returns what it saw, keeping it to check
/// for further connections.
fn finish_keep(fake: &mut Fake) -> Vec<Vec<Frame>> {
    if let Some(thread) = fake.thread.take() {
        if let Err(panic) = thread.join() {
            std::panic::resume_unwind(panic);
        }
    }
    lock(&fake.seen).frames.clone()
}

/// Records every reconnect report the client makes: (cause, attempt,
/// resend, delay, when).
type Reports = Arc<Mutex<Vec<(String, u32, usize, Duration, Instant)>>>;

fn record_reconnects(client: &mut Client) -> Reports {
    let reports: Reports = Arc::default();
    let sink = Arc::clone(&reports);
    client.on_reconnect(move |r| {
        assert!(r.to_string().starts_with("reconnecting after "), "{r}");
        let cause = match r.cause {
            ClientError::GoAway { code, .. } => format!("GOAWAY {code}"),
            ClientError::Connect { .. } => "connect".to_owned(),
            ClientError::Closed => "closed".to_owned(),
            other => format!("{other:?}"),
        };
        lock(&sink).push((cause, r.attempt, r.resend, r.delay, Instant::now()));
    });
    reports
}

/// The (cause, attempt, resend) of each report.
fn causes(reports: &Reports) -> Vec<(String, u32, usize)> {
    lock(reports)
        .iter()
        .map(|(cause, attempt, resend, _, _)| (cause.clone(), *attempt, *resend))
        .collect()
}

fn reply(payload: &str) -> Reply {
    Reply::Data(payload.as_bytes().to_vec())
}

// ---------------------------------------------------------------------------
// Exactly the unanswered requests are resent, in order.

/// Five pipelined requests (one of them a PING); the server answers two and
/// sends GOAWAY `code`; the next connection must receive exactly the other
/// three, in order, and the caller sees all five replies in order.
fn answered_two_of_five_then(code: GoAwayCode) {
    let fake = Fake::start(vec![
        script(move |mut c| {
            let requests = c.read(5);
            c.answer(&requests[..2]);
            c.goaway(code);
        }),
        script(|mut c| {
            let resent = c.read(3);
            c.answer(&resent);
            c.serve_to_end();
        }),
    ]);
    let mut client = Client::connect(fake.addr, retrying(3)).unwrap();
    let reports = record_reconnects(&mut client);
    client.send(b"r0").unwrap();
    client.send(b"r1").unwrap();
    client.send_ping(b"p2").unwrap();
    client.send(b"r3").unwrap();
    client.send(b"r4").unwrap();
    client.flush().unwrap();
    assert_eq!(client.recv().unwrap(), reply("r0"));
    assert_eq!(client.recv().unwrap(), reply("r1"));
    assert_eq!(client.recv().unwrap(), Reply::Pong(b"p2".to_vec()));
    assert_eq!(client.recv().unwrap(), reply("r3"));
    assert_eq!(client.recv().unwrap(), reply("r4"));
    assert_eq!(client.outstanding(), 0);
    assert_eq!(client.reconnects(), 1);
    assert_eq!(client.resent(), 3);
    assert_eq!(
        causes(&reports),
        vec![(format!("GOAWAY {}", code.as_u16()), 1, 3)]
    );
    // The connection keeps working after the reconnect.
    assert_eq!(client.request(b"after").unwrap(), b"after");
    drop(client);
    let frames = fake.finish();
    assert_eq!(frames.len(), 2, "one reconnect: {frames:?}");
    let mut first = datas(&["r0", "r1"]);
    first.push(ping("p2"));
    first.extend(datas(&["r3", "r4"]));
    assert_eq!(frames[0], first);
    let mut second = vec![ping("p2")];
    second.extend(datas(&["r3", "r4", "after"]));
    assert_eq!(frames[1], second, "exactly the unanswered, in order");
}

#[test]
fn goaway_1_after_2_of_5_pipelined_resends_exactly_the_other_3_in_order() {
    answered_two_of_five_then(GoAwayCode::Shutdown);
}

#[test]
fn goaway_3_after_2_of_5_pipelined_resends_exactly_the_other_3_in_order() {
    answered_two_of_five_then(GoAwayCode::Busy);
}

#[test]
fn retries_are_off_by_default() {
    let defaults = ClientOptions::default();
    assert_eq!(defaults.retries, 0);
    assert!(!defaults.idempotent);
    assert_eq!(defaults.retry_backoff, Duration::from_millis(100));
    assert_eq!(defaults.retry_backoff_max, Duration::from_secs(2));

    let mut fake = Fake::start(vec![script(|mut c| {
        let requests = c.read(3);
        c.answer(&requests[..1]);
        c.goaway(GoAwayCode::Shutdown);
    })]);
    let mut client = Client::connect(
        fake.addr,
        ClientOptions {
            read_timeout: Some(READ_TIMEOUT),
            ..ClientOptions::default()
        },
    )
    .unwrap();
    for r in ["r0", "r1", "r2"] {
        client.send(r.as_bytes()).unwrap();
    }
    client.flush().unwrap();
    assert_eq!(client.recv().unwrap(), reply("r0"));
    let err = client.recv().unwrap_err();
    assert_eq!(err.goaway_code(), Some(1), "{err}");
    assert_eq!(client.outstanding(), 2, "the unanswered are still owed");
    assert_eq!((client.reconnects(), client.resent()), (0, 0));
    finish_keep(&mut fake);
    fake.assert_no_more_connections();
}

/// The caller never sees an answered request twice, and no server sees it
/// twice, across several reconnects in a row. With `retries: 1` this only
/// passes because each reply starts the count again.
#[test]
fn a_reply_starts_the_count_again_and_nothing_answered_is_resent() {
    let fake = Fake::start(vec![
        script(|mut c| {
            let requests = c.read(4);
            c.answer(&requests[..1]);
            c.goaway(GoAwayCode::Shutdown);
        }),
        script(|mut c| {
            let requests = c.read(3);
            c.answer(&requests[..1]);
            c.goaway(GoAwayCode::Busy);
        }),
        script(|mut c| {
            let requests = c.read(2);
            c.answer(&requests);
            c.serve_to_end();
        }),
    ]);
    let mut client = Client::connect(fake.addr, retrying(1)).unwrap();
    let reports = record_reconnects(&mut client);
    for r in ["a", "b", "c", "d"] {
        client.send(r.as_bytes()).unwrap();
    }
    client.flush().unwrap();
    for r in ["a", "b", "c", "d"] {
        assert_eq!(client.recv().unwrap(), reply(r), "reply to {r}, in order");
    }
    assert_eq!((client.reconnects(), client.resent()), (2, 5));
    assert_eq!(
        causes(&reports),
        vec![("GOAWAY 1".to_owned(), 1, 3), ("GOAWAY 3".to_owned(), 1, 2)],
        "attempt 1 each time: the reply in between reset the count"
    );
    drop(client);
    let frames = fake.finish();
    assert_eq!(frames[0], datas(&["a", "b", "c", "d"]));
    assert_eq!(frames[1], datas(&["b", "c", "d"]));
    assert_eq!(frames[2], datas(&["c", "d"]));
}

/// The same sequence without the reply in between: the second failure is a
/// second attempt in a row, over `retries: 1`, so it is returned.
#[test]
fn without_a_reply_in_between_the_attempts_run_out() {
    let mut fake = Fake::start(vec![
        script(|mut c| {
            let requests = c.read(2);
            c.answer(&requests[..1]);
            c.goaway(GoAwayCode::Shutdown);
        }),
        script(|mut c| {
            c.read(1);
            c.goaway(GoAwayCode::Busy);
        }),
    ]);
    let mut client = Client::connect(fake.addr, retrying(1)).unwrap();
    let reports = record_reconnects(&mut client);
    client.send(b"a").unwrap();
    client.send(b"b").unwrap();
    client.flush().unwrap();
    assert_eq!(client.recv().unwrap(), reply("a"));
    let err = client.recv().unwrap_err();
    assert_eq!(err.goaway_code(), Some(3), "the last failure: {err}");
    assert_eq!(causes(&reports), vec![("GOAWAY 1".to_owned(), 1, 1)]);
    assert_eq!((client.reconnects(), client.resent()), (1, 1));
    // The client has given up: sending now fails instead of queueing.
    client.send(b"c").unwrap();
    assert!(client.flush().is_err());
    let frames = finish_keep(&mut fake);
    assert_eq!(frames, vec![datas(&["a", "b"]), datas(&["b"])]);
    fake.assert_no_more_connections();
}

#[test]
fn a_server_that_is_always_busy_gets_n_reconnects_then_goaway_3() {
    let turn_away = || {
        script(|mut c| {
            c.read(1);
            c.goaway(GoAwayCode::Busy);
        })
    };
    let mut fake = Fake::start((0..4).map(|_| turn_away()).collect());
    let mut client = Client::connect(fake.addr, retrying(3)).unwrap();
    let reports = record_reconnects(&mut client);
    let err = client.request(b"once more").unwrap_err();
    assert_eq!(err.goaway_code(), Some(3), "{err}");
    let expected: Vec<_> = (1..=3).map(|a| ("GOAWAY 3".to_owned(), a, 1)).collect();
    assert_eq!(causes(&reports), expected);
    assert_eq!((client.reconnects(), client.resent()), (3, 3));
    let frames = finish_keep(&mut fake);
    assert_eq!(frames, vec![datas(&["once more"]); 4], "1 + 3 connections");
    fake.assert_no_more_connections();
}

// ---------------------------------------------------------------------------
// Failed reconnects and the backoff.

/// GOAWAY 1, then the server is gone: each refused reconnect counts as an
/// attempt, and when they run out the connect error is returned.
#[test]
fn refused_reconnects_count_and_end_in_a_connect_error() {
    let fake = Fake::start(vec![script(|mut c| {
        c.read(1);
        c.stop_listening();
        c.goaway(GoAwayCode::Shutdown);
    })]);
    let options = ClientOptions {
        retry_backoff: Duration::from_millis(20),
        retry_backoff_max: Duration::from_millis(40),
        ..retrying(3)
    };
    let mut client = Client::connect(fake.addr, options).unwrap();
    let reports = record_reconnects(&mut client);
    let start = Instant::now();
    let err = client.request(b"lost").unwrap_err();
    let elapsed = start.elapsed();
    match &err {
        ClientError::Connect { addr, .. } => assert_eq!(addr, &fake.addr.to_string()),
        other => panic!("expected the last failure, a connect error; got {other:?}"),
    }
    assert_eq!(
        causes(&reports),
        vec![
            ("GOAWAY 1".to_owned(), 1, 1),
            ("connect".to_owned(), 2, 1),
            ("connect".to_owned(), 3, 1),
        ]
    );
    let delays: Vec<Duration> = lock(&reports).iter().map(|r| r.3).collect();
    for (delay, bound) in delays.iter().zip([20, 40, 40]) {
        let bound = Duration::from_millis(bound);
        assert!(
            *delay >= bound / 2 && *delay <= bound,
            "{delay:?} outside [{:?}, {bound:?}]",
            bound / 2
        );
    }
    let slept: Duration = delays.iter().sum();
    assert!(elapsed >= slept, "{elapsed:?} < the sleeps {slept:?}");
    assert_eq!((client.reconnects(), client.resent()), (0, 0));
    fake.finish();
}

/// Each sleep is drawn from [b/2, b], b doubling from the configured base
/// up to the cap, and the client really waits that long before connecting.
#[test]
fn backoff_sleeps_are_within_half_to_whole_bound_doubling_to_the_cap() {
    const ATTEMPTS: u32 = 6;
    let turn_away = || script(|mut c| c.goaway(GoAwayCode::Busy));
    let fake = Fake::start((0..=ATTEMPTS).map(|_| turn_away()).collect());
    let options = ClientOptions {
        retry_backoff: Duration::from_millis(30),
        retry_backoff_max: Duration::from_millis(120),
        ..retrying(ATTEMPTS)
    };
    let mut client = Client::connect(fake.addr, options).unwrap();
    let reports = record_reconnects(&mut client);
    let err = client.recv().unwrap_err();
    assert_eq!(err.goaway_code(), Some(3), "{err}");
    let reports = lock(&reports).clone();
    assert_eq!(reports.len(), ATTEMPTS as usize);
    let accepted = fake.accepted_at();
    assert_eq!(accepted.len(), ATTEMPTS as usize + 1);
    for (i, (_, attempt, _, delay, at)) in reports.iter().enumerate() {
        let bound = Duration::from_millis([30, 60, 120, 120, 120, 120][i]);
        assert_eq!(*attempt, i as u32 + 1);
        assert!(
            *delay >= bound / 2 && *delay <= bound,
            "attempt {attempt}: {delay:?} outside [{:?}, {bound:?}]",
            bound / 2
        );
        // The reconnect is accepted no sooner than the sleep (generously
        // later on a loaded machine).
        let waited = accepted[i + 1].duration_since(*at);
        assert!(
            waited >= *delay,
            "attempt {attempt}: connected after {waited:?} < {delay:?}"
        );
        assert!(
            waited < *delay + Duration::from_secs(3),
            "attempt {attempt}: {waited:?}"
        );
    }
    fake.finish();
}

/// The defaults: 100 ms, then 200 ms (each in [b/2, b]).
#[test]
fn default_backoff_starts_at_100ms() {
    let turn_away = || script(|mut c| c.goaway(GoAwayCode::Busy));
    let fake = Fake::start((0..3).map(|_| turn_away()).collect());
    let mut client = Client::connect(fake.addr, retrying(2)).unwrap();
    let reports = record_reconnects(&mut client);
    let start = Instant::now();
    assert_eq!(client.recv().unwrap_err().goaway_code(), Some(3));
    let elapsed = start.elapsed();
    let delays: Vec<Duration> = lock(&reports).iter().map(|r| r.3).collect();
    assert_eq!(delays.len(), 2);
    let ms = Duration::from_millis;
    assert!(delays[0] >= ms(50) && delays[0] <= ms(100), "{delays:?}");
    assert!(delays[1] >= ms(100) && delays[1] <= ms(200), "{delays:?}");
    assert!(elapsed >= ms(150), "{elapsed:?}");
    fake.finish();
}

// ---------------------------------------------------------------------------
// Lost without GOAWAY; GOAWAY 2, 4, 5.

/// How a fake ends a connection without GOAWAY.
#[derive(Debug, Clone, Copy)]
enum Loss {
    Reset,
    Close,
}

fn lose(mut c: Conn, loss: Loss) {
    match loss {
        Loss::Reset => c.reset(),
        Loss::Close => c.close(),
    }
}

fn lost_without_goaway_is_not_retried(loss: Loss) {
    let mut fake = Fake::start(vec![script(move |mut c| {
        let requests = c.read(3);
        c.answer(&requests[..1]);
        // Let the reply reach the client before the connection goes.
        thread::sleep(Duration::from_millis(100));
        lose(c, loss);
    })]);
    let mut client = Client::connect(fake.addr, retrying(3)).unwrap();
    let reports = record_reconnects(&mut client);
    for r in ["a", "b", "c"] {
        client.send(r.as_bytes()).unwrap();
    }
    client.flush().unwrap();
    assert_eq!(client.recv().unwrap(), reply("a"));
    match client.recv() {
        Err(ClientError::Closed) => {}
        other => panic!("{loss:?}: expected Closed, got {other:?}"),
    }
    assert!(causes(&reports).is_empty(), "{loss:?}: no reconnect");
    assert_eq!(client.reconnects(), 0);
    finish_keep(&mut fake);
    fake.assert_no_more_connections();
}

#[test]
fn a_reset_without_goaway_is_closed_and_not_retried() {
    lost_without_goaway_is_not_retried(Loss::Reset);
}

#[test]
fn a_close_without_goaway_is_closed_and_not_retried() {
    lost_without_goaway_is_not_retried(Loss::Close);
}

fn lost_is_retried_when_idempotent(loss: Loss) {
    let fake = Fake::start(vec![
        script(move |mut c| {
            let requests = c.read(3);
            c.answer(&requests[..1]);
            thread::sleep(Duration::from_millis(100));
            lose(c, loss);
        }),
        script(|mut c| {
            let resent = c.read(2);
            c.answer(&resent);
            c.serve_to_end();
        }),
    ]);
    let options = ClientOptions {
        idempotent: true,
        ..retrying(3)
    };
    let mut client = Client::connect(fake.addr, options).unwrap();
    let reports = record_reconnects(&mut client);
    for r in ["a", "b", "c"] {
        client.send(r.as_bytes()).unwrap();
    }
    client.flush().unwrap();
    for r in ["a", "b", "c"] {
        assert_eq!(client.recv().unwrap(), reply(r));
    }
    assert_eq!(causes(&reports), vec![("closed".to_owned(), 1, 2)]);
    assert_eq!((client.reconnects(), client.resent()), (1, 2));
    drop(client);
    let frames = fake.finish();
    assert_eq!(frames[1], datas(&["b", "c"]));
}

#[test]
fn a_reset_is_retried_when_the_requests_are_idempotent() {
    lost_is_retried_when_idempotent(Loss::Reset);
}

#[test]
fn a_close_is_retried_when_the_requests_are_idempotent() {
    lost_is_retried_when_idempotent(Loss::Close);
}

#[test]
fn goaway_2_4_and_5_are_not_retried() {
    for code in [
        GoAwayCode::HeartbeatTimeout,
        GoAwayCode::ProtocolError,
        GoAwayCode::FrameTooLarge,
    ] {
        let mut fake = Fake::start(vec![script(move |mut c| {
            c.read(1);
            c.goaway(code);
        })]);
        let options = ClientOptions {
            idempotent: true,
            ..retrying(3)
        };
        let mut client = Client::connect(fake.addr, options).unwrap();
        let reports = record_reconnects(&mut client);
        let err = client.request(b"x").unwrap_err();
        assert_eq!(err.goaway_code(), Some(code.as_u16()), "{err}");
        assert!(causes(&reports).is_empty(), "GOAWAY {code} is not retried");
        finish_keep(&mut fake);
        fake.assert_no_more_connections();
    }
}

// ---------------------------------------------------------------------------
// Heartbeats, half-close, ping, a sender on another thread.

/// Heartbeat PINGs left unanswered by the GOAWAY are dropped, not resent:
/// the first frame on the new connection is the unanswered request.
#[test]
fn heartbeat_pings_are_not_resent() {
    let fake = Fake::start(vec![
        script(|mut c| {
            // PINGs from the heartbeat, unanswered, then the request.
            let mut pings = 0;
            loop {
                let frame = c.read_frame().expect("a frame");
                if frame.kind == DATA {
                    break;
                }
                pings += 1;
            }
            assert!(pings >= 1, "the heartbeat ran");
            c.goaway(GoAwayCode::Shutdown);
        }),
        script(|mut c| {
            let first = c.read(1);
            assert_eq!(first, datas(&["request"]), "the request, no PING before it");
            c.answer(&first);
            c.serve_to_end();
        }),
    ]);
    let mut client = Client::connect(fake.addr, retrying(2)).unwrap();
    client.start_heartbeat(Duration::from_millis(20)).unwrap();
    thread::sleep(Duration::from_millis(200));
    assert_eq!(client.request(b"request").unwrap(), b"request");
    assert_eq!((client.reconnects(), client.resent()), (1, 1));
    drop(client);
    fake.finish();
}

/// A client that has half-closed gets its unanswered requests resent, and
/// the new connection is half-closed again after them.
#[test]
fn a_half_closed_client_is_half_closed_again_after_the_resend() {
    let fake = Fake::start(vec![
        script(|mut c| {
            let requests = c.read(3);
            assert_eq!(c.read_frame(), None, "the client half-closed");
            c.answer(&requests[..1]);
            c.goaway(GoAwayCode::Shutdown);
        }),
        script(|mut c| {
            let resent = c.read(2);
            assert_eq!(c.read_frame(), None, "half-closed again after the resend");
            c.answer(&resent);
            c.close();
        }),
    ]);
    let mut client = Client::connect(fake.addr, retrying(2)).unwrap();
    for r in ["a", "b", "c"] {
        client.send(r.as_bytes()).unwrap();
    }
    client.shutdown_write().unwrap();
    for r in ["a", "b", "c"] {
        assert_eq!(client.recv().unwrap(), reply(r));
    }
    assert!(matches!(client.recv(), Err(ClientError::Closed)));
    drop(client);
    let frames = fake.finish();
    assert_eq!(frames[1], datas(&["b", "c"]));
}

/// `ping` goes through a reconnect and measures the round trip on the new
/// connection.
#[test]
fn ping_survives_a_goaway() {
    let fake = Fake::start(vec![
        script(|mut c| {
            let first = c.read(1);
            c.answer(&first);
            c.read(1);
            c.goaway(GoAwayCode::Shutdown);
        }),
        script(|mut c| c.serve_to_end()),
    ]);
    // A backoff sleep of at least 1 s, so a time measured across it is
    // told apart from a round trip even on a loaded machine.
    let options = ClientOptions {
        retry_backoff: Duration::from_secs(2),
        ..retrying(1)
    };
    let mut client = Client::connect(fake.addr, options).unwrap();
    client.ping().unwrap();
    let rtt = client.ping().unwrap();
    assert!(
        rtt < Duration::from_secs(1),
        "{rtt:?}: measured from the resend, not across the >= 1 s backoff"
    );
    assert_eq!(client.reconnects(), 1);
    drop(client);
    fake.finish();
}

/// Requests sent from another thread through a `RequestSender` while this
/// one receives: a GOAWAY in the middle loses nothing and repeats nothing.
#[test]
fn a_sender_thread_keeps_sending_across_the_reconnect() {
    const N: usize = 200;
    let fake = Fake::start(vec![
        script(|mut c| {
            let requests = c.read(50);
            c.answer(&requests[..20]);
            c.goaway(GoAwayCode::Shutdown);
        }),
        script(|mut c| c.serve_to_end()),
    ]);
    let mut client = Client::connect(fake.addr, retrying(2)).unwrap();
    let sender = client.sender();
    let sending = thread::spawn(move || {
        for i in 0..N {
            sender.request(format!("s{i}").as_bytes()).unwrap();
            if i % 10 == 0 {
                thread::sleep(Duration::from_millis(5));
            }
        }
        sender.shutdown_write().unwrap();
    });
    for i in 0..N {
        assert_eq!(client.recv().unwrap(), reply(&format!("s{i}")), "reply {i}");
    }
    sending.join().unwrap();
    assert!(matches!(client.recv(), Err(ClientError::Closed)));
    assert_eq!(client.reconnects(), 1);
    drop(client);
    let frames = fake.finish();
    // Everything after the 20 answered went to the second connection,
    // exactly once and in order.
    let expected: Vec<Frame> = (20..N).map(|i| data(&format!("s{i}"))).collect();
    assert_eq!(frames[1], expected);
}

// ---------------------------------------------------------------------------
// End to end: a real server drained with requests in flight.

/// A stand-in for a load balancer: forwards each connection to the current
/// target, so a test can move new connections to a second server.
struct Proxy {
    addr: SocketAddr,
    target: Arc<Mutex<SocketAddr>>,
}

impl Proxy {
    fn start(target: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let target = Arc::new(Mutex::new(target));
        let current = Arc::clone(&target);
        thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { return };
                let to = *lock(&current);
                let Ok(server) = TcpStream::connect(to) else {
                    continue; // dropping the client refuses it, roughly
                };
                for (from, to) in [
                    (client.try_clone().unwrap(), server.try_clone().unwrap()),
                    (server, client),
                ] {
                    thread::spawn(move || pipe(from, to));
                }
            }
        });
        Proxy { addr, target }
    }
}

/// Copies one direction; passes an end of stream on as a half-close.
fn pipe(mut from: TcpStream, mut to: TcpStream) {
    let mut buf = [0u8; 16 * 1024];
    loop {
        match from.read(&mut buf) {
            Ok(0) => {
                let _ = to.shutdown(Shutdown::Write);
                return;
            }
            Ok(n) => {
                if to.write_all(&buf[..n]).is_err() {
                    let _ = from.shutdown(Shutdown::Both);
                    return;
                }
            }
            Err(_) => {
                let _ = to.shutdown(Shutdown::Both);
                return;
            }
        }
    }
}

/// An echo service that records every request it runs and takes `delay`
/// over each, so a drain finds requests in flight.
fn recording(delay: Duration) -> (impl wharf::Service, Arc<Mutex<Vec<Vec<u8>>>>) {
    let log = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&log);
    let service = move |request: &[u8], response: &mut Response<'_>| {
        lock(&sink).push(request.to_vec());
        thread::sleep(delay);
        response.extend_from_slice(request);
        Ok::<(), ServiceError>(())
    };
    (service, log)
}

fn server_config() -> Config {
    Config {
        workers: 1,
        ..common::config()
    }
}

/// Drains `server` from another thread; the handle joins it.
fn drain(server: Server) -> JoinHandle<wharf::Report> {
    server.handle().shutdown();
    thread::spawn(move || server.join())
}

/// Once `server` has started `started` requests (as `ran` records), points
/// the proxy at `next` and drains `server`; the handle joins it.
fn drain_after(
    server: Server,
    started: usize,
    ran: &Arc<Mutex<Vec<Vec<u8>>>>,
    proxy: &Proxy,
    next: SocketAddr,
) -> JoinHandle<wharf::Report> {
    let ran = Arc::clone(ran);
    let target = Arc::clone(&proxy.target);
    thread::spawn(move || {
        assert!(
            common::eventually(Duration::from_secs(20), || lock(&ran).len() >= started),
            "the server never started {started} requests"
        );
        *lock(&target) = next;
        drain(server).join().unwrap()
    })
}

/// Checks that A ran a prefix of `all` and B exactly the rest, in order:
/// every request ran once, whichever server ran it. Returns how many A ran.
fn ran_once_each(all: &[String], ran_a: &[Vec<u8>], ran_b: &[Vec<u8>]) -> usize {
    let all: Vec<Vec<u8>> = all.iter().map(|r| r.as_bytes().to_vec()).collect();
    let k = ran_a.len();
    assert_eq!(ran_a, &all[..k], "A ran a prefix, in order");
    assert_eq!(
        ran_b,
        &all[k..],
        "B ran exactly the rest, in order, once each"
    );
    k
}

#[test]
fn end_to_end_a_drained_server_loses_and_repeats_nothing() {
    const N: usize = 30;
    let (service_a, ran_a) = recording(Duration::from_millis(20));
    let (service_b, ran_b) = recording(Duration::ZERO);
    let a = Server::start("127.0.0.1:0", server_config(), service_a).unwrap();
    let b = Server::start("127.0.0.1:0", server_config(), service_b).unwrap();
    let proxy = Proxy::start(a.local_addr());

    let mut client = Client::connect(proxy.addr, retrying(3)).unwrap();
    let reports = record_reconnects(&mut client);
    let requests: Vec<String> = (0..N).map(|i| format!("q{i}")).collect();
    for r in &requests {
        client.send(r.as_bytes()).unwrap();
    }
    client.flush().unwrap();
    // Once A has started a few, new connections go to B and A drains (the
    // drain SIGTERM starts) with the other pipelined requests not started.
    // (Not keyed to the replies: A may hold them until its batch is done.)
    let drained = drain_after(a, 3, &ran_a, &proxy, b.local_addr());
    for (i, r) in requests.iter().enumerate() {
        assert_eq!(client.recv().unwrap(), reply(r), "reply {i}, in order");
    }
    assert_eq!(client.outstanding(), 0);
    let report_a = drained.join().unwrap();
    assert!(!report_a.forced, "{report_a}");
    let k = ran_once_each(&requests, &lock(&ran_a), &lock(&ran_b));
    assert!(
        (3..N).contains(&k),
        "A ran {k}: the drain found requests in flight"
    );
    assert_eq!(report_a.requests, k as u64);
    assert_eq!((client.reconnects(), client.resent()), (1, (N - k) as u64));
    assert_eq!(causes(&reports), vec![("GOAWAY 1".to_owned(), 1, N - k)]);
    drop(client);
    b.handle().shutdown();
    assert_eq!(b.join().requests, (N - k) as u64);
}

/// A real server that is busy (its only worker held, `--queue 0`) turns the
/// client away with GOAWAY 3; the client backs off and comes back until the
/// worker is free, and its request runs once.
#[test]
fn end_to_end_a_busy_server_is_retried_until_it_has_room() {
    let (service, gate) = common::gate::gate();
    let server = common::start_with(
        Config {
            workers: 1,
            queue: 0,
            heartbeat_timeout: Duration::from_secs(20),
            ..common::config()
        },
        service,
    );
    let addr = server.local_addr();
    // The holder keeps the only worker busy with a held request. With queue
    // 0 a connection made before the worker waits is turned away, so the
    // holder itself retries (which is what retries are for).
    let mut holder = Client::connect(addr, retrying(50)).unwrap();
    assert_eq!(holder.request(b"hello").unwrap(), b"hello");
    holder.send(b"slow: hold the only worker").unwrap();
    holder.flush().unwrap();
    gate.wait_started(b"slow: hold the only worker");

    let options = ClientOptions {
        retry_backoff: Duration::from_millis(20),
        retry_backoff_max: Duration::from_millis(100),
        ..retrying(50)
    };
    let mut client = Client::connect(addr, options).unwrap();
    let reports = record_reconnects(&mut client);
    let releaser = {
        let reports = Arc::clone(&reports);
        thread::spawn(move || {
            assert!(
                common::eventually(Duration::from_secs(20), || lock(&reports).len() >= 2),
                "the client was not turned away twice"
            );
            gate.release();
        })
    };
    assert_eq!(client.request(b"patient").unwrap(), b"patient");
    releaser.join().unwrap();
    assert!(causes(&reports)
        .iter()
        .all(|(cause, _, resend)| cause == "GOAWAY 3" && *resend == 1));
    assert!(client.reconnects() >= 2);
    assert_eq!(holder.recv().unwrap(), reply("slow: hold the only worker"));
    drop((client, holder));
    server.handle().shutdown();
    let report = server.join();
    assert!(report.rejected_busy >= 2, "{report}");
    // hello, the held request and "patient" once: a request turned away
    // with GOAWAY 3 never ran.
    assert_eq!(report.requests, 3, "{report}");
}

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
