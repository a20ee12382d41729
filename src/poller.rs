//! Where quiet connections wait: the poller thread.
//!
//! A connection with nothing to do costs no thread. Its worker hands it over
//! ([`rest`]): the socket is registered with a readiness poller (`polling`,
//! epoll on Linux) in *oneshot* mode, keyed by its registry key, while the
//! `TcpStream` stays where it was, in the connection. The poller thread
//! waits for readiness and, when a resting connection's bytes arrive (or it
//! closes, or fails), puts it back in line for the next free worker. It does
//! not read: the worker that takes the connection does, without blocking.
//!
//! Oneshot is what keeps a connection in exactly one place: after its event
//! fires, the socket is disarmed until a worker rests it again, and re-arming
//! makes the kernel check readiness afresh, so bytes that arrived while a
//! worker held it are not missed. Events are only acted on for a connection
//! still RESTING with the same key, so a late event for a connection that
//! has since been reaped, or whose registry slot now belongs to another
//! connection, is ignored.
//!
//! A quiet connection with an unfinished frame, put aside while the
//! `--max-buffered` budget is spent, is held instead of armed (see
//! `budget`); this thread arms the held connections again when room frees.

use std::io;
use std::sync::{Arc, Weak};
use std::time::Duration;

use log::{debug, error};
use polling::{Event, Events};

use crate::conn::{Conn, ACTIVE, QUEUED, RESTING};
use crate::frame::GoAwayCode;
use crate::reaper;
use crate::shared::Shared;

/// Puts a connection that its worker has let go of (ACTIVE, with its travel
/// state stored) to rest. It is held instead of watched if `hold` says so,
/// or if it carries an unfinished frame while the budget is spent. Fails,
/// returning the connection's state, if the reaper or the drain took it
/// first; the worker then carries that out.
pub(crate) fn rest(shared: &Shared, conn: &Arc<Conn>, hold: bool) -> Result<(), u8> {
    if !conn.transition(ACTIVE, RESTING) {
        return Err(conn.state());
    }
    // Pairs with the drain, which sets its flag before it looks for resting
    // connections: one of the two closes it.
    if shared.shutdown.is_draining() {
        shared.closer.close_resting(conn, GoAwayCode::Shutdown);
        return Ok(());
    }
    let unfinished = conn.travel.lock().carry.is_some();
    if hold || (unfinished && shared.budget.is_spent()) {
        debug!(
            "{}: held with an unfinished frame; the buffer budget is spent",
            conn.peer()
        );
        let mut held = shared.held.lock();
        // Forget the ones closed meanwhile, now and then, so a long spell
        // without room cannot grow the list without bound.
        if held.len() >= 1024 && held.len().is_power_of_two() {
            let before = held.len();
            held.retain(|conn| conn.strong_count() > 0);
            shared.budget.unhold(before - held.len());
        }
        held.push(Arc::downgrade(conn));
        drop(held);
        shared.budget.hold();
        return Ok(());
    }
    if let Err(e) = arm(&shared.poller, conn) {
        error!("{}: cannot watch a resting connection: {e}", conn.peer());
        shared.closer.close_resting(conn, GoAwayCode::Busy);
    }
    Ok(())
}

/// Asks for one readiness event for `conn`: registers its socket the first
/// time, re-arms it after that. Nothing happens once the registry has
/// deregistered it for its close.
fn arm(poller: &polling::Poller, conn: &Conn) -> io::Result<()> {
    let mut registration = conn.registration.lock();
    if registration.closed {
        return Ok(());
    }
    let interest = Event::readable(conn.key);
    if registration.registered {
        poller.modify(&conn.stream, interest)
    } else {
        // SAFETY: the socket is deleted from the poller by
        // `Registry::remove`, under this same lock, and it is only closed
        // when the connection's last handle drops, which is after that.
        unsafe { poller.add(&conn.stream, interest)? };
        registration.registered = true;
        Ok(())
    }
}

/// The held connections still open, if the budget has room to watch them
/// again.
fn release_held(shared: &Shared) -> Vec<Arc<Conn>> {
    if shared.budget.held() == 0 || shared.budget.is_spent() {
        return Vec::new();
    }
    let held = std::mem::take(&mut *shared.held.lock());
    shared.budget.unhold(held.len());
    held.iter().filter_map(Weak::upgrade).collect()
}

/// The poller thread: runs until the drain starts.
pub(crate) fn run(shared: Arc<Shared>) {
    let mut events = Events::new();
    loop {
        events.clear();
        if let Err(e) = shared.poller.wait(&mut events, None) {
            error!("poller: {e}; retrying");
            // Shutdown does not wait for this: the drain wakes the poller.
            std::thread::sleep(Duration::from_millis(10));
        }
        if shared.shutdown.is_draining() {
            break;
        }
        let mut woken = 0;
        let now = shared.clock.now_ms();
        for event in events.iter() {
            let Some(conn) = shared.registry.get(event.key) else {
                continue;
            };
            if conn.expired(now, shared.config.heartbeat_timeout) {
                reaper::reap_resting(&shared, &conn);
                continue;
            }
            if !conn.transition(RESTING, QUEUED) {
                continue; // reaped or drained meanwhile
            }
            woken += 1;
            if let Err(full) = shared.line.push(conn) {
                error!(
                    "{}: the line is full, which should not happen",
                    full.0.peer()
                );
                shared.closer.turn_away(&full.0, GoAwayCode::Busy);
            }
        }
        shared.stats.add_wakeups(woken);
        for conn in release_held(&shared) {
            if conn.state() == RESTING {
                if let Err(e) = arm(&shared.poller, &conn) {
                    error!("{}: cannot watch a resting connection: {e}", conn.peer());
                    shared.closer.close_resting(&conn, GoAwayCode::Busy);
                }
            }
        }
    }
    debug!("poller stopped");
}
