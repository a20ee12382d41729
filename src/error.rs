//! The library's error type: what can stop a server from starting.
//!
//! Once running, the server never fails as a whole: a client's I/O error
//! ends that connection only, and accept errors are logged and backed off.

use std::io;
use std::net::SocketAddr;

/// Why a server could not start.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A setting is out of range.
    #[error("invalid configuration: {0}")]
    InvalidConfig(String),
    /// The listen address did not resolve to anything.
    #[error("cannot resolve listen address {0}")]
    Resolve(String),
    /// The listening socket could not be set up (address in use,
    /// permission denied, ...).
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        /// The address that was asked for.
        addr: SocketAddr,
        /// The operating system's reason.
        source: io::Error,
    },
    /// A server thread could not be started.
    #[error("cannot start {what} thread: {source}")]
    Spawn {
        /// Which thread.
        what: &'static str,
        /// The operating system's reason.
        source: io::Error,
    },
}
