//! A scripted fake server for the retry tests (`retry_*.rs`): a std
//! `TcpListener` whose every accepted connection follows a script that
//! reads the client's frames (and records them), answers some, then sends
//! an exact GOAWAY, closes, or resets. That proves what the client does
//! frame by frame. Also here: the client options with retries on, and a
//! record of every reconnect the client reports.
//!
//! Every read has a timeout ([`READ_TIMEOUT`]), in the client and in the
//! fake server, so a broken client fails a test instead of hanging it.

use std::io::{self, ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use wharf::frame::{DATA, PING, PONG};
use wharf::{Client, ClientError, ClientOptions, Framing, GoAwayCode, Reply};

use super::READ_TIMEOUT;

/// Retries on, with a read timeout so that nothing hangs.
pub fn retrying(retries: u32) -> ClientOptions {
    ClientOptions {
        read_timeout: Some(READ_TIMEOUT),
        retries,
        ..ClientOptions::default()
    }
}

/// Locks a mutex even if a panicking thread poisoned it.
pub fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

// ---------------------------------------------------------------------------
// The scripted fake server.

/// One frame as the fake server received it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub kind: u8,
    pub payload: Vec<u8>,
}

pub fn data(payload: &str) -> Frame {
    Frame {
        kind: DATA,
        payload: payload.as_bytes().to_vec(),
    }
}

pub fn ping(payload: &str) -> Frame {
    Frame {
        kind: PING,
        payload: payload.as_bytes().to_vec(),
    }
}

/// DATA frames carrying each of `payloads`.
pub fn datas(payloads: &[&str]) -> Vec<Frame> {
    payloads.iter().map(|p| data(p)).collect()
}

/// What the fake server saw, shared with the test.
#[derive(Default)]
pub struct Seen {
    /// The frames each connection received, by connection in accept order.
    frames: Vec<Vec<Frame>>,
    /// When each connection was accepted.
    accepted: Vec<Instant>,
}

/// One accepted connection, as a script sees it.
pub struct Conn {
    stream: TcpStream,
    index: usize,
    seen: Arc<Mutex<Seen>>,
    listener: Arc<Mutex<Option<TcpListener>>>,
}

pub type Script = Box<dyn FnOnce(Conn) + Send>;

pub fn script(f: impl FnOnce(Conn) + Send + 'static) -> Script {
    Box::new(f)
}

impl Conn {
    /// Reads one frame (length framing) and records it; `None` at
    /// end-of-stream or reset.
    pub fn read_frame(&mut self) -> Option<Frame> {
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
    pub fn read(&mut self, n: usize) -> Vec<Frame> {
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
    pub fn answer(&mut self, requests: &[Frame]) {
        let mut out = Vec::new();
        for request in requests {
            let kind = if request.kind == PING { PONG } else { DATA };
            Framing::Length.encode(kind, &request.payload, &mut out);
        }
        self.stream.write_all(&out).expect("fake server answers");
    }

    /// Answers every frame until the client closes its side, then closes.
    pub fn serve_to_end(&mut self) {
        while let Some(frame) = self.read_frame() {
            self.answer(&[frame]);
        }
        let _ = self.stream.shutdown(Shutdown::Both);
    }

    /// Sends GOAWAY `code` and closes like the real server: shut down the
    /// sending side, then discard input until the client closes (bounded),
    /// so the GOAWAY is not destroyed by a reset.
    pub fn goaway(&mut self, code: GoAwayCode) {
        self.goaway_saying(code, code.reason());
    }

    /// [`Conn::goaway`] with a reason of the test's choosing (a GOAWAY 6's
    /// `retry after N ms` hint, say).
    pub fn goaway_saying(&mut self, code: GoAwayCode, reason: &str) {
        let mut out = Vec::new();
        Framing::Length.encode_goaway(code, reason, &mut out);
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
    pub fn close(&mut self) {
        let _ = self.stream.shutdown(Shutdown::Both);
    }

    /// Resets the connection: SO_LINGER 0, then close sends RST.
    pub fn reset(self) {
        socket2::SockRef::from(&self.stream)
            .set_linger(Some(Duration::ZERO))
            .unwrap();
        drop(self.stream);
    }

    /// Closes the listener: from now on connecting is refused.
    pub fn stop_listening(&mut self) {
        lock(&self.listener).take();
    }
}

pub fn is_end(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        ErrorKind::UnexpectedEof | ErrorKind::ConnectionReset | ErrorKind::ConnectionAborted
    )
}

/// A fake server on 127.0.0.1:0 that runs one script per accepted
/// connection, in order, one connection at a time.
pub struct Fake {
    pub addr: SocketAddr,
    seen: Arc<Mutex<Seen>>,
    listener: Arc<Mutex<Option<TcpListener>>>,
    thread: Option<JoinHandle<()>>,
}

impl Fake {
    pub fn start(scripts: Vec<Script>) -> Fake {
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
    pub fn finish(mut self) -> Vec<Vec<Frame>> {
        if let Some(thread) = self.thread.take() {
            if let Err(panic) = thread.join() {
                std::panic::resume_unwind(panic);
            }
        }
        lock(&self.seen).frames.clone()
    }

    /// When each connection was accepted.
    pub fn accepted_at(&self) -> Vec<Instant> {
        lock(&self.seen).accepted.clone()
    }

    /// Asserts that no connection beyond the scripted ones was made: the
    /// handshake of any further attempt would have completed in the
    /// listener's backlog. Call after `finish`-ing the scripts' thread.
    pub fn assert_no_more_connections(&self) {
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
pub fn finish_keep(fake: &mut Fake) -> Vec<Vec<Frame>> {
    if let Some(thread) = fake.thread.take() {
        if let Err(panic) = thread.join() {
            std::panic::resume_unwind(panic);
        }
    }
    lock(&fake.seen).frames.clone()
}

// ---------------------------------------------------------------------------
// What the client reports.

/// Records every reconnect report the client makes: (cause, attempt,
/// resend, delay, when).
pub type Reports = Arc<Mutex<Vec<(String, u32, usize, Duration, Instant)>>>;

pub fn record_reconnects(client: &mut Client) -> Reports {
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
pub fn causes(reports: &Reports) -> Vec<(String, u32, usize)> {
    lock(reports)
        .iter()
        .map(|(cause, attempt, resend, _, _)| (cause.clone(), *attempt, *resend))
        .collect()
}

pub fn reply(payload: &str) -> Reply {
    Reply::Data(payload.as_bytes().to_vec())
}

// ---------------------------------------------------------------------------
// Ending a connection without GOAWAY.

/// How a fake ends a connection without GOAWAY.
#[derive(Debug, Clone, Copy)]
pub enum Loss {
    Reset,
    Close,
}

pub fn lose(mut c: Conn, loss: Loss) {
    match loss {
        Loss::Reset => c.reset(),
        Loss::Close => c.close(),
    }
}
