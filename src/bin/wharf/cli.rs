//! Command-line flags. Every `serve` flag maps onto one [`wharf::Config`]
//! field; durations read `250ms`, `2s`, `1m` or a bare `0`.

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::time::Duration;

use clap::error::{ContextKind, ContextValue, ErrorKind};
use clap::{Args, CommandFactory, Parser, Subcommand, ValueEnum};
use log::LevelFilter;

/// A TCP server with a fixed worker pool, heartbeats and graceful shutdown.
#[derive(Debug, Parser)]
#[command(name = "wharf", version = wharf::build_info::LONG_VERSION, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

/// Parses the command line and the `WHARF_*` environment variables (a
/// flag wins over its variable), or exits 2 with clap's message, naming the
/// variable when the bad value came from one.
pub fn parse() -> Cli {
    match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => name_the_variable(e).exit(),
    }
}

/// clap says `invalid value 'x' for '--workers <N>'` whether the value came
/// from the flag or from `WHARF_WORKERS`; an operator who never typed
/// `--workers` needs to be told which variable to fix.
fn name_the_variable(error: clap::Error) -> clap::Error {
    if !matches!(
        error.kind(),
        ErrorKind::InvalidValue | ErrorKind::ValueValidation
    ) {
        return error;
    }
    let (Some(ContextValue::String(arg)), Some(ContextValue::String(value))) = (
        error.get(ContextKind::InvalidArg),
        error.get(ContextKind::InvalidValue),
    ) else {
        return error;
    };
    let command = Cli::command();
    let found = command
        .get_subcommands()
        .flat_map(|sub| sub.get_arguments())
        .find_map(|candidate| {
            let long = candidate.get_long()?;
            let variable = candidate.get_env()?.to_str()?;
            let flag = format!("--{long}");
            let named = arg == &flag || arg.starts_with(&format!("{flag} "));
            (named && std::env::var_os(variable).is_some_and(|v| v == value.as_str()))
                .then(|| (flag, variable.to_owned()))
        });
    let Some((flag, variable)) = found else {
        return error;
    };
    let on_command_line = std::env::args_os().skip(1).any(|given| {
        given == flag.as_str()
            || given
                .to_str()
                .is_some_and(|given| given.starts_with(&format!("{flag}=")))
    });
    if on_command_line {
        return error;
    }
    let mut message =
        format!("invalid value '{value}' in the environment variable {variable} (for '{arg}')");
    if let Some(why) = std::error::Error::source(&error) {
        message.push_str(&format!(": {why}"));
    }
    if let Some(ContextValue::Strings(valid)) = error.get(ContextKind::ValidValue) {
        message.push_str(&format!("\n  [possible values: {}]", valid.join(", ")));
    }
    message.push('\n');
    clap::Error::raw(error.kind(), message)
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server in the foreground until SIGINT or SIGTERM.
    Serve(ServeArgs),
    /// Send requests to a server: lines from stdin, --send TEXT, or --ping.
    Client(ClientArgs),
    /// Measure throughput and latency across pool sizes and recommend one.
    Bench(BenchArgs),
    /// Print a completion script for SHELL to stdout.
    Completions(CompletionsArgs),
    /// Print the manual page (roff, section 1) to stdout.
    Manpage,
}

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell to complete for.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

/// The exit statuses of `wharf bench`, as docs/sizing.md documents them.
const BENCH_EXIT_STATUS: &str = "\
Exit status:
  0    every point measured without errors
  1    the run failed (the cause is printed), or some requests failed
  2    bad flags or combinations, or an output file that cannot be written (nothing measured)
  130  interrupted (Ctrl-C): the points measured so far are printed and written
With --connect, --workers and --plot are refused (one point, no pool to sweep); --metrics-url needs
--connect; --target-p99 needs --rate.";

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
    /// Requests each client sends before waiting for the replies.
    #[arg(long, default_value_t = 1, value_name = "K", value_parser = positive_count)]
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

/// The exit statuses of `wharf client`, as docs/protocol.md documents them.
const CLIENT_EXIT_STATUS: &str = "\
Exit status:
  0         every request answered
  1         another failure (I/O, malformed reply)
  2         bad flags, including a --connect address that does not parse or resolve
  3         cannot connect (refused, unreachable, timed out)
  4         the server closed without GOAWAY, or a reply did not come within --reply-timeout
  5         at least one request was answered with ERROR
  11 to 15  GOAWAY 1 to 5 (11 SHUTDOWN, 12 HEARTBEAT_TIMEOUT, 13 BUSY, 14 PROTOCOL_ERROR, 15 FRAME_TOO_LARGE)
With --retries, the status is that of the last failure once the retries run out.";

#[derive(Debug, Args)]
#[command(after_help = CLIENT_EXIT_STATUS)]
pub struct ClientArgs {
    /// Server address (host:port; a name is resolved again on each connect).
    #[arg(long, default_value = "127.0.0.1:7878", value_name = "ADDR", value_parser = connect_addr)]
    pub connect: String,
    /// Wire format; must match the server's.
    #[arg(long, value_enum, default_value_t = FramingArg::Length)]
    pub framing: FramingArg,
    /// The server's heartbeat timeout: while stdin is idle a PING is sent every third of it.
    #[arg(long, default_value = "30s", value_name = "D", value_parser = positive_duration)]
    pub heartbeat_timeout: Duration,
    /// Send this request (repeatable), print the replies and exit.
    #[arg(long, value_name = "TEXT", conflicts_with = "ping")]
    pub send: Vec<String>,
    /// Measure round-trip times with PING.
    #[arg(long)]
    pub ping: bool,
    /// How many PINGs to send with --ping.
    // `requires` alone lets `--count 3 --send x` through: clap waives a
    // requirement whose target (--ping) conflicts with a flag that is
    // present (--send), so the conflict is stated here too.
    #[arg(long, default_value_t = 4, value_name = "N", requires = "ping", conflicts_with = "send",
          value_parser = clap::value_parser!(u32).range(1..))]
    pub count: u32,
    /// Pause between PINGs with --ping.
    #[arg(long, default_value = "1s", value_name = "D", requires = "ping", conflicts_with = "send",
          value_parser = duration)]
    pub interval: Duration,
    /// Longest wait for the connection to be established.
    #[arg(long, default_value = "5s", value_name = "D", value_parser = positive_duration)]
    pub connect_timeout: Duration,
    /// Longest wait for a reply that is owed.
    #[arg(long, default_value = "30s", value_name = "D", value_parser = positive_duration)]
    pub reply_timeout: Duration,
    /// Reconnect up to N times in a row after GOAWAY 1 (SHUTDOWN) or 3 (BUSY), resending the unanswered requests; 0 = never.
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub retries: u32,
    /// The requests are safe to run twice: also retry a connection lost without GOAWAY (needs --retries).
    #[arg(long, requires = "retries")]
    pub idempotent: bool,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Listen address; port 0 picks a free port; IPv6 as [::1]:0.
    #[arg(long, env = "WHARF_BIND", default_value = "127.0.0.1:7878", value_name = "ADDR", value_parser = socket_addr)]
    pub bind: SocketAddr,
    /// Fixed size of the worker pool: connections worked on at once (default: number of CPUs).
    #[arg(long, env = "WHARF_WORKERS", value_name = "N",
          value_parser = clap::value_parser!(u32).range(1..=wharf::config::MAX_WORKERS as i64))]
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
pub enum FramingArg {
    /// u32 length, kind byte, payload.
    Length,
    /// One request per line, for nc and telnet.
    Line,
}

impl From<FramingArg> for wharf::Framing {
    fn from(framing: FramingArg) -> Self {
        match framing {
            FramingArg::Length => wharf::Framing::Length,
            FramingArg::Line => wharf::Framing::Line,
        }
    }
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

/// `250ms`, `2s`, `1m`, `1h30m` or a bare `0`.
pub fn duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text.trim())
        .map_err(|e| format!("{e} (expected e.g. 250ms, 2s, 1m or 0)"))
}

/// `127.0.0.1:7878`, `[::1]:0`, or `host:port` resolved to its first address.
fn socket_addr(text: &str) -> Result<SocketAddr, String> {
    text.to_socket_addrs()
        .map_err(|e| format!("{e} (expected e.g. 127.0.0.1:7878 or [::1]:0)"))?
        .next()
        .ok_or_else(|| "resolves to no address".to_owned())
}

/// `--metrics-url`: `http://HOST:PORT/metrics`, `http://HOST:PORT` or
/// `HOST:PORT` (plain HTTP, the only kind `wharf serve --metrics` speaks).
fn metrics_url(text: &str) -> Result<SocketAddr, String> {
    if text.starts_with("https://") {
        return Err("only http:// (wharf serves its metrics over plain HTTP)".to_owned());
    }
    let rest = text.strip_prefix("http://").unwrap_or(text);
    let (authority, path) = rest.split_once('/').unwrap_or((rest, "metrics"));
    if path != "metrics" {
        return Err(format!("the path must be /metrics, not /{path}"));
    }
    socket_addr(authority)
}

/// `--connect`: an address that parses or resolves now (a bad one is a bad
/// flag, as for `--bind`), kept as written so that connecting resolves it
/// again and tries each address.
fn connect_addr(text: &str) -> Result<String, String> {
    socket_addr(text).map(|_| text.to_owned())
}

/// A queue capacity: 0 to 1048576 (its slots are allocated up front).
fn queue_capacity(text: &str) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(n) if n <= wharf::config::MAX_QUEUE => Ok(n),
        Ok(_) => Err(format!("must be at most {}", wharf::config::MAX_QUEUE)),
        Err(e) => Err(e.to_string()),
    }
}

/// `--max-connections`: 1 to 1048576.
fn max_connections(text: &str) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(n) if (1..=wharf::config::MAX_CONNECTIONS).contains(&n) => Ok(n),
        Ok(_) => Err(format!(
            "must be between 1 and {}",
            wharf::config::MAX_CONNECTIONS
        )),
        Err(e) => Err(e.to_string()),
    }
}

/// A byte size: a bare number of bytes, or a number with a `KiB`, `MiB` or
/// `GiB` suffix (binary units, as documented; `64K` or `64KB` are
/// refused rather than guessed at).
pub fn byte_size(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    let shift = match unit.trim() {
        "" => 0,
        "KiB" => 10,
        "MiB" => 20,
        "GiB" => 30,
        other => return Err(format!("unknown unit {other:?} ({SIZES})")),
    };
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("{text:?} is not a size (expected e.g. 65536, 64KiB or 1MiB)"))?;
    n.checked_mul(1 << shift)
        .ok_or_else(|| format!("{text} is too large"))
}

/// What a byte size may look like, for error messages.
const SIZES: &str = "expected a number of bytes, or KiB, MiB or GiB, e.g. 64MiB";

/// `--max-frame`: a byte size from 1 byte to 1 GiB.
fn frame_size(text: &str) -> Result<u32, String> {
    let limit = wharf::config::MAX_FRAME_LIMIT;
    match byte_size(text)? {
        n if n >= 1 && n <= u64::from(limit) => Ok(n as u32),
        _ => Err(format!("must be between 1 byte and {} (1GiB)", limit)),
    }
}

/// A count of at least 1.
fn positive_count(text: &str) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(0) => Err("must be at least 1".to_owned()),
        Ok(n) => Ok(n),
        Err(e) => Err(e.to_string()),
    }
}

/// A pool size: 1 to the largest pool a server accepts.
fn pool_size(text: &str) -> Result<usize, String> {
    let max = wharf::config::MAX_WORKERS;
    match text.parse::<usize>() {
        Ok(n) if (1..=max).contains(&n) => Ok(n),
        Ok(_) => Err(format!("must be between 1 and {max}")),
        Err(e) => Err(e.to_string()),
    }
}

/// Requests per second: a number greater than 0.
fn positive_rate(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(r) if r.is_finite() && r > 0.0 => Ok(r),
        Ok(_) => Err("must be a number of requests per second greater than 0".to_owned()),
        Err(e) => Err(e.to_string()),
    }
}

/// A bench payload: bytes, at most what the server's default max frame
/// carries (with `--connect`, the default is all that can be assumed).
fn payload_size(text: &str) -> Result<usize, String> {
    let max = wharf::bench::max_payload(wharf::Config::default().max_frame);
    match byte_size(text)? {
        n if n <= max as u64 => Ok(n as usize),
        n => Err(format!(
            "{n} bytes is more than the server's max frame allows ({max} bytes: max-frame \
             1MiB less the kind byte)"
        )),
    }
}

/// A duration that must not be zero.
fn positive_duration(text: &str) -> Result<Duration, String> {
    match duration(text)? {
        d if d.is_zero() => Err("must be greater than 0".to_owned()),
        d => Ok(d),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_in_the_documented_forms() {
        assert_eq!(duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(duration("2s"), Ok(Duration::from_secs(2)));
        assert_eq!(duration("1m"), Ok(Duration::from_secs(60)));
        assert_eq!(duration("0"), Ok(Duration::ZERO));
        assert!(duration("soon").is_err());
        assert!(positive_duration("0").is_err());
    }

    #[test]
    fn byte_sizes_in_the_documented_forms() {
        assert_eq!(byte_size("1048576"), Ok(1_048_576));
        assert_eq!(byte_size("64KiB"), Ok(65_536));
        assert_eq!(byte_size("64 KiB"), Ok(65_536));
        assert_eq!(byte_size("1MiB"), Ok(1 << 20));
        assert_eq!(byte_size("2GiB"), Ok(2 << 30));
        assert_eq!(byte_size("0"), Ok(0));
        for bad in [
            "64K",
            "64KB",
            "1.5MiB",
            "MiB",
            "-1",
            "lots",
            "99999999999GiB",
        ] {
            assert!(byte_size(bad).is_err(), "{bad} should be refused");
        }
        assert_eq!(frame_size("1GiB"), Ok(1 << 30));
        assert!(frame_size("0").is_err());
        assert!(frame_size("2GiB").is_err());
    }
}
