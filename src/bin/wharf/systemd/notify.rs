//! Sending notifications (`READY=1`, `STATUS=`, `STOPPING=1`,
//! `WATCHDOG=1`, `EXTEND_TIMEOUT_USEC=`) to `NOTIFY_SOCKET`: a pathname or
//! an abstract (`@name`) socket, from one unbound datagram socket.
//!
//! The `sd-notify` crate parses the watchdog variables and formats the
//! messages; sending is done here, so that a failure is logged once as a
//! warning and not again.

use std::env;
use std::io;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context;
use log::{debug, warn};
use sd_notify::NotifyState;

/// Where to send notifications, and the watchdog interval if one is asked
/// for.
#[derive(Debug)]
pub struct Notifier {
    socket: UnixDatagram,
    addr: SocketAddr,
    /// `WATCHDOG_USEC`, if set for this process.
    pub watchdog: Option<Duration>,
    failed: AtomicBool,
}

impl Notifier {
    /// Reads `NOTIFY_SOCKET`, `WATCHDOG_USEC` and `WATCHDOG_PID`, and
    /// removes them. `None` without `NOTIFY_SOCKET`. Must run before any
    /// thread is started.
    pub fn take() -> anyhow::Result<Option<Notifier>> {
        let path = env::var_os("NOTIFY_SOCKET");
        env::remove_var("NOTIFY_SOCKET");
        // SAFETY: as in `Activation::take`: no thread runs yet.
        let watchdog = unsafe { sd_notify::watchdog_enabled_and_unset_env() };
        let Some(path) = path.filter(|p| !p.is_empty()) else {
            return Ok(None);
        };
        let addr = notify_addr(&path)
            .with_context(|| format!("bad NOTIFY_SOCKET {}", path.to_string_lossy()))?;
        let socket = UnixDatagram::unbound().context("cannot create the notification socket")?;
        Ok(Some(Notifier {
            socket,
            addr,
            watchdog: watchdog.filter(|w| !w.is_zero()),
            failed: AtomicBool::new(false),
        }))
    }

    /// Sends one message with these states. A failure is logged as a
    /// warning the first time, at debug level after that.
    pub fn send(&self, states: &[NotifyState<'_>]) {
        let message: String = states.iter().map(|s| format!("{s}\n")).collect();
        if let Err(e) = self.socket.send_to_addr(message.as_bytes(), &self.addr) {
            if self.failed.swap(true, Ordering::Relaxed) {
                debug!("cannot notify systemd: {e}");
            } else {
                warn!("cannot notify systemd ({e}); will keep trying");
            }
        }
    }
}

/// `NOTIFY_SOCKET` is a path, or an abstract name written `@name`.
fn notify_addr(path: &std::ffi::OsStr) -> io::Result<SocketAddr> {
    use std::os::unix::ffi::OsStrExt;
    match path.as_bytes() {
        [b'@', name @ ..] => {
            use std::os::linux::net::SocketAddrExt;
            SocketAddr::from_abstract_name(name)
        }
        _ => SocketAddr::from_pathname(path),
    }
}
