//! The fixed pool of worker threads that drain the connection queue.
//!
//! Each worker takes one connection at a time from the bounded queue and
//! serves it until it ends, so the pool size bounds how many clients are
//! served at once; the rest wait in the queue (where the reaper watches their
//! deadline) or are turned away by the acceptor. No thread is ever started
//! per client. A worker never dies from a client: errors end that connection
//! only, and even a panic outside the service is caught, logged and survived.
//!
//! Workers exit once the acceptor has gone (the queue's sending side is
//! dropped) and the queue is empty. While draining, a connection taken from
//! the queue is sent GOAWAY 1 instead of being served.

use std::net::Shutdown as How;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread::JoinHandle;

use crossbeam_channel::{Receiver, Sender};
use crossbeam_utils::sync::WaitGroup;
use log::error;

use crate::connection::{panic_message, Shared, Worker};
use crate::frame::GoAwayCode;
use crate::registry::{Conn, ACTIVE, CLOSING, QUEUED};
use crate::{reaper, Error};

/// Starts `shared.config.workers` workers and returns once every one of
/// them is waiting for a connection. Each holds a clone of `done`, so the
/// receiving side disconnects when the last worker has exited.
pub(crate) fn spawn(
    shared: &Arc<Shared>,
    queue: &Receiver<Arc<Conn>>,
    done: &Sender<()>,
) -> Result<Vec<JoinHandle<()>>, Error> {
    let ready = WaitGroup::new();
    let workers = start(shared, queue, done, &ready)?;
    ready.wait();
    Ok(workers)
}

fn start(
    shared: &Arc<Shared>,
    queue: &Receiver<Arc<Conn>>,
    done: &Sender<()>,
    ready: &WaitGroup,
) -> Result<Vec<JoinHandle<()>>, Error> {
    (0..shared.config.workers)
        .map(|index| {
            let worker = Worker::new(index, Arc::clone(shared));
            let queue = queue.clone();
            let done = done.clone();
            let ready = ready.clone();
            std::thread::Builder::new()
                .name(format!("wharf-worker-{index}"))
                .spawn(move || run(worker, queue, done, ready))
                .map_err(|source| Error::Spawn {
                    what: "worker",
                    source,
                })
        })
        .collect()
}

/// An entry the reaper had turned away has left the queue.
pub(crate) fn note_expired_taken(shared: &Shared) {
    let _ = shared
        .expired_in_queue
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1));
}

fn run(mut worker: Worker, queue: Receiver<Arc<Conn>>, done: Sender<()>, ready: WaitGroup) {
    let shared = Arc::clone(worker.shared());
    let mut ready = Some(ready);
    loop {
        // Counted idle before waiting, so the acceptor never turns a client
        // away as BUSY while this worker is about to take it.
        shared.idle_workers.fetch_add(1, Ordering::SeqCst);
        drop(ready.take());
        let next = queue.recv();
        shared.idle_workers.fetch_sub(1, Ordering::SeqCst);
        let Ok(conn) = next else {
            break; // the acceptor is gone and the queue is empty
        };
        // Its deadline passed in the queue since the reaper's last scan: it
        // is turned away with BUSY and never occupies a worker.
        if conn.expired(shared.clock.now_ms(), shared.config.heartbeat_timeout) {
            if !reaper::turn_away_expired(&shared, conn) {
                note_expired_taken(&shared);
            }
            continue;
        }
        // Lost the race to the reaper or the drain: they close it.
        if !conn.transition(QUEUED, ACTIVE) {
            if conn.state() == CLOSING {
                note_expired_taken(&shared);
            }
            continue;
        }
        // Pairs with the drain, which sets the flag before it looks for
        // ACTIVE connections to wake: one of the two sees the other.
        if shared.shutdown.is_draining() {
            worker.finish(conn, crate::connection::End::GoAway(GoAwayCode::Shutdown));
            continue;
        }
        match catch_unwind(AssertUnwindSafe(|| worker.serve(&conn))) {
            Ok(end) => worker.finish(conn, end),
            Err(panic) => {
                error!(
                    "{}: worker recovered from a panic: {}",
                    conn.peer,
                    panic_message(&panic)
                );
                conn.shutdown(How::Both);
                shared.registry.remove(&conn);
                worker.reset_buffers();
            }
        }
    }
    drop(done);
}
