//! The `--max-buffered` budget: memory for unfinished frames of connections
//! that have nothing to answer.
//!
//! A client may stop in the middle of a frame, and a server with thousands
//! of clients cannot keep a megabyte for each. So the bytes of unfinished
//! frames are counted, wherever they are: in a connection's carry while it
//! rests or waits in line (see `inbox`), or in its worker's buffer while the
//! worker stays on it for the rest of the frame. A connection with complete
//! requests is not counted: its worker's buffer is.
//!
//! When the budget is spent, a connection with an unfinished frame that is
//! put aside is *held*: it is not handed to the poller, so nothing reads it
//! and TCP flow control holds its client back. Its heartbeat deadline keeps
//! running, so a frame that never completes still ends in GOAWAY 2. As soon
//! as room frees, the poller is woken and watches the held connections
//! again. A worker reads a connection once each time it takes it from the
//! line, and only reads further while the budget has room, so the budget is
//! overshot by at most one read (64 KiB) per worker.

use std::sync::atomic::{AtomicUsize, Ordering};

/// The budget, shared by every worker and the poller.
pub(crate) struct Budget {
    max: usize,
    used: AtomicUsize,
    /// Connections held until room frees (the poller keeps the list).
    held: AtomicUsize,
    /// Called when room frees while connections are held: wakes the poller.
    on_room: Box<dyn Fn() + Send + Sync>,
}

impl Budget {
    pub(crate) fn new(max: usize, on_room: Box<dyn Fn() + Send + Sync>) -> Self {
        Budget {
            max,
            used: AtomicUsize::new(0),
            held: AtomicUsize::new(0),
            on_room,
        }
    }

    /// Bytes counted now.
    pub(crate) fn used(&self) -> usize {
        self.used.load(Ordering::SeqCst)
    }

    /// Whether the budget is used up: connections with an unfinished frame
    /// are not read further.
    pub(crate) fn is_spent(&self) -> bool {
        self.used() >= self.max
    }

    /// Changes what one holder counts from `from` bytes to `to` bytes.
    pub(crate) fn adjust(&self, from: usize, to: usize) {
        if to > from {
            self.used.fetch_add(to - from, Ordering::SeqCst);
        } else if to < from {
            self.used.fetch_sub(from - to, Ordering::SeqCst);
            // Pairs with `hold`: either it sees the room, or this sees it.
            if self.held() > 0 && !self.is_spent() {
                (self.on_room)();
            }
        }
    }

    /// Counts one more connection held until room frees; wakes the poller
    /// if there is room already (the room may have freed just before).
    pub(crate) fn hold(&self) {
        self.held.fetch_add(1, Ordering::SeqCst);
        if !self.is_spent() {
            (self.on_room)();
        }
    }

    /// `n` held connections are watched again.
    pub(crate) fn unhold(&self, n: usize) {
        self.held.fetch_sub(n, Ordering::SeqCst);
    }

    /// How many connections are held now.
    pub(crate) fn held(&self) -> usize {
        self.held.load(Ordering::SeqCst)
    }
}

impl std::fmt::Debug for Budget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Budget")
            .field("max", &self.max)
            .field("used", &self.used())
            .field("held", &self.held())
            .finish()
    }
}
