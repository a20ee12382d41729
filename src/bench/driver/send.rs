//! Sending: what each request says ([`payload`]: its connection and
//! sequence number, so that a reply to another request does not pass),
//! queuing it on its connection as owed, and writing what is pending,
//! watching for writability while some is left.
//!
//! Which requests are sent, and when, is the closed loop's and the open
//! loop's business (`closed_loop`, `open_loop`); this is how.

use std::io::{self, ErrorKind, Write};
use std::time::Instant;

use rustix::event::epoll::{self, EventData, EventFlags};

use super::state::{Driver, Lost, Owed, State};
use crate::frame::{Framing, DATA, PING};

/// Bytes of a PING payload: connection and sequence number.
pub(super) const PING_PAYLOAD: usize = 16;

impl Driver<'_> {
    /// Queues request `seq` (sent at once if the connection is open).
    pub(super) fn enqueue(&mut self, i: usize, from: Instant, measured: bool) {
        let c = &mut self.conns[i];
        let seq = c.next_seq;
        c.next_seq += 1;
        c.owed.push_back(Owed {
            seq,
            from,
            measured,
        });
        if c.state == State::Open {
            let (kind, len) = if c.idle {
                (PING, PING_PAYLOAD)
            } else {
                (DATA, self.options.payload)
            };
            payload(c.id, seq, len, &mut self.scratch);
            Framing::Length.encode(kind, &self.scratch, &mut c.output);
        }
    }

    /// Writes what connection `i` has pending; watches for writability
    /// while some is left.
    pub(super) fn flush(&mut self, i: usize) {
        if self.conns[i].tls.is_some() {
            return self.flush_tls(i);
        }
        let c = &mut self.conns[i];
        if c.state != State::Open {
            return;
        }
        let Some(socket) = c.socket.as_ref() else {
            return;
        };
        let mut written = 0;
        let mut failure = None;
        while written < c.output.len() {
            match (&*socket).write(&c.output[written..]) {
                Ok(0) => {
                    failure = Some(io::Error::new(ErrorKind::WriteZero, "wrote nothing"));
                    break;
                }
                Ok(n) => written += n,
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => {
                    failure = Some(e);
                    break;
                }
            }
        }
        c.output.drain(..written);
        let want_writes = !c.output.is_empty();
        self.flushed(i, want_writes, failure);
    }

    /// After a flush: watches for writability if `want_writes` (and stops
    /// when not), or closes the connection on a `failure`.
    pub(super) fn flushed(&mut self, i: usize, want_writes: bool, mut failure: Option<io::Error>) {
        let c = &mut self.conns[i];
        let Some(socket) = c.socket.as_ref() else {
            return;
        };
        if failure.is_none() && want_writes != c.watching_writes {
            let flags = if want_writes {
                EventFlags::IN | EventFlags::OUT
            } else {
                EventFlags::IN
            };
            let key = EventData::new_u64((u64::from(c.generation) << 32) | i as u64);
            match epoll::modify(&self.epoll, socket, key, flags) {
                Ok(()) => c.watching_writes = want_writes,
                Err(e) => failure = Some(io::Error::from(e)),
            }
        }
        if let Some(e) = failure {
            let id = c.id;
            self.error(|| format!("connection {id}: write: {e}"));
            self.close(i, Lost::Failed);
        }
    }
}

/// The payload of request `seq` on connection `id`: both numbers, then a
/// pattern of both, cut to `len`, so a reply to another request or from
/// another connection does not pass.
pub(super) fn payload(id: u64, seq: u64, len: usize, out: &mut Vec<u8>) {
    out.clear();
    out.extend_from_slice(&id.to_le_bytes());
    out.extend_from_slice(&seq.to_le_bytes());
    out.extend(
        (16..len).map(|i| (id.wrapping_mul(31) ^ seq.wrapping_mul(7)).wrapping_add(i as u64) as u8),
    );
    out.truncate(len);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_name_their_connection_and_request() {
        let (mut a, mut b) = (Vec::new(), Vec::new());
        payload(1, 2, 64, &mut a);
        payload(1, 3, 64, &mut b);
        assert_eq!(a.len(), 64);
        assert_ne!(a, b);
        payload(2, 2, 64, &mut b);
        assert_ne!(a, b);
        payload(1, 2, 3, &mut b);
        assert_eq!(b, a[..3]);
        payload(1, 2, 0, &mut b);
        assert!(b.is_empty());
    }
}
