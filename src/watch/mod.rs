//! What the outside reads of a running server: the Prometheus endpoint and
//! its probes ([`metrics`], a thread of its own), and the [`Monitor`] a
//! supervisor holds (the binary's systemd notifications). Both only read the
//! engine's state and what it records (`observe`); nothing here can slow or
//! stop the data path.
//!
//! [`Monitor`]: monitor::Monitor

pub(crate) mod metrics;
pub(crate) mod monitor;
