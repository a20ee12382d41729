//! Playing systemd's part in tests: passing listening sockets to `wharf
//! serve` as socket activation does, and receiving its notifications on a
//! datagram socket named by `NOTIFY_SOCKET`.

use std::os::fd::RawFd;
use std::os::unix::net::UnixDatagram;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

/// `wharf serve <args>` with `fds` passed as descriptors 3, 4, ... and
/// `LISTEN_FDS`/`LISTEN_PID` set as systemd sets them.
///
/// `LISTEN_PID` must be the pid of the process that reads it, which is
/// known only after the fork: a one-line `sh` wrapper exports its own pid
/// (`$$`) and `exec`s wharf, which keeps that pid. The descriptors are put
/// in place between fork and exec, with async-signal-safe calls only, and
/// their close-on-exec flag is cleared there, in the child alone.
pub fn activated_command(fds: &[RawFd], args: &[&str]) -> Command {
    let mut command = Command::new("sh");
    command
        .arg("-c")
        .arg(r#"export LISTEN_PID=$$; exec "$0" serve "$@""#)
        .arg(env!("CARGO_BIN_EXE_wharf"))
        .args(args)
        .env("LISTEN_FDS", fds.len().to_string())
        .env_remove("LISTEN_FDNAMES");
    let fds = fds.to_vec();
    // SAFETY: the closure only calls fcntl(2) and dup2(2), which are
    // async-signal-safe, on the child's own descriptor table, and reads a
    // vector allocated before the fork.
    unsafe {
        command.pre_exec(move || {
            // First out of the way (at 100 and up), so that putting one in
            // place cannot overwrite another still to be moved.
            let mut moved = [0; 16];
            for (i, &fd) in fds.iter().enumerate() {
                moved[i] = check(libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 100))?;
            }
            for (i, &fd) in moved.iter().enumerate().take(fds.len()) {
                let target = 3 + i as RawFd;
                check(libc::dup2(fd, target))?;
                // dup2 clears close-on-exec on the copy; say it anyway.
                let flags = check(libc::fcntl(target, libc::F_GETFD))?;
                check(libc::fcntl(
                    target,
                    libc::F_SETFD,
                    flags & !libc::FD_CLOEXEC,
                ))?;
            }
            Ok(())
        });
    }
    command
}

fn check(rc: libc::c_int) -> std::io::Result<libc::c_int> {
    if rc < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

/// A datagram socket standing in for systemd's notification socket.
pub struct NotifySocket {
    socket: UnixDatagram,
    path: PathBuf,
    /// Every message received so far, in order, with when it came.
    pub received: Vec<(Instant, String)>,
}

impl NotifySocket {
    pub fn new(tag: &str) -> NotifySocket {
        let path = std::env::temp_dir().join(
            format!(
                "wharf-notify-{tag}-{}-{:?}.sock",
                std::process::id(),
                Instant::now()
            )
            .replace([' ', '.'], "_"),
        );
        let _ = std::fs::remove_file(&path);
        let socket = UnixDatagram::bind(&path).expect("bind the notification socket");
        NotifySocket {
            socket,
            path,
            received: Vec::new(),
        }
    }

    /// The value for `NOTIFY_SOCKET`.
    pub fn path(&self) -> &std::path::Path {
        &self.path
    }

    /// Receives messages until one has a line starting with `prefix`
    /// (returned, that line), or `within` passes (`None`).
    pub fn wait_for(&mut self, prefix: &str, within: Duration) -> Option<String> {
        let deadline = Instant::now() + within;
        let mut buf = vec![0u8; 4096];
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            self.socket
                .set_read_timeout(Some(left.max(Duration::from_millis(1))))
                .unwrap();
            let Ok(n) = self.socket.recv(&mut buf) else {
                continue;
            };
            let message = String::from_utf8_lossy(&buf[..n]).into_owned();
            self.received.push((Instant::now(), message.clone()));
            if let Some(line) = message.lines().find(|l| l.starts_with(prefix)) {
                return Some(line.to_owned());
            }
        }
    }

    /// Receives everything that arrives for `period`.
    pub fn collect(&mut self, period: Duration) {
        let _ = self.wait_for("\u{0}never", period);
    }

    /// The lines received since `since` that start with `prefix`.
    pub fn lines_since(&self, since: Instant, prefix: &str) -> Vec<(Instant, String)> {
        self.received
            .iter()
            .filter(|(at, _)| *at >= since)
            .flat_map(|(at, m)| m.lines().map(move |l| (*at, l.to_owned())))
            .filter(|(_, l)| l.starts_with(prefix))
            .collect()
    }
}

impl Drop for NotifySocket {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}
