//! The acceptor thread: accepts connections, applies the limits on new
//! connections, and puts the admitted ones in line for a worker.
//!
//! The per-address limits (see `per_address`) are decided here too, for a
//! connection whose client is known at accept (one from a balancer in
//! `--proxy-from` is decided by the worker that reads its PROXY header):
//! over one, it is sent GOAWAY 6 (LIMITED) with a retry hint.
//!
//! Two server-wide limits apply, and only here (see `limits`): `--max-connections`
//! clients connected at once, and `--queue` new connections waiting for a
//! worker at once (with `--queue 0`, only as many as there are workers idle
//! in line). What happens at a limit:
//!
//! - with [`Overload::Reject`] the new connection is sent GOAWAY 3 (BUSY)
//!   and closed at once, and the rejection is counted by its reason and
//!   reported at warn level, about once a second (see `turned_away`);
//! - with [`Overload::Block`] the acceptor stops accepting until there is
//!   room; the kernel's backlog holds or refuses the excess.
//!
//! Connections already open are never turned away here: when their bytes
//! arrive the kernel puts them in line, however long it is.
//!
//! `accept` errors never stop the server and never spin: running out of file
//! descriptors leaves the pending connection in the kernel's queue, so the
//! acceptor backs off (1 ms doubling to 100 ms), logs at most about one line
//! a second while the condition lasts, and resumes by itself.
//!
//! **Waiting without touching the listener.** The listening socket is
//! non-blocking. When it has nothing to accept, the acceptor waits in
//! `poll(2)` on it together with the shutdown's eventfd, which the drain
//! writes to. So the drain stops the acceptor without doing anything to the
//! listening socket, which matters for one inherited from socket activation:
//! its holder and the next instance keep using it (what the drain does to a
//! listener the server bound itself is in `shutdown`). Every wait is bounded
//! by [`ALIVE_TICK`], and each turn of the loop is counted
//! ([`crate::Liveness`]), so a watchdog can tell a live acceptor from a
//! stuck one.
//!
//! The non-blocking mode is a flag of the socket's open file description,
//! which an inherited socket shares with its holder and with the next
//! instance: wharf sets it and never clears it (clearing it on exit would
//! switch it off under a successor that is already running).

use std::io::{self, ErrorKind};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::select;
use log::{debug, error, info, warn};
use rustix::event::{poll, PollFd, PollFlags, Timespec};
use rustix::io::Errno;

use crate::config::Overload;
use crate::engine::conn::Conn;
use crate::engine::limits::{OpenSlot, QueuePlace};
use crate::engine::per_address::{ClientKey, Limit, Limited};
use crate::engine::shared::Shared;
use crate::engine::socket::{self, Stream};
use crate::frame::limited_reason;
use crate::observe::access::Why;
use crate::observe::alive::ALIVE_TICK;
use crate::observe::stats::Stats;
use crate::observe::turned_away::Busy;
use crate::service::{Credentials, Peer};

const BACKOFF_MIN: Duration = Duration::from_millis(1);
const BACKOFF_MAX: Duration = Duration::from_millis(100);
const LOG_EVERY: Duration = Duration::from_secs(1);
/// With `--overload block`, how often the acceptor looks again for a worker
/// that has become available under `--queue 0` (which is not announced, to
/// keep the workers' hot path free of it).
const AVAILABLE_POLL: Duration = Duration::from_millis(1);

/// Why a new connection was turned away.
#[derive(Debug, Clone, Copy)]
enum Refusal {
    /// A limit: GOAWAY 3 (BUSY).
    Busy(Busy),
    /// The drain started while the acceptor waited for room: GOAWAY 1.
    Draining,
}

/// A listening socket the acceptor serves (TCP or Unix), and whether it
/// speaks TLS.
#[derive(Debug)]
pub(crate) struct Listen {
    pub(crate) listener: Arc<socket2::Socket>,
    pub(crate) tls: bool,
}

/// Runs the accept loop over every listener until the drain starts.
pub(crate) fn run(listens: Vec<Listen>, shared: Arc<Shared>) {
    let mut trouble = Trouble::default();
    // Where the next look for a connection starts, so that no listener is
    // always looked at last.
    let mut next = 0;
    loop {
        shared.alive.acceptor();
        if shared.shutdown.is_draining() {
            break;
        }
        // Under `block`, wait for room before accepting, so that the
        // client waits in the kernel's backlog, not in the acceptor's hands.
        if shared.config.overload == Overload::Block && !wait_for_room(&shared) {
            break;
        }
        // The listeners are non-blocking: this never waits.
        match accept_one(&listens, &mut next) {
            Some(Ok((stream, addr, tls))) => {
                trouble.resolved();
                Stats::bump(&shared.stats.accepted);
                let peer = match configure(&stream, &addr, &shared) {
                    Ok(peer) => peer,
                    Err(e) => {
                        debug!("a new connection dropped, cannot read or set its socket: {e}");
                        continue;
                    }
                };
                admit(stream, peer, tls, &shared);
            }
            None => wait_for_connection(&listens, &shared),
            Some(Err(_)) if shared.shutdown.is_draining() => break,
            Some(Err(e)) if is_transient(&e) => continue,
            Some(Err(e)) => {
                Stats::bump(&shared.stats.accept_errors);
                let pause = trouble.failed(&e);
                // Sleep, but wake at once if the drain starts.
                let _ = shared.shutdown.drained().recv_timeout(pause);
            }
        }
    }
    // Dropping the listeners closes this server's descriptors; an inherited
    // socket stays open for its other holders.
    debug!("acceptor stopped");
}

/// One connection from the first listener, from `next` round, that has one;
/// `None` if none has.
fn accept_one(
    listens: &[Listen],
    next: &mut usize,
) -> Option<io::Result<(Stream, socket2::SockAddr, bool)>> {
    for i in 0..listens.len() {
        let listen = &listens[(*next + i) % listens.len()];
        match listen.listener.accept() {
            Err(e) if e.kind() == ErrorKind::WouldBlock => continue,
            result => {
                *next = (*next + i + 1) % listens.len();
                return Some(result.map(|(stream, peer)| (stream, peer, listen.tls)));
            }
        }
    }
    None
}

/// Waits until a listener has a connection to accept, the drain starts
/// (the shutdown's eventfd becomes readable), or [`ALIVE_TICK`] passes, so
/// the acceptor goes round its loop at least that often. The drain never
/// has to touch a listening socket to wake it.
fn wait_for_connection(listens: &[Listen], shared: &Shared) {
    let mut fds: Vec<PollFd<'_>> = listens
        .iter()
        .map(|l| PollFd::new(&*l.listener, PollFlags::IN))
        .collect();
    fds.push(PollFd::from_borrowed_fd(
        shared.shutdown.waker(),
        PollFlags::IN,
    ));
    let tick = Timespec::try_from(ALIVE_TICK).expect("a quarter second fits a timespec");
    match poll(&mut fds, Some(&tick)) {
        Ok(_) | Err(Errno::INTR) => {}
        Err(e) => {
            // Not expected (poll fails only for lack of memory): do not
            // spin on it, and say so once a tick at most.
            warn!("acceptor: poll failed: {e}; retrying");
            let _ = shared.shutdown.drained().recv_timeout(ALIVE_TICK);
        }
    }
}

/// Puts an accepted connection in line, or turns it away (a TLS one
/// without a handshake or a GOAWAY: overload costs no handshake CPU).
fn admit(stream: Stream, peer: Peer, tls: bool, shared: &Shared) {
    let now = shared.clock.now_ms();
    // From a balancer the client is named by the PROXY header, which a
    // worker reads: the per-address limits are decided then.
    let proxied = shared
        .config
        .proxy_from
        .as_ref()
        .is_some_and(|from| from.trusts(peer.ip()));
    let (slot, place) = match take_room(shared) {
        Ok(room) => room,
        Err(refusal) => {
            let conn = shared
                .registry
                .insert(stream, peer, now, tls, proxied, None, None);
            let why = match refusal {
                Refusal::Busy(why) => why,
                Refusal::Draining => {
                    shared.closer.turn_away(&conn, Why::Shutdown);
                    return;
                }
            };
            // Each one is in the access log (debug); the warn line counts.
            if shared.closer.turn_away(&conn, Why::Busy(why)) {
                Stats::bump(shared.stats.rejected(why));
                shared.turned_away.record(why, now, &shared.config);
            }
            return;
        }
    };
    // Otherwise its address is known now: the per-address limits decide.
    let address = if proxied {
        None
    } else {
        match shared.per_address.admit(ClientKey::from(&peer)) {
            Ok(address) => Some(address),
            Err(limited) => {
                drop((slot, place));
                let conn = shared
                    .registry
                    .insert(stream, peer, now, tls, proxied, None, None);
                turn_away_limited(shared, &conn, &limited, now);
                return;
            }
        }
    };
    let conn = shared
        .registry
        .insert(stream, peer, now, tls, proxied, Some(slot), Some(place));
    if let Some(address) = address {
        conn.hold_address(address);
    }
    if let Err(e) = shared.line.admit(&conn) {
        error!("{}: cannot put a new connection in line: {e}", conn.who());
        shared.closer.turn_away(&conn, Why::Trouble);
    }
}

/// The reason a connection over a per-address limit is counted under.
pub(crate) fn turned_away_by(limit: Limit) -> Busy {
    match limit {
        Limit::Connections => Busy::PerAddressConnections,
        Limit::Rate => Busy::PerAddressRate,
    }
}

/// Turns away with GOAWAY 6 (LIMITED) a connection whose address is over a
/// per-address limit: its reason starts with the retry hint.
fn turn_away_limited(shared: &Shared, conn: &Arc<Conn>, limited: &Limited, now: u64) {
    let why = turned_away_by(limited.limit);
    let reason = limited_reason(limited.retry_after, &why.describe(&shared.config));
    if shared
        .closer
        .turn_away_saying(conn, Why::Busy(why), reason.into())
    {
        Stats::bump(shared.stats.rejected(why));
        shared.turned_away.record(why, now, &shared.config);
    }
}

/// Takes a place under both limits, waiting for it under `block`.
fn take_room(shared: &Shared) -> Result<(OpenSlot, QueuePlace), Refusal> {
    // Under `block` the acceptor waited for room before accepting, and only
    // it takes room, so this fails then only if a worker stopped being
    // available meanwhile (`--queue 0`); it waits again.
    let slot = shared
        .limits
        .try_open()
        .ok_or(Refusal::Busy(Busy::MaxConnections))?;
    loop {
        if let Some(place) = shared
            .limits
            .try_queue(|waiting| shared.line.available(waiting))
        {
            return Ok((slot, place));
        }
        if shared.config.overload == Overload::Reject {
            return Err(Refusal::Busy(Busy::QueueFull));
        }
        if !wait(shared, Some(AVAILABLE_POLL)) {
            return Err(Refusal::Draining);
        }
    }
}

/// Under `block`: waits until a new connection may open and wait for a
/// worker. Returns false if the drain started first.
fn wait_for_room(shared: &Shared) -> bool {
    loop {
        let queue_room = shared
            .limits
            .has_queue_room(|waiting| shared.line.available(waiting));
        if shared.limits.has_open_room() && queue_room {
            return true;
        }
        // Room given back is announced; a worker becoming available (for
        // `--queue 0`) is not: for that, look again now and then.
        let unannounced = !queue_room && shared.config.queue == 0;
        let poll = unannounced.then_some(AVAILABLE_POLL);
        if !wait(shared, poll) {
            return false;
        }
    }
}

/// Waits for room to be given back (or `poll` to pass, or at most
/// [`ALIVE_TICK`]); false if the drain started.
fn wait(shared: &Shared, poll: Option<Duration>) -> bool {
    shared.alive.acceptor();
    let timer = crossbeam_channel::after(poll.map_or(ALIVE_TICK, |p| p.min(ALIVE_TICK)));
    select! {
        recv(shared.limits.room()) -> _ => true,
        recv(timer) -> _ => true,
        recv(shared.shutdown.drained()) -> _ => false,
    }
}

/// Sets a new connection's socket up, and says who it is: its address, or
/// on a Unix socket the credentials the kernel recorded for the client.
fn configure(stream: &Stream, addr: &socket2::SockAddr, shared: &Shared) -> io::Result<Peer> {
    let peer = match addr.as_socket() {
        Some(addr) => {
            stream.set_nodelay(true)?;
            Peer::Ip(addr)
        }
        None => {
            let creds = rustix::net::sockopt::socket_peercred(stream)?;
            Peer::Unix(Credentials {
                pid: u32::try_from(creds.pid.as_raw_nonzero().get()).unwrap_or(0),
                uid: creds.uid.as_raw(),
                gid: creds.gid.as_raw(),
            })
        }
    };
    stream.set_write_timeout(Some(shared.config.write_timeout))?;
    // With the histograms on, the kernel stamps each arrival, so the wait
    // of a resting connection's request in line can be read (see `worker`).
    if shared.timed {
        socket::stamp_arrivals(stream)?;
    }
    Ok(peer)
}

/// Errors that concern one connection only, such as a client that reset
/// before we accepted it: try the next one at once.
fn is_transient(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        ErrorKind::Interrupted | ErrorKind::ConnectionAborted | ErrorKind::ConnectionReset
    )
}

/// Backoff and log throttling for a run of accept errors: at most one
/// failure line a second, each followed by one line when accepting works
/// again. That holds also when accepts fail and succeed by turns (a
/// descriptor limit that each closing connection lifts for one accept).
#[derive(Debug, Default)]
struct Trouble {
    pause: Option<Duration>,
    /// When a failure was last logged.
    last_log: Option<Instant>,
    unlogged: u64,
    /// A failure was logged and its recovery not yet.
    reported: bool,
}

impl Trouble {
    /// Records a failure; returns how long to wait before the next accept.
    fn failed(&mut self, e: &io::Error) -> Duration {
        let pause = self.pause.map_or(BACKOFF_MIN, |p| (p * 2).min(BACKOFF_MAX));
        self.pause = Some(pause);
        self.unlogged += 1;
        if self.last_log.is_none_or(|at| at.elapsed() >= LOG_EVERY) {
            warn!(
                "accept failed: {e} ({} error(s) since the last report); backing off, \
                 existing connections are still served",
                self.unlogged
            );
            self.last_log = Some(Instant::now());
            self.unlogged = 0;
            self.reported = true;
        }
        pause
    }

    /// An accept succeeded.
    fn resolved(&mut self) {
        self.pause = None;
        if std::mem::take(&mut self.reported) {
            info!("accepting connections again");
        }
    }
}
