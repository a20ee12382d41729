//! The acceptor thread: accepts connections and hands them to the pool
//! through the bounded queue, applying the overload policy.
//!
//! Queue full? With [`Overload::Reject`] the new connection is sent
//! GOAWAY 3 (BUSY) and closed at once, so memory stays bounded however many
//! clients arrive. With [`Overload::Block`] the acceptor waits for a free
//! slot and stops accepting meanwhile; the kernel's backlog holds or refuses
//! the excess. A queue of capacity 0 hands a connection only to a worker that
//! is waiting for one, or about to (one between two connections, for at
//! most 10 ms).
//!
//! Entries the reaper turned away for missing their deadline in the queue
//! stay in the channel until taken (a channel cannot drop an entry from the
//! middle); they are the oldest, so when the queue is full the acceptor
//! takes them off the front to make room rather than refusing a newcomer.
//!
//! `accept` errors never stop the server and never spin: running out of file
//! descriptors leaves the pending connection in the kernel's queue, so the
//! acceptor backs off (1 ms doubling to 100 ms), logs at most about one line
//! a second while the condition lasts, and resumes by itself.

use std::io::{self, ErrorKind};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{select, Receiver, Sender, TrySendError};
use log::{debug, info, warn};

use crate::config::Overload;
use crate::connection::Shared;
use crate::frame::GoAwayCode;
use crate::pool;
use crate::registry::{Conn, CLOSING};
use crate::stats::Stats;

/// How long the acceptor waits for a worker that is between two connections.
const HANDOFF_WAIT: Duration = Duration::from_millis(10);
const BACKOFF_MIN: Duration = Duration::from_millis(1);
const BACKOFF_MAX: Duration = Duration::from_millis(100);
const LOG_EVERY: Duration = Duration::from_secs(1);

/// Runs the accept loop until the drain starts.
/// `front` is a receiving end of the queue, used only to take entries the
/// reaper already turned away off its front when their room is needed.
pub(crate) fn run(
    listener: Arc<TcpListener>,
    queue: Sender<Arc<Conn>>,
    front: Receiver<Arc<Conn>>,
    shared: Arc<Shared>,
) {
    let mut trouble = Trouble::default();
    while !shared.shutdown.is_draining() {
        match listener.accept() {
            Ok((stream, peer)) => {
                trouble.resolved();
                Stats::bump(&shared.stats.accepted);
                if let Err(e) = configure(&stream, &shared) {
                    debug!("{peer}: dropped, cannot set socket options: {e}");
                    continue;
                }
                let conn = shared.registry.insert(stream, peer, shared.clock.now_ms());
                dispatch(conn, &queue, &front, &shared);
            }
            Err(_) if shared.shutdown.is_draining() => break,
            Err(e) if is_transient(&e) => continue,
            Err(e) => {
                Stats::bump(&shared.stats.accept_errors);
                let pause = trouble.failed(&e);
                // Sleep, but wake at once if the drain starts.
                let _ = shared.shutdown.drained().recv_timeout(pause);
            }
        }
    }
    debug!("acceptor stopped");
}

fn configure(stream: &TcpStream, shared: &Shared) -> io::Result<()> {
    stream.set_nodelay(true)?;
    stream.set_write_timeout(Some(shared.config.write_timeout))
}

/// Errors that concern one connection only, such as a client that reset
/// before we accepted it: try the next one at once.
fn is_transient(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        ErrorKind::Interrupted | ErrorKind::ConnectionAborted | ErrorKind::ConnectionReset
    )
}

/// Puts a connection on the queue, or turns it away.
fn dispatch(
    conn: Arc<Conn>,
    queue: &Sender<Arc<Conn>>,
    front: &Receiver<Arc<Conn>>,
    shared: &Shared,
) {
    match shared.config.overload {
        Overload::Reject => match queue.try_send(conn) {
            Ok(()) => {}
            // Full, but partly of connections already turned away.
            Err(TrySendError::Full(conn))
                if shared.expired_in_queue.load(Ordering::SeqCst) > 0
                    && make_room(queue, front, shared) =>
            {
                if let Err(e) = queue.try_send(conn) {
                    turn_away(e.into_inner(), GoAwayCode::Busy, shared);
                }
            }
            // A worker between two connections is about to wait for the
            // next one: it is idle, so hand this one over. The wait is
            // bounded: the count may still include a worker that has just
            // been handed a connection and is waking up.
            Err(TrySendError::Full(conn)) if shared.idle_workers.load(Ordering::SeqCst) > 0 => {
                select! {
                    send(queue, Arc::clone(&conn)) -> sent => if sent.is_err() {
                        turn_away(conn, GoAwayCode::Shutdown, shared);
                    },
                    recv(shared.shutdown.drained()) -> _ => {
                        turn_away(conn, GoAwayCode::Shutdown, shared)
                    }
                    default(HANDOFF_WAIT) => turn_away(conn, GoAwayCode::Busy, shared),
                }
            }
            Err(TrySendError::Full(conn)) => turn_away(conn, GoAwayCode::Busy, shared),
            Err(TrySendError::Disconnected(conn)) => turn_away(conn, GoAwayCode::Shutdown, shared),
        },
        Overload::Block => send_waiting(conn, queue, shared),
    }
}

/// Takes the entry at the front of the queue off it if it is one the reaper
/// already turned away; those are the oldest, so they are at the front.
/// Returns whether a slot was freed. If a worker took that entry first and
/// a live one came off instead, the live one goes back (to the end: the
/// acceptor is the only producer, so the slot it left is still free).
fn make_room(queue: &Sender<Arc<Conn>>, front: &Receiver<Arc<Conn>>, shared: &Shared) -> bool {
    match front.try_recv() {
        Ok(entry) if entry.state() == CLOSING => {
            pool::note_expired_taken(shared);
            true
        }
        Ok(live) => {
            if let Err(e) = queue.try_send(live) {
                // Cannot happen with a single producer; never lose it.
                turn_away(e.into_inner(), GoAwayCode::Busy, shared);
            }
            false
        }
        Err(_) => true, // the workers emptied it meanwhile
    }
}

/// Waits for room in the queue, unless the drain starts first.
fn send_waiting(conn: Arc<Conn>, queue: &Sender<Arc<Conn>>, shared: &Shared) {
    select! {
        send(queue, Arc::clone(&conn)) -> sent => if sent.is_err() {
            turn_away(conn, GoAwayCode::Shutdown, shared);
        },
        recv(shared.shutdown.drained()) -> _ => turn_away(conn, GoAwayCode::Shutdown, shared),
    }
}

/// Sends GOAWAY (BUSY, or SHUTDOWN while draining) and closes.
fn turn_away(conn: Arc<Conn>, code: GoAwayCode, shared: &Shared) {
    let peer = conn.peer;
    // False if the reaper expired it while the acceptor waited.
    if shared.closer.turn_away(conn, code) && code == GoAwayCode::Busy {
        Stats::bump(&shared.stats.rejected_busy);
        debug!("{peer}: queue full, sent BUSY");
    }
}

/// Backoff and log throttling for a run of accept errors.
#[derive(Debug, Default)]
struct Trouble {
    pause: Option<Duration>,
    last_log: Option<Instant>,
    unlogged: u64,
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
        }
        pause
    }

    /// Accepting works again.
    fn resolved(&mut self) {
        if self.pause.take().is_some() {
            info!("accepting connections again");
            self.last_log = None;
            self.unlogged = 0;
        }
    }
}
