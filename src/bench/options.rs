//! What to measure: the workload a sweep applies ([`BenchOptions`]), and
//! the check that refuses options that make no sense before anything runs.
//!
//! The options are also what `--json` writes back, so they serialize with
//! their durations as seconds (`1.5`), not serde's `{secs, nanos}`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;

use super::error::BenchError;
use crate::Config;

/// What to measure.
#[derive(Debug, Clone, Serialize)]
pub struct BenchOptions {
    /// Pool sizes to sweep (ignored with `connect`).
    pub workers: Vec<usize>,
    /// Queue capacity of the in-process server.
    pub queue: usize,
    /// Echo service sleep per request (I/O-bound work).
    #[serde(serialize_with = "seconds")]
    pub delay: Duration,
    /// Echo service busy-loop per request (CPU-bound work).
    #[serde(serialize_with = "seconds")]
    pub spin: Duration,
    /// Closed-loop client threads (connections).
    pub clients: usize,
    /// Load applied before measuring, per pool size.
    #[serde(serialize_with = "seconds")]
    pub warmup: Duration,
    /// Measured time per pool size.
    #[serde(serialize_with = "seconds")]
    pub duration: Duration,
    /// Request payload size in bytes.
    pub payload: usize,
    /// Requests each client sends before waiting for their replies.
    pub pipeline: usize,
    /// Load this running server instead of sweeping in-process servers.
    pub connect: Option<SocketAddr>,
    /// Close and reconnect after this many batches (connection churn);
    /// `None` keeps each client's connection for the whole run. Named in
    /// the JSON report as its flag is, `reconnect_every`.
    #[serde(rename = "reconnect_every")]
    pub batches_per_connection: Option<usize>,
    /// Open loop: total requests per second over all `clients`, each sent
    /// at its scheduled time whether or not earlier replies are back
    /// (latency counts from the scheduled time). `None`: closed loop.
    pub rate: Option<f64>,
    /// Idle clients besides `clients`: connected for the whole run, each
    /// sending only a PING every `idle_ping`.
    pub idle: usize,
    /// How often each idle client PINGs.
    #[serde(serialize_with = "seconds")]
    pub idle_ping: Duration,
    /// Latency target for the recommendation: the smallest pool whose p99
    /// meets it at the offered load.
    #[serde(serialize_with = "seconds_opt")]
    pub target_p99: Option<Duration>,
    /// With `connect`: the server's `--metrics` address, to read its queue
    /// wait, service time and busy workers from. Named in the JSON report
    /// as its flag is, `metrics_url`.
    #[serde(rename = "metrics_url")]
    pub metrics: Option<SocketAddr>,
    /// Speak TLS: every connection makes a full handshake (ALPN `wharf`,
    /// TLS 1.3 or 1.2, key exchange X25519 or P-256, session resumption
    /// off), then the same frames inside it. In process, the servers serve
    /// a throwaway certificate made for the run; with `connect`, the
    /// server's certificate must chain to `tls_ca`.
    pub tls: bool,
    /// With `tls` and `connect`: the PEM bundle of the certificate
    /// authorities the server's certificate must chain to.
    pub tls_ca: Option<PathBuf>,
    /// With `tls`: the name the server's certificate must carry (a DNS
    /// name or an IP address). Default: the IP address connected to.
    pub tls_server_name: Option<String>,
}

impl Default for BenchOptions {
    fn default() -> Self {
        BenchOptions {
            workers: vec![1, 2, 4, 8, 16, 32, 64],
            queue: 64,
            delay: Duration::ZERO,
            spin: Duration::ZERO,
            clients: 64,
            warmup: Duration::from_secs(1),
            duration: Duration::from_secs(5),
            payload: 64,
            pipeline: 1,
            connect: None,
            batches_per_connection: None,
            rate: None,
            idle: 0,
            idle_ping: Duration::from_secs(1),
            target_p99: None,
            metrics: None,
            tls: false,
            tls_ca: None,
            tls_server_name: None,
        }
    }
}

/// The largest DATA payload a server with `max_frame` accepts (the frame
/// is the kind byte plus the payload).
pub fn max_payload(max_frame: u32) -> usize {
    (max_frame as usize).saturating_sub(1)
}

/// Checks `options` before anything is measured.
pub fn check(options: &BenchOptions) -> Result<(), BenchError> {
    let invalid = |what: &str| Err(BenchError::Invalid(what.to_owned()));
    if options.clients == 0 || options.pipeline == 0 || options.duration.is_zero() {
        return invalid("clients, pipeline and duration must be greater than 0");
    }
    if options.connect.is_none() {
        if options.workers.is_empty() {
            return invalid("no pool size to measure");
        }
        if let Some(w) = options
            .workers
            .iter()
            .find(|&&w| w == 0 || w > crate::config::MAX_WORKERS)
        {
            return Err(BenchError::Invalid(format!(
                "workers {w}: each pool size must be between 1 and {}",
                crate::config::MAX_WORKERS
            )));
        }
        if options.metrics.is_some() {
            return invalid("metrics is for an external server: it needs connect");
        }
    }
    if let Some(rate) = options.rate {
        if !(rate.is_finite() && rate > 0.0) {
            return invalid("rate must be a number of requests per second greater than 0");
        }
    }
    if options.target_p99.is_some() && options.rate.is_none() {
        return invalid(
            "a p99 target needs a rate: the target is met (or not) at an offered load, \
             and a closed loop offers whatever the server takes",
        );
    }
    if options.idle > 0 && options.idle_ping.is_zero() {
        return invalid("idle-ping must be greater than 0");
    }
    check_tls(options)?;
    let limit = max_payload(Config::default().max_frame);
    if options.payload > limit {
        return Err(BenchError::Invalid(format!(
            "payload {} bytes is more than the server's max frame allows ({limit} bytes: \
             max-frame 1 MiB less the kind byte)",
            options.payload
        )));
    }
    Ok(())
}

/// The TLS options' combinations: `tls_ca` and `tls_server_name` need
/// `tls`; `tls` with `connect` needs `tls_ca` (in process, the throwaway
/// certificate's CA is trusted, and no other).
fn check_tls(options: &BenchOptions) -> Result<(), BenchError> {
    let invalid = |what: &str| Err(BenchError::Invalid(what.to_owned()));
    if !options.tls {
        if options.tls_ca.is_some() || options.tls_server_name.is_some() {
            return invalid("tls-ca and tls-server-name are for a TLS run: they need tls");
        }
        return Ok(());
    }
    match (&options.connect, &options.tls_ca) {
        (Some(_), None) => {
            return invalid(
                "tls with connect needs tls-ca: the CA bundle the server's certificate \
                 chains to",
            )
        }
        (None, Some(_)) => {
            return invalid(
                "tls-ca is for connect: in process the servers serve a throwaway \
                 certificate, and the run trusts its CA",
            )
        }
        _ => {}
    }
    if let Some(name) = &options.tls_server_name {
        if rustls::pki_types::ServerName::try_from(name.as_str()).is_err() {
            return Err(BenchError::Invalid(format!(
                "tls-server-name {name:?} is neither a DNS name nor an IP address"
            )));
        }
    }
    Ok(())
}

/// Durations written as seconds (`1.5`), not `{secs, nanos}`.
fn seconds<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

/// Optional durations written as seconds, or `null`.
fn seconds_opt<S: serde::Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => s.serialize_some(&d.as_secs_f64()),
        None => s.serialize_none(),
    }
}
