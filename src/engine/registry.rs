//! The registry of live connections: how the reaper, the drain and a
//! worker taking an event from the line find a connection.
//!
//! Connections live in a slab so slots are reused. A connection's key is its
//! slot plus a generation (the low 32 bits of its id) in the upper half, so
//! a late event for a slot that has since been reused by another
//! connection finds a different key and is ignored.
//!
//! The registry's lock is written to add or remove a connection, and read
//! to look up the connection an event in line is for (once per wake-up, by
//! the worker that took it; readers do not block each other) and once per
//! reaper scan.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::RwLock;
use slab::Slab;

use crate::config::Config;
use crate::engine::conn::{Conn, ACTIVE, BUSY, QUEUED, RESTING};
use crate::engine::limits::{OpenSlot, QueuePlace};
use crate::engine::socket::Stream;
use crate::service::{ConnInfo, Peer};

/// Every live connection.
pub(crate) struct Registry {
    conns: RwLock<Slab<Arc<Conn>>>,
    next_id: AtomicU64,
    /// The settings, for the access log's close line (see `access`).
    config: Config,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("live", &self.len())
            .finish()
    }
}

/// How many live connections are in each place, for the counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Census {
    /// Waiting in line for a worker.
    pub(crate) queued: usize,
    /// Held by a worker (reading, writing, or in the service).
    pub(crate) active: usize,
    /// Resting (or held while the budget is spent).
    pub(crate) resting: usize,
}

impl Registry {
    pub(crate) fn new(config: Config) -> Self {
        Registry {
            conns: RwLock::new(Slab::new()),
            next_id: AtomicU64::new(1),
            config,
        }
    }

    /// Registers a newly accepted connection in the QUEUED state; `tls`:
    /// it came through a TLS listener, `proxied`: from a balancer in
    /// `--proxy-from`, so it starts with a PROXY header. Either way its
    /// first deadline is the handshake timeout.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn insert(
        &self,
        stream: Stream,
        peer: Peer,
        now_ms: u64,
        tls: bool,
        proxied: bool,
        slot: Option<OpenSlot>,
        place: Option<QueuePlace>,
    ) -> Arc<Conn> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let mut conns = self.conns.write();
        let entry = conns.vacant_entry();
        let key = entry.key() | ((id as u32 as usize) << 32);
        let info = ConnInfo {
            id,
            peer,
            via: None,
            tls: None,
        };
        let limit = if tls || proxied {
            self.config.handshake_timeout
        } else {
            self.config.heartbeat_timeout
        };
        let conn = Arc::new(Conn::new(
            stream,
            info,
            key,
            (now_ms, limit),
            tls,
            proxied,
            slot,
            place,
        ));
        entry.insert(Arc::clone(&conn));
        conn
    }

    /// The live connection with this key, if it is still the same one.
    pub(crate) fn get(&self, key: usize) -> Option<Arc<Conn>> {
        let conns = self.conns.read();
        conns
            .get(key & 0xffff_ffff)
            .filter(|conn| conn.key == key)
            .map(Arc::clone)
    }

    /// Forgets a connection; its socket closes when the last handle drops
    /// (and leaves the epoll set then). The first call for a
    /// connection writes its access log close line.
    pub(crate) fn remove(&self, conn: &Conn) {
        let mut conns = self.conns.write();
        let slot = conn.key & 0xffff_ffff;
        if conns.get(slot).is_some_and(|c| std::ptr::eq(&**c, conn)) {
            let removed = conns.remove(slot);
            drop(conns);
            removed.log_closed(&self.config);
        }
    }

    /// Live connections in each place.
    pub(crate) fn census(&self) -> Census {
        let conns = self.conns.read();
        let mut census = Census::default();
        for (_, conn) in conns.iter() {
            match conn.state() {
                QUEUED => census.queued += 1,
                ACTIVE | BUSY => census.active += 1,
                RESTING => census.resting += 1,
                _ => {}
            }
        }
        census
    }

    /// A snapshot of the live connections, taken under the lock and acted on
    /// outside it.
    pub(crate) fn snapshot(&self) -> Vec<Arc<Conn>> {
        self.conns
            .read()
            .iter()
            .map(|(_, c)| Arc::clone(c))
            .collect()
    }

    /// How many connections are registered.
    pub(crate) fn len(&self) -> usize {
        self.conns.read().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::conn::CLOSING;
    use std::net::{SocketAddr, TcpListener, TcpStream};

    fn pair() -> (Stream, SocketAddr) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, peer) = listener.accept().unwrap();
        drop(client);
        (server.into(), peer)
    }

    fn registry() -> Registry {
        Registry::new(Config::default())
    }

    #[test]
    fn states_change_only_from_the_expected_state() {
        let registry = registry();
        let (stream, peer) = pair();
        let conn = registry.insert(stream, peer.into(), 0, false, false, None, None);
        assert!(conn.transition(QUEUED, ACTIVE));
        assert!(!conn.transition(QUEUED, CLOSING));
        assert!(conn.transition(ACTIVE, RESTING));
        assert!(!conn.transition(ACTIVE, BUSY));
        assert_eq!(conn.state(), RESTING);
    }

    #[test]
    fn deadline_moves_with_touch() {
        let registry = registry();
        let (stream, peer) = pair();
        let conn = registry.insert(stream, peer.into(), 100, false, false, None, None);
        let heartbeat = registry.config.heartbeat_timeout.as_millis() as u64;
        assert!(!conn.expired(100 + heartbeat - 1));
        assert!(conn.expired(100 + heartbeat));
        conn.touch(140);
        assert!(!conn.expired(100 + heartbeat));
        assert_eq!(registry.len(), 1);
        registry.remove(&conn);
        registry.remove(&conn);
        assert_eq!(registry.len(), 0);
    }

    #[test]
    fn a_reused_slot_has_a_new_key() {
        let registry = registry();
        let (stream, peer) = pair();
        let first = registry.insert(stream, peer.into(), 0, false, false, None, None);
        registry.remove(&first);
        let (stream, peer) = pair();
        let second = registry.insert(stream, peer.into(), 0, false, false, None, None);
        assert_eq!(
            first.key & 0xffff_ffff,
            second.key & 0xffff_ffff,
            "slot reused"
        );
        assert_ne!(first.key, second.key);
        assert!(
            registry.get(first.key).is_none(),
            "a stale key finds nothing"
        );
        assert_eq!(
            registry.get(second.key).map(|c| c.info.id),
            Some(second.info.id)
        );
    }
}
