//! Choosing a pool size by measurement: a sweep over pool sizes, each
//! loaded the way the workload described in [`BenchOptions`] would load it.
//!
//! For each pool size, [`sweep`](fn@sweep) starts an in-process server on
//! 127.0.0.1:0 with the echo service (optionally with `delay` or `spin`
//! work), loads it from one event-driven thread (`driver`): a closed loop
//! by default, or an open loop at `rate` requests per second whose latency
//! counts from each request's scheduled time, plus `idle` clients that only
//! PING. It discards the `warmup`, measures for `duration`, then drains the
//! server and moves on. Every reply is checked against its request.
//!
//! Over exactly the measured window (the driver reports its [`Edge`]s) the
//! sweep also reads the server itself (`server`): its queue-wait and
//! service-time histograms, busy workers, rests, wake-ups and rejections,
//! in process, or from an external server's `--metrics` endpoint; and the
//! server threads' CPU time (`cpu`, from `/proc/self/task`, in process only).
//!
//! The modules, from what is asked to what is advised:
//!
//! - `options`: what to measure ([`BenchOptions`]) and the [`check`] that
//!   refuses what cannot run; `error`: why a run failed ([`BenchError`]).
//! - `driver`: the event-driven load engine, every client on one thread;
//!   `load` wraps it for one server ([`load`](fn@load) is what `--connect`
//!   and the comparison with other servers use).
//! - `server` and `cpu`: what the server itself saw over the window.
//! - `point`: what one point measured ([`BenchPoint`]) and whether it kept
//!   up; `words`: its figures as sentences write them.
//! - `tls`: the clients' TLS configuration and the throwaway certificate an
//!   in-process TLS run serves.
//! - `sweep`: the [`sweep`](fn@sweep) over pool sizes, telling its [`Event`]s.
//! - `recommend`: the advice drawn from it ([`recommend`](fn@recommend),
//!   [`littles_law`]).
//!
//! Every item is public from here, at `wharf::bench::*`; the modules are
//! private.

mod cpu;
mod driver;
mod error;
mod load;
mod options;
mod point;
mod recommend;
mod server;
mod sweep;
mod tls;
mod words;

pub use driver::Edge;
pub use error::BenchError;
pub use load::load;
pub use options::{check, max_payload, BenchOptions};
pub use point::{
    BenchPoint, IdleFigures, Percentiles, Rejections, ServerFigures, TlsFigures, SATURATED,
};
pub use recommend::{expected_busy, littles_law, recommend, Recommendation};
pub use sweep::{sweep, Event};
pub use words::{human_rate, human_us};
