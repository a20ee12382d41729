//! What the engine records for an operator: counters, histograms and the
//! exit report ([`stats`]), the access log ([`access`]), the throttled warn
//! lines for connections turned away ([`turned_away`]) and for failed TLS
//! handshakes ([`refused`]), both throttled ([`throttle`]), and the loop
//! counters a watchdog checks ([`alive`]). The engine writes them; the
//! metrics endpoint and the monitor (`watch`) read them.
//!
//! Nothing here is on the request path beyond a per-worker counter or
//! histogram slot, written only by its worker.

pub(crate) mod access;
pub(crate) mod alive;
pub(crate) mod refused;
pub(crate) mod stats;
pub(crate) mod throttle;
pub(crate) mod turned_away;
