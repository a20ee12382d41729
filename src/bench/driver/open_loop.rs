//! The open loop (`rate` R) and the idle clients' PINGs: two global
//! [`Schedule`](super::state::Schedule)s, each event sent when due whether or not earlier replies
//! are back (they pipeline on the connection), or as soon as the loop can
//! when it is late.
//!
//! Request `k` is due at `start + k / R` on busy client `k mod clients`;
//! PING `k` at `start + k * idle_ping / N` on idle client `k mod N`, so
//! each idle client PINGs every `idle_ping`, staggered. Latency counts
//! from the due time, so it includes every wait a real client would see.

use std::time::Instant;

use super::state::{Driver, MAX_WAIT};

/// Scheduled requests sent before the loop reads replies again, when late.
const SENDS_PER_TURN: usize = 4096;

impl Driver<'_> {
    /// Sends every scheduled request and PING due by `now` (a bounded
    /// number per turn); returns when the next one is due.
    pub(super) fn send_scheduled(&mut self, now: Instant) -> Instant {
        let mut next = now + MAX_WAIT;
        let mut sent = 0;
        let mut touched = Vec::new();
        for idle in [false, true] {
            loop {
                let schedule = if idle {
                    self.idle_schedule.as_mut()
                } else {
                    self.busy_schedule.as_mut()
                };
                let Some(schedule) = schedule else { break };
                let due = schedule.due(self.start);
                if due >= self.window_end {
                    break;
                }
                if due > now || sent >= SENDS_PER_TURN {
                    next = next.min(due);
                    break;
                }
                let k = schedule.next;
                schedule.next += 1;
                let i = if idle {
                    self.options.clients + (k % self.options.idle as u64) as usize
                } else {
                    (k % self.options.clients as u64) as usize
                };
                self.enqueue(i, due, due >= self.window_start);
                touched.push(i);
                sent += 1;
            }
        }
        touched.sort_unstable();
        touched.dedup();
        for i in touched {
            self.flush(i);
        }
        next
    }
}
