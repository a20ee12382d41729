//! Where quiet connections wait: armed in the epoll set, at no thread's
//! cost.
//!
//! A worker that has nothing left to do for a connection lets it *rest*
//! ([`rest`]): the connection becomes RESTING and its socket is armed for
//! one input event. When its bytes arrive (or it closes, or fails), the
//! kernel puts it in line and wakes one waiting worker, which takes it
//! straight from the epoll set (see `line`): no thread stands between a
//! resting connection and the worker that serves it. A connection whose
//! deadline has passed when it is taken is not served: the worker closes it
//! as the reaper would (see `reaper`).
//!
//! **Resting while the `--max-buffered` budget is spent.** A connection with
//! an unfinished frame is then not read further. Its socket's receive
//! low-water mark is raised to the bytes the frame still needs, so it wakes
//! only once the whole frame has arrived: the frame is then read and
//! answered at once, and the client's unfinished bytes stay in the kernel
//! meanwhile, where TCP flow control holds it back. Linux grants a mark up
//! to half the largest receive buffer (`net.ipv4.tcp_rmem`'s last value,
//! several MiB); a frame that needs more is *held* instead: not armed at all until room frees in the
//! budget, then let back in 16 at a time ([`release_held`]). Heartbeat
//! deadlines keep running either way.

use std::sync::{Arc, Weak};

use log::{error, trace};

use crate::engine::conn::{Conn, ACTIVE, RESTING};
use crate::engine::shared::Shared;
use crate::engine::socket;
use crate::observe::access::Why;

/// What wakes a resting connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Wake {
    /// Its next bytes, or its client closing.
    Bytes,
    /// Its whole unfinished frame (the low-water mark is set), or room in
    /// the budget.
    WholeOrRoom,
    /// Room in the budget.
    Room,
}

/// Puts a connection that its worker has let go of (ACTIVE, with its travel
/// state stored) to rest, to be woken as `wake` says. Fails if another
/// thread took it first (only a forced stop does); the worker then carries
/// that out.
pub(crate) fn rest(shared: &Shared, conn: &Arc<Conn>, wake: Wake) -> Result<(), ()> {
    if !conn.transition(ACTIVE, RESTING) {
        return Err(());
    }
    // Pairs with the drain, which sets its flag before it looks for resting
    // connections: one of the two closes it.
    if shared.shutdown.is_draining() {
        shared.closer.close_resting(conn, Why::Shutdown);
        return Ok(());
    }
    if wake != Wake::Bytes {
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
        if wake == Wake::Room {
            return Ok(());
        }
    }
    arm(shared, conn);
    Ok(())
}

fn arm(shared: &Shared, conn: &Arc<Conn>) {
    if let Err(e) = shared.line.rest(conn) {
        error!("{}: cannot watch a resting connection: {e}", conn.who());
        shared.closer.close_resting(conn, Why::Trouble);
    }
}

/// Held connections let back in per room event.
const RELEASE_BATCH: usize = 16;

/// A worker took the room event: arms the longest-held connections still
/// open, a batch at a time, if the budget has room. A batch that leaves room
/// and more held connections notifies again for the next one: letting them
/// all in at once would send every one through the line each time a few
/// bytes free, only for most to be held again.
pub(crate) fn release_held(shared: &Shared) {
    shared.line.rearm_room();
    if shared.budget.held() == 0 || shared.budget.is_spent() {
        return;
    }
    let mut held = shared.held.lock();
    let n = RELEASE_BATCH.min(held.len());
    let batch: Vec<Weak<Conn>> = held.drain(..n).collect();
    let more = !held.is_empty();
    drop(held);
    shared.budget.unhold(batch.len());
    if more && !shared.budget.is_spent() {
        shared.line.notify_room();
    }
    for conn in batch.iter().filter_map(Weak::upgrade) {
        // One that its whole frame woke meanwhile is no longer resting, or
        // rests again for reasons of its own: arming it once more at worst
        // delivers an event that finds it taken.
        if conn.state() == RESTING {
            let _ = socket::set_lowat(&conn.stream, 1);
            arm(shared, &conn);
        }
    }
}
