//! Reloading a running server's TLS set: on demand ([`TlsHandle`], what
//! the binary's SIGHUP calls) and by a thread of its own when a file
//! changes, each reload logged and counted for the metrics. The set itself,
//! and reading it all or nothing, is `tls::reload`.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::SystemTime;

use crossbeam_channel::{Receiver, RecvTimeoutError};
use log::{error, info, warn};

use crate::observe::stats::Stats;
use crate::tls::load::Loaded;
use crate::tls::reload::Tls;
use crate::tls::TlsError;

/// Reloads `tls`, logging and counting the outcome: info with the new
/// certificate's subject and expiry, or one error line naming the file and
/// the cause (the old set goes on serving).
pub(crate) fn reload_logged(tls: &Tls, stats: &Stats) -> Result<(), TlsError> {
    match tls.reload() {
        Ok(loaded) => {
            Stats::bump(&stats.tls_reloads_ok);
            stats.tls_expiry.store(loaded.not_after, Ordering::Relaxed);
            info!(
                "TLS reloaded: serving {}, valid until {}",
                loaded.subject,
                utc(loaded.not_after)
            );
            warn_if_not_valid_now(&loaded, &tls.settings().cert);
            Ok(())
        }
        Err(e) => {
            Stats::bump(&stats.tls_reloads_failed);
            error!("TLS reload failed, still serving the previous set: {e}");
            Err(e)
        }
    }
}

/// Logs a warning if the serving certificate is expired or not yet valid.
pub(crate) fn warn_if_not_valid_now(loaded: &Loaded, path: &std::path::Path) {
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    if now > loaded.not_after {
        warn!(
            "TLS certificate {} expired at {}; clients will refuse it",
            path.display(),
            utc(loaded.not_after)
        );
    } else if now < loaded.not_before {
        warn!(
            "TLS certificate {} is not valid before {}; clients will refuse it until then",
            path.display(),
            utc(loaded.not_before)
        );
    }
}

/// Unix seconds as `2026-12-07 19:46:49 UTC`.
pub(crate) fn utc(secs: i64) -> String {
    use time::macros::format_description;
    time::OffsetDateTime::from_unix_timestamp(secs)
        .ok()
        .and_then(|t| {
            t.format(format_description!(
                "[year]-[month]-[day] [hour]:[minute]:[second] UTC"
            ))
            .ok()
        })
        .unwrap_or_else(|| format!("{secs} (Unix seconds)"))
}

/// The reload thread: every `reload_interval`, reloads the set if any of its
/// files changed, until `stop` disconnects (the drain).
pub(crate) fn run(tls: Arc<Tls>, stats: Arc<Stats>, stop: Receiver<()>) {
    let every = tls.settings().reload_interval;
    loop {
        if let Err(RecvTimeoutError::Disconnected) = stop.recv_timeout(every) {
            break;
        }
        if tls.files_changed() {
            let _ = reload_logged(&tls, &stats);
        }
    }
}

/// Reloads a running server's TLS set on demand: what SIGHUP does in the
/// binary (besides reopening the log file). Cheap to clone.
#[derive(Debug, Clone)]
pub struct TlsHandle {
    pub(crate) tls: Arc<Tls>,
    pub(crate) stats: Arc<Stats>,
}

impl TlsHandle {
    /// Reads the certificate, key, client CA bundle and revocation lists
    /// again. All or nothing: on an error (logged, and returned) the set
    /// in force stays; on success, handshakes from now on use the new set,
    /// and established connections are not disturbed.
    pub fn reload(&self) -> Result<(), TlsError> {
        reload_logged(&self.tls, &self.stats)
    }
}
