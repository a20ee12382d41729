//! The settings of a run, from the environment (see the crate's text for
//! the variables), and the servers they name ([`Spec`]).

use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Spec {
    Wharf { workers: usize },
    Std,
    Tokio,
}

impl Spec {
    pub(crate) fn label(self) -> String {
        match self {
            Spec::Wharf { workers } => format!("wharf ({workers} workers)"),
            Spec::Std => "std thread-per-connection".into(),
            Spec::Tokio => "tokio".into(),
        }
    }

    /// The same server speaking TLS.
    pub(crate) fn tls_label(self) -> String {
        match self {
            Spec::Wharf { workers } => format!("wharf TLS ({workers} workers)"),
            Spec::Std => "threads + rustls".into(),
            Spec::Tokio => "tokio-rustls".into(),
        }
    }
}

pub(crate) struct Settings {
    pub(crate) rate: f64,
    pub(crate) conns: usize,
    pub(crate) warmup: Duration,
    pub(crate) window: Duration,
    pub(crate) client_threads: usize,
    /// Nice value of the scheduled (measuring) client threads.
    pub(crate) client_nice: i32,
    pub(crate) idle_conns: usize,
    pub(crate) ping_every: Duration,
    pub(crate) busy: usize,
    pub(crate) idle_warmup: Duration,
    pub(crate) idle_window: Duration,
    pub(crate) queue: usize,
    pub(crate) max_connections: Option<usize>,
    pub(crate) servers: Vec<Spec>,
    pub(crate) open: bool,
    pub(crate) idle: bool,
    /// The TLS scenarios: the servers, and which scenarios run.
    pub(crate) tls_servers: Vec<Spec>,
    pub(crate) tls_churn: bool,
    pub(crate) tls_idle: bool,
    pub(crate) churn_clients: usize,
    pub(crate) churn_warmup: Duration,
    pub(crate) churn_window: Duration,
    pub(crate) tls_idle_conns: usize,
    pub(crate) tls_ping_every: Duration,
    pub(crate) tls_busy: usize,
    pub(crate) tls_idle_warmup: Duration,
    pub(crate) tls_idle_window: Duration,
}

fn env_num<T: std::str::FromStr + PartialOrd + Copy>(
    name: &str,
    default: T,
    low: T,
    high: T,
) -> Result<T, String> {
    match std::env::var(name) {
        Ok(v) => v
            .trim()
            .parse::<T>()
            .ok()
            .filter(|x| *x >= low && *x <= high)
            .ok_or_else(|| format!("{name}={v:?}: not a number in range")),
        Err(_) => Ok(default),
    }
}

fn env_secs(name: &str, default: f64) -> Result<Duration, String> {
    env_num(name, default, 0.0, 3600.0).map(Duration::from_secs_f64)
}

/// The servers named in `var` (default `default`): `wharfN`, `std`, `tokio`.
fn servers(var: &str, default: &str) -> Result<Vec<Spec>, String> {
    std::env::var(var)
        .unwrap_or_else(|_| default.into())
        .split(',')
        .map(|s| match s.trim() {
            "std" => Ok(Spec::Std),
            "tokio" => Ok(Spec::Tokio),
            w => w
                .strip_prefix("wharf")
                .and_then(|n| n.parse::<usize>().ok())
                .filter(|n| *n >= 1)
                .map(|workers| Spec::Wharf { workers })
                .ok_or_else(|| format!("{var}: unknown server {w:?}")),
        })
        .collect()
}

/// The scenarios `WHARF_MANY_ONLY` names.
const SCENARIOS: [&str; 4] = ["open", "idle", "tls-churn", "tls-idle"];

pub(crate) fn settings() -> Result<Settings, String> {
    let plain_servers = servers("WHARF_MANY_SERVERS", "wharf4,wharf2,std,tokio")?;
    let tls_servers = servers("WHARF_MANY_TLS_SERVERS", "wharf2,wharf4,tokio,std")?;
    let only = std::env::var("WHARF_MANY_ONLY").unwrap_or_else(|_| SCENARIOS.join(","));
    let only: Vec<&str> = only.split(',').map(str::trim).collect();
    if let Some(unknown) = only.iter().find(|o| !SCENARIOS.contains(o)) {
        return Err(format!(
            "WHARF_MANY_ONLY: unknown scenario {unknown:?} (known: {})",
            SCENARIOS.join(", ")
        ));
    }
    let ping_every = env_secs("WHARF_MANY_PING_EVERY", 3.0)?;
    let tls_ping_every = env_secs("WHARF_MANY_TLS_PING_EVERY", 5.0)?;
    if ping_every.is_zero() || tls_ping_every.is_zero() {
        return Err(
            "WHARF_MANY_PING_EVERY and WHARF_MANY_TLS_PING_EVERY must be more than 0".into(),
        );
    }
    let window = env_secs("WHARF_MANY_SECS", 5.0)?;
    let idle_window = env_secs("WHARF_MANY_IDLE_SECS", 9.0)?;
    let churn_window = env_secs("WHARF_MANY_CHURN_SECS", 5.0)?;
    let tls_idle_window = env_secs("WHARF_MANY_TLS_IDLE_SECS", 10.0)?;
    if [window, idle_window, churn_window, tls_idle_window]
        .iter()
        .any(Duration::is_zero)
    {
        return Err("measured windows must be more than 0 s".into());
    }
    Ok(Settings {
        rate: env_num("WHARF_MANY_RATE", 20_000.0, 1.0, 1e7)?,
        conns: env_num("WHARF_MANY_CONNS", 1000, 1, 60_000)?,
        warmup: env_secs("WHARF_MANY_WARMUP", 1.0)?,
        window,
        client_threads: env_num("WHARF_MANY_CLIENT_THREADS", 1, 1, 2)?,
        client_nice: env_num("WHARF_MANY_CLIENT_NICE", -10, -20, 19)?,
        idle_conns: env_num("WHARF_MANY_IDLE_CONNS", 10_000, 1, 60_000)?,
        ping_every,
        busy: env_num("WHARF_MANY_BUSY", 8, 0, 256)?,
        idle_warmup: env_secs("WHARF_MANY_IDLE_WARMUP", 3.0)?,
        idle_window,
        queue: env_num("WHARF_MANY_QUEUE", 10_000, 0, 1 << 20)?,
        max_connections: match std::env::var("WHARF_MANY_MAX_CONNECTIONS") {
            Ok(_) => Some(env_num("WHARF_MANY_MAX_CONNECTIONS", 10_000, 1, 1 << 20)?),
            Err(_) => None,
        },
        servers: plain_servers,
        open: only.contains(&"open"),
        idle: only.contains(&"idle"),
        tls_servers,
        tls_churn: only.contains(&"tls-churn"),
        tls_idle: only.contains(&"tls-idle"),
        churn_clients: env_num("WHARF_MANY_CHURN_CLIENTS", 4, 1, 256)?,
        churn_warmup: env_secs("WHARF_MANY_CHURN_WARMUP", 1.0)?,
        churn_window,
        tls_idle_conns: env_num("WHARF_MANY_TLS_IDLE_CONNS", 5_000, 1, 60_000)?,
        tls_ping_every,
        tls_busy: env_num("WHARF_MANY_TLS_BUSY", 8, 1, 256)?,
        tls_idle_warmup: env_secs("WHARF_MANY_TLS_IDLE_WARMUP", 6.0)?,
        tls_idle_window,
    })
}
