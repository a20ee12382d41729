//! The TLS set in force, and replacing it. (When to reload, and the log
//! lines and counts of each reload, belong to the server: `server::reloads`.)
//!
//! A reload reads every file again and replaces the set only if all of
//! them load (see `load`): a half-written certificate, or a key rotated
//! before its certificate, leaves the old set serving. Handshakes that start
//! after a successful reload use the new set; connections already
//! established keep the keys they agreed on. Reloads come on demand (the
//! binary's SIGHUP) and, every `--tls-reload-interval`, when any file's
//! modification time has changed (cert-manager and similar tools replace
//! the files in place).

use std::sync::Arc;
use std::time::SystemTime;

use parking_lot::{Mutex, RwLock};
use rustls::ServerConfig;

use super::load::{self, Loaded, TlsError};
use super::settings::TlsSettings;

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
