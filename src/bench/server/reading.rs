//! One reading of the server's counters and histograms ([`Reading`]), and
//! the arithmetic on its histograms ([`Hist`]): the difference between two
//! readings, bucket by bucket, and percentiles interpolated inside a
//! bucket.
//!
//! Percentiles come from the server's buckets (1 µs to 10 s in 1-2.5-5
//! steps), interpolated linearly inside the bucket as Prometheus'
//! `histogram_quantile` does: they are coarse (a p99 of "3.7 ms" means
//! "between 2.5 and 5 ms"), and the maximum is the upper bound of the
//! highest non-empty bucket.
//!
//! Plain data: both sources (in process and the metrics endpoint) produce
//! a `Reading`, and the window's figures are the difference of two.

use crate::bench::point::{Percentiles, Rejections};
use crate::observe::stats::BOUNDS_NS;

/// A histogram: upper bounds in seconds (the last may be +Inf) and the
/// count in each bucket (not cumulative), with the sum of observations.
#[derive(Debug, Clone, Default, PartialEq)]
pub(super) struct Hist {
    pub(super) bounds: Vec<f64>,
    pub(super) counts: Vec<u64>,
    pub(super) sum: f64,
}

impl Hist {
    /// `self - before`, bucket by bucket (a restart in between reads as 0).
    pub(super) fn since(&self, before: &Hist) -> Hist {
        let counts = self
            .counts
            .iter()
            .enumerate()
            .map(|(i, &c)| c.saturating_sub(before.counts.get(i).copied().unwrap_or(0)))
            .collect();
        Hist {
            bounds: self.bounds.clone(),
            counts,
            sum: (self.sum - before.sum).max(0.0),
        }
    }

    pub(super) fn count(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// The `q` quantile in seconds, interpolated inside its bucket.
    fn quantile(&self, q: f64) -> f64 {
        let total = self.count();
        if total == 0 {
            return 0.0;
        }
        let rank = q * total as f64;
        let mut below = 0u64;
        for (i, &count) in self.counts.iter().enumerate() {
            if count > 0 && (below + count) as f64 >= rank {
                let lower = if i == 0 { 0.0 } else { self.bounds[i - 1] };
                let upper = self.finite_bound(i);
                let within = ((rank - below as f64) / count as f64).clamp(0.0, 1.0);
                return lower + (upper - lower) * within;
            }
            below += count;
        }
        self.max()
    }

    /// The upper bound of the highest non-empty bucket, in seconds.
    fn max(&self) -> f64 {
        self.counts
            .iter()
            .rposition(|&c| c > 0)
            .map_or(0.0, |i| self.finite_bound(i))
    }

    /// Bucket `i`'s upper bound, or for +Inf the largest finite bound.
    fn finite_bound(&self, i: usize) -> f64 {
        let bound = self.bounds.get(i).copied().unwrap_or(f64::INFINITY);
        if bound.is_finite() {
            bound
        } else {
            self.bounds
                .iter()
                .copied()
                .filter(|b| b.is_finite())
                .fold(0.0, f64::max)
        }
    }

    pub(super) fn percentiles(&self) -> Percentiles {
        let us = |s: f64| (s * 1e6).round() as u64;
        Percentiles {
            p50_us: us(self.quantile(0.50)),
            p90_us: us(self.quantile(0.90)),
            p99_us: us(self.quantile(0.99)),
            max_us: us(self.max()),
        }
    }

    pub(super) fn from_stats(h: &crate::observe::stats::Histogram) -> Hist {
        let mut bounds: Vec<f64> = BOUNDS_NS.iter().map(|&ns| ns as f64 / 1e9).collect();
        bounds.push(f64::INFINITY);
        Hist {
            bounds,
            counts: h.counts.to_vec(),
            sum: h.sum_ns as f64 / 1e9,
        }
    }
}

/// The server's counters at one moment.
#[derive(Debug, Clone, Default, PartialEq)]
pub(super) struct Reading {
    pub(super) queue_wait: Hist,
    pub(super) service: Hist,
    pub(super) data_requests: u64,
    pub(super) rests: Option<u64>,
    pub(super) wakeups: Option<u64>,
    pub(super) rejected: Rejections,
    pub(super) busy: f64,
    pub(super) pool: usize,
    /// TLS handshakes completed (`None` from an endpoint without them).
    pub(super) tls_handshakes: Option<u64>,
}
