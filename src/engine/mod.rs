//! The engine: how a connection is served, from its accept to its close.
//!
//! `docs/design.md` follows one connection through these rooms; in the
//! order a connection meets them:
//!
//! - [`acceptor`]: accepts, applies the limits on new connections
//!   ([`limits`]: what happens when the server is full), and puts each new
//!   connection in line.
//! - [`line`]: the line to the workers, which is one epoll set's ready list
//!   ([`epoll`]), the workers' states, and the bench ([`parking`]) where idle
//!   workers beyond one per CPU wait.
//! - [`pool`]: the worker threads, and what becomes of a connection after
//!   its turn; [`worker`]: one turn, the hot path, after a balancer's PROXY
//!   [`header`] if one is due, reading ([`reading`])
//!   into an [`inbox`] with the calls of [`socket`], through [`tls`] on a
//!   TLS listener, answering each frame ([`reply`]) and writing the
//!   replies ([`writer`]).
//! - [`resting`]: where quiet connections wait, costing no thread, and the
//!   `--max-buffered` [`budget`] for their unfinished frames.
//! - [`reaper`]: heartbeat deadlines; [`closer`]: the graceful close after a
//!   GOAWAY.
//! - [`shutdown`] and [`drain`]: what happens on SIGTERM, from the stop
//!   request to the report.
//! - [`conn`]: one connection and its states; [`registry`]: every live
//!   connection, by key; [`shared`]: what every thread of a server shares.
//!
//! Data flows one way: acceptor and the kernel's readiness → line → worker
//! → service → writer → rest, line or closer. The reaper and the drain only
//! ever hand connections to the closer.

pub(crate) mod acceptor;
pub(crate) mod budget;
pub(crate) mod closer;
pub(crate) mod conn;
pub(crate) mod drain;
pub(crate) mod epoll;
pub(crate) mod header;
pub(crate) mod inbox;
pub(crate) mod limits;
pub(crate) mod line;
pub(crate) mod parking;
// The acceptor and the PROXY-header path are wired to it next.
#[allow(dead_code)]
pub(crate) mod per_address;
pub(crate) mod pool;
pub(crate) mod reading;
pub(crate) mod reaper;
pub(crate) mod registry;
pub(crate) mod reply;
pub(crate) mod resting;
pub(crate) mod shared;
pub(crate) mod shutdown;
pub(crate) mod socket;
pub(crate) mod socket_file;
pub(crate) mod tls;
pub(crate) mod worker;
pub(crate) mod writer;
