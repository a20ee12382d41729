//! The scheduled driver: many non-blocking connections on one thread and a
//! `polling` poller, each request sent at its due time whether or not the
//! earlier replies are back (the open loop, and the idle crowd's PINGs),
//! and the 1 ms sleeper that shows stalls of the machine itself.

use std::collections::VecDeque;
use std::io::{self, ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use polling::{Event, Events, PollMode, Poller};
use wharf::frame::{GOAWAY, HEADER_LEN};

use crate::wire::{frame, goaway_text, histogram, micros, payload, reply_kind, Errors};

/// How long replies owed at the end of a window may take before they
/// count as missed.
const DRAIN: Duration = Duration::from_secs(5);

/// When requests are due: request `k` of this thread at
/// `start + offset + k * interval`, on its connection `k mod n`. Requests
/// due before `measure_from` are warm-up; none are sent from `measure_to`.
#[derive(Clone, Copy)]
pub(crate) struct Schedule {
    /// Nice value for the driving thread.
    pub(crate) nice: i32,
    pub(crate) kind: u8,
    pub(crate) len: usize,
    pub(crate) start: Instant,
    pub(crate) offset: Duration,
    pub(crate) interval: Duration,
    pub(crate) measure_from: Instant,
    pub(crate) measure_to: Instant,
}

impl Schedule {
    fn due(&self, k: u64) -> Instant {
        self.start + self.offset + self.interval.mul_f64(k as f64)
    }
}

struct Owed {
    seq: u64,
    due: Instant,
    sent: Instant,
    measured: bool,
}

struct Driven {
    id: u64,
    stream: TcpStream,
    input: Vec<u8>,
    output: Vec<u8>,
    watching_writes: bool,
    owed: VecDeque<Owed>,
    next_seq: u64,
    dead: bool,
}

#[derive(Default)]
pub(crate) struct DriverResult {
    /// Latency from due time to reply, requests due in the window.
    pub(crate) latency: Option<Histogram<u64>>,
    /// Latency from the actual send to the reply, the same requests.
    pub(crate) from_send: Option<Histogram<u64>>,
    /// How late the client itself sent, requests due in the window.
    pub(crate) lag: Option<Histogram<u64>>,
    /// Requests due in the window, sent.
    pub(crate) sent: u64,
    /// ... and answered (correctly).
    pub(crate) answered: u64,
    /// ... and never answered (by the end of the drain).
    pub(crate) missed: u64,
    /// Replies (of any request) that arrived within the window.
    pub(crate) replies_in_window: u64,
    pub(crate) errors: Errors,
    /// The thread could not be given its nice value.
    pub(crate) not_reniced: bool,
}

pub(crate) fn drive(streams: Vec<(u64, TcpStream)>, schedule: Schedule) -> DriverResult {
    let mut result = DriverResult {
        latency: Some(histogram()),
        from_send: Some(histogram()),
        lag: Some(histogram()),
        not_reniced: !renice_this_thread(schedule.nice),
        ..DriverResult::default()
    };
    let poller = match Poller::new() {
        Ok(p) => p,
        Err(e) => {
            result.errors.push(format!("poller: {e}"));
            return result;
        }
    };
    let mut conns: Vec<Driven> = Vec::with_capacity(streams.len());
    for (key, (id, stream)) in streams.into_iter().enumerate() {
        let setup = stream.set_nonblocking(true).and_then(|()| {
            // SAFETY: the stream is deleted from the poller below, before
            // it is dropped.
            unsafe { poller.add_with_mode(&stream, Event::readable(key), PollMode::Level) }
        });
        if let Err(e) = setup {
            result.errors.push(format!("connection {id}: {e}"));
        }
        conns.push(Driven {
            id,
            stream,
            input: Vec::with_capacity(4096),
            output: Vec::new(),
            watching_writes: false,
            owed: VecDeque::new(),
            next_seq: 1,
            dead: false,
        });
    }
    let n = conns.len() as u64;
    let mut events = Events::new();
    let mut body = Vec::with_capacity(schedule.len);
    let mut expected = Vec::with_capacity(schedule.len);
    let mut buf = vec![0u8; 64 * 1024];
    let mut k: u64 = 0;
    let mut owed_total: usize = 0;
    let drain_until = schedule.measure_to + DRAIN;
    loop {
        let now = Instant::now();
        // Send everything due by now.
        let mut next_due = schedule.due(k);
        while n > 0 && next_due <= now && next_due < schedule.measure_to {
            let c = &mut conns[(k % n) as usize];
            let measured = next_due >= schedule.measure_from;
            let sent = Instant::now();
            if c.dead {
                if measured {
                    result.sent += 1;
                    result.missed += 1;
                }
            } else {
                let seq = c.next_seq;
                c.next_seq += 1;
                payload(c.id, seq, schedule.len, &mut body);
                frame(schedule.kind, &body, &mut c.output);
                c.owed.push_back(Owed {
                    seq,
                    due: next_due,
                    sent,
                    measured,
                });
                owed_total += 1;
                if measured {
                    result.sent += 1;
                    if let Some(h) = result.lag.as_mut() {
                        h.saturating_record(micros(sent.saturating_duration_since(next_due)));
                    }
                }
                if let Err(e) = flush(&poller, (k % n) as usize, c) {
                    result
                        .errors
                        .push(format!("connection {}: write: {e}", c.id));
                    owed_total -= kill(c, &mut result);
                }
            }
            k += 1;
            next_due = schedule.due(k);
        }
        let sending = n > 0 && next_due < schedule.measure_to;
        if !sending && (owed_total == 0 || now >= drain_until) {
            break;
        }
        let timeout = if sending {
            next_due.saturating_duration_since(now)
        } else {
            drain_until.saturating_duration_since(now)
        };
        events.clear();
        if let Err(e) = poller.wait(&mut events, Some(timeout)) {
            if e.kind() != ErrorKind::Interrupted {
                result.errors.push(format!("poller wait: {e}"));
                break;
            }
        }
        for event in events.iter() {
            let key = event.key;
            let c = &mut conns[key];
            if c.dead {
                continue;
            }
            if event.writable {
                if let Err(e) = flush(&poller, key, c) {
                    result
                        .errors
                        .push(format!("connection {}: write: {e}", c.id));
                    owed_total -= kill(c, &mut result);
                    continue;
                }
            }
            if !event.readable {
                continue;
            }
            let received = Instant::now();
            match (&c.stream).read(&mut buf) {
                Ok(0) => {
                    result
                        .errors
                        .push(format!("connection {}: closed by the server", c.id));
                    owed_total -= kill(c, &mut result);
                    continue;
                }
                Ok(got) => c.input.extend_from_slice(&buf[..got]),
                Err(e)
                    if e.kind() == ErrorKind::WouldBlock || e.kind() == ErrorKind::Interrupted =>
                {
                    continue
                }
                Err(e) => {
                    result
                        .errors
                        .push(format!("connection {}: read: {e}", c.id));
                    owed_total -= kill(c, &mut result);
                    continue;
                }
            }
            let in_window = received >= schedule.measure_from && received < schedule.measure_to;
            // Every whole frame in the input answers the oldest owed request.
            let mut at = 0;
            let mut failure = None;
            while c.input.len() - at >= HEADER_LEN {
                let h = &c.input[at..];
                let len = u32::from_be_bytes([h[0], h[1], h[2], h[3]]) as usize;
                if len == 0 || len > 1 << 20 {
                    failure = Some("a reply with a bad length".to_string());
                    break;
                }
                if h.len() < 4 + len {
                    break;
                }
                let kind = h[4];
                let reply = &h[HEADER_LEN..4 + len];
                at += 4 + len;
                if kind == GOAWAY {
                    failure = Some(goaway_text(reply));
                    break;
                }
                let Some(owed) = c.owed.pop_front() else {
                    failure = Some("a reply to no request".into());
                    break;
                };
                owed_total -= 1;
                payload(c.id, owed.seq, schedule.len, &mut expected);
                if kind != reply_kind(schedule.kind) || reply != expected.as_slice() {
                    failure = Some(format!("request {}: wrong reply (kind {kind})", owed.seq));
                    if owed.measured {
                        result.missed += 1;
                    }
                    break;
                }
                if in_window {
                    result.replies_in_window += 1;
                }
                if owed.measured {
                    result.answered += 1;
                    if let Some(h) = result.latency.as_mut() {
                        h.saturating_record(micros(received.saturating_duration_since(owed.due)));
                    }
                    if let Some(h) = result.from_send.as_mut() {
                        h.saturating_record(micros(received.saturating_duration_since(owed.sent)));
                    }
                }
            }
            c.input.drain(..at);
            if let Some(why) = failure {
                result.errors.push(format!("connection {}: {why}", c.id));
                owed_total -= kill(c, &mut result);
            }
        }
    }
    // Whatever is still owed was never answered.
    for c in &mut conns {
        let _ = poller.delete(&c.stream);
        result.missed += c.owed.iter().filter(|o| o.measured).count() as u64;
    }
    result
}

/// Marks a connection dead after an error; its owed requests count as
/// missed. Returns how many requests it owed.
fn kill(c: &mut Driven, result: &mut DriverResult) -> usize {
    c.dead = true;
    let owed = c.owed.len();
    result.missed += c.owed.iter().filter(|o| o.measured).count() as u64;
    c.owed.clear();
    owed
}

/// Writes what the connection has pending; watches for writability while
/// some of it is left.
fn flush(poller: &Poller, key: usize, c: &mut Driven) -> io::Result<()> {
    let mut written = 0;
    while written < c.output.len() {
        match (&c.stream).write(&c.output[written..]) {
            Ok(0) => return Err(io::Error::new(ErrorKind::WriteZero, "wrote nothing")),
            Ok(n) => written += n,
            Err(e) if e.kind() == ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    c.output.drain(..written);
    let want_writes = !c.output.is_empty();
    if want_writes != c.watching_writes {
        let interest = if want_writes {
            Event::all(key)
        } else {
            Event::readable(key)
        };
        poller.modify_with_mode(&c.stream, interest, PollMode::Level)?;
        c.watching_writes = want_writes;
    }
    Ok(())
}

/// Sleeps 1 ms at a time through the window, at the measuring clients'
/// priority, and records how late each sleep ended: a stall here (the VM
/// descheduled, a noisy neighbour) stalls the measuring client too, whatever
/// the server does.
pub(crate) fn stall_probe(nice: i32, from: Instant, to: Instant) -> Histogram<u64> {
    let mut late = histogram();
    renice_this_thread(nice);
    std::thread::sleep(from.saturating_duration_since(Instant::now()));
    let tick = Duration::from_millis(1);
    while Instant::now() < to {
        let before = Instant::now();
        std::thread::sleep(tick);
        late.saturating_record(micros(before.elapsed().saturating_sub(tick)));
    }
    late
}

/// Sets the calling thread's nice value (a negative one needs
/// CAP_SYS_NICE); returns whether it worked.
pub(crate) fn renice_this_thread(nice: i32) -> bool {
    if nice == 0 {
        return true;
    }
    // SAFETY: gettid and setpriority have no memory-safety preconditions.
    unsafe {
        let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
        libc::setpriority(libc::PRIO_PROCESS, tid, nice) == 0
    }
}
