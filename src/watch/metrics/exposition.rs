//! What `GET /metrics` says, in the Prometheus text format 0.0.4.
//!
//! The model and the encoding are the official `prometheus-client` crate's:
//! a [`Registry`] encoded by `encoding::prometheus_text::encode`, which
//! writes the classic Prometheus text format (`# HELP` and `# TYPE` lines,
//! counters named with their `_total` suffix on every line, no OpenMetrics
//! `# UNIT`, `_created` or `# EOF` lines), served as
//! `text/plain; version=0.0.4; charset=utf-8`.
//!
//! Nothing here is updated as the server works: every value is read when
//! the endpoint is scraped, from what the server keeps anyway.
//!
//! - Counters and gauges come from one [`Collector`] that reads the
//!   [`Stats`] counters, the workers' hand-off states, the buffer budget,
//!   the shutdown flags and the registry's census once per scrape and
//!   encodes them as constants. So the hot path gains no shared atomic.
//! - The two histograms are a custom metric type, [`WorkerHistogram`]: each
//!   worker records into its own cache-padded bucket array with plain
//!   stores (see `stats`), and encoding sums the workers' arrays.
//!   prometheus-client's own `Histogram` takes a write lock per
//!   observation, which the hot path cannot afford.
//! - `wharf_requests_total` is the workers' DATA request count, kept
//!   whether or not the endpoint is on; the service histogram times the
//!   same requests, so its count follows it (a scrape in the middle of a
//!   batch may see the histogram a few requests ahead).
//!
//! - The standard `process_*` metrics are read from `/proc` per scrape
//!   (see `process`).
//!
//! Units are base units (seconds, bytes), and no metric has a per-peer
//! label: every label value listed in docs/operating.md is there from startup, at
//! 0, and none ever appears later.

use std::fmt;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use parking_lot::Mutex;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{
    prometheus_text, DescriptorEncoder, EncodeMetric, MetricEncoder, NoLabelSet,
};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::info::Info;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use super::process::Process;
use super::Sources;
use crate::engine::registry::Census;
use crate::observe::stats::{Histogram, Stats, BOUNDS_NS};

/// The content type of the Prometheus text format, version 0.0.4.
pub(crate) const CONTENT_TYPE: &str = prometheus_text::CONTENT_TYPE;

/// The connection gauges are counted at most this often; a scrape within
/// this long of the last count reuses it.
pub(crate) const CENSUS_EVERY: std::time::Duration = std::time::Duration::from_millis(100);

/// The registry and the buffer the text is rendered into.
pub(crate) struct Exposition {
    registry: Registry,
    text: String,
}

impl Exposition {
    pub(crate) fn new(sources: Sources) -> Exposition {
        let sources = Arc::new(sources);
        let mut registry = Registry::default();
        registry.register(
            "wharf_build",
            "Build information: the version of wharf serving, and the commit it was built from",
            Info::new([
                ("version", crate::build_info::VERSION),
                ("commit", crate::build_info::COMMIT.unwrap_or("unknown")),
            ]),
        );
        registry.register(
            "wharf_queue_wait_seconds",
            "How long a connection with work waited in line for a worker (a new one from its \
             accept, a resting one from the arrival of its request), observed when a worker \
             takes it (connections turned away for waiting too long are counted in \
             wharf_connections_rejected_total instead)",
            WorkerHistogram::queue_wait(Arc::clone(&sources.stats)),
        );
        registry.register(
            "wharf_service_seconds",
            "Time inside the service per DATA request",
            WorkerHistogram::service(Arc::clone(&sources.stats)),
        );
        if sources.tls {
            registry.register(
                "wharf_tls_handshake_seconds",
                "Time from the accept of a TLS connection to its completed handshake",
                WorkerHistogram {
                    stats: Arc::clone(&sources.stats),
                    which: Which::TlsHandshake,
                },
            );
        }
        registry.register_collector(Box::new(Counts {
            sources,
            census: Mutex::new(None),
        }));
        Exposition {
            registry,
            text: String::with_capacity(16 * 1024),
        }
    }

    /// The metrics as they are now.
    pub(crate) fn render(&mut self) -> &str {
        self.text.clear();
        // Writing to a String cannot fail, and neither can our metrics.
        let _ = prometheus_text::encode(&mut self.text, &self.registry);
        &self.text
    }
}

/// Counters and gauges, read once per scrape.
#[derive(Debug)]
struct Counts {
    sources: Arc<Sources>,
    /// The last census of the registry, and when it was taken.
    census: Mutex<Option<(Instant, Census)>>,
}

impl Counts {
    /// Where the connections are, counted at most every [`CENSUS_EVERY`].
    fn census(&self) -> Census {
        let mut last = self.census.lock();
        match *last {
            Some((at, census)) if at.elapsed() < CENSUS_EVERY => census,
            _ => {
                let census = self.sources.registry.census();
                *last = Some((Instant::now(), census));
                census
            }
        }
    }
}

impl Collector for Counts {
    fn encode(&self, mut encoder: DescriptorEncoder) -> fmt::Result {
        let sources = &*self.sources;
        let report = sources.stats.report(false);
        let census = self.census();
        let mut enc = Enc(&mut encoder);

        enc.counter(
            "wharf_connections_accepted",
            "Connections accepted, including those then turned away with GOAWAY 3.",
            report.accepted,
        )?;
        enc.counters(
            "wharf_connections_rejected",
            "Connections turned away, by reason: with GOAWAY 3 (BUSY) max-connections \
             reached, queue full, or waited in line past the heartbeat deadline; with GOAWAY 6 \
             (LIMITED) a per-address connection cap or connect rate.",
            "reason",
            &[
                ("max_connections", report.rejected_max_connections),
                ("queue_full", report.rejected_queue_full),
                ("queue_deadline", report.rejected_queue_deadline),
                (
                    "per_address_connections",
                    report.rejected_per_address_connections,
                ),
                ("per_address_rate", report.rejected_per_address_rate),
            ],
        )?;
        enc.counter(
            "wharf_connections_reaped",
            "Connections closed with GOAWAY 2 for missing their heartbeat deadline.",
            report.reaped,
        )?;
        enc.counter(
            "wharf_requests",
            "DATA requests answered, by the service or with ERROR (PINGs are not requests).",
            report.data_requests,
        )?;
        enc.counter(
            "wharf_protocol_errors",
            "Connections closed with GOAWAY 4 or 5 for a malformed stream.",
            report.protocol_errors,
        )?;
        enc.counter(
            "wharf_write_timeouts",
            "Connections dropped because the client did not take its responses within \
             the write timeout.",
            report.write_timeouts,
        )?;
        enc.counter(
            "wharf_accept_errors",
            "Errors from accept on the data port (for example out of file descriptors).",
            report.accept_errors,
        )?;
        enc.counter(
            "wharf_service_panics",
            "DATA requests whose service panicked (answered with ERROR).",
            report.service_panics,
        )?;

        enc.gauges(
            "wharf_connections",
            "Open connections by where they are: waiting in line for a worker, held by a \
             worker, or resting (counted at most every 100 ms).",
            "state",
            &[
                ("queued", census.queued as u64),
                ("active", census.active as u64),
                ("resting", census.resting as u64),
            ],
        )?;
        enc.gauge(
            "wharf_workers",
            "Size of the worker pool (--workers).",
            sources.pool_size as u64,
        )?;
        enc.gauge(
            "wharf_workers_busy",
            "Workers holding a connection that has work.",
            sources.workers.busy() as u64,
        )?;
        enc.gauge(
            "wharf_max_connections",
            "Most clients connected at once (--max-connections, as fitted to the \
             descriptor limit).",
            sources.max_connections as u64,
        )?;
        enc.gauge(
            "wharf_buffered_bytes",
            "Bytes of unfinished frames held for connections not being served, counted \
             against --max-buffered.",
            sources.budget.used() as u64,
        )?;
        if !sources.per_address.is_off() {
            enc.gauge(
                "wharf_per_address_addresses",
                "Client addresses the per-address limits keep state for now (open \
                 connections, and recent connects for the rate); bounded by \
                 --max-connections.",
                sources.per_address.entries() as u64,
            )?;
            enc.counter(
                "wharf_per_address_untracked",
                "New client addresses let in without rate state because the rate table was \
                 full (more distinct addresses within one refill time than it holds): the \
                 rate limit fails open for them.",
                sources.per_address.unrecorded(),
            )?;
        }
        enc.gauge(
            "wharf_stopping",
            "1 from the stop request (SIGINT/SIGTERM) on, through the drain delay and the \
             drain; /ready answers 503 from then on. Else 0.",
            u64::from(sources.shutdown.is_stopping()),
        )?;
        enc.gauge(
            "wharf_draining",
            "1 once the drain has started (listener closed), else 0: still 0 during the \
             drain delay, when the server is stopping (wharf_stopping 1, /ready 503) but \
             still accepts and serves.",
            u64::from(sources.shutdown.is_draining()),
        )?;
        if sources.tls {
            let stats = &sources.stats;
            let get = |c: &std::sync::atomic::AtomicU64| c.load(Ordering::Relaxed);
            enc.counters(
                "wharf_tls_handshakes",
                "TLS handshakes by result: ok; failed (a handshake a worker started that \
                 ended in an error: a malformed hello, no common version or protocol, a \
                 client certificate missing or not trusted); timeout (no completed \
                 handshake within --handshake-timeout).",
                "result",
                &[
                    ("ok", get(&stats.tls_handshakes_ok)),
                    ("failed", get(&stats.tls_handshakes_failed)),
                    ("timeout", get(&stats.tls_handshakes_timeout)),
                ],
            )?;
            enc.counters(
                "wharf_tls_reloads",
                "Reloads of the TLS files (SIGHUP, or a changed file): ok replaced the set; \
                 failed kept the previous one.",
                "result",
                &[
                    ("ok", get(&stats.tls_reloads_ok)),
                    ("failed", get(&stats.tls_reloads_failed)),
                ],
            )?;
            enc.gauge(
                "wharf_tls_certificate_expiry_timestamp_seconds",
                "When the serving certificate expires (its notAfter), in Unix seconds: alert \
                 before it comes.",
                u64::try_from(stats.tls_expiry.load(Ordering::Relaxed)).unwrap_or(0),
            )?;
        }
        Process::read().encode(enc.0)
    }
}

/// Shorthands for the constant metrics a collector writes.
struct Enc<'a, 'b>(&'a mut DescriptorEncoder<'b>);

impl Enc<'_, '_> {
    fn counter(&mut self, name: &str, help: &str, value: u64) -> fmt::Result {
        let metric = ConstCounter::new(value);
        let encoder = self
            .0
            .encode_descriptor(name, help, None, metric.metric_type())?;
        metric.encode(encoder)
    }

    fn gauge(&mut self, name: &str, help: &str, value: u64) -> fmt::Result {
        let metric = ConstGauge::new(value);
        let encoder = self
            .0
            .encode_descriptor(name, help, None, metric.metric_type())?;
        metric.encode(encoder)
    }

    fn counters(
        &mut self,
        name: &str,
        help: &str,
        label: &str,
        values: &[(&str, u64)],
    ) -> fmt::Result {
        self.labelled(
            name,
            help,
            MetricType::Counter,
            label,
            values,
            ConstCounter::new,
        )
    }

    fn gauges(
        &mut self,
        name: &str,
        help: &str,
        label: &str,
        values: &[(&str, u64)],
    ) -> fmt::Result {
        self.labelled(
            name,
            help,
            MetricType::Gauge,
            label,
            values,
            ConstGauge::new,
        )
    }

    /// One family with a sample per value of `label`.
    fn labelled<M: EncodeMetric>(
        &mut self,
        name: &str,
        help: &str,
        kind: MetricType,
        label: &str,
        values: &[(&str, u64)],
        metric: impl Fn(u64) -> M,
    ) -> fmt::Result {
        let mut family = self.0.encode_descriptor(name, help, None, kind)?;
        for &(value, n) in values {
            let labels = [(label, value)];
            metric(n).encode(family.encode_family(&labels)?)?;
        }
        Ok(())
    }
}

/// Which of the workers' histograms.
#[derive(Debug, Clone, Copy)]
enum Which {
    QueueWait,
    Service,
    TlsHandshake,
}

/// A histogram kept per worker (see `stats`) and summed when encoded.
#[derive(Debug)]
pub(crate) struct WorkerHistogram {
    stats: Arc<Stats>,
    which: Which,
}

impl WorkerHistogram {
    fn queue_wait(stats: Arc<Stats>) -> Self {
        WorkerHistogram {
            stats,
            which: Which::QueueWait,
        }
    }

    fn service(stats: Arc<Stats>) -> Self {
        WorkerHistogram {
            stats,
            which: Which::Service,
        }
    }

    fn read(&self) -> Histogram {
        match self.which {
            Which::QueueWait => self.stats.queue_wait_histogram(),
            Which::Service => self.stats.service_histogram(),
            Which::TlsHandshake => self.stats.tls_handshake_histogram(),
        }
    }
}

impl EncodeMetric for WorkerHistogram {
    fn encode(&self, mut encoder: MetricEncoder) -> fmt::Result {
        let histogram = self.read();
        let mut buckets = [(f64::INFINITY, 0); BOUNDS_NS.len() + 1];
        for (i, bucket) in buckets.iter_mut().enumerate() {
            // Per bucket, not cumulative: the encoder adds them up.
            bucket.1 = histogram.counts[i];
            if let Some(&bound) = BOUNDS_NS.get(i) {
                bucket.0 = bound as f64 / 1e9;
            }
        }
        let sum = histogram.sum_ns as f64 / 1e9;
        encoder.encode_histogram::<NoLabelSet>(sum, histogram.count(), &buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Histogram
    }
}
