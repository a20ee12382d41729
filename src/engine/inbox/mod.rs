//! A worker's read buffer, and the [`Carry`] a connection takes with it when
//! it leaves the worker.
//!
//! Each worker reads into its own buffer, reused from one connection to the
//! next, so a frame costs no allocation; the buffer grows only to the size
//! the decoder asks for (never past one `max_frame` frame), and shrinks back
//! when the connection leaves if it grew past [`KEEP_BUF`]. Frames are
//! decoded in place.
//!
//! A connection may leave its worker with bytes not yet answered: part of a
//! frame when it goes to rest, or whole frames when the batch budget sends it
//! back in line. Those bytes travel with the connection as a [`Carry`]: the
//! bytes themselves (an exact-size allocation, so a connection with nothing
//! buffered holds no buffer at all) and, for line framing, how far they have
//! already been scanned for a newline. The next worker puts them back at the
//! front of its own buffer, so a frame split across any number of rests is
//! decoded exactly as if it had arrived in one read.
//!
//! The inbox also keeps the `--max-buffered` count for the connection it
//! holds (see `budget`): the unfinished bytes of a connection that has
//! nothing to answer count, and a carry counts all of its bytes until a
//! worker takes it back.

use std::sync::Arc;

use crate::engine::budget::Budget;
use crate::engine::socket;
use crate::engine::socket::Stream;
use crate::frame::{DecodeError, Decoded, Frame, Framing, HEADER_LEN};

/// Buffer size a worker starts with, and returns to after a frame larger
/// than [`KEEP_BUF`].
pub(crate) const READ_BUF: usize = 16 * 1024;

/// The largest buffer a worker keeps from one connection to the next: a
/// worker now takes a different connection for almost every request, and
/// growing and shrinking its buffer each time cost a `mremap` per request
/// with 64 KiB frames.
pub(crate) const KEEP_BUF: usize = 256 * 1024;

/// The most one read takes from a socket: what one read may add to the
/// `--max-buffered` budget.
pub(crate) const MAX_READ: usize = 64 * 1024;

/// What a look at the socket found for the frames after the unconsumed
/// bytes (see [`Inbox::complete_prefix`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Prefix {
    /// This many of the bytes looked at end complete frames.
    Complete(usize),
    /// None does: the frame at the front needs `need` bytes in all, counted
    /// from the unconsumed ones (for a line, a lower bound: one more than
    /// there are).
    Partial { need: usize },
}

/// Whether a connection that no worker holds has a complete request
/// waiting, in what it carries and (given the socket of a plain
/// connection) what its socket holds: a look, nothing is taken. The reaper asks it of a resting connection past its deadline:
/// one with a request waiting was kept waiting by the server (GOAWAY 3),
/// one without was silent (GOAWAY 2).
pub(crate) fn holds_complete_request(
    framing: Framing,
    max_frame: u32,
    carry: Option<&Carry>,
    stream: Option<&Stream>,
) -> bool {
    let carried: &[u8] = carry.map_or(&[], |c| &c.bytes);
    let mut bytes = carried.to_vec();
    if let Some(stream) = stream {
        let queued = socket::queued(stream)
            .unwrap_or(0)
            .min(max_frame as usize + HEADER_LEN);
        bytes.resize(carried.len() + queued, 0);
        let n = socket::peek_now(stream, &mut bytes[carried.len()..]).unwrap_or(0);
        bytes.truncate(carried.len() + n);
    }
    matches!(
        framing.decode(&bytes, 0, max_frame),
        Ok(Decoded::Frame { .. })
    )
}

/// Bytes a connection carries while no worker holds it. Its bytes stay
/// counted against the budget until a worker takes them back (or the
/// connection closes and the carry is dropped).
pub(crate) struct Carry {
    bytes: Box<[u8]>,
    scanned: usize,
    budget: Arc<Budget>,
}

impl Carry {
    /// Bytes carried.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.bytes.len()
    }
}

impl Drop for Carry {
    fn drop(&mut self) {
        self.budget.adjust(self.bytes.len(), 0);
    }
}

impl std::fmt::Debug for Carry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Carry")
            .field("len", &self.bytes.len())
            .field("scanned", &self.scanned)
            .finish()
    }
}

/// One worker's read buffer and decoding position.
pub(crate) struct Inbox {
    framing: Framing,
    max_frame: u32,
    budget: Arc<Budget>,
    buf: Vec<u8>,
    /// Unconsumed bytes are `buf[start..end]`.
    start: usize,
    end: usize,
    /// Bytes after `start` known to hold no newline (line framing).
    scanned: usize,
    /// Total bytes the frame at `start` needs once complete.
    need: usize,
    /// Bytes this inbox counts against the budget now.
    counted: usize,
}

impl Inbox {
    pub(crate) fn new(framing: Framing, max_frame: u32, budget: Arc<Budget>) -> Self {
        Inbox {
            framing,
            max_frame,
            budget,
            buf: vec![0; READ_BUF],
            start: 0,
            end: 0,
            scanned: 0,
            need: 0,
            counted: 0,
        }
    }

    /// The complete frame at the front, consumed; `None` when only part of
    /// a frame (or nothing) is buffered.
    pub(crate) fn next_frame(&mut self) -> Result<Option<Frame<'_>>, DecodeError> {
        let pending = &self.buf[self.start..self.end];
        match self.framing.decode(pending, self.scanned, self.max_frame)? {
            Decoded::Partial { need } => {
                self.scanned = pending.len();
                self.need = need;
                Ok(None)
            }
            Decoded::Frame { frame, used } => {
                self.start += used;
                self.scanned = 0;
                self.need = 0;
                Ok(Some(frame))
            }
        }
    }

    /// Bytes buffered and not yet consumed.
    pub(crate) fn pending(&self) -> usize {
        self.end - self.start
    }

    /// How many more bytes the unfinished length frame at the front needs
    /// to be complete, when that is known: its header has arrived, and the
    /// last [`Inbox::next_frame`] found it unfinished. (A line's length is
    /// not known until its newline.)
    pub(crate) fn still_needs(&self) -> Option<usize> {
        let pending = self.pending();
        (self.framing == Framing::Length && pending >= 4 && self.need > pending)
            .then(|| self.need - pending)
    }

    /// Counts the unconsumed bytes against the budget: call when nothing
    /// complete is left to answer, so they are an unfinished frame.
    pub(crate) fn count_unfinished(&mut self) {
        let now = self.pending();
        if now != self.counted {
            self.budget.adjust(self.counted, now);
            self.counted = now;
        }
    }

    /// Room for the next read: at most [`MAX_READ`] bytes, after moving the
    /// unconsumed bytes to the front and growing the buffer so the frame
    /// being assembled fits (never beyond one `max_frame` frame).
    pub(crate) fn spare(&mut self) -> &mut [u8] {
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
        let need = self.need.max(1);
        if self.start > 0 && (self.end == self.buf.len() || self.start + need > self.buf.len()) {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        if need > self.buf.len() {
            let limit = self.max_frame as usize + HEADER_LEN;
            let size = need.max(self.buf.len() * 2).min(limit).max(need);
            self.buf.resize(size, 0);
        }
        let end = self.buf.len().min(self.end + MAX_READ);
        &mut self.buf[self.end..end]
    }

    /// Room to look at what the socket holds (a peek) for the frame at the
    /// front: enough for `total` bytes counted from the unconsumed ones,
    /// never beyond one `max_frame` frame. Unlike [`Inbox::spare`] it is not
    /// limited to one read's worth: while the budget is spent only complete
    /// frames are taken, and a whole frame of any size is answered at once.
    pub(crate) fn peek_room(&mut self, total: usize) -> &mut [u8] {
        let limit = self.max_frame as usize + HEADER_LEN;
        let total = total.min(limit).max(self.pending());
        if self.start > 0 && self.start + total > self.buf.len() {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        if self.start + total > self.buf.len() {
            self.buf.resize(self.start + total, 0);
        }
        &mut self.buf[self.end..self.start + total]
    }

    /// Of `n` bytes just placed after the unconsumed ones without being
    /// consumed (a peek into [`Inbox::peek_room`]), how many end complete
    /// frames: read that many and no unfinished frame grows. A stream that
    /// can never decode counts whole, so its error is found by reading.
    pub(crate) fn complete_prefix(&self, n: usize) -> Prefix {
        let mut at = self.start;
        let mut scanned = self.scanned;
        let end = self.end + n;
        loop {
            match self
                .framing
                .decode(&self.buf[at..end], scanned, self.max_frame)
            {
                Ok(Decoded::Frame { used, .. }) => {
                    at += used;
                    scanned = 0;
                }
                Ok(Decoded::Partial { .. }) if at > self.end => {
                    return Prefix::Complete(at - self.end);
                }
                Ok(Decoded::Partial { need }) => {
                    return Prefix::Partial {
                        need: need + (at - self.start),
                    }
                }
                Err(_) => return Prefix::Complete(n),
            }
        }
    }

    /// Records that a read put `n` bytes into [`Inbox::spare`].
    pub(crate) fn filled(&mut self, n: usize) {
        self.end += n;
    }

    /// Takes the unconsumed bytes away for a connection leaving this worker;
    /// they stay counted against the budget, now by the carry.
    pub(crate) fn stash(&mut self) -> Option<Carry> {
        let pending = self.pending();
        self.budget.adjust(self.counted, pending);
        self.counted = 0;
        let carry = (pending > 0).then(|| Carry {
            bytes: self.buf[self.start..self.end].into(),
            scanned: self.scanned,
            budget: Arc::clone(&self.budget),
        });
        self.reset();
        carry
    }

    /// Puts a connection's carried bytes back at the front of an empty
    /// inbox; this inbox now counts them.
    pub(crate) fn restore(&mut self, mut carry: Carry) {
        debug_assert_eq!(self.pending(), 0, "restore into a busy inbox");
        let bytes = std::mem::take(&mut carry.bytes);
        if bytes.len() > self.buf.len() {
            self.buf.resize(bytes.len(), 0);
        }
        self.buf[..bytes.len()].copy_from_slice(&bytes);
        self.start = 0;
        self.end = bytes.len();
        self.scanned = carry.scanned;
        self.need = 0;
        // The carry, now empty, releases nothing when dropped.
        self.counted += bytes.len();
    }

    /// Forgets the buffered bytes of a connection that has ended.
    pub(crate) fn clear(&mut self) {
        self.budget.adjust(self.counted, 0);
        self.counted = 0;
        self.reset();
    }

    fn reset(&mut self) {
        self.start = 0;
        self.end = 0;
        self.scanned = 0;
        self.need = 0;
        if self.buf.len() > KEEP_BUF {
            self.buf.truncate(READ_BUF);
            self.buf.shrink_to_fit();
        }
    }
}

#[cfg(test)]
mod tests;
