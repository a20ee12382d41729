//! # wharf
//!
//! A TCP server for long-lived services with fixed resource limits: an
//! acceptor thread feeds accepted connections through a bounded queue to a
//! fixed pool of worker threads; a reaper drops clients that miss their
//! heartbeat deadline; a drain-and-close shutdown answers every request it
//! started before closing. The number of threads never grows with the number
//! of clients.
//!
//! ```text
//!            accept()            bounded queue (--queue)         --workers threads
//! clients ──> acceptor ──────────> [conn][conn][ ] ──────────────> worker ─┐
//!               │  queue full:                                   worker ─┼─> Service
//!               │  GOAWAY 3 (reject) or wait (block)             worker ─┘
//!               v                                                   │
//!            registry (one entry per live connection: deadline, BUSY mark)
//!               ^                                                   │
//!            reaper (every --reap-interval: GOAWAY 2 / GOAWAY 3)     v
//!                                                      closer (GOAWAY, linger, close)
//! ```
//!
//! The binary `wharf serve` is a thin layer over this library: it parses
//! flags into a [`Config`], installs SIGINT/SIGTERM handlers that call
//! [`ShutdownHandle::shutdown`] (a second signal calls
//! [`ShutdownHandle::force`]), and logs the [`Report`] on exit.
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

mod acceptor;
pub mod bench;
pub mod client;
mod closer;
pub mod config;
mod connection;
mod error;
pub mod frame;
mod pool;
mod reaper;
mod registry;
mod server;
pub mod service;
mod shutdown;
mod stats;

pub use client::{Client, ClientError, ClientOptions, Reply, RequestSender};
pub use closer::LINGER;
pub use config::{Config, Overload};
pub use error::Error;
pub use frame::{Framing, GoAwayCode};
pub use server::Server;
pub use service::{Echo, Response, Service, ServiceError};
pub use shutdown::ShutdownHandle;
pub use stats::Report;
