//! ADAPTER, TEMPORARY: today's closed-loop `load::measure` behind the
//! signature of the event-driven driver that replaces it. At the merge,
//! delete this file and, in `mod.rs`, replace `mod adapter;` and
//! `use adapter::measure; pub use adapter::Edge;` by the driver's own
//! `measure` and `Edge`. Nothing else in the sweep depends on it.
//!
//! The old engine takes no callback, so the edges are approximate: it runs
//! on a thread of its own while this one sleeps through the warm-up, calls
//! `watch(Start)`, sleeps through the window, and calls `watch(End)`. It
//! cannot be interrupted either: a cancel waits for the current point to
//! end and returns [`BenchError::Cancelled`]. It knows nothing of `rate`
//! or `idle` (a closed loop, whatever the options say); `offered_rps` is
//! copied from `rate` so the report and the recommendation can be tried.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use super::{load, BenchError, BenchOptions, BenchPoint};

/// The edges of the measured window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Edge {
    /// The warm-up is over; measuring starts now.
    Start,
    /// The window is over.
    End,
}

/// Loads `addr` as `options` say, calling `watch` at the window's edges.
pub(super) fn measure(
    addr: SocketAddr,
    options: &BenchOptions,
    cancel: &AtomicBool,
    watch: &mut dyn FnMut(Edge),
) -> Result<BenchPoint, BenchError> {
    let sleep = |d: Duration| {
        let end = Instant::now() + d;
        while !cancel.load(Ordering::Relaxed) {
            let now = Instant::now();
            if now >= end {
                return false;
            }
            std::thread::sleep((end - now).min(Duration::from_millis(10)));
        }
        true
    };
    std::thread::scope(|scope| {
        let run = std::thread::Builder::new()
            .name("bench-load".into())
            .spawn_scoped(scope, || load::measure(addr, options, None))
            .map_err(BenchError::Spawn)?;
        let cancelled = sleep(options.warmup) || {
            watch(Edge::Start);
            let cancelled = sleep(options.duration);
            watch(Edge::End);
            cancelled
        };
        let point = run
            .join()
            .map_err(|_| BenchError::Invalid("the load thread panicked".into()))??;
        if cancelled {
            return Err(BenchError::Cancelled);
        }
        Ok(BenchPoint {
            offered_rps: options.rate,
            ..point
        })
    })
}
