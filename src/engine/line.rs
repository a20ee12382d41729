//! The line of connections waiting for a worker, and the workers' states.
//!
//! The line is the kernel's: the ready list of one epoll instance (see
//! `epoll`) that idle workers wait on. A connection joins it in one of
//! three ways, and the worker that takes it is the one the kernel wakes:
//!
//! - the acceptor **admits** a new connection: it is registered ready at
//!   once and takes its place at the tail;
//! - a worker **puts back** a connection that has had its batch budget while
//!   others wait: armed ready at once, at the tail, behind them;
//! - a connection **resting** there (armed for input) joins when its bytes
//!   arrive or its client closes.
//!
//! So a request on a resting connection costs one thread wake-up, the
//! worker's: there is no poller thread between the socket and the worker.
//! The kernel wakes one waiting worker per event, and a worker that comes
//! back while events wait takes the next one without sleeping.
//!
//! **At most one waiter per CPU.** More workers in `epoll_wait` than there
//! are CPUs cannot run at once anyway, and each extra one costs: the kernel
//! wakes a sleeping waiter for every event, even when a worker coming back
//! from its last request then takes that event first, and the waiter woken
//! for nothing goes back to sleep. With 64 workers on 2 CPUs that was about
//! half a wasted context switch per request. So idle workers beyond one per
//! CPU wait on the *bench* instead: parked, the most recent on top. When the
//! last waiter takes an event, the worker on top of the bench takes its
//! place, so the line is always watched and stays work-conserving: no
//! connection with work waits while a worker is idle.
//!
//! **Is somebody waiting?** The batch budget asks it every `BATCH_BUDGET`
//! requests. While a worker is idle, nobody is: that worker would have
//! taken anything in line. Otherwise the asking worker looks at the line
//! without waiting ([`Line::probe`]); what it finds is now its own to serve,
//! and its current connection goes to the back.
//!
//! With the metrics endpoint on, the line also times each connection's wait:
//! [`Line::admit`] and [`Line::put_back`] stamp the connection, and the
//! worker that takes it reads [`Line::waited_ns`].

use std::io;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_utils::CachePadded;
use log::error;

use crate::engine::conn::Conn;
use crate::engine::epoll::{Arm, Epoll, DRAIN_KEY, ROOM_KEY};
use crate::engine::parking::Bench;

/// Waiting for a connection.
const IDLE: u8 = 0;
/// Holding a connection: reading, answering, writing.
const WORKING: u8 = 1;
/// Closing a quiet connection with GOAWAY 1 during the drain: no work.
const WINDING: u8 = 2;
/// Gone (the server is stopping).
const EXITED: u8 = 3;

/// What a worker found in line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Event {
    /// The connection with this registry key has work, or is new.
    Conn(usize),
    /// `--max-buffered` room freed: let held connections back in.
    Room,
    /// The server drains.
    Drain,
}

/// The line and the workers' states.
#[derive(Debug)]
pub(crate) struct Line {
    epoll: Arc<Epoll>,
    /// Workers waiting in the line now, or about to.
    idle: CachePadded<AtomicUsize>,
    slots: Arc<[CachePadded<AtomicU8>]>,
    /// The zero of the connections' `queued_ns` stamps.
    epoch: Instant,
    /// Whether waits are timed (the metrics endpoint is on).
    timed: bool,
    bench: Bench,
}

/// A read-only view of the workers' states, for the metrics thread: it
/// needs the busy count, not the line.
#[derive(Debug, Clone)]
pub(crate) struct WorkerStates(Arc<[CachePadded<AtomicU8>]>);

impl WorkerStates {
    /// Workers holding a connection (see [`Line::busy`]).
    pub(crate) fn busy(&self) -> usize {
        busy(&self.0)
    }

    /// The pool size.
    pub(crate) fn len(&self) -> usize {
        self.0.len()
    }
}

fn busy(slots: &[CachePadded<AtomicU8>]) -> usize {
    slots
        .iter()
        .filter(|s| s.load(Ordering::SeqCst) == WORKING)
        .count()
}

impl Line {
    /// A line for `workers` workers, which times the waits in it if `timed`.
    pub(crate) fn new(workers: usize, timed: bool) -> io::Result<Self> {
        Ok(Line {
            epoll: Arc::new(Epoll::new()?),
            // Every worker starts idle: counted before its thread runs, so a
            // connection that arrives first finds it available.
            idle: CachePadded::new(AtomicUsize::new(workers)),
            slots: (0..workers)
                .map(|_| CachePadded::new(AtomicU8::new(IDLE)))
                .collect(),
            epoch: Instant::now(),
            timed,
            bench: Bench::new(
                workers,
                std::thread::available_parallelism().map_or(1, |n| n.get()),
            ),
        })
    }

    /// The workers' states, to read from another thread.
    pub(crate) fn worker_states(&self) -> WorkerStates {
        WorkerStates(Arc::clone(&self.slots))
    }

    fn stamp(&self, conn: &Conn) {
        if self.timed {
            conn.queued_ns.store(self.now_ns(), Ordering::Relaxed);
        }
    }

    fn now_ns(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    /// How long `conn` has been in line since it was admitted or put back,
    /// if waits are timed.
    pub(crate) fn waited_ns(&self, conn: &Conn) -> Option<u64> {
        self.timed.then(|| {
            self.now_ns()
                .saturating_sub(conn.queued_ns.load(Ordering::Relaxed))
        })
    }

    /// Puts a new connection (QUEUED) in line.
    pub(crate) fn admit(&self, conn: &Conn) -> io::Result<()> {
        self.stamp(conn);
        self.epoll.add(&conn.stream, conn.key)
    }

    /// Puts a connection (QUEUED) back at the end of the line.
    pub(crate) fn put_back(&self, conn: &Conn) -> io::Result<()> {
        self.stamp(conn);
        self.epoll.arm(&conn.stream, conn.key, Arm::Line)
    }

    /// Lets a quiet connection (RESTING) join the line when its bytes arrive.
    pub(crate) fn rest(&self, conn: &Conn) -> io::Result<()> {
        self.epoll.arm(&conn.stream, conn.key, Arm::Rest)
    }

    /// Worker `me` waits for the next thing in line.
    pub(crate) fn take(&self, me: usize) -> Event {
        let slot = &self.slots[me];
        if slot.swap(IDLE, Ordering::SeqCst) != IDLE {
            self.idle.fetch_add(1, Ordering::SeqCst);
        }
        self.bench.wait_turn(me);
        let key = loop {
            match self.epoll.wait_one(None) {
                Ok(Some(key)) => break key,
                Ok(None) => continue,
                Err(e) => {
                    // Not expected (the set and its descriptors are ours):
                    // do not spin on it.
                    error!("worker {me}: waiting for work failed: {e}; retrying");
                    std::thread::sleep(Duration::from_millis(10));
                }
            }
        };
        self.bench.leave();
        self.idle.fetch_sub(1, Ordering::SeqCst);
        slot.store(WORKING, Ordering::SeqCst);
        event(key)
    }

    /// Whether somebody waits in line, for a worker that holds a connection:
    /// what it finds is its own now (see the module docs). `None` while a
    /// worker is idle, since that worker takes whatever joins the line.
    pub(crate) fn probe(&self) -> Option<Event> {
        if self.idle.load(Ordering::SeqCst) > 0 {
            return None;
        }
        match self.epoll.wait_one(Some(Duration::ZERO)) {
            Ok(key) => key.map(event),
            Err(e) => {
                error!("looking at the line failed: {e}");
                None
            }
        }
    }

    /// Workers that could take a new connection now (for `--queue 0`),
    /// when `waiting` new connections are already in line: those waiting in
    /// line. A worker the kernel has just woken for a resting connection's
    /// bytes still counts as waiting until it returns from `epoll_wait`; its
    /// event stays in line until then, so with no new connection in line to
    /// explain it, an event in line counts one worker taken.
    pub(crate) fn available(&self, waiting: usize) -> usize {
        // The look first, then the count: a worker takes its event out of
        // the line before it stops counting itself idle, so one of the two
        // shows it taken.
        let ready = waiting == 0 && self.epoll.has_ready();
        let idle = self.idle.load(Ordering::SeqCst);
        if ready {
            idle.saturating_sub(1)
        } else {
            idle
        }
    }

    /// Wakes one worker to let held connections back in (see `resting`).
    pub(crate) fn notify_room(&self) {
        self.epoll.notify_room();
    }

    /// [`Line::notify_room`] as a function of its own, for the budget.
    pub(crate) fn room_notifier(&self) -> Box<dyn Fn() + Send + Sync> {
        let epoll = Arc::clone(&self.epoll);
        Box::new(move || epoll.notify_room())
    }

    /// Clears and re-arms the room event (the worker that took it).
    pub(crate) fn rearm_room(&self) {
        self.epoll.rearm_room();
    }

    /// Worker `me` is only closing a quiet connection for the drain.
    pub(crate) fn winding(&self, me: usize) {
        self.slots[me].store(WINDING, Ordering::SeqCst);
    }

    /// Worker `me` has exited.
    pub(crate) fn exited(&self, me: usize) {
        self.slots[me].store(EXITED, Ordering::SeqCst);
    }

    /// Workers holding a connection that has work (a request in the
    /// service, replies being written, frames to answer).
    pub(crate) fn busy(&self) -> usize {
        busy(&self.slots)
    }

    /// Tells every worker to exit once it lets go of its connection.
    pub(crate) fn close(&self) {
        self.epoll.drain();
        self.bench.close();
    }

    /// Records the thread of worker `me`, so that it can be called from the
    /// bench.
    pub(crate) fn register_worker(&self, me: usize) {
        self.bench.register(me);
    }
}

fn event(key: u64) -> Event {
    match key {
        ROOM_KEY => Event::Room,
        DRAIN_KEY => Event::Drain,
        key => Event::Conn(key as usize),
    }
}
