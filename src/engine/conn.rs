//! One client connection: its socket, where it is in its life, its
//! heartbeat deadline, and what travels with it between workers.
//!
//! A connection is an `Arc<Conn>` shared by the registry and whichever stage
//! holds it now: the line (the kernel's ready list, see `line`), a worker,
//! the poller's epoll set, or the closer. It is in exactly one of those
//! places at a time, and its one atomic state says which; the state only
//! changes by compare-and-swap, so two threads can never both think they own
//! it (see `docs/design.md` for the whole diagram):
//!
//! ```text
//!                     worker                  worker
//! accept --> QUEUED ---------> ACTIVE <-----------------> BUSY (service running:
//!             ^  |  <---------  |  ^                             never reaped)
//!             |  |   worker:    |  |
//!             |  |   batch      |  | worker: bytes arrived
//!             |  |   budget     v  |
//!             |  |            RESTING (armed in the epoll set, or held
//!             |  |              |      while the budget is spent)
//!             |  | reaper,      | reaper (GOAWAY 2, or 3 if a complete
//!             |  | drain        |   request waited), drain (GOAWAY 1)
//!             |  v              v
//!             | CLOSING <-------+
//!    (any state --force--> FORCED)
//! ```
//!
//! Only the worker holding a connection writes to it while it is ACTIVE or
//! BUSY; whoever swaps it to CLOSING or FORCED from a state with no worker
//! writing (QUEUED, RESTING, and for a forced stop BUSY) sends the GOAWAY
//! itself, if any. So a GOAWAY never interleaves with a response.
//!
//! The socket lives in the `Conn` and closes only when the last `Arc` goes,
//! so a thread that looks it up by key (a worker taking an event) can never
//! find a descriptor that was closed and reused meanwhile.

use std::any::Any;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use log::error;
use parking_lot::Mutex;

use crate::config::Config;
use crate::engine::inbox::Carry;
use crate::engine::limits::{OpenSlot, QueuePlace};
use crate::engine::per_address::{AddressSlot, ClientKey};
use crate::engine::socket::Stream;
use crate::observe::access::{Access, Ending, Who};
use crate::service::{ConnInfo, Peer};

/// Waiting in line for a worker: new, or sent back by the batch budget.
pub(crate) const QUEUED: u8 = 0;
/// Held by a worker that is reading or writing.
pub(crate) const ACTIVE: u8 = 1;
/// Held by a worker whose service is running: never reaped.
pub(crate) const BUSY: u8 = 2;
/// Being closed by a thread other than a worker (deadline, drain, limits).
pub(crate) const CLOSING: u8 = 4;
/// Closed by force at the end of the grace period.
pub(crate) const FORCED: u8 = 5;
/// Quiet, with no worker: armed in the epoll set, where its bytes put it
/// in line (or held, see `budget`).
pub(crate) const RESTING: u8 = 6;

/// The name of a state, for log lines.
pub(crate) fn state_name(state: u8) -> &'static str {
    match state {
        QUEUED => "queued",
        ACTIVE => "active",
        BUSY => "busy",
        CLOSING => "closing",
        FORCED => "forced",
        RESTING => "resting",
        _ => "unknown",
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

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

/// What a connection takes from one worker to the next. A worker takes it
/// all out when it takes the connection and puts it back when it lets go.
/// It is dropped with the connection, on whichever thread lets go of it
/// last; a service session that panics when dropped is caught there (see
/// the `Drop` impl), so it can never take a server thread down.
#[derive(Debug, Default)]
pub(crate) struct Travel {
    /// Bytes read but not yet answered (see `inbox`).
    pub(crate) carry: Option<Carry>,
    /// The service's state for this connection, once it has one.
    pub(crate) session: Option<Box<dyn Any + Send>>,
    /// A new connection's place in `--queue`, until a worker first takes it.
    pub(crate) place: Option<QueuePlace>,
    /// Requests answered so far, for the access log's close line.
    pub(crate) requests: u64,
    /// Whether its socket's receive low-water mark was raised, so that it
    /// wakes only once its unfinished frame has arrived whole (see
    /// `resting`); lowered again when a worker takes it.
    pub(crate) lowat: bool,
    /// On a TLS listener, its TLS session (see `engine::tls`), made by the
    /// first worker that takes the connection.
    pub(crate) tls: Option<Box<rustls::ServerConnection>>,
    /// Who it is once its handshake completed: [`Conn::info`] with what
    /// the handshake established, given to the service.
    pub(crate) info: Option<ConnInfo>,
}

impl Drop for Travel {
    fn drop(&mut self) {
        if let Some(session) = self.session.take() {
            if catch_unwind(AssertUnwindSafe(|| drop(session))).is_err() {
                error!("a service session panicked when it was dropped");
            }
        }
    }
}

/// One client connection.
pub(crate) struct Conn {
    /// The socket, TCP or Unix. `&Stream` reads and writes, so no lock is
    /// needed.
    pub(crate) stream: Stream,
    /// Who it is as its socket says: id and peer (the balancer, for a
    /// connection from one listed in `--proxy-from`).
    pub(crate) info: ConnInfo,
    /// The client its PROXY header named, once read (see `header`).
    named: OnceLock<Peer>,
    /// It came from a balancer listed in `--proxy-from`, and its header
    /// has not been read yet.
    header_pending: AtomicBool,
    /// Its key in the registry and the poller: slot and generation.
    pub(crate) key: usize,
    state: AtomicU8,
    /// Latest of accept, last complete frame, last response (Clock ms).
    last_active: AtomicU64,
    /// How long after `last_active` its deadline falls: the heartbeat
    /// timeout, or on a TLS listener until its handshake completes the
    /// handshake timeout (counted from the accept).
    limit_ms: AtomicU64,
    /// Whether it came through a TLS listener.
    pub(crate) tls: bool,
    /// When it was accepted (for the handshake's duration).
    pub(crate) accepted: Instant,
    /// Whether what comes before its first request is over: the PROXY
    /// header, from a balancer, and the TLS handshake, on a TLS listener.
    established: AtomicBool,
    pub(crate) travel: Mutex<Travel>,
    /// When it last joined the line (see `line`), for the queue-wait
    /// histogram. Written by whoever puts it in line, read by the worker
    /// that takes it; the line's channel orders the two.
    pub(crate) queued_ns: AtomicU64,
    /// What the access log keeps, if debug was on at accept (see `access`).
    pub(crate) access: Option<Access>,
    /// Counts against `--max-connections` until the socket is closed;
    /// `None` for a connection turned away at accept.
    _slot: Option<OpenSlot>,
    /// Counts against its address's `--max-connections-per-address` until
    /// the socket is closed, once let in (at accept, or after its PROXY
    /// header).
    address: OnceLock<AddressSlot>,
}

impl Conn {
    /// A connection accepted at `now_ms`, whose first deadline falls `limit`
    /// later; `tls`: it came through a TLS listener; `proxied`: it comes
    /// from a balancer and starts with a PROXY header.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        stream: Stream,
        info: ConnInfo,
        key: usize,
        (now_ms, limit): (u64, Duration),
        tls: bool,
        proxied: bool,
        slot: Option<OpenSlot>,
        place: Option<QueuePlace>,
    ) -> Self {
        Conn {
            stream,
            info,
            named: OnceLock::new(),
            header_pending: AtomicBool::new(proxied),
            key,
            state: AtomicU8::new(QUEUED),
            last_active: AtomicU64::new(now_ms),
            limit_ms: AtomicU64::new(millis(limit)),
            tls,
            accepted: Instant::now(),
            established: AtomicBool::new(!tls && !proxied),
            travel: Mutex::new(Travel {
                carry: None,
                session: None,
                place,
                requests: 0,
                lowat: false,
                tls: None,
                info: None,
            }),
            queued_ns: AtomicU64::new(0),
            access: Access::start(),
            _slot: slot,
            address: OnceLock::new(),
        }
    }

    /// Its address was let in by the per-address limits: it counts against
    /// them until the socket closes.
    pub(crate) fn hold_address(&self, slot: AddressSlot) {
        let _ = self.address.set(slot);
    }

    /// `conn 12 from 127.0.0.1:40312` (`... via 10.0.0.2:41000` behind a
    /// balancer), for log lines.
    pub(crate) fn who(&self) -> Who<'_> {
        match self.named.get() {
            Some(client) => Who::new(self.info.id, client, Some(&self.info.peer)),
            None => Who::new(self.info.id, &self.info.peer, None),
        }
    }

    /// Who it is, as the service is told: with the client its PROXY header
    /// named, if any.
    pub(crate) fn view(&self) -> ConnInfo {
        match self.named.get() {
            Some(client) => ConnInfo {
                peer: *client,
                via: Some(self.info.peer),
                ..self.info.clone()
            },
            None => self.info.clone(),
        }
    }

    /// The client, as limits count it: the one its PROXY header named, or
    /// the socket's peer.
    pub(crate) fn client(&self) -> &Peer {
        self.named.get().unwrap_or(&self.info.peer)
    }

    /// Whether it comes from a balancer and its PROXY header is still to
    /// be read.
    pub(crate) fn awaits_header(&self) -> bool {
        self.header_pending.load(Ordering::Acquire)
    }

    /// Its PROXY header has been read at `now_ms`, naming `client` (or the
    /// socket's own peer, for `None`). On a plain listener the heartbeat
    /// takes over now; on a TLS one the handshake comes next, within the
    /// same deadline.
    pub(crate) fn header_read(&self, client: Option<Peer>, now_ms: u64, heartbeat: Duration) {
        if let Some(client) = client {
            let _ = self.named.set(client);
        }
        self.header_pending.store(false, Ordering::Release);
        if !self.tls {
            self.establish(now_ms, heartbeat);
        }
    }

    /// Access log (debug level): a worker has taken it from the line.
    pub(crate) fn log_served(&self) {
        if let Some(access) = &self.access {
            access.served(self.who());
        }
    }

    /// Access log: what its TLS handshake established.
    pub(crate) fn log_tls(&self, info: &crate::tls::TlsInfo) {
        if let Some(access) = &self.access {
            access.tls(self.who(), info);
        }
    }

    /// Access log: how it ended, unless that was decided already.
    pub(crate) fn log_ended(&self, ending: Ending) {
        if let Some(access) = &self.access {
            access.ended(self.who(), ending);
        }
    }

    /// Access log: the requests answered so far.
    pub(crate) fn log_answered(&self, requests: u64) {
        if let Some(access) = &self.access {
            access.answered(requests);
        }
    }

    /// Access log: it has left the registry; the close line.
    pub(crate) fn log_closed(&self, config: &Config) {
        if let Some(access) = &self.access {
            // A connection that ends resting or in line carries its count
            // in its travel state (which nobody else holds by now).
            let carried = self.travel.try_lock().map_or(0, |travel| travel.requests);
            access.closed(self.who(), carried, config);
        }
    }

    pub(crate) fn state(&self) -> u8 {
        self.state.load(Ordering::SeqCst)
    }

    /// Moves from `from` to `to` if nobody else moved it first. SeqCst: the
    /// drain relies on a worker either seeing its flag or being seen.
    pub(crate) fn transition(&self, from: u8, to: u8) -> bool {
        self.state
            .compare_exchange(from, to, Ordering::SeqCst, Ordering::SeqCst)
            .is_ok()
    }

    /// Records activity that moves the heartbeat deadline.
    pub(crate) fn touch(&self, now_ms: u64) {
        self.last_active.store(now_ms, Ordering::Release);
    }

    /// Whether its deadline has passed at `now_ms`: the heartbeat, or
    /// before a TLS handshake completes, the handshake timeout.
    pub(crate) fn expired(&self, now_ms: u64) -> bool {
        let last = self.last_active.load(Ordering::Acquire);
        now_ms >= last.saturating_add(self.limit_ms.load(Ordering::Acquire))
    }

    /// Whether it is on a TLS listener and its handshake has not completed:
    /// it is closed without a word (no GOAWAY, no handshake) if it ends now.
    pub(crate) fn handshaking(&self) -> bool {
        self.tls && !self.established.load(Ordering::Acquire)
    }

    /// Its TLS handshake completed at `now_ms`: from now on the heartbeat
    /// deadline applies, counted from now.
    pub(crate) fn establish(&self, now_ms: u64, heartbeat: Duration) {
        self.limit_ms.store(millis(heartbeat), Ordering::Release);
        self.touch(now_ms);
        self.established.store(true, Ordering::Release);
    }

    /// Shuts the socket down, ignoring "not connected": the peer may be gone.
    pub(crate) fn shutdown(&self, how: std::net::Shutdown) {
        let _ = self.stream.shutdown(how);
    }

    /// Gives back a new connection's place in `--queue` (taken by a worker,
    /// or turned away from the line).
    pub(crate) fn leave_queue(&self) {
        drop(self.travel.lock().place.take());
    }
}

impl From<&Peer> for ClientKey {
    /// Per-address limits count a TCP client by its address, a Unix one by
    /// its uid.
    fn from(peer: &Peer) -> Self {
        match peer {
            Peer::Ip(addr) => ClientKey::from_ip(addr.ip()),
            Peer::Unix(creds) => ClientKey::from_uid(creds.uid),
        }
    }
}

impl std::fmt::Debug for Conn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Conn")
            .field("id", &self.info.id)
            .field("peer", self.client())
            .field("state", &state_name(self.state()))
            .finish()
    }
}
