//! `wharf serve`'s flags, each with its `WHARF_*` variable: every one maps
//! onto one [`wharf::Config`] field, or onto how the process runs (the
//! drain delay, the log). The TLS flags are in `tls_args`, those about
//! clients' addresses (Unix sockets, PROXY protocol, per-address limits)
//! in `listen_args`.

use std::net::SocketAddr;
use std::path::PathBuf;

use std::time::Duration;
use wharf::Address;

use clap::{Args, ValueEnum};
use log::LevelFilter;

use super::listen_args::ListenArgs;
use super::tls_args::TlsArgs;
use super::values::{
    byte_size, duration, frame_size, listen_addr, max_connections, positive_duration,
    queue_capacity, socket_addr, workers, FramingArg,
};

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Listen address (repeatable, or comma-separated): HOST:PORT (port 0 picks a free port; IPv6 as [::1]:0) or unix:PATH [default: 127.0.0.1:7878 when no --bind or --tls-bind is given].
    #[arg(long, env = "WHARF_BIND", value_name = "ADDR", value_parser = listen_addr, value_delimiter = ',')]
    pub bind: Vec<Address>,
    /// Fixed size of the worker pool: connections worked on at once (default: number of CPUs).
    #[arg(long, env = "WHARF_WORKERS", value_name = "N",
          value_parser = workers)]
    pub workers: Option<u32>,
    /// Most new connections waiting for a worker at once (0: hand-off to an idle worker only).
    #[arg(long, env = "WHARF_QUEUE", default_value_t = 64, value_name = "N", value_parser = queue_capacity)]
    pub queue: usize,
    /// Most clients connected at once (lowered to what the descriptor limit allows).
    #[arg(long, env = "WHARF_MAX_CONNECTIONS", default_value_t = 10_000, value_name = "N", value_parser = max_connections)]
    pub max_connections: usize,
    /// Total bytes of unfinished frames held for connections not being served (e.g. 64MiB).
    #[arg(long, env = "WHARF_MAX_BUFFERED", default_value = "64MiB", value_name = "BYTES", value_parser = byte_size)]
    pub max_buffered: u64,
    /// What the acceptor does when --max-connections or --queue is reached.
    #[arg(long, env = "WHARF_OVERLOAD", value_enum, default_value_t = OverloadArg::Reject)]
    pub overload: OverloadArg,
    /// Close a connection with no complete frame or response for this long.
    #[arg(long, env = "WHARF_HEARTBEAT_TIMEOUT", default_value = "30s", value_name = "D", value_parser = positive_duration)]
    pub heartbeat_timeout: Duration,
    /// How often the reaper scans; never more than heartbeat-timeout / 4 [default: 1s, or heartbeat-timeout / 4 if less].
    #[arg(long, env = "WHARF_REAP_INTERVAL", value_name = "D", value_parser = positive_duration)]
    pub reap_interval: Option<Duration>,
    /// Drop a client that does not read its responses for this long.
    #[arg(long, env = "WHARF_WRITE_TIMEOUT", default_value = "10s", value_name = "D", value_parser = positive_duration)]
    pub write_timeout: Duration,
    /// Largest accepted frame (kind byte plus payload) or line (e.g. 1MiB).
    #[arg(long, env = "WHARF_MAX_FRAME", default_value = "1MiB", value_name = "BYTES", value_parser = frame_size)]
    pub max_frame: u32,
    /// Wire format.
    #[arg(long, env = "WHARF_FRAMING", value_enum, default_value_t = FramingArg::Length)]
    pub framing: FramingArg,
    /// Longest drain before connections are closed by force (counted from the start of the drain).
    #[arg(long, env = "WHARF_GRACE", default_value = "10s", value_name = "D", value_parser = duration)]
    pub grace: Duration,
    /// After the first SIGINT/SIGTERM, report not-ready but keep serving this long, then drain.
    #[arg(long, env = "WHARF_DRAIN_DELAY", default_value = "0", value_name = "D", value_parser = duration)]
    pub drain_delay: Duration,
    /// Set SO_REUSEPORT, so a new instance can bind the same --bind (and --metrics) address while this one still runs.
    #[arg(long, env = "WHARF_REUSE_PORT", value_parser = clap::builder::BoolishValueParser::new())]
    pub reuse_port: bool,
    /// The echo service sleeps this long before each response (I/O-bound work).
    #[arg(long, env = "WHARF_DELAY", default_value = "0", value_name = "D", value_parser = duration)]
    pub delay: Duration,
    /// The echo service busy-loops this long before each response (CPU-bound work).
    #[arg(long, env = "WHARF_SPIN", default_value = "0", value_name = "D", value_parser = duration)]
    pub spin: Duration,
    /// Kernel backlog of connections not yet accepted.
    #[arg(long, env = "WHARF_BACKLOG", default_value_t = 1024, value_name = "N")]
    pub backlog: u32,
    /// Log the counters (accepted, active, queued, rejected, reaped, errors) this often; 0 = never.
    #[arg(long, env = "WHARF_STATS_INTERVAL", default_value = "0", value_name = "D", value_parser = duration)]
    pub stats_interval: Duration,
    /// Serve Prometheus metrics and /ready, /live probes over HTTP on this address (port 0 allowed).
    #[arg(long, env = "WHARF_METRICS", value_name = "ADDR", value_parser = socket_addr)]
    pub metrics: Option<SocketAddr>,
    /// Longest time from accept to a completed TLS handshake; a connection past it is closed without a word.
    #[arg(long, env = "WHARF_HANDSHAKE_TIMEOUT", default_value = "10s", value_name = "D", value_parser = positive_duration)]
    pub handshake_timeout: Duration,
    #[command(flatten)]
    pub listen: ListenArgs,
    #[command(flatten)]
    pub tls: TlsArgs,
    /// Log level.
    #[arg(long, env = "WHARF_LOG_LEVEL", value_enum, default_value_t = LogLevel::Info)]
    pub log_level: LogLevel,
    /// Also append the log to this file.
    #[arg(long, env = "WHARF_LOG_FILE", value_name = "PATH")]
    pub log_file: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OverloadArg {
    /// Send GOAWAY 3 (BUSY) and close.
    Reject,
    /// Stop accepting until a slot frees.
    Block,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogLevel {
    Error,
    Warn,
    Info,
    Debug,
    Trace,
}

impl From<LogLevel> for LevelFilter {
    fn from(level: LogLevel) -> Self {
        match level {
            LogLevel::Error => LevelFilter::Error,
            LogLevel::Warn => LevelFilter::Warn,
            LogLevel::Info => LevelFilter::Info,
            LogLevel::Debug => LevelFilter::Debug,
            LogLevel::Trace => LevelFilter::Trace,
        }
    }
}
