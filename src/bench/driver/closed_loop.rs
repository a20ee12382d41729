//! The closed loop (no `rate`): each busy client sends `pipeline`
//! requests, waits for every reply, and sends the next batch, closing and
//! reconnecting after `batches_per_connection` batches; latency counts
//! from the send.
//!
//! A batch goes out when a client opens, at the warm-up's start, and when
//! the last reply of the one before arrives.

use std::time::Instant;

use super::state::{Driver, Lost, Phase, State};

impl Driver<'_> {
    /// Closed loop: the next batch of busy client `i`, if it is open,
    /// owes nothing and the window is not over.
    pub(super) fn next_batch(&mut self, i: usize, now: Instant) {
        if self.options.rate.is_some()
            || !matches!(self.phase, Phase::Warmup | Phase::Window)
            || now >= self.window_end
        {
            return;
        }
        let c = &self.conns[i];
        if c.idle || c.state != State::Open || !c.owed.is_empty() {
            return;
        }
        if self
            .options
            .batches_per_connection
            .is_some_and(|limit| c.batches >= limit)
        {
            self.close(i, Lost::Churn);
            return;
        }
        let measured = now >= self.window_start;
        for _ in 0..self.options.pipeline {
            self.enqueue(i, now, measured);
        }
        self.conns[i].batches += 1;
        self.flush(i);
    }
}
