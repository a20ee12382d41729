//! The standard process metrics every Prometheus exporter has
//! (`process_start_time_seconds`, `process_cpu_seconds_total`,
//! `process_resident_memory_bytes`, `process_open_fds`), read from `/proc`
//! at each scrape as the Go and Python clients read them.
//!
//! They tell one process from another behind one address: with
//! `--reuse-port` two instances answer on one metrics port while they
//! overlap, and a changed start time says a counter that went down is
//! another process, not a reset.

use std::fmt;

use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

/// What `/proc` says about this process now; a value that cannot be read
/// (no `/proc`) is left out of the exposition.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub(crate) struct Process {
    pub(crate) start_time_seconds: Option<f64>,
    pub(crate) cpu_seconds: Option<f64>,
    pub(crate) resident_memory_bytes: Option<u64>,
    pub(crate) open_fds: Option<u64>,
}

impl Process {
    pub(crate) fn read() -> Process {
        let ticks = rustix::param::clock_ticks_per_second().max(1) as f64;
        let stat = std::fs::read_to_string("/proc/self/stat").ok();
        let stat = stat.as_deref().and_then(stat_fields);
        let boot_time = std::fs::read_to_string("/proc/stat")
            .ok()
            .and_then(|text| boot_time(&text));
        Process {
            start_time_seconds: stat
                .zip(boot_time)
                .map(|(s, boot)| boot as f64 + s.start_ticks as f64 / ticks),
            cpu_seconds: stat.map(|s| (s.user_ticks + s.system_ticks) as f64 / ticks),
            resident_memory_bytes: std::fs::read_to_string("/proc/self/statm")
                .ok()
                .and_then(|text| resident_pages(&text))
                .map(|pages| pages * rustix::param::page_size() as u64),
            open_fds: std::fs::read_dir("/proc/self/fd")
                .ok()
                .map(|dir| dir.count() as u64),
        }
    }

    /// Writes the four families, in the Go client's words.
    pub(crate) fn encode(&self, encoder: &mut DescriptorEncoder) -> fmt::Result {
        if let Some(seconds) = self.cpu_seconds {
            let metric = ConstCounter::new(seconds);
            metric.encode(encoder.encode_descriptor(
                "process_cpu_seconds",
                "Total user and system CPU time spent in seconds.",
                None,
                metric.metric_type(),
            )?)?;
        }
        if let Some(fds) = self.open_fds {
            gauge(
                encoder,
                "process_open_fds",
                "Number of open file descriptors.",
                fds as f64,
            )?;
        }
        if let Some(bytes) = self.resident_memory_bytes {
            gauge(
                encoder,
                "process_resident_memory_bytes",
                "Resident memory size in bytes.",
                bytes as f64,
            )?;
        }
        if let Some(seconds) = self.start_time_seconds {
            gauge(
                encoder,
                "process_start_time_seconds",
                "Start time of the process since unix epoch in seconds.",
                seconds,
            )?;
        }
        Ok(())
    }
}

fn gauge(encoder: &mut DescriptorEncoder, name: &str, help: &str, value: f64) -> fmt::Result {
    let metric = ConstGauge::new(value);
    metric.encode(encoder.encode_descriptor(name, help, None, metric.metric_type())?)
}

/// The fields of `/proc/self/stat` used here, in clock ticks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stat {
    user_ticks: u64,
    system_ticks: u64,
    /// Since boot.
    start_ticks: u64,
}

/// `pid (comm) state ...`: comm may hold spaces and parentheses, so the
/// fields are counted from the last `)`; the state is field 3, utime 14,
/// stime 15, starttime 22 (proc(5)).
fn stat_fields(text: &str) -> Option<Stat> {
    let (_, rest) = text.rsplit_once(')')?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |n: usize| fields.get(n - 3)?.parse::<u64>().ok();
    Some(Stat {
        user_ticks: field(14)?,
        system_ticks: field(15)?,
        start_ticks: field(22)?,
    })
}

/// The `btime` line of `/proc/stat`: when the system booted, in Unix seconds.
fn boot_time(text: &str) -> Option<u64> {
    text.lines()
        .find_map(|line| line.strip_prefix("btime "))
        .and_then(|value| value.trim().parse().ok())
}

/// The second field of `/proc/self/statm`: resident pages.
fn resident_pages(text: &str) -> Option<u64> {
    text.split_whitespace().nth(1)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_is_read_past_a_command_with_spaces_and_parentheses() {
        let line = "4242 (a (b) c) S 1 4242 4242 0 -1 4194560 100 0 0 0 \
                    25 7 0 0 20 0 3 0 123456 1000000 300 18446744073709551615";
        assert_eq!(
            stat_fields(line),
            Some(Stat {
                user_ticks: 25,
                system_ticks: 7,
                start_ticks: 123456,
            })
        );
        assert_eq!(stat_fields("4242 (cut) S 1"), None);
    }

    #[test]
    fn boot_time_and_resident_pages() {
        assert_eq!(
            boot_time("cpu  1 2 3\nbtime 1700000000\nprocesses 9\n"),
            Some(1_700_000_000)
        );
        assert_eq!(boot_time("cpu  1 2 3\n"), None);
        assert_eq!(resident_pages("2000 512 100 1 0 300 0\n"), Some(512));
    }

    #[test]
    fn this_process_is_read() {
        let process = Process::read();
        assert!(process.open_fds.unwrap() >= 3, "{process:?}");
        assert!(process.resident_memory_bytes.unwrap() > 0, "{process:?}");
        assert!(process.cpu_seconds.unwrap() >= 0.0, "{process:?}");
        assert!(process.start_time_seconds.unwrap() > 1e9, "{process:?}");
    }
}
