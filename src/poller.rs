//! Where quiet connections wait: the poller thread.
//!
//! A connection with nothing to do costs no thread. Its worker hands it over
//! ([`rest`]): the socket is registered with an epoll instance in *oneshot*
//! mode, keyed by its registry key, while the `TcpStream` stays where it was,
//! in the connection. The poller thread waits for readiness and, when a
//! resting connection's bytes arrive (or it closes, or fails), puts it back
//! in line for the next free worker. It does not read: the worker that takes
//! the connection does, without blocking.
//!
//! Oneshot is what keeps a connection in exactly one place: after its event
//! fires, the socket is disarmed until a worker rests it again, and re-arming
//! makes the kernel check readiness afresh, so bytes that arrived while a
//! worker held it are not missed. Events are only acted on for a connection
//! still RESTING with the same key, so a late event for a connection that
//! has since been reaped, or whose registry slot now belongs to another
//! connection, is ignored. A connection whose deadline has passed is reaped
//! here (GOAWAY 2) rather than woken: bytes that did not complete a frame in
//! time are the client's silence, not the server's delay.
//!
//! epoll comes from `rustix`, which wraps the three system calls and nothing
//! else: one `epoll_wait` per wake-up and one `epoll_ctl` per rest. (The
//! `polling` crate, tried first, re-arms its own timer and notifier around
//! every wait, four more system calls each time; `mio` has no oneshot mode,
//! so a socket registered once would wake this thread for every request of
//! a connection a worker is serving.) A socket is removed from the epoll
//! set by the kernel when it closes; connections never duplicate theirs.
//!
//! A quiet connection with an unfinished frame, put aside while the
//! `--max-buffered` budget is spent, is held instead of armed (see `budget`);
//! this thread arms the held connections again when room frees.

use std::sync::{Arc, Weak};
use std::time::Duration;

use log::{debug, error, trace};

use crate::access::Why;
use crate::conn::{Conn, QUEUED, RESTING};
use crate::epoll::WAKE_KEY;
use crate::reaper;
use crate::shared::Shared;
use crate::worker::leave_active;

/// Most events taken from the kernel per wait.
const EVENTS: usize = 1024;

/// Puts a connection that its worker has let go of (ACTIVE, with its travel
/// state stored) to rest. It is held instead of watched if `hold` says so,
/// or if it carries an unfinished frame while the budget is spent. Fails,
/// returning the connection's state, if the reaper or the drain took it
/// first; the worker then carries that out.
pub(crate) fn rest(shared: &Shared, conn: &Arc<Conn>, hold: bool) -> Result<(), u8> {
    if !leave_active(conn, RESTING) {
        return Err(conn.state());
    }
    // Pairs with the drain, which sets its flag before it looks for resting
    // connections: one of the two closes it.
    if shared.shutdown.is_draining() {
        shared.closer.close_resting(conn, Why::Shutdown);
        return Ok(());
    }
    let unfinished = conn.travel.lock().carry.is_some();
    if hold || (unfinished && shared.budget.is_spent()) {
        trace!(
            "{}: held with an unfinished frame; the buffer budget is spent",
            conn.who()
        );
        let mut held = shared.held.lock();
        // Forget the ones closed meanwhile, now and then, so a long spell
        // without room cannot grow the list without bound.
        if held.len() >= 1024 && held.len().is_power_of_two() {
            let before = held.len();
            held.retain(|conn| conn.strong_count() > 0);
            shared.budget.unhold(before - held.len());
        }
        held.push_back(Arc::downgrade(conn));
        drop(held);
        shared.budget.hold();
        return Ok(());
    }
    if let Err(e) = shared.poller.arm(conn) {
        error!("{}: cannot watch a resting connection: {e}", conn.who());
        shared.closer.close_resting(conn, Why::Trouble);
    }
    Ok(())
}

/// Held connections released per wake-up while the budget has room.
const RELEASE_BATCH: usize = 16;

/// The longest-held connections still open, a batch at a time, if the
/// budget has room to watch them again. A batch that leaves room and more
/// held connections wakes this thread again for the next one: waking them
/// all at once would send every one through the line each time a few
/// bytes free, only for most to be held again.
fn release_held(shared: &Shared) -> Vec<Arc<Conn>> {
    if shared.budget.held() == 0 || shared.budget.is_spent() {
        return Vec::new();
    }
    let mut held = shared.held.lock();
    let n = RELEASE_BATCH.min(held.len());
    let batch: Vec<Weak<Conn>> = held.drain(..n).collect();
    let more = !held.is_empty();
    drop(held);
    shared.budget.unhold(batch.len());
    if more && !shared.budget.is_spent() {
        shared.poller.notify();
    }
    batch.iter().filter_map(Weak::upgrade).collect()
}

/// The poller thread: runs until the drain starts.
pub(crate) fn run(shared: Arc<Shared>) {
    let mut events = Vec::with_capacity(EVENTS);
    loop {
        if let Err(e) = shared.poller.wait(&mut events) {
            error!("poller: {e}; retrying");
            // Shutdown does not wait for this: the drain wakes the poller.
            std::thread::sleep(Duration::from_millis(10));
        }
        if shared.shutdown.is_draining() {
            break;
        }
        let mut woken = 0;
        let now = shared.clock.now_ms();
        for event in &events {
            let key = event.data.u64();
            if key == WAKE_KEY {
                shared.poller.clear_wake();
                continue;
            }
            let Some(conn) = shared.registry.get(key as usize) else {
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
            trace!("{}: woken, bytes arrived", conn.who());
            if let Err(full) = shared.line.push(conn) {
                error!(
                    "{}: the line is full, which should not happen",
                    full.0.who()
                );
                shared.closer.turn_away(&full.0, Why::Trouble);
            }
        }
        shared.stats.add_wakeups(woken);
        for conn in release_held(&shared) {
            if conn.state() == RESTING {
                if let Err(e) = shared.poller.arm(&conn) {
                    error!("{}: cannot watch a resting connection: {e}", conn.who());
                    shared.closer.close_resting(&conn, Why::Trouble);
                }
            }
        }
    }
    debug!("poller stopped");
}
