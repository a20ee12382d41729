//! The writing half of a [`Client`](super::Client): encoding, the queue
//! of replies owed, and the background heartbeat.
//!
//! Everything that writes (the caller, a `RequestSender`, the heartbeat
//! thread, the resend after a reconnect) goes through the one [`Writer`]
//! behind one lock, so frames reach the wire in the same order as their
//! replies are recorded as owed; that order is what lets the reading half
//! match replies by position, and what lets a reconnect resend exactly the
//! unanswered requests. Kept apart so this locking rule lives in one place.

use std::collections::VecDeque;
use std::io::{self, ErrorKind};

use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError};
use parking_lot::Mutex;

use super::transport::WriteHalf;
use super::ClientError;
use crate::frame::{self, Framing};

/// What a sent frame is waiting for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Pending {
    Data,
    Ping,
    /// A PING sent by the background heartbeat: its PONG is swallowed, and
    /// it is not resent after a reconnect.
    Heartbeat,
}

impl Pending {
    /// The kind of the request frame.
    pub(super) fn kind(self) -> u8 {
        match self {
            Pending::Data => frame::DATA,
            Pending::Ping | Pending::Heartbeat => frame::PING,
        }
    }
}

/// One reply owed, and (with retries on) what is needed to send its
/// request again on a new connection.
#[derive(Debug)]
pub(super) struct Owing {
    pub(super) pending: Pending,
    /// The request's payload; kept only when retries are on.
    pub(super) payload: Option<Vec<u8>>,
}

/// The replies owed, in request order. Its own lock, held only for a push
/// or a pop (or, in a reconnect, a walk over it), so a reader never waits
/// for a writer blocked in `write`.
pub(super) type Owed = Arc<Mutex<VecDeque<Owing>>>;

/// Whether frames can be written, as far as the writers know.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Link {
    /// Connected: frames are written as they are flushed.
    Up,
    /// The connection failed and retries are on: requests are recorded as
    /// owed (with their payloads) but not written; the reconnect in
    /// `recv` writes them all, in order, on the new connection.
    Down,
    /// Retries have run out (or the connection ended for a reason that is
    /// not retried): every flush fails.
    Gone,
}

/// The writing half. Writers (the caller, a `RequestSender`, the heartbeat
/// thread) take this lock to encode, record what they owe and write, so the
/// order of frames on the wire and in `owed` is the same.
#[derive(Debug)]
pub(super) struct Writer {
    pub(super) stream: WriteHalf,
    pub(super) buf: Vec<u8>,
    pub(super) owed: Owed,
    pub(super) last_write: Instant,
    /// The sending side is shut down: nothing more is sent, not even a PING.
    /// After a reconnect the new connection is shut down the same way once
    /// the unanswered requests are resent.
    pub(super) write_shut: bool,
    /// Retries are on: keep every request's payload, and treat a failed
    /// write as a connection to be replaced rather than an error.
    pub(super) retrying: bool,
    pub(super) link: Link,
}

impl Writer {
    pub(super) fn queue(&mut self, framing: Framing, kind: u8, payload: &[u8], pending: Pending) {
        if self.link == Link::Up {
            framing.encode(kind, payload, &mut self.buf);
        }
        let payload = self.retrying.then(|| payload.to_vec());
        self.owed.lock().push_back(Owing { pending, payload });
    }

    /// Flushes, then shuts down the sending side.
    pub(super) fn shutdown(&mut self) -> io::Result<()> {
        self.flush()?;
        self.write_shut = true;
        self.shut_stream()
    }

    /// Shuts down the current connection's sending side; while the link is
    /// down this waits for the reconnect, which does it after the resend.
    pub(super) fn shut_stream(&mut self) -> io::Result<()> {
        if self.link != Link::Up {
            return Ok(());
        }
        match self.stream.shutdown_write() {
            Err(_) if self.retrying => {
                self.link = Link::Down;
                Ok(())
            }
            result => result,
        }
    }

    pub(super) fn flush(&mut self) -> io::Result<()> {
        match self.link {
            Link::Up => {
                if !self.buf.is_empty() {
                    let result = self.stream.write_all(&self.buf);
                    self.buf.clear();
                    self.last_write = Instant::now();
                    if result.is_err() && self.retrying {
                        // Everything in the buffer is still owed, with its
                        // payload: what the server did not answer is resent
                        // after the reconnect, if its GOAWAY allows it.
                        self.link = Link::Down;
                        return Ok(());
                    }
                    result?;
                }
                Ok(())
            }
            Link::Down => {
                self.buf.clear();
                Ok(())
            }
            Link::Gone => {
                self.buf.clear();
                Err(io::Error::new(
                    ErrorKind::NotConnected,
                    "the connection was lost and not replaced (recv reported why)",
                ))
            }
        }
    }
}

/// A line-framing request is one line: it cannot hold a newline.
pub(super) fn check_request(framing: Framing, payload: &[u8]) -> Result<(), ClientError> {
    if framing == Framing::Line && payload.contains(&b'\n') {
        return Err(ClientError::Protocol(
            "a line-framing request cannot contain a newline".into(),
        ));
    }
    check_length(payload.len())
}

/// A length-framed frame counts its kind byte and payload in 32 bits.
fn check_length(payload: usize) -> Result<(), ClientError> {
    if u32::try_from(payload).map_or(true, |n| n == u32::MAX) {
        return Err(ClientError::Protocol(format!(
            "a request of {payload} bytes does not fit in a frame (at most {} bytes)",
            u32::MAX - 1
        )));
    }
    Ok(())
}

pub(super) fn heartbeat(
    writer: Arc<Mutex<Writer>>,
    framing: Framing,
    every: Duration,
    stop: Receiver<()>,
) {
    let mut wait = every;
    while let Err(RecvTimeoutError::Timeout) = stop.recv_timeout(wait) {
        let mut w = writer.lock();
        if w.write_shut || w.link == Link::Gone {
            return;
        }
        if w.link == Link::Down {
            // A reconnect is under way; the new connection is fresh.
            wait = every;
            continue;
        }
        let quiet = w.last_write.elapsed();
        if quiet >= every {
            w.queue(framing, frame::PING, b"", Pending::Heartbeat);
            if w.flush().is_err() {
                // Never sent: no PONG is owed.
                w.owed.lock().pop_back();
                return;
            }
            wait = every;
        } else {
            wait = every - quiet;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_payload_too_long_for_a_frame_is_an_error_not_a_panic() {
        assert!(check_length(u32::MAX as usize - 1).is_ok());
        assert!(check_length(u32::MAX as usize).is_err());
        assert!(check_length(usize::MAX).is_err());
    }
}
