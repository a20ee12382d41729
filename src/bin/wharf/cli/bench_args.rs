//! `wharf bench`'s flags: the workload, the pool sizes to sweep, an
//! external server to load instead, and the files to write; with the exit
//! statuses its `--help` lists.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use super::values::{
    duration, metrics_url, payload_size, pool_size, positive_count, positive_duration,
    positive_rate, queue_capacity, socket_addr,
};

/// The exit statuses of `wharf bench`, as docs/sizing.md documents them.
const BENCH_EXIT_STATUS: &str = "\
Exit status:
  0    every point measured without errors
  1    the run failed (the cause is printed), or some requests failed
  2    bad flags or combinations, or an output file that cannot be written (nothing measured)
  130  interrupted (Ctrl-C): the points measured so far are printed and written
With --connect, --workers and --plot are refused (one point, no pool to sweep); --metrics-url needs
--connect; --target-p99 needs --rate; --pipeline is for the closed loop, not with --rate; --tls with
--connect needs --tls-ca.";

#[derive(Debug, Args)]
#[command(after_help = BENCH_EXIT_STATUS)]
pub struct BenchArgs {
    /// Pool sizes to sweep, comma-separated [default: 1,2,4,8,16,32,64].
    #[arg(long, value_delimiter = ',', value_name = "N,N,...", conflicts_with = "connect",
          value_parser = pool_size)]
    pub workers: Vec<usize>,
    /// Queue capacity of each in-process server.
    #[arg(long, default_value_t = 64, value_name = "N", value_parser = queue_capacity)]
    pub queue: usize,
    /// Echo service sleep per request (I/O-bound work).
    #[arg(long, default_value = "0", value_name = "D", value_parser = duration)]
    pub delay: Duration,
    /// Echo service busy-loop per request (CPU-bound work).
    #[arg(long, default_value = "0", value_name = "D", value_parser = duration)]
    pub spin: Duration,
    /// Busy client connections.
    #[arg(long, default_value_t = 64, value_name = "N", value_parser = positive_count)]
    pub clients: usize,
    /// Open loop: total requests per second over the clients, sent on schedule (default: closed loop).
    #[arg(long, value_name = "REQ/S", value_parser = positive_rate)]
    pub rate: Option<f64>,
    /// Idle clients besides --clients, each sending only a PING every --idle-ping.
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub idle: usize,
    /// How often each idle client PINGs.
    #[arg(long, default_value = "1s", value_name = "D", value_parser = positive_duration)]
    pub idle_ping: Duration,
    /// Recommend the smallest pool whose p99 meets this at the offered --rate.
    #[arg(long, value_name = "D", requires = "rate", value_parser = positive_duration)]
    pub target_p99: Option<Duration>,
    /// Load applied before measuring, per pool size.
    #[arg(long, default_value = "1s", value_name = "D", value_parser = duration)]
    pub warmup: Duration,
    /// Measured time per pool size.
    #[arg(long, default_value = "5s", value_name = "D", value_parser = positive_duration)]
    pub duration: Duration,
    /// Request payload size in bytes (at most the server's max frame, 1 MiB, less 1).
    #[arg(long, default_value_t = 64, value_name = "BYTES", value_parser = payload_size)]
    pub payload: usize,
    /// Requests each client sends before waiting for the replies (closed loop; with --rate each request is sent on its schedule instead).
    #[arg(long, default_value_t = 1, value_name = "K", value_parser = positive_count, conflicts_with = "rate")]
    pub pipeline: usize,
    /// Close and reconnect after this many batches (measures connection churn).
    #[arg(long, value_name = "N", value_parser = positive_count)]
    pub reconnect_every: Option<usize>,
    /// Load this running server instead of sweeping in-process ones.
    #[arg(long, value_name = "ADDR", value_parser = socket_addr)]
    pub connect: Option<SocketAddr>,
    /// With --connect: the server's metrics endpoint (http://HOST:PORT/metrics, or HOST:PORT), to read queue wait, service time and busy workers from.
    #[arg(long = "metrics-url", alias = "metrics", value_name = "URL", requires = "connect", value_parser = metrics_url)]
    pub metrics: Option<SocketAddr>,
    /// Speak TLS: a full handshake per connection (no session resumption), ALPN wharf. In process, the servers serve a throwaway certificate; with --connect, --tls-ca is needed.
    #[arg(long)]
    pub tls: bool,
    /// With --tls --connect: the PEM CA bundle the server's certificate must chain to.
    #[arg(long, value_name = "PATH", requires_all = ["tls", "connect"])]
    pub tls_ca: Option<PathBuf>,
    /// With --tls: the name the server's certificate must carry [default: the IP address connected to].
    #[arg(long, value_name = "NAME", requires = "tls")]
    pub tls_server_name: Option<String>,
    /// Write the results as CSV.
    #[arg(long, value_name = "FILE")]
    pub csv: Option<PathBuf>,
    /// Write the options, results and recommendation as JSON.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Draw throughput and latency against pool size as SVG (the name must end in .svg).
    #[arg(long, value_name = "FILE.svg", conflicts_with = "connect")]
    pub plot: Option<PathBuf>,
}
