//! The idle clients (`idle` N): connected for the whole run, each sending
//! only a PING every `idle_ping` (`open_loop` sends them on their own
//! schedule). Their PONG latency, from each PING's due time, goes to a
//! histogram of its own.
//!
//! PINGs due in the window get a short grace after it ([`PING_GRACE`]) for
//! their PONG, then count as missed.

use std::time::Duration;

use hdrhistogram::Histogram;

use super::state::Driver;
use crate::bench::point::{IdleFigures, Percentiles};

/// How long PINGs due in the window may wait for their PONG after it ends.
pub(super) const PING_GRACE: Duration = Duration::from_millis(200);

impl Driver<'_> {
    pub(super) fn ping_grace(&self) -> Duration {
        if self.options.idle == 0 {
            Duration::ZERO
        } else {
            PING_GRACE.min(self.options.idle_ping)
        }
    }

    pub(super) fn pings_outstanding(&self) -> bool {
        self.conns
            .iter()
            .filter(|c| c.idle)
            .any(|c| c.owed.iter().any(|o| o.measured))
    }

    /// What the idle clients saw, when there were any: the PONGs in the
    /// window, the PINGs due in it still unanswered, and PONG latency.
    pub(super) fn idle_figures(&self) -> Option<IdleFigures> {
        (self.options.idle > 0).then(|| IdleFigures {
            pongs: self.pongs,
            missed: self
                .conns
                .iter()
                .filter(|c| c.idle)
                .map(|c| c.owed.iter().filter(|o| o.measured).count() as u64)
                .sum(),
            latency: percentiles(&self.idle_latency),
        })
    }
}

/// The percentiles of a latency histogram, for the idle clients' figures
/// and the handshakes'.
pub(super) fn percentiles(h: &Histogram<u64>) -> Percentiles {
    Percentiles {
        p50_us: h.value_at_quantile(0.50),
        p90_us: h.value_at_quantile(0.90),
        p99_us: h.value_at_quantile(0.99),
        max_us: h.max(),
    }
}
