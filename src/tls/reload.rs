//! The TLS set in force, and replacing it.
//!
//! A reload reads every file again and replaces the set only if all of
//! them load (see `load`): a half-written certificate, or a key rotated
//! before its certificate, leaves the old set serving. Handshakes that start
//! after a successful reload use the new set; connections already
//! established keep the keys they agreed on. Reloads come on demand (the
//! binary's SIGHUP) and, every `--tls-reload-interval`, when any file's
//! modification time has changed (cert-manager and similar tools replace
//! the files in place).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::SystemTime;

use crossbeam_channel::{Receiver, RecvTimeoutError};
use log::{error, info, warn};
use parking_lot::{Mutex, RwLock};
use rustls::ServerConfig;

use super::load::{self, Loaded, TlsError};
use super::settings::TlsSettings;
use crate::observe::stats::Stats;

/// The set in force.
#[derive(Debug)]
pub(crate) struct Tls {
    settings: TlsSettings,
    current: RwLock<Arc<Loaded>>,
    /// The files' modification times at the last attempt to load them,
    /// successful or not: a broken file is reported once, not at every
    /// check, and tried again when it changes.
    tried: Mutex<Vec<Option<SystemTime>>>,
}

impl Tls {
    /// Loads the set for the first time.
    pub(crate) fn load(settings: TlsSettings) -> Result<Tls, TlsError> {
        // Taken before the files are read: a change made while they are
        // read is seen by the next check.
        let tried = load::stamps(&settings);
        let loaded = load::load(&settings)?;
        Ok(Tls {
            tried: Mutex::new(tried),
            settings,
            current: RwLock::new(Arc::new(loaded)),
        })
    }

    /// The configuration new handshakes use.
    pub(crate) fn config(&self) -> Arc<ServerConfig> {
        Arc::clone(&self.current.read().config)
    }

    /// The set in force.
    pub(crate) fn current(&self) -> Arc<Loaded> {
        Arc::clone(&self.current.read())
    }

    pub(crate) fn settings(&self) -> &TlsSettings {
        &self.settings
    }

    /// Reads every file again; replaces the set if all load. The set in
    /// force either way is the old one on an error.
    pub(crate) fn reload(&self) -> Result<Arc<Loaded>, TlsError> {
        *self.tried.lock() = load::stamps(&self.settings);
        let loaded = Arc::new(load::load(&self.settings)?);
        *self.current.write() = Arc::clone(&loaded);
        Ok(loaded)
    }

    /// Whether any file changed since the last attempt to load the set,
    /// by its modification time (or a file appearing or vanishing).
    pub(crate) fn files_changed(&self) -> bool {
        load::stamps(&self.settings) != *self.tried.lock()
    }
}

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
