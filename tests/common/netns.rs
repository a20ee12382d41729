//! Running one test in a network namespace of its own, as root: it can
//! bind a fixed port and set per-namespace sysctls (such as
//! `net.ipv4.tcp_migrate_req`) without touching the host.
//!
//! [`enter`] re-runs the calling test alone in a fresh copy of the test
//! binary whose only difference is `unshare(CLONE_NEWNET)` between fork and
//! exec (what `unshare -n` does), marked by an environment variable. In
//! there, `lo` is brought up and the test body runs; outside, the test
//! waits for it and fails if it failed. Where namespaces are not permitted
//! (not root, a restricted container) it prints a loud `SKIPPED:` line and
//! the test passes.

use std::io::Write;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};

const MARKER: &str = "WHARF_TEST_NETNS";

/// Whether this is the copy of `test` running in its namespace.
pub fn inside(test: &str) -> bool {
    std::env::var(MARKER).as_deref() == Ok(test)
}

/// True in the namespace: run the test body. False outside, after the
/// copy in the namespace has run (and passed) or the test was skipped.
pub fn enter(test: &str) -> bool {
    if inside(test) {
        if let Err(e) = loopback_up() {
            panic!("cannot bring lo up in the new namespace: {e}");
        }
        return true;
    }
    let exe = std::env::current_exe().expect("the test binary's path");
    let mut command = Command::new(exe);
    command
        .args([test, "--exact", "--nocapture", "--test-threads=1"])
        .env(MARKER, test)
        .stdin(Stdio::null());
    // SAFETY: unshare(2) is a plain system call, async-signal-safe.
    unsafe {
        command.pre_exec(|| {
            if libc::unshare(libc::CLONE_NEWNET) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let output = match command.output() {
        Ok(output) => output,
        Err(e) => {
            skipped(&format!(
                "{test}: cannot create a network namespace ({e}); needs root (CAP_SYS_ADMIN)"
            ));
            return false;
        }
    };
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    // Shown with --nocapture, and on failure.
    println!("{stdout}");
    eprintln!("{stderr}");
    // Lines the copy meant to be seen anyway (SKIPPED, FIGURES).
    for line in stdout.lines().chain(stderr.lines()) {
        if line.starts_with("SKIPPED:") || line.starts_with("FIGURES:") {
            let _ = writeln!(std::io::stderr(), "{line}");
        }
    }
    assert!(
        output.status.success(),
        "{test} failed in its network namespace ({})",
        output.status
    );
    assert!(
        stdout.contains("1 passed"),
        "{test} did not run in its namespace:\n{stdout}"
    );
    false
}

/// A line the test harness does not capture.
pub fn skipped(why: &str) {
    let _ = writeln!(
        std::io::stderr(),
        "SKIPPED: {why} ****************************************"
    );
}

/// Sets a sysctl of this namespace, e.g. `("net/ipv4/tcp_migrate_req", "1")`.
pub fn sysctl(key: &str, value: &str) -> std::io::Result<()> {
    std::fs::write(format!("/proc/sys/{key}"), value)
}

/// `ip link set lo up`, with ioctl(2) rather than a tool that may be missing.
fn loopback_up() -> std::io::Result<()> {
    // SAFETY: a socket used only for the two ioctls on a zeroed `ifreq`
    // whose name is "lo", then closed.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let mut req: libc::ifreq = std::mem::zeroed();
        for (dst, src) in req.ifr_name.iter_mut().zip(b"lo\0") {
            *dst = *src as libc::c_char;
        }
        let mut result = Ok(());
        if libc::ioctl(fd, libc::SIOCGIFFLAGS, &mut req) < 0 {
            result = Err(std::io::Error::last_os_error());
        } else {
            req.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
            if libc::ioctl(fd, libc::SIOCSIFFLAGS, &req) < 0 {
                result = Err(std::io::Error::last_os_error());
            }
        }
        libc::close(fd);
        result
    }
}
