//! The line of connections waiting for a worker, and the hand-off rule that
//! keeps the pool work-conserving.
//!
//! Everything that has work for a worker goes through one bounded crossbeam
//! channel: new connections from the acceptor, connections the poller woke
//! because their bytes arrived, and connections sent back by the batch
//! budget. A live connection holds at most one place in it (its state says
//! where it is). Entries are weak: a connection closed while it waits
//! (turned away at its deadline, or by the drain) gives its socket and its
//! `--max-connections` slot back at once, and a worker skips its entry.
//! The acceptor only adds a new connection while fewer than
//! `--max-connections` entries wait, and the channel holds twice that plus
//! an exit message per worker, so it never fills: nobody with work is ever
//! turned away here. Overload control lives at accept (`limits`).
//!
//! **The hand-off rule.** After answering everything it has, a worker may
//! *stay* on its quiet connection (block in `read`, one system call per
//! request, like a thread per connection) as long as nobody else needs a
//! worker; but a connection put in line never waits for a worker that is only
//! staying. "Somebody needs a worker" means: more connections are in line
//! than workers are idle at the channel. Both sides check it:
//!
//! - a worker about to stay announces it first, then checks, and rests its
//!   connection instead if somebody is in line;
//! - whoever puts a connection in line checks after pushing, and if the
//!   idle workers will not cover the line, interrupts one staying worker
//!   (see `wake`), which rests its quiet connection and comes to the line.
//!
//! Both sides use sequentially consistent operations, so at least one of
//! them sees the other: a connection is never left waiting behind a worker
//! that went on staying. A worker taking a connection from the line runs the
//! same check, because the idle count it leaves may have covered a later
//! push.
//!
//! With the metrics endpoint on, the line also times each connection's wait
//! for the queue-wait histogram: [`Line::push`] stamps the connection, and
//! the worker that takes it reads [`Line::waited_ns`]. One clock read at
//! each end of a hand-off that already costs a channel operation and
//! usually a thread wake-up.

use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::time::Instant;

use crossbeam_channel::{Receiver, Sender};
use crossbeam_utils::CachePadded;

use crate::conn::Conn;
use crate::wake;

/// Waiting at the channel for a connection.
const IDLE: u8 = 0;
/// Holding a connection that has work.
const WORKING: u8 = 1;
/// Blocked in `read` on a quiet connection: may be interrupted.
const STAYING: u8 = 2;
/// Someone has interrupted it; it will come to the line.
const INTERRUPTED: u8 = 3;
/// Gone (the server is stopping).
const EXITED: u8 = 4;
/// Closing a quiet connection with GOAWAY 1 during the drain: no work.
const WINDING: u8 = 5;

/// One worker's hand-off state, readable by every thread.
#[derive(Debug)]
struct Slot {
    state: AtomicU8,
    thread: AtomicUsize,
}

/// The line and the workers' states.
#[derive(Debug)]
pub(crate) struct Line {
    tx: Sender<Option<Weak<Conn>>>,
    rx: Receiver<Option<Weak<Conn>>>,
    /// Workers at the channel, or about to be.
    idle: AtomicUsize,
    slots: Arc<[CachePadded<Slot>]>,
    /// Where the next search for a staying worker starts, to spread them.
    next: AtomicUsize,
    /// The zero of the connections' `queued_ns` stamps.
    epoch: Instant,
    /// Whether waits are timed (the metrics endpoint is on).
    timed: bool,
}

/// A read-only view of the workers' hand-off states, for the metrics
/// thread: it needs the busy count, not the line.
#[derive(Debug, Clone)]
pub(crate) struct WorkerStates(Arc<[CachePadded<Slot>]>);

impl WorkerStates {
    /// Workers holding a connection that has work (see [`Line::busy`]).
    pub(crate) fn busy(&self) -> usize {
        busy(&self.0)
    }

    /// The pool size.
    pub(crate) fn len(&self) -> usize {
        self.0.len()
    }
}

fn busy(slots: &[CachePadded<Slot>]) -> usize {
    slots
        .iter()
        .filter(|s| matches!(s.state.load(Ordering::SeqCst), WORKING | INTERRUPTED))
        .count()
}

/// The line is full: cannot happen (see the module docs), but it is not
/// worth a panic if it ever did.
#[derive(Debug)]
pub(crate) struct Full(pub(crate) Arc<Conn>);

/// What a worker found when it announced that it would stay.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Stay {
    /// Nobody else needs a worker: go ahead and block in `read`.
    Yes,
    /// Somebody is in line: rest the connection instead.
    No,
    /// Interrupted already: call `wake::absorb`, then rest the connection.
    Interrupted,
}

impl Line {
    /// A line for `max_connections` connections and `workers` exit
    /// messages (see the module docs for why twice the connections), which
    /// times the waits in it if `timed`.
    pub(crate) fn new(max_connections: usize, workers: usize, timed: bool) -> Self {
        let (tx, rx) = crossbeam_channel::bounded(2 * max_connections + workers);
        Line {
            tx,
            rx,
            idle: AtomicUsize::new(0),
            slots: (0..workers)
                .map(|_| {
                    CachePadded::new(Slot {
                        state: AtomicU8::new(IDLE),
                        thread: AtomicUsize::new(0),
                    })
                })
                .collect(),
            next: AtomicUsize::new(0),
            epoch: Instant::now(),
            timed,
        }
    }

    /// The workers' states, to read from another thread.
    pub(crate) fn worker_states(&self) -> WorkerStates {
        WorkerStates(Arc::clone(&self.slots))
    }

    fn now_ns(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    /// How long `conn` has been in line since its last [`Line::push`], if
    /// waits are timed.
    pub(crate) fn waited_ns(&self, conn: &Conn) -> Option<u64> {
        self.timed.then(|| {
            self.now_ns()
                .saturating_sub(conn.queued_ns.load(Ordering::Relaxed))
        })
    }

    /// Records the thread of worker `me`, so that it can be interrupted.
    pub(crate) fn register_worker(&self, me: usize) {
        self.slots[me]
            .thread
            .store(wake::current_thread() as usize, Ordering::SeqCst);
    }

    /// Puts a connection (already marked QUEUED) in line, and makes sure a
    /// worker will come for it.
    pub(crate) fn push(&self, conn: Arc<Conn>) -> Result<(), Full> {
        if self.timed {
            conn.queued_ns.store(self.now_ns(), Ordering::Relaxed);
        }
        match self.tx.try_send(Some(Arc::downgrade(&conn))) {
            Ok(()) => {
                self.cover();
                Ok(())
            }
            Err(_) => Err(Full(conn)),
        }
    }

    /// Entries in line now, including ones whose connection has closed.
    pub(crate) fn len(&self) -> usize {
        self.rx.len()
    }

    /// Whether more connections wait in line than idle workers will take.
    pub(crate) fn someone_waits(&self) -> bool {
        self.rx.len() > self.idle.load(Ordering::SeqCst)
    }

    /// If the line is longer than the idle workers can cover, interrupts a
    /// staying worker.
    fn cover(&self) {
        if !self.someone_waits() {
            return;
        }
        let n = self.slots.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        for i in 0..n {
            let slot = &self.slots[(start + i) % n];
            if slot.state.load(Ordering::SeqCst) == STAYING
                && slot
                    .state
                    .compare_exchange(STAYING, INTERRUPTED, Ordering::SeqCst, Ordering::SeqCst)
                    .is_ok()
            {
                wake::interrupt(slot.thread.load(Ordering::SeqCst) as libc::pthread_t);
                return;
            }
        }
        // Every worker has work: the connection waits for the next to finish.
    }

    /// Interrupts every worker staying on a quiet connection (the drain:
    /// each then sees the drain flag and closes its connection). A worker
    /// that announces a stay after this checks the flag itself (see
    /// `worker`): the flag is set before this looks, and SeqCst on both
    /// sides makes at least one of the two see the other.
    pub(crate) fn interrupt_staying(&self) {
        for slot in self.slots.iter() {
            if slot
                .state
                .compare_exchange(STAYING, INTERRUPTED, Ordering::SeqCst, Ordering::SeqCst)
                .is_ok()
            {
                wake::interrupt(slot.thread.load(Ordering::SeqCst) as libc::pthread_t);
            }
        }
    }

    /// Worker `me` waits for its next connection; `None` means exit.
    pub(crate) fn take(&self, me: usize) -> Option<Arc<Conn>> {
        let slot = &self.slots[me];
        slot.state.store(IDLE, Ordering::SeqCst);
        self.idle.fetch_add(1, Ordering::SeqCst);
        let next = loop {
            match self.rx.recv() {
                Ok(Some(entry)) => match entry.upgrade() {
                    Some(conn) => break Some(conn),
                    None => continue, // closed while it waited
                },
                Ok(None) | Err(_) => break None,
            }
        };
        self.idle.fetch_sub(1, Ordering::SeqCst);
        // A new connection leaves `--queue` before this worker stops
        // counting as available, so it is never counted twice.
        if let Some(conn) = &next {
            conn.leave_queue();
        }
        let state = if next.is_some() { WORKING } else { EXITED };
        slot.state.store(state, Ordering::SeqCst);
        // This worker no longer counts as idle: a push that relied on it
        // may need another worker.
        self.cover();
        next
    }

    /// Worker `me` announces that it will stay on its quiet connection, and
    /// checks that nobody needs it (see the module docs).
    pub(crate) fn begin_stay(&self, me: usize) -> Stay {
        let slot = &self.slots[me];
        slot.state.store(STAYING, Ordering::SeqCst);
        if !self.someone_waits() {
            return Stay::Yes;
        }
        match slot
            .state
            .compare_exchange(STAYING, WORKING, Ordering::SeqCst, Ordering::SeqCst)
        {
            Ok(_) => Stay::No,
            Err(_) => Stay::Interrupted,
        }
    }

    /// Worker `me` stops staying; returns whether it was interrupted (then
    /// it must call `wake::absorb`).
    pub(crate) fn end_stay(&self, me: usize) -> bool {
        let slot = &self.slots[me];
        let interrupted = slot
            .state
            .compare_exchange(STAYING, WORKING, Ordering::SeqCst, Ordering::SeqCst)
            .is_err();
        if interrupted {
            slot.state.store(WORKING, Ordering::SeqCst);
        }
        interrupted
    }

    /// Workers that could take a new connection now: idle at the channel,
    /// only staying on a quiet connection, or interrupted on their way to
    /// the line (for the connection whose place in `--queue` still counts).
    pub(crate) fn available(&self) -> usize {
        self.slots
            .iter()
            .filter(|s| matches!(s.state.load(Ordering::SeqCst), IDLE | STAYING | INTERRUPTED))
            .count()
    }

    /// Worker `me` is only closing a quiet connection for the drain.
    pub(crate) fn winding(&self, me: usize) {
        self.slots[me].state.store(WINDING, Ordering::SeqCst);
    }

    /// Workers holding a connection that has work (a request in the
    /// service, replies being written, frames to answer).
    pub(crate) fn busy(&self) -> usize {
        busy(&self.slots)
    }

    /// Tells every worker to exit once it has taken everything before it.
    pub(crate) fn close(&self) {
        for _ in 0..self.slots.len() {
            if self.tx.try_send(None).is_err() {
                break;
            }
        }
    }
}
