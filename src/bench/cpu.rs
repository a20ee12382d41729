//! The server threads' CPU time, read from `/proc/self/task`.
//!
//! Separate because it is the one Linux-specific piece of the benchmark,
//! and the one that needs `unsafe`: it sums the user and system time of
//! this process's threads named `wharf-*`, so it sees only an in-process
//! server, and reads 0 where `/proc` is missing.

/// User + system CPU of this process's server threads (named `wharf-*`).
pub(super) fn server_cpu_seconds() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return 0.0;
    };
    let mut total = 0u64;
    for task in tasks.flatten() {
        let Ok(stat) = std::fs::read_to_string(task.path().join("stat")) else {
            continue;
        };
        // "tid (comm) state ..." : comm may contain spaces, so split at ')'.
        let Some((head, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        if !head.contains("(wharf-") {
            continue;
        }
        let fields: Vec<&str> = rest.split_whitespace().collect();
        // After the comm: state is field 3 of the line, utime 14, stime 15.
        let field = |n: usize| fields.get(n - 3).and_then(|f| f.parse::<u64>().ok());
        total += field(14).unwrap_or(0) + field(15).unwrap_or(0);
    }
    total as f64 / ticks
}
