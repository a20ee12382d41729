//! The measured window: its [`Edge`]s, told to the caller so it can read
//! the server exactly over it; the errors counted inside it; what is
//! recorded when it ends; and the point it yields.
//!
//! Latency counts the requests sent (closed loop) or due (open loop, PINGs)
//! inside the window whose replies arrive inside it, and throughput every
//! reply that arrives inside it. At the end of the window every request
//! still unanswered records its wait so far, so clients the server never
//! served show in the percentiles.

use std::time::Instant;

use super::idle::percentiles;
use super::state::{micros, Driver, Phase};
use crate::bench::point::{BenchPoint, TlsFigures};

/// The edges of the measured window, so the caller can read the server
/// (CPU time, counters, histograms) exactly over it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Edge {
    /// The warm-up is over: the window starts now.
    Start,
    /// The window is over (the clients are still connected).
    End,
}

impl Driver<'_> {
    /// Ends the window: tells the caller, then every busy request still
    /// unanswered records its wait so far.
    pub(super) fn end_window(&mut self, now: Instant, watch: &mut dyn FnMut(Edge)) -> Instant {
        watch(Edge::End);
        self.phase = Phase::Drain;
        for c in self.conns.iter().filter(|c| !c.idle) {
            for owed in &c.owed {
                self.latency
                    .saturating_record(micros(now.saturating_duration_since(owed.from)));
            }
        }
        now
    }

    pub(super) fn outcome(&self, real_start: Instant, real_end: Instant) -> BenchPoint {
        let seconds = real_end.saturating_duration_since(real_start).as_secs_f64();
        let h = &self.latency;
        let at = |q: f64| h.value_at_quantile(q);
        let idle = self.idle_figures();
        let per_sec = |n: u64| {
            if seconds > 0.0 {
                n as f64 / seconds
            } else {
                0.0
            }
        };
        let tls = self.tls.map(|_| TlsFigures {
            handshakes: self.handshakes,
            handshakes_per_sec: per_sec(self.handshakes),
            handshake: percentiles(&self.handshake_latency),
            server_handshakes: None,
            server_cpu_us_per_handshake: None,
        });
        BenchPoint {
            workers: None,
            requests: self.requests,
            seconds,
            requests_per_sec: if seconds > 0.0 {
                self.requests as f64 / seconds
            } else {
                0.0
            },
            p50_us: at(0.50),
            p90_us: at(0.90),
            p99_us: at(0.99),
            p999_us: at(0.999),
            max_us: h.max(),
            clients_served: self.conns.iter().filter(|c| !c.idle && c.served).count(),
            busy: self.busy,
            errors: self.errors,
            first_error: self.first_error.clone(),
            server_cpu_seconds: None,
            clients: self.options.clients,
            offered_rps: self.options.rate,
            idle,
            server: None,
            tls,
        }
    }

    /// Counts an error seen in the window, keeping the first one's words.
    pub(super) fn error(&mut self, what: impl FnOnce() -> String) {
        if self.phase == Phase::Window {
            self.errors += 1;
            if self.first_error.is_none() {
                self.first_error = Some(what());
            }
        }
    }
}
