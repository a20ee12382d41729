//! # wharf
//!
//! A TCP server for long-lived services with fixed resource limits. An
//! acceptor thread puts accepted connections in line for a fixed pool of
//! worker threads; a connection holds a worker only while it has work, and
//! rests in an epoll set, at no thread's cost, while it is quiet. The line
//! is that epoll set's ready list: idle workers wait on it, and the worker
//! the kernel wakes for a connection's bytes is the one that serves it. A
//! reaper drops clients that miss their heartbeat deadline; a drain-and-close
//! shutdown answers every request it started before closing. The number of
//! threads never grows with the number of clients, and the library installs
//! no signal handler and sends no signal.
//!
//! ```text
//!             accept()            the line: one epoll set's ready list     --workers threads
//! clients ──> acceptor ──new────> [conn][conn][conn] ──the kernel wakes──> worker ─┐
//!               │ --max-connections,  ^                                     worker ─┼─> Service
//!               │ --queue: GOAWAY 3   │ bytes arrived                       worker ─┘     │
//!               v   or wait           │                                       │ quiet     v
//!            registry (every       resting connections, armed in  <───────────┘        replies
//!            connection: state,    the same set (oneshot)
//!            deadline)
//!               ^
//!            reaper (GOAWAY 2 / GOAWAY 3) ──> closer (GOAWAY, linger, close)
//! ```
//!
//! `docs/design.md` follows one connection through its whole life.
//!
//! The binary `wharf serve` is a thin layer over this library: it parses
//! flags into a [`Config`], installs SIGINT/SIGTERM handlers that call
//! [`ShutdownHandle::shutdown`] (a second signal calls
//! [`ShutdownHandle::force`]), and logs the [`Report`] on exit. Under
//! systemd it serves a socket-activated listener with
//! [`Server::from_listener`] and [`Listener::Inherited`] (which the drain
//! leaves open for the next instance), and feeds systemd's status and
//! watchdog from a [`Monitor`].
//!
//! ## Embedding
//!
//! ```
//! use std::io::{Read, Write};
//! use std::net::TcpStream;
//! use wharf::{Config, Echo, Framing, Server};
//!
//! let config = Config { workers: 2, ..Config::default() };
//! let server = Server::start("127.0.0.1:0", config, Echo::default())?;
//!
//! // One DATA request and its response, in length framing.
//! let mut client = TcpStream::connect(server.local_addr())?;
//! let mut request = Vec::new();
//! Framing::Length.encode_data(b"hello", &mut request);
//! client.write_all(&request)?;
//! let mut response = vec![0; request.len()];
//! client.read_exact(&mut response)?;
//! assert_eq!(response, request);
//!
//! // The same drain that SIGTERM starts in the binary.
//! server.handle().shutdown();
//! let report = server.join();
//! assert_eq!(report.requests, 1);
//! assert!(!report.forced);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![warn(missing_docs)]

pub mod bench;
pub mod build_info;
pub mod client;
pub mod config;
mod engine;
mod error;
pub mod frame;
pub mod human;
mod observe;
mod server;
pub mod service;
mod watch;

pub use client::{Client, ClientError, ClientOptions, Reconnect, Reply, RequestSender};
pub use config::{Config, Overload};
pub use engine::closer::LINGER;
pub use engine::shutdown::ShutdownHandle;
pub use engine::worker::BATCH_BUDGET;
pub use error::Error;
pub use frame::{Framing, GoAwayCode};
pub use observe::alive::{Liveness, ALIVE_TICK};
pub use observe::stats::Report;
pub use server::{Listener, Server};
pub use service::{ConnInfo, Echo, Response, Service, ServiceError};
pub use watch::monitor::Monitor;

#[cfg(doctest)]
mod doctests;
