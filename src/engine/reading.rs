//! How a worker reads a connection: plainly, with the arrival of the bytes
//! stamped (for the queue-wait histogram), through TLS, or, while the
//! `--max-buffered` budget is spent, only bytes that complete frames.

use crate::engine::conn::{Conn, Travel};
use crate::engine::inbox::{Prefix, READ_BUF};
use crate::engine::socket::{peek_now, recv_now, recv_stamped};
use crate::engine::tls::{self, TlsRead};
use crate::engine::worker::{classify, Read, Worker};
use crate::service::ConnInfo;

impl Worker {
    /// Reads what the connection has sent, without waiting.
    pub(crate) fn read(&mut self, conn: &Conn, travel: &mut Travel) -> Read {
        if let Some(session) = travel.tls.as_deref_mut() {
            let limit = self.shared.config.write_timeout;
            let read = match tls::read(
                session,
                &conn.stream,
                self.inbox.spare(),
                limit,
                &mut self.sealed,
            ) {
                TlsRead::Data { n, drained } => Read::Data {
                    n,
                    filled: !drained,
                },
                TlsRead::Nothing => Read::Nothing,
                TlsRead::Eof => Read::Eof,
                TlsRead::Failed(e) => Read::Refused(e),
                TlsRead::Io(e) => classify(e),
            };
            if conn.handshaking() && !session.is_handshaking() {
                self.established(conn, travel);
            }
            return read;
        }
        if self.shared.budget.is_spent() {
            return self.read_complete_frames(conn);
        }
        let spare = self.inbox.spare();
        let room = spare.len();
        let result = if std::mem::take(&mut self.time_next_read) {
            recv_stamped(&conn.stream, spare).map(|(n, waited)| {
                if let Some(waited) = waited {
                    self.shared.stats.observe_queue_wait(self.index, waited);
                }
                n
            })
        } else {
            recv_now(&conn.stream, spare)
        };
        match result {
            Ok(0) => Read::Eof,
            Ok(n) => Read::Data {
                n,
                filled: n == room,
            },
            Err(e) => classify(e),
        }
    }

    /// The TLS handshake has just completed: the heartbeat takes over from
    /// the handshake timeout, and the service will see what the handshake
    /// established.
    fn established(&mut self, conn: &Conn, travel: &mut Travel) {
        let Some(session) = travel.tls.as_deref() else {
            return;
        };
        let info = tls::established(session);
        let took = u64::try_from(conn.accepted.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.shared.stats.tls_handshake_done(self.index, took);
        conn.establish(
            self.shared.clock.now_ms(),
            self.shared.config.heartbeat_timeout,
        );
        conn.log_tls(&info);
        travel.info = Some(ConnInfo {
            tls: Some(info),
            ..conn.view()
        });
    }

    /// While the budget is spent, reads only bytes that complete frames: it
    /// looks at what the socket holds without taking it, and takes it only
    /// up to the end of the last complete frame. The rest stays in the
    /// kernel, where TCP flow control holds the client back. The look
    /// widens to the size of the frame at the front, so a whole frame of
    /// any size up to `--max-frame` is answered as promptly as ever.
    fn read_complete_frames(&mut self, conn: &Conn) -> Read {
        let limit = self.shared.config.max_frame as usize + crate::frame::HEADER_LEN;
        let mut want = self.inbox.pending() + READ_BUF;
        loop {
            let window = self.inbox.peek_room(want);
            let room = window.len();
            let peeked = match peek_now(&conn.stream, window) {
                Ok(0) if room > 0 => return Read::Eof,
                Ok(n) => n,
                Err(e) => return classify(e),
            };
            match self.inbox.complete_prefix(peeked) {
                Prefix::Complete(k) => {
                    return match recv_now(&conn.stream, &mut self.inbox.peek_room(want)[..k]) {
                        Ok(0) => Read::Eof,
                        Ok(n) => Read::Data { n, filled: true },
                        Err(e) => classify(e),
                    }
                }
                Prefix::Partial { need } => {
                    let have = self.inbox.pending() + peeked;
                    // The look was too narrow to see the whole frame: widen it.
                    if peeked == room && need > have && want < limit {
                        want = need.max(2 * want).min(limit);
                        continue;
                    }
                    if have == 0 {
                        return Read::Nothing;
                    }
                    return Read::Unfinished(need - self.inbox.pending());
                }
            }
        }
    }
}
