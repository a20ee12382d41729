//! Why a benchmark could not run: one error type for every stage, from
//! checking the options to reading an external server's metrics.
//!
//! A module of its own because every other part of the benchmark returns
//! it (the options' check, the driver, the load, the sweep) and none of
//! them should have to import another for it.

use std::net::SocketAddr;

/// Why a benchmark could not run.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// The in-process server did not start.
    #[error(transparent)]
    Server(#[from] crate::Error),
    /// A thread could not be started.
    #[error("cannot start a client thread: {0}")]
    Spawn(std::io::Error),
    /// The options make no sense, or cannot run here (too few file
    /// descriptors for the clients).
    #[error("invalid benchmark options: {0}")]
    Invalid(String),
    /// Not one connection to the server could be opened: the first cause.
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        /// The server's address.
        addr: SocketAddr,
        /// Why the first attempt failed.
        source: std::io::Error,
    },
    /// The load driver's own poller failed.
    #[error("the load driver failed: {0}")]
    Driver(std::io::Error),
    /// The external server's metrics endpoint (`metrics`) could not be read.
    #[error("{0}")]
    Metrics(String),
    /// The TLS side of the run could not be set up (the throwaway
    /// certificate, or the client's configuration).
    #[error("TLS: {0}")]
    Tls(String),
    /// Cancelled before the measured window started: nothing was measured
    /// (the points before it stand).
    #[error("cancelled before the measured window started")]
    Cancelled,
}
