//! What `wharf serve` does with each signal, on a thread of its own (the
//! list is in `serve`'s module comment). The library installs no handler:
//! a signal reaches it as a call on the handles in [`Running`].

use std::sync::Arc;

use log::{error, info, warn};
use sd_notify::NotifyState;
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM, SIGUSR1, SIGUSR2};
use signal_hook::iterator::Signals;
use wharf::{Monitor, ShutdownHandle, TlsHandle};

use crate::logfile::LogFile;
use crate::systemd::{self, Notifier, Timing};

/// The running server, as the signal thread acts on it.
pub struct Running {
    pub handle: ShutdownHandle,
    pub monitor: Monitor,
    /// For SIGHUP, with a TLS listener.
    pub tls: Option<TlsHandle>,
}

/// What the signal thread needs besides the server.
pub struct SignalHandler {
    pub log_file: Option<LogFile>,
    pub notifier: Option<Arc<Notifier>>,
    pub timing: Timing,
}

impl SignalHandler {
    /// Acts on each signal until the process ends.
    pub fn run(&self, mut signals: Signals, running: &Running) {
        let Running {
            handle,
            monitor,
            tls,
        } = running;
        let mut stops = 0;
        for signal in signals.forever() {
            match signal {
                SIGINT | SIGTERM => {
                    stops += 1;
                    if stops == 1 {
                        self.stop(signal, handle);
                    } else if stops == 2 {
                        info!(
                            "received {} again; closing every connection now",
                            name(signal)
                        );
                        handle.force();
                    }
                }
                SIGHUP => self.hang_up(tls.as_ref()),
                SIGUSR1 => match monitor.report() {
                    Some(report) => info!("received SIGUSR1; counters: {report}"),
                    None => info!("received SIGUSR1; the server has already stopped"),
                },
                SIGUSR2 => warn!(
                    "received SIGUSR2; it means nothing to wharf and is ignored \
                     (SIGUSR1 logs the counters, SIGHUP reopens the log file)"
                ),
                _ => {}
            }
        }
    }

    /// The first SIGINT/SIGTERM.
    fn stop(&self, signal: i32, handle: &ShutdownHandle) {
        let Timing {
            drain_delay, grace, ..
        } = self.timing;
        // What stopping means (the drain delay, the drain) is the server's
        // own next line: one line each, never the same thing twice.
        info!(
            "received {}; stopping (send it again to close at once)",
            name(signal)
        );
        if let Some(notifier) = &self.notifier {
            notifier.send(&[NotifyState::Stopping, systemd::extend(drain_delay + grace)]);
        }
        handle.shutdown();
    }

    /// SIGHUP: open `--log-file` again, for log rotation, and reload the
    /// TLS certificate set.
    fn hang_up(&self, tls: Option<&TlsHandle>) {
        if self.log_file.is_none() && tls.is_none() {
            info!("received SIGHUP; no --log-file to reopen");
            return;
        }
        self.reopen_log();
        if let Some(tls) = tls {
            info!("received SIGHUP; reloading the TLS certificate set");
            // Logged by the library either way; a failure leaves the
            // previous set serving.
            let _ = tls.reload();
        }
    }

    /// Opens `--log-file` again. The line before goes to the old file, the
    /// line after to the new one.
    fn reopen_log(&self) {
        let Some(file) = &self.log_file else {
            return;
        };
        info!(
            "received SIGHUP; reopening the log file {}",
            file.path().display()
        );
        match file.reopen() {
            Ok(()) => info!("reopened the log file {}", file.path().display()),
            Err(e) => error!(
                "cannot reopen the log file {}: {e}; still writing to the old one",
                file.path().display()
            ),
        }
    }
}

fn name(signal: i32) -> &'static str {
    match signal {
        SIGINT => "SIGINT",
        SIGTERM => "SIGTERM",
        _ => "signal",
    }
}
