//! The writing half of a [`Client`](super::Client): encoding, the queue
//! of replies owed, and the background heartbeat.
//!
//! Everything that writes (the caller, a `RequestSender`, the heartbeat
//! thread) goes through the one [`Writer`] behind one lock, so frames reach
//! the wire in the same order as their replies are recorded as owed; that
//! order is what lets the reading half match replies by position. Kept
//! apart so this locking rule lives in one place.

use std::collections::VecDeque;
use std::io::{self, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError};
use parking_lot::Mutex;

use super::ClientError;
use crate::frame::{self, Framing};

/// What a sent frame is waiting for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Pending {
    Data,
    Ping,
    /// A PING sent by the background heartbeat: its PONG is swallowed.
    Heartbeat,
}

/// The replies owed, in request order. Its own lock, held only for a push
/// or a pop, so a reader never waits for a writer blocked in `write`.
pub(super) type Owed = Arc<Mutex<VecDeque<Pending>>>;

/// The writing half. Writers (the caller, a `RequestSender`, the heartbeat
/// thread) take this lock to encode, record what they owe and write, so the
/// order of frames on the wire and in `owed` is the same.
#[derive(Debug)]
pub(super) struct Writer {
    pub(super) stream: TcpStream,
    pub(super) buf: Vec<u8>,
    pub(super) owed: Owed,
    pub(super) last_write: Instant,
    /// The sending side is shut down: nothing more is sent, not even a PING.
    pub(super) write_shut: bool,
}

impl Writer {
    pub(super) fn queue(&mut self, framing: Framing, kind: u8, payload: &[u8], pending: Pending) {
        framing.encode(kind, payload, &mut self.buf);
        self.owed.lock().push_back(pending);
    }

    /// Flushes, then shuts down the sending side.
    pub(super) fn shutdown(&mut self) -> io::Result<()> {
        self.flush()?;
        self.write_shut = true;
        self.stream.shutdown(std::net::Shutdown::Write)
    }

    pub(super) fn flush(&mut self) -> io::Result<()> {
        if !self.buf.is_empty() {
            let result = self.stream.write_all(&self.buf);
            self.buf.clear();
            self.last_write = Instant::now();
            result?;
        }
        Ok(())
    }
}

/// A line-framing request is one line: it cannot hold a newline.
pub(super) fn check_request(framing: Framing, payload: &[u8]) -> Result<(), ClientError> {
    if framing == Framing::Line && payload.contains(&b'\n') {
        return Err(ClientError::Protocol(
            "a line-framing request cannot contain a newline".into(),
        ));
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
        if w.write_shut {
            return;
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
