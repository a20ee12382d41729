//! The bench: where idle workers wait when as many as there are CPUs
//! already wait in `epoll_wait` (see `line`).
//!
//! The kernel wakes a sleeping `epoll_wait` waiter for every event, even when
//! a worker coming back from its last request then takes that event first;
//! the waiter woken for nothing sleeps again. More waiters than CPUs cannot
//! run at once anyway, so the others park here, the most recent on top
//! (whose caches are warmest), and the top one takes a waiter's place when
//! the last waiter takes an event: somebody always watches the line.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;
use std::thread::Thread;

use parking_lot::Mutex;

/// Where idle workers wait when as many as there are CPUs already wait in
/// `epoll_wait`: parked, the most recent on top (see the module docs).
#[derive(Debug)]
pub(crate) struct Bench {
    /// The most workers in `epoll_wait` at once: the CPUs.
    cap: usize,
    state: Mutex<BenchState>,
    threads: Box<[OnceLock<Thread>]>,
    called: Box<[AtomicBool]>,
    closed: AtomicBool,
}

#[derive(Debug, Default)]
struct BenchState {
    /// Workers in `epoll_wait`, or on their way in or out.
    waiters: usize,
    /// Parked workers, the most recent last.
    parked: Vec<usize>,
}

impl Bench {
    pub(crate) fn new(workers: usize, cap: usize) -> Self {
        Bench {
            cap: cap.max(1),
            state: Mutex::new(BenchState::default()),
            threads: (0..workers).map(|_| OnceLock::new()).collect(),
            called: (0..workers).map(|_| AtomicBool::new(false)).collect(),
            closed: AtomicBool::new(false),
        }
    }

    pub(crate) fn register(&self, me: usize) {
        let _ = self.threads[me].set(std::thread::current());
    }

    /// Returns when worker `me` may wait in `epoll_wait`.
    pub(crate) fn wait_turn(&self, me: usize) {
        loop {
            {
                let mut state = self.state.lock();
                if state.waiters < self.cap || self.closed.load(Ordering::SeqCst) {
                    state.waiters += 1;
                    return;
                }
                state.parked.push(me);
            }
            while !self.called[me].swap(false, Ordering::SeqCst) {
                std::thread::park();
            }
        }
    }

    /// A waiter took an event: if it was the last one, the next parked
    /// worker takes its place, so the line is always watched.
    pub(crate) fn leave(&self) {
        let mut state = self.state.lock();
        state.waiters -= 1;
        if state.waiters == 0 {
            if let Some(next) = state.parked.pop() {
                drop(state);
                self.call(next);
            }
        }
    }

    fn call(&self, worker: usize) {
        self.called[worker].store(true, Ordering::SeqCst);
        if let Some(thread) = self.threads[worker].get() {
            thread.unpark();
        }
    }

    /// Every parked worker goes to the line (the drain).
    pub(crate) fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
        let parked = std::mem::take(&mut self.state.lock().parked);
        for worker in parked {
            self.call(worker);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;
    use std::sync::Arc;
    use std::time::Duration;

    /// With room for one waiter, the others park; each time the waiter
    /// leaves, the most recently parked takes its place; closing calls the
    /// rest.
    #[test]
    fn the_bench_keeps_one_waiter_and_calls_the_most_recent_next() {
        let bench = Arc::new(Bench::new(3, 1));
        bench.wait_turn(0); // worker 0 waits in line
        let (tx, rx) = mpsc::channel();
        let spawn = |me: usize| {
            let bench = Arc::clone(&bench);
            let tx = tx.clone();
            std::thread::spawn(move || {
                bench.register(me);
                bench.wait_turn(me);
                tx.send(me).unwrap();
            })
        };
        let one = spawn(1);
        std::thread::sleep(Duration::from_millis(50));
        let two = spawn(2);
        std::thread::sleep(Duration::from_millis(50));
        assert!(rx.try_recv().is_err(), "both park while worker 0 waits");
        bench.leave();
        let first = rx
            .recv_timeout(Duration::from_secs(5))
            .expect("one is called");
        assert_eq!(first, 2, "the most recently parked goes first");
        assert!(
            rx.recv_timeout(Duration::from_millis(100)).is_err(),
            "one waiter at a time"
        );
        bench.close();
        assert_eq!(rx.recv_timeout(Duration::from_secs(5)), Ok(1));
        one.join().unwrap();
        two.join().unwrap();
    }
}
