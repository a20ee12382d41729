//! Helpers of the fault-injection tests (`faults_*.rs`): reading an exited
//! server's log (its summary line, a counter in a line) and printing it
//! whole when `WHARF_FAULTS_LOG` is set.

/// Prints a server's whole log when `WHARF_FAULTS_LOG` is set.
pub fn dump_log(log: &str) {
    if std::env::var_os("WHARF_FAULTS_LOG").is_some() {
        eprintln!("--- server log ---\n{log}--- end of log ---");
    }
}

/// The value of `name=<n>` in a log line.
pub fn counter(line: &str, name: &str) -> Option<u64> {
    line.split_whitespace()
        .find_map(|word| word.strip_prefix(name)?.strip_prefix('='))
        .and_then(|v| v.parse().ok())
}

/// The `summary:` line of an exited server's log.
pub fn summary(log: &str) -> String {
    log.lines()
        .find(|l| l.contains("summary:"))
        .unwrap_or_else(|| panic!("no summary line; log:\n{log}"))
        .to_owned()
}
