//! A connection over TLS: the same frames and checks as a plain one, with a
//! rustls session between them and the socket, all non-blocking.
//!
//! Output: the connection's pending plaintext goes into the session (which
//! keeps it while the handshake is under way, and sends it right after, as
//! a real client does), then the session's records go to the socket for as
//! long as it takes them; what is left waits for writability. Input: one
//! read of the socket into the session, the records processed, then every
//! byte of plaintext the session holds taken out, so that none is left
//! inside where readiness cannot see it; the frames in it are handled as a
//! plain connection's are.
//!
//! The handshake is done when the session says so after processing the
//! server's flight: the connection then stops counting as connecting, and
//! in the window the handshake counts, with its time from the connect.

use std::io::{self, ErrorKind, Read, Write};
use std::time::Instant;

use super::state::{micros, Driver, Lost, Phase, State};

impl Driver<'_> {
    /// Writes what connection `i` has pending through its session.
    pub(super) fn flush_tls(&mut self, i: usize) {
        let c = &mut self.conns[i];
        if c.state != State::Open {
            return;
        }
        let (Some(socket), Some(tls)) = (c.socket.as_ref(), c.tls.as_mut()) else {
            return;
        };
        let mut failure = None;
        if !c.output.is_empty() {
            // The session has no buffer limit: it takes it all.
            match tls.writer().write_all(&c.output) {
                Ok(()) => c.output.clear(),
                Err(e) => failure = Some(e),
            }
        }
        while failure.is_none() && tls.wants_write() {
            match tls.write_tls(&mut &*socket) {
                Ok(0) => failure = Some(io::Error::new(ErrorKind::WriteZero, "wrote nothing")),
                Ok(_) => {}
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => failure = Some(e),
            }
        }
        let want_writes = tls.wants_write();
        self.flushed(i, want_writes, failure);
    }

    /// Reads connection `i` through its session: its handshake, and replies.
    pub(super) fn read_tls(&mut self, i: usize) {
        let c = &mut self.conns[i];
        let id = c.id;
        let (Some(socket), Some(tls)) = (c.socket.as_ref(), c.tls.as_mut()) else {
            return;
        };
        let mut ended = match tls.read_tls(&mut &*socket) {
            Ok(0) => true,
            Ok(_) => false,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::Interrupted) => return,
            Err(e) => {
                self.error(|| format!("connection {id}: read: {e}"));
                self.close(i, Lost::Failed);
                return;
            }
        };
        if let Err(e) = tls.process_new_packets() {
            // The alert rustls queued, if the socket takes it.
            let _ = tls.write_tls(&mut &*socket);
            let e = io::Error::other(format!("TLS: {e}"));
            if c.handshaking {
                self.connect_failed(i, e);
            } else {
                self.error(|| format!("connection {id}: {e}"));
                self.close(i, Lost::Failed);
            }
            return;
        }
        let handshake_done = c.handshaking && !tls.is_handshaking();
        let mut input = std::mem::take(&mut c.input);
        loop {
            match tls.reader().read(&mut self.buf) {
                // close_notify.
                Ok(0) => {
                    ended = true;
                    break;
                }
                Ok(n) => input.extend_from_slice(&self.buf[..n]),
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                // The socket's end without close_notify.
                Err(_) => {
                    ended = true;
                    break;
                }
            }
        }
        let now = Instant::now();
        if handshake_done {
            self.handshake_done(i, now);
        }
        let Some(used) = self.replies(i, &input, now) else {
            // Closed, and its input is gone with it.
            return;
        };
        input.drain(..used);
        self.conns[i].input = input;
        if ended {
            let lost = if self.phase >= Phase::Drain {
                Lost::Done
            } else {
                Lost::Failed
            };
            self.error(|| format!("connection {id}: closed by the server"));
            self.close(i, lost);
            return;
        }
        self.next_batch(i, now);
        // The handshake's next flight, if it has one, goes too.
        self.flush(i);
    }

    /// Connection `i`'s handshake is done: it is open, and no longer holds
    /// a connecting slot.
    fn handshake_done(&mut self, i: usize, now: Instant) {
        let c = &mut self.conns[i];
        c.handshaking = false;
        self.connecting -= 1;
        self.ever_connected = true;
        if !c.tried {
            c.tried = true;
            self.untried -= 1;
        }
        if self.phase == Phase::Window {
            self.handshakes += 1;
            self.handshake_latency
                .saturating_record(micros(now.saturating_duration_since(c.connect_started)));
        }
    }
}
