//! Helpers of the hardening tests (`hostile_*.rs`): the lock that runs them
//! one at a time, a client attempt classified by how it ended, a good
//! client that must be served within a bound, and readings of a process's
//! memory, threads and descriptor limit.

use std::io::{self, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use wharf::frame::{DATA, GOAWAY};
use wharf::Framing;

/// Marks the panics the test service raises on purpose.
pub const PLANNED_PANIC: &str = "hostile test: planned panic";

/// Taken by every test of a `hostile_*` file so that the tests of one file
/// (one test binary) do not overlap. Also keeps the planned service panics
/// out of the output (any other panic is reported as usual).
pub fn serial() -> MutexGuard<'static, ()> {
    static SERIAL: Mutex<()> = Mutex::new(());
    static HOOK: std::sync::Once = std::sync::Once::new();
    HOOK.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let planned = info
                .payload()
                .downcast_ref::<String>()
                .is_some_and(|message| message.starts_with(PLANNED_PANIC));
            if !planned {
                default(info);
            }
        }));
    });
    SERIAL
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Raises this process's soft RLIMIT_NOFILE to the hard limit; returns it.
pub fn raise_nofile() -> libc::rlim_t {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit with a valid pointer to a local rlimit.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return 0;
        }
        if limit.rlim_cur < limit.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: limit.rlim_max,
                rlim_max: limit.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                limit = raised;
            }
        }
    }
    limit.rlim_cur
}

/// `(VmRSS in KiB, Threads)` of a process, from /proc/<pid>/status.
pub fn proc_status(pid: &str) -> Option<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| -> Option<u64> {
        status
            .lines()
            .find_map(|line| line.strip_prefix(name))?
            .split_whitespace()
            .next()?
            .parse()
            .ok()
    };
    Some((field("VmRSS:")?, field("Threads:")?))
}

/// One length frame, encoded.
pub fn frame(kind: u8, payload: &[u8]) -> Vec<u8> {
    let mut buf = Vec::new();
    Framing::Length.encode(kind, payload, &mut buf);
    buf
}

/// How one connection attempt ended, as the client saw it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// The DATA request was echoed.
    Echo,
    /// The server sent GOAWAY with this code before anything else.
    GoAway(u16),
    /// `connect` was refused.
    Refused,
    /// The connection was reset (at connect, send or receive).
    Reset,
    /// End-of-stream with no reply at all.
    Eof,
    /// No outcome within the per-attempt bound.
    Hang,
    /// Anything else (unexpected reply, unexpected error).
    Other(String),
}

impl Outcome {
    pub fn name(&self) -> String {
        match self {
            Outcome::Echo => "echo".into(),
            Outcome::GoAway(code) => format!("goaway{code}"),
            Outcome::Refused => "refused".into(),
            Outcome::Reset => "reset".into(),
            Outcome::Eof => "eof".into(),
            Outcome::Hang => "hang".into(),
            Outcome::Other(what) => format!("other({what})"),
        }
    }
}

fn classify_io(e: &io::Error) -> Outcome {
    match e.kind() {
        ErrorKind::ConnectionRefused => Outcome::Refused,
        ErrorKind::ConnectionReset | ErrorKind::ConnectionAborted | ErrorKind::BrokenPipe => {
            Outcome::Reset
        }
        ErrorKind::UnexpectedEof => Outcome::Eof,
        ErrorKind::WouldBlock | ErrorKind::TimedOut => Outcome::Hang,
        _ => Outcome::Other(e.to_string()),
    }
}

/// Time left until `deadline`, never zero (a zero timeout is an error).
pub fn left(deadline: Instant) -> Duration {
    deadline
        .saturating_duration_since(Instant::now())
        .max(Duration::from_millis(1))
}

/// Connects within the time left before `deadline`.
pub fn connect_by(addr: SocketAddr, deadline: Instant) -> Result<TcpStream, Outcome> {
    let stream = TcpStream::connect_timeout(&addr, left(deadline)).map_err(|e| classify_io(&e))?;
    stream.set_nodelay(true).map_err(|e| classify_io(&e))?;
    Ok(stream)
}

/// Sends one DATA request.
pub fn send_data(stream: &mut TcpStream, payload: &[u8], deadline: Instant) -> Result<(), Outcome> {
    stream
        .set_write_timeout(Some(left(deadline)))
        .map_err(|e| classify_io(&e))?;
    stream
        .write_all(&frame(DATA, payload))
        .map_err(|e| classify_io(&e))
}

/// Reads the reply to `payload` and says how the attempt ended.
pub fn reply_outcome(stream: &mut TcpStream, payload: &[u8], deadline: Instant) -> Outcome {
    let mut read = |buf: &mut [u8]| -> Result<(), Outcome> {
        let mut at = 0;
        while at < buf.len() {
            stream
                .set_read_timeout(Some(left(deadline)))
                .map_err(|e| classify_io(&e))?;
            match stream.read(&mut buf[at..]) {
                Ok(0) => return Err(Outcome::Eof),
                Ok(n) => at += n,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(classify_io(&e)),
            }
        }
        Ok(())
    };
    let mut header = [0u8; 5];
    if let Err(outcome) = read(&mut header) {
        return outcome;
    }
    let len = u32::from_be_bytes([header[0], header[1], header[2], header[3]]) as usize;
    if len == 0 || len > 1 << 20 {
        return Outcome::Other(format!("reply length {len}"));
    }
    let mut body = vec![0u8; len - 1];
    if let Err(outcome) = read(&mut body) {
        return outcome;
    }
    match header[4] {
        DATA if body == payload => Outcome::Echo,
        GOAWAY if body.len() >= 2 => Outcome::GoAway(u16::from_be_bytes([body[0], body[1]])),
        kind => Outcome::Other(format!("reply kind 0x{kind:02x}")),
    }
}

/// One whole attempt: connect, send one DATA, read the outcome, close.
pub fn attempt(addr: SocketAddr, payload: &[u8], bound: Duration) -> (Outcome, Duration) {
    let started = Instant::now();
    let deadline = started + bound;
    let outcome = match connect_by(addr, deadline) {
        Err(outcome) => outcome,
        Ok(mut stream) => match send_data(&mut stream, payload, deadline) {
            Err(outcome) => outcome,
            Ok(()) => reply_outcome(&mut stream, payload, deadline),
        },
    };
    (outcome, started.elapsed())
}

/// A good client: connects, is echoed within `bound`; returns how long it took.
pub fn good_client(addr: SocketAddr, what: &str, bound: Duration) -> Duration {
    let payload = format!("good client: {what}");
    let (outcome, took) = attempt(addr, payload.as_bytes(), bound);
    assert_eq!(
        outcome,
        Outcome::Echo,
        "{what}: a good client was not served (after {took:?})"
    );
    assert!(
        took <= bound,
        "{what}: good client served only after {took:?}"
    );
    took
}

pub fn ms(d: Duration) -> u128 {
    d.as_millis()
}
