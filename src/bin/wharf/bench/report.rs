//! The report of a run: the options, the points, the recommendation and
//! where it ran (version, machine, time), as `--json` writes it; the CSV
//! and the plot are drawn from it too, so all three say the same.

use serde::Serialize;
use wharf::bench::{BenchOptions, BenchPoint, Recommendation};

/// The machine the run was on.
#[derive(Serialize)]
pub struct Machine {
    pub cpus: usize,
    pub kernel: String,
}

impl Machine {
    fn this() -> Machine {
        let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map(|k| k.trim().to_owned())
            .unwrap_or_else(|_| "unknown".to_owned());
        Machine {
            cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
            kernel,
        }
    }
}

/// What `--json` writes; the CSV and the plot read it too.
#[derive(Serialize)]
pub struct JsonReport<'a> {
    pub version: &'static str,
    /// The commit the binary was built from (`None` outside a git checkout),
    /// as `wharf --version` shows it.
    pub commit: Option<&'static str>,
    pub machine: Machine,
    /// When the report was written (RFC 3339, UTC).
    pub timestamp: String,
    pub options: &'a BenchOptions,
    pub results: &'a [BenchPoint],
    pub recommendation: Option<&'a Recommendation>,
    /// Cut short by Ctrl-C: `results` holds the points measured before.
    pub interrupted: bool,
}

impl<'a> JsonReport<'a> {
    pub fn new(
        options: &'a BenchOptions,
        results: &'a [BenchPoint],
        recommendation: Option<&'a Recommendation>,
        interrupted: bool,
    ) -> Self {
        let timestamp = time::OffsetDateTime::now_utc()
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default();
        JsonReport {
            version: wharf::build_info::VERSION,
            commit: wharf::build_info::COMMIT,
            machine: Machine::this(),
            timestamp,
            options,
            results,
            recommendation,
            interrupted,
        }
    }
}
