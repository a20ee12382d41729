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
//! no signal handler and sends no signal. It runs on Linux, whose epoll the
//! line is built on.
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
//!
//! ## The public API
//!
//! **Running a server.** [`Server::start`] binds an address and starts
//! every thread before it returns; [`Server::from_listener`] serves a
//! socket already bound (a [`Listener`]). [`Config`] is plain data with
//! production defaults, one field per `wharf serve` flag
//! ([`Config::validate`] says what it accepts, [`Overload`] what happens
//! at a limit). [`Server::handle`] gives a [`ShutdownHandle`], cheap to
//! clone and usable from any thread: [`shutdown`](ShutdownHandle::shutdown)
//! starts the drain, [`force`](ShutdownHandle::force) stops waiting for it.
//! [`Server::join`] waits for the end and returns the [`Report`], what the
//! server did over its life. Starting can fail, with an [`Error`]; once
//! running, the server as a whole never fails: a client's trouble ends that
//! client's connection only.
//!
//! **Writing a service.** A [`Service`] maps one DATA request to one
//! response; a closure will do for a stateless one. What it keeps per
//! client is its [`Service::Session`], opened with the connection's
//! [`ConnInfo`] (its id and peer address) and handed to every call on that
//! connection. It writes into a [`Response`], or fails with a
//! [`ServiceError`] that the client receives as ERROR. [`Echo`] is the
//! built-in service.
//!
//! **Watching it run.** [`Server::monitor`] gives a [`Monitor`]: the
//! counters so far, a one-line status, whether the server is stopping, and
//! the [`Liveness`] counters a watchdog checks (each moves at least every
//! [`ALIVE_TICK`] while its thread turns). With [`Config::metrics`] set,
//! the server also serves Prometheus metrics and `/ready` and `/live`
//! probes over HTTP, on [`Server::metrics_addr`].
//!
//! **Talking to it.** The [`client`] module is a blocking client in either
//! framing: a [`Client`] pipelines requests and returns each [`Reply`] in
//! request order, a [`RequestSender`] sends from another thread, and
//! [`ClientOptions::retries`] turns on safe retries after GOAWAY 1 or 3
//! (each reported to a hook as a [`Reconnect`]). Its failures are
//! [`ClientError`]s.
//!
//! **The wire.** [`frame`] is the protocol itself, for a client of another
//! shape (or language): [`Framing`] encodes and decodes both framings,
//! length frames and lines, and [`GoAwayCode`] names why a server closes a
//! connection and what the client may do next. docs/protocol.md is the
//! same in prose.
//!
//! **Sizing the pool.** [`bench`](mod@bench) is what `wharf bench` runs: a sweep of
//! in-process servers over pool sizes under a described load, each
//! measured from both ends, and the pool size it recommends.
//!
//! [`human`] and [`build_info`] are small pieces the binary shares with the
//! library: durations as log lines write them, and which build this is.

#![warn(missing_docs)]

mod address;
pub mod bench;
pub mod build_info;
pub mod client;
pub mod config;
mod engine;
mod error;
pub mod frame;
pub mod human;
mod limit_settings;
mod observe;
pub mod proxy;
mod server;
pub mod service;
pub mod tls;
mod watch;

pub use address::{Address, AddressError};
pub use client::{Client, ClientError, ClientOptions, Reconnect, Reply, RequestSender};
pub use config::{Config, Overload};
pub use engine::closer::LINGER;
pub use engine::shutdown::ShutdownHandle;
pub use engine::worker::BATCH_BUDGET;
pub use error::Error;
pub use frame::{Framing, GoAwayCode};
pub use observe::alive::{Liveness, ALIVE_TICK};
pub use observe::stats::Report;
pub use server::{Bind, ListenSocket, Listener, Security, Server, TlsHandle};
pub use service::{ConnInfo, Credentials, Echo, Peer, Response, Service, ServiceError};
pub use watch::monitor::Monitor;

#[cfg(doctest)]
mod doctests;
