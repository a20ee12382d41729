//! An external server's `--metrics` endpoint: `GET /metrics` over a plain
//! TCP connection, and the Prometheus text parsed into a [`Reading`] for
//! `wharf_queue_wait_seconds_*`, `wharf_service_seconds_*`,
//! `wharf_workers_busy`, `wharf_workers`, `wharf_requests_total`,
//! `wharf_connections_rejected_total{reason}` and, with TLS listeners,
//! `wharf_tls_handshakes_total{result="ok"}`. Rests and wake-ups are not
//! exported, so they are `None` there.
//!
//! No HTTP client: one `GET` with `Connection: close`, the response read
//! to its end (within [`SCRAPE_TIMEOUT`], at most 16 MiB), and only a 200
//! accepted.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use super::reading::{Hist, Reading};

/// How long a scrape may take, each way.
const SCRAPE_TIMEOUT: Duration = Duration::from_secs(5);

/// `GET /metrics` from `addr`: the body of a 200 response.
pub(super) fn scrape(addr: SocketAddr) -> Result<String, String> {
    let fail = |e: std::io::Error| format!("cannot read metrics from {addr}: {e}");
    let mut stream = TcpStream::connect_timeout(&addr, SCRAPE_TIMEOUT).map_err(fail)?;
    stream
        .set_read_timeout(Some(SCRAPE_TIMEOUT))
        .map_err(fail)?;
    stream
        .set_write_timeout(Some(SCRAPE_TIMEOUT))
        .map_err(fail)?;
    stream
        .write_all(
            format!("GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        )
        .map_err(fail)?;
    let deadline = Instant::now() + SCRAPE_TIMEOUT;
    let mut response = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    loop {
        match stream.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => response.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(fail(e)),
        }
        if Instant::now() > deadline || response.len() > 16 << 20 {
            return Err(format!(
                "cannot read metrics from {addr}: response too slow or too large"
            ));
        }
    }
    let text = String::from_utf8_lossy(&response);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("{addr} did not answer with HTTP"))?;
    let status = head.lines().next().unwrap_or_default();
    if status.split_whitespace().nth(1) != Some("200") {
        return Err(format!("GET http://{addr}/metrics answered {status:?}"));
    }
    Ok(body.to_owned())
}

/// The figures' metrics from a Prometheus text exposition.
pub(super) fn parse(text: &str) -> Result<Reading, String> {
    let mut reading = Reading::default();
    let mut queue_wait: Vec<(f64, u64)> = Vec::new();
    let mut service: Vec<(f64, u64)> = Vec::new();
    let (mut queue_wait_sum, mut service_sum) = (0.0, 0.0);
    let mut seen = false;
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((series, value)) = line.rsplit_once(char::is_whitespace) else {
            continue;
        };
        let Ok(value) = value.parse::<f64>() else {
            continue;
        };
        let (name, labels) = match series.split_once('{') {
            Some((name, rest)) => (name, rest.trim_end_matches('}')),
            None => (series.trim(), ""),
        };
        let label = |key: &str| {
            labels.split(',').find_map(|pair| {
                let (k, v) = pair.split_once('=')?;
                (k.trim() == key).then(|| v.trim().trim_matches('"').to_owned())
            })
        };
        let le = || {
            label("le").and_then(|le| match le.as_str() {
                "+Inf" => Some(f64::INFINITY),
                other => other.parse::<f64>().ok(),
            })
        };
        let count = value.max(0.0) as u64;
        match name {
            "wharf_queue_wait_seconds_bucket" => {
                seen = true;
                queue_wait.extend(le().map(|le| (le, count)));
            }
            "wharf_queue_wait_seconds_sum" => queue_wait_sum = value,
            "wharf_service_seconds_bucket" => service.extend(le().map(|le| (le, count))),
            "wharf_service_seconds_sum" => service_sum = value,
            "wharf_requests_total" => reading.data_requests = count,
            "wharf_workers_busy" => reading.busy = value,
            "wharf_workers" => reading.pool = count as usize,
            "wharf_tls_handshakes_total" if label("result").as_deref() == Some("ok") => {
                reading.tls_handshakes = Some(count);
            }
            "wharf_connections_rejected_total" => match label("reason").as_deref() {
                Some("max_connections") => reading.rejected.max_connections = count,
                Some("queue_full") => reading.rejected.queue_full = count,
                Some("queue_deadline") => reading.rejected.queue_deadline = count,
                _ => {}
            },
            _ => {}
        }
    }
    if !seen {
        return Err(
            "no wharf_queue_wait_seconds histogram in the metrics (is it a wharf \
                    server's --metrics address?)"
                .into(),
        );
    }
    reading.queue_wait = Hist {
        sum: queue_wait_sum,
        ..from_cumulative(queue_wait)
    };
    reading.service = Hist {
        sum: service_sum,
        ..from_cumulative(service)
    };
    Ok(reading)
}

/// Per-bucket counts from Prometheus' cumulative `le` buckets.
fn from_cumulative(mut buckets: Vec<(f64, u64)>) -> Hist {
    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut previous = 0;
    let mut hist = Hist::default();
    for (bound, cumulative) in buckets {
        hist.bounds.push(bound);
        hist.counts.push(cumulative.saturating_sub(previous));
        previous = previous.max(cumulative);
    }
    hist
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::bench::point::Rejections;

    /// A metrics page as a wharf server serves it (the figures' test
    /// reads it too).
    pub(in crate::bench::server) const TEXT: &str = "\
# HELP wharf_queue_wait_seconds How long
# TYPE wharf_queue_wait_seconds histogram
wharf_queue_wait_seconds_sum 0.03
wharf_queue_wait_seconds_count 10
wharf_queue_wait_seconds_bucket{le=\"0.001\"} 5
wharf_queue_wait_seconds_bucket{le=\"0.01\"} 10
wharf_queue_wait_seconds_bucket{le=\"+Inf\"} 10
wharf_service_seconds_sum 0.1
wharf_service_seconds_count 10
wharf_service_seconds_bucket{le=\"0.01\"} 10
wharf_service_seconds_bucket{le=\"+Inf\"} 10
wharf_requests_total 10
wharf_workers 4
wharf_workers_busy 3
wharf_connections_rejected_total{reason=\"max_connections\"} 1
wharf_connections_rejected_total{reason=\"queue_full\"} 2
wharf_connections_rejected_total{reason=\"queue_deadline\"} 3
wharf_tls_handshakes_total{result=\"ok\"} 7
wharf_tls_handshakes_total{result=\"failed\"} 2
";

    #[test]
    fn the_prometheus_text_is_read_into_a_reading() {
        let r = parse(TEXT).unwrap();
        assert_eq!(r.queue_wait.counts, vec![5, 5, 0]);
        assert_eq!(r.service.counts, vec![10, 0]);
        assert!((r.queue_wait.sum - 0.03).abs() < 1e-9);
        assert!((r.service.sum - 0.1).abs() < 1e-9);
        assert_eq!((r.data_requests, r.pool, r.busy), (10, 4, 3.0));
        assert_eq!(
            r.rejected,
            Rejections {
                max_connections: 1,
                queue_full: 2,
                queue_deadline: 3
            }
        );
        assert_eq!(r.tls_handshakes, Some(7));
        assert!(parse("something_else 1\n").is_err());
    }
}
