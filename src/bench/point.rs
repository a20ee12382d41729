//! What one point measured: the client side's throughput and latency
//! ([`BenchPoint`]), what the idle clients saw ([`IdleFigures`]), the
//! handshakes of a TLS run ([`TlsFigures`]), and where the server's time
//! went ([`ServerFigures`]), with the judgement every report and the
//! recommendation share: whether a point kept up with what was offered
//! ([`BenchPoint::shortfall`]).

use serde::Serialize;

use super::words::human_rate;

/// The measurement for one pool size (or for the external server).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct BenchPoint {
    /// Pool size; `None` for an external server.
    pub workers: Option<usize>,
    /// Replies received and verified in the measured window.
    pub requests: u64,
    /// Length of the measured window.
    pub seconds: f64,
    /// `requests / seconds`.
    pub requests_per_sec: f64,
    /// Latency percentiles and maximum, in microseconds.
    pub p50_us: u64,
    /// 90th percentile latency (µs).
    pub p90_us: u64,
    /// 99th percentile latency (µs).
    pub p99_us: u64,
    /// 99.9th percentile latency (µs).
    pub p999_us: u64,
    /// Largest latency seen (µs).
    pub max_us: u64,
    /// Client connections that got at least one reply in the window: fewer
    /// than `clients` means the others waited in the queue, unserved.
    pub clients_served: usize,
    /// Connections turned away with GOAWAY 3 (BUSY).
    pub busy: u64,
    /// Wrong echoes, ERROR replies, unexpected GOAWAYs and I/O failures.
    pub errors: u64,
    /// The first of the `errors`, in words (e.g. "cannot connect to
    /// 127.0.0.1:7878: Connection refused (os error 111)").
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_error: Option<String>,
    /// Server threads' CPU time in the window (in-process servers only).
    pub server_cpu_seconds: Option<f64>,
    /// Busy clients offered (`clients`); `clients_served` of them got a reply.
    pub clients: usize,
    /// Open loop: the requests per second offered (`rate`).
    pub offered_rps: Option<f64>,
    /// What the idle clients saw, when there were any.
    pub idle: Option<IdleFigures>,
    /// What the server saw: where the time went. In-process servers, or an
    /// external one with `metrics`.
    pub server: Option<ServerFigures>,
    /// Over TLS (`tls`): the handshakes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsFigures>,
}

/// The handshakes of a TLS run, in the measured window. Every one is full:
/// the clients resume no session.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq)]
pub struct TlsFigures {
    /// Handshakes the clients completed in the window: with
    /// `batches_per_connection`, the connections opened (churn).
    pub handshakes: u64,
    /// `handshakes / seconds`.
    pub handshakes_per_sec: f64,
    /// Time from a connection's connect to its completed handshake, as the
    /// client saw it (µs).
    pub handshake: Percentiles,
    /// Handshakes the server completed in the window, by its own count (in
    /// process, or from an external server's `metrics`).
    pub server_handshakes: Option<u64>,
    /// The server threads' CPU time in the window per handshake it
    /// completed (µs; in process only). With the clients making a
    /// connection per request, most of it is the handshake.
    pub server_cpu_us_per_handshake: Option<f64>,
}

/// Latency percentiles, in microseconds.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq)]
pub struct Percentiles {
    /// Median.
    pub p50_us: u64,
    /// 90th percentile.
    pub p90_us: u64,
    /// 99th percentile.
    pub p99_us: u64,
    /// Largest seen.
    pub max_us: u64,
}

/// What the idle clients (`idle`) saw: PING round trips.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq)]
pub struct IdleFigures {
    /// PONGs received in the window.
    pub pongs: u64,
    /// PINGs that got no PONG (lost, or turned away).
    pub missed: u64,
    /// PONG latency from the PING's scheduled time.
    pub latency: Percentiles,
}

/// Connections turned away with GOAWAY 3, by reason.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq)]
pub struct Rejections {
    /// `--max-connections` reached.
    pub max_connections: u64,
    /// `--queue` full.
    pub queue_full: u64,
    /// Waited in line past the heartbeat deadline.
    pub queue_deadline: u64,
}

/// Where the server's time went in the window.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq)]
pub struct ServerFigures {
    /// How long connections with work waited in line for a worker.
    pub queue_wait: Percentiles,
    /// Time in the service per DATA request.
    pub service: Percentiles,
    /// Mean time in the service per DATA request (µs): exact, from the
    /// histogram's sum, where the percentiles are bucket-coarse.
    pub service_mean_us: f64,
    /// Busy workers on average over the window (sampled).
    pub busy_workers: f64,
    /// Busy workers on average over the window, divided by the pool size.
    pub utilisation: f64,
    /// Connections put to rest, per request (`None` from a
    /// metrics endpoint, which does not export it).
    pub rests_per_request: Option<f64>,
    /// Resting connections woken by their bytes, per request (`None` from a
    /// metrics endpoint).
    pub wakeups_per_request: Option<f64>,
    /// Connections turned away with GOAWAY 3.
    pub rejected: Rejections,
    /// TLS handshakes the server completed (`None` from a metrics endpoint
    /// without TLS listeners).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_handshakes: Option<u64>,
}

impl BenchPoint {
    /// Whether the point served what was offered: every busy client got
    /// a reply, and with an offered rate, at least 95% of it was served by
    /// workers not busy all the time ([`SATURATED`]).
    pub fn kept_up(&self) -> bool {
        self.shortfall().is_none()
    }

    /// Why the point did not keep up, if it did not.
    pub fn shortfall(&self) -> Option<String> {
        if self.clients_served < self.clients {
            return Some(format!(
                "served only {}/{} clients",
                self.clients_served, self.clients
            ));
        }
        let offered = self.offered_rps?;
        if self.requests_per_sec < 0.95 * offered {
            return Some(format!(
                "served {} of the {} req/s offered",
                human_rate(self.requests_per_sec),
                human_rate(offered)
            ));
        }
        // Open loop only (a closed loop keeps every worker busy by design):
        // a pool busy all the time is saturated. Its line grows without
        // bound, however good a short window's p99 looks.
        match self.server {
            Some(server) if server.utilisation >= SATURATED => Some(format!(
                "its workers were busy {:.0}% of the time: saturated",
                server.utilisation * 100.0
            )),
            _ => None,
        }
    }
}

/// Utilisation from which an open-loop point counts as saturated.
pub const SATURATED: f64 = 0.95;
