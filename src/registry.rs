//! The registry of live connections: what the reaper and the drain need to
//! find every connection, and what each one's heartbeat deadline is computed
//! from.
//!
//! A connection is an `Arc<Conn>` shared by the registry and whichever stage
//! currently owns it (the queue, a worker, the closer). The socket lives in
//! the `Conn` and is closed when the last `Arc` goes, so another thread can
//! always call `shutdown` on it safely: that is how the reaper and the drain
//! wake a worker blocked in `read`, without duplicating file descriptors.
//!
//! Ownership of the *write side* is decided by one atomic state per
//! connection, changed only by compare-and-swap:
//!
//! ```text
//!            worker                  worker
//!  QUEUED ----------> ACTIVE <----------------> BUSY (service running: never reaped)
//!    |                  |  \                      |
//!    | acceptor, reaper,|   \ reaper               | force
//!    | worker, drain    |    v                     v
//!    v                  |   REAPED               FORCED
//!  CLOSING              +--- force ------------> FORCED
//!  (QUEUED --force--> FORCED as well)
//! ```
//!
//! The rules that keep a GOAWAY from ever interleaving with a response:
//! only the worker writes while a connection is ACTIVE, BUSY or REAPED (on
//! REAPED it writes the GOAWAY 2 itself, after its last response); a
//! connection swapped to CLOSING or FORCED from QUEUED or BUSY has no worker
//! writing, so the thread that won the swap sends the GOAWAY; one forced
//! from ACTIVE is only shut down. The per-batch cost is two uncontended
//! swaps, two clock reads and two timestamp stores; the registry's lock is
//! taken only to add or remove a connection and once per reaper scan.

use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use slab::Slab;

/// Waiting in the queue for a worker.
pub(crate) const QUEUED: u8 = 0;
/// Owned by a worker that is reading or writing.
pub(crate) const ACTIVE: u8 = 1;
/// Owned by a worker whose service is running: never reaped.
pub(crate) const BUSY: u8 = 2;
/// The reaper took it: the worker sends GOAWAY 2 and closes.
pub(crate) const REAPED: u8 = 3;
/// Taken out of the queue to be closed (deadline passed, or draining).
pub(crate) const CLOSING: u8 = 4;
/// The grace period ran out while its service was running.
pub(crate) const FORCED: u8 = 5;

/// Milliseconds since the server started: cheap to store in an atomic.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Clock {
    epoch: Instant,
}

impl Clock {
    pub(crate) fn new() -> Self {
        Clock {
            epoch: Instant::now(),
        }
    }

    pub(crate) fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }
}

/// One client connection.
#[derive(Debug)]
pub(crate) struct Conn {
    /// The socket. `&TcpStream` reads and writes, so no lock is needed.
    pub(crate) stream: TcpStream,
    /// The client's address, for log lines.
    pub(crate) peer: SocketAddr,
    /// This connection's slot in the registry.
    key: usize,
    state: AtomicU8,
    /// Latest of accept, last complete frame, last response (Clock ms).
    last_active: AtomicU64,
}

impl Conn {
    pub(crate) fn state(&self) -> u8 {
        self.state.load(Ordering::SeqCst)
    }

    /// Moves from `from` to `to` if nobody else moved it first. SeqCst: the
    /// drain relies on a worker either seeing its flag or being seen ACTIVE.
    pub(crate) fn transition(&self, from: u8, to: u8) -> bool {
        self.state
            .compare_exchange(from, to, Ordering::SeqCst, Ordering::SeqCst)
            .is_ok()
    }

    /// Records activity that moves the heartbeat deadline.
    pub(crate) fn touch(&self, now_ms: u64) {
        self.last_active.store(now_ms, Ordering::Release);
    }

    /// Whether the heartbeat deadline has passed at `now_ms`.
    pub(crate) fn expired(&self, now_ms: u64, timeout: Duration) -> bool {
        let last = self.last_active.load(Ordering::Acquire);
        now_ms >= last.saturating_add(timeout.as_millis() as u64)
    }

    /// Shuts the socket down, ignoring "not connected": the peer may be gone.
    pub(crate) fn shutdown(&self, how: std::net::Shutdown) {
        let _ = self.stream.shutdown(how);
    }
}

/// Every live connection, in a slab so that slots are reused.
#[derive(Debug, Default)]
pub(crate) struct Registry {
    conns: Mutex<Slab<Arc<Conn>>>,
}

impl Registry {
    /// Registers a newly accepted connection in the QUEUED state.
    pub(crate) fn insert(&self, stream: TcpStream, peer: SocketAddr, now_ms: u64) -> Arc<Conn> {
        let mut conns = self.conns.lock();
        let entry = conns.vacant_entry();
        let conn = Arc::new(Conn {
            stream,
            peer,
            key: entry.key(),
            state: AtomicU8::new(QUEUED),
            last_active: AtomicU64::new(now_ms),
        });
        entry.insert(Arc::clone(&conn));
        conn
    }

    /// Forgets a connection; its socket closes when the last owner drops it.
    pub(crate) fn remove(&self, conn: &Conn) {
        let mut conns = self.conns.lock();
        if conns
            .get(conn.key)
            .is_some_and(|c| std::ptr::eq(&**c, conn))
        {
            conns.remove(conn.key);
        }
    }

    /// How many live connections wait in the queue, and how many a worker
    /// owns (reading, writing or in the service).
    pub(crate) fn census(&self) -> (usize, usize) {
        let conns = self.conns.lock();
        let queued = conns.iter().filter(|(_, c)| c.state() == QUEUED).count();
        let served = conns
            .iter()
            .filter(|(_, c)| matches!(c.state(), ACTIVE | BUSY))
            .count();
        (queued, served)
    }

    /// A snapshot of the live connections, taken under the lock and acted on
    /// outside it.
    pub(crate) fn snapshot(&self) -> Vec<Arc<Conn>> {
        self.conns
            .lock()
            .iter()
            .map(|(_, c)| Arc::clone(c))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    fn pair() -> (TcpStream, SocketAddr) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, peer) = listener.accept().unwrap();
        drop(client);
        (server, peer)
    }

    #[test]
    fn states_change_only_from_the_expected_state() {
        let registry = Registry::default();
        let (stream, peer) = pair();
        let conn = registry.insert(stream, peer, 0);
        assert!(conn.transition(QUEUED, ACTIVE));
        assert!(!conn.transition(QUEUED, CLOSING));
        assert!(conn.transition(ACTIVE, REAPED));
        assert!(!conn.transition(ACTIVE, BUSY));
        assert_eq!(conn.state(), REAPED);
    }

    #[test]
    fn deadline_moves_with_touch() {
        let registry = Registry::default();
        let (stream, peer) = pair();
        let conn = registry.insert(stream, peer, 100);
        let timeout = Duration::from_millis(50);
        assert!(!conn.expired(149, timeout));
        assert!(conn.expired(150, timeout));
        conn.touch(140);
        assert!(!conn.expired(150, timeout));
        assert_eq!(registry.snapshot().len(), 1);
        registry.remove(&conn);
        registry.remove(&conn);
        assert!(registry.snapshot().is_empty());
    }
}
