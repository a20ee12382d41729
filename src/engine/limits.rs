//! The two limits on new connections: `--max-connections` and `--queue`.
//!
//! Only the acceptor takes room (so checking and taking need no lock); room
//! is given back by whoever lets go of it, anywhere in the server, through
//! two tokens that give it back when dropped:
//!
//! - an [`OpenSlot`] lives as long as its connection's last handle: it
//!   covers the socket until it is really closed, so the descriptors in use
//!   stay within `--max-connections` (plus the closer's few lingering
//!   rejections);
//! - a [`QueuePlace`] is held by a new connection from its accept until a
//!   worker first takes it, or until it is turned away from the line. A
//!   connection that already had a worker never holds one: open
//!   connections with work are never turned away for `--queue`.
//!
//! Under `--overload block` the acceptor waits on [`Limits::room`], which
//! either token signals when it gives room back.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use crossbeam_channel::{Receiver, Sender};

/// The limits and what is taken of them.
#[derive(Debug)]
pub(crate) struct Limits {
    max_connections: usize,
    queue: usize,
    open: AtomicUsize,
    waiting: AtomicUsize,
    room_tx: Sender<()>,
    room_rx: Receiver<()>,
}

/// A connection counted against `--max-connections`; gives its place back
/// when dropped.
#[derive(Debug)]
pub(crate) struct OpenSlot(Arc<Limits>);

/// A new connection counted against `--queue` until a worker first takes
/// it; gives its place back when dropped.
#[derive(Debug)]
pub(crate) struct QueuePlace(Arc<Limits>);

impl Limits {
    pub(crate) fn new(max_connections: usize, queue: usize) -> Arc<Self> {
        let (room_tx, room_rx) = crossbeam_channel::bounded(1);
        Arc::new(Limits {
            max_connections,
            queue,
            open: AtomicUsize::new(0),
            waiting: AtomicUsize::new(0),
            room_tx,
            room_rx,
        })
    }

    /// Connections open now (including those still lingering after a close).
    pub(crate) fn open(&self) -> usize {
        self.open.load(Ordering::SeqCst)
    }

    /// Whether another connection may open.
    pub(crate) fn has_open_room(&self) -> bool {
        self.open() < self.max_connections
    }

    /// Counts a new connection against `--max-connections`, if there is room.
    pub(crate) fn try_open(self: &Arc<Self>) -> Option<OpenSlot> {
        if !self.has_open_room() {
            return None;
        }
        self.open.fetch_add(1, Ordering::SeqCst);
        Some(OpenSlot(Arc::clone(self)))
    }

    /// Whether another new connection may wait for a worker. With a queue
    /// of 0, there is room only for as many new connections as there are
    /// `available` workers (idle in line), asked only then, and told how
    /// many new connections wait already.
    pub(crate) fn has_queue_room(&self, available: impl FnOnce(usize) -> usize) -> bool {
        let waiting = self.waiting.load(Ordering::SeqCst);
        let room = if self.queue == 0 {
            available(waiting)
        } else {
            self.queue
        };
        waiting < room
    }

    /// Counts a new connection against `--queue`, if there is room.
    pub(crate) fn try_queue(
        self: &Arc<Self>,
        available: impl FnOnce(usize) -> usize,
    ) -> Option<QueuePlace> {
        if !self.has_queue_room(available) {
            return None;
        }
        self.waiting.fetch_add(1, Ordering::SeqCst);
        Some(QueuePlace(Arc::clone(self)))
    }

    /// Receives a message whenever room is given back (at most one pending).
    pub(crate) fn room(&self) -> &Receiver<()> {
        &self.room_rx
    }

    fn given_back(&self) {
        let _ = self.room_tx.try_send(());
    }
}

impl Drop for OpenSlot {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::SeqCst);
        self.0.given_back();
    }
}

impl Drop for QueuePlace {
    fn drop(&mut self) {
        self.0.waiting.fetch_sub(1, Ordering::SeqCst);
        self.0.given_back();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_and_places_are_given_back_when_dropped() {
        let limits = Limits::new(2, 1);
        let a = limits.try_open().expect("room for a");
        let b = limits.try_open().expect("room for b");
        assert!(limits.try_open().is_none(), "max-connections is 2");
        let place = limits.try_queue(|_| 0).expect("one place in the queue");
        assert!(limits.try_queue(|_| 8).is_none(), "queue is 1");
        drop(place);
        assert!(limits.room().try_recv().is_ok(), "room was signalled");
        assert!(limits.try_queue(|_| 0).is_some());
        drop((a, b));
        assert_eq!(limits.open(), 0);
    }

    #[test]
    fn queue_zero_has_room_only_for_available_workers() {
        let limits = Limits::new(10, 0);
        assert!(limits.try_queue(|_| 0).is_none());
        let first = limits.try_queue(|_| 1).expect("one available worker");
        assert!(
            limits.try_queue(|_| 1).is_none(),
            "that worker is spoken for"
        );
        drop(first);
        assert!(limits.try_queue(|_| 1).is_some());
    }
}
