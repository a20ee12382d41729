//! A service that keeps a worker busy for exactly as long as a test needs.
//!
//! Since v2 a quiet connection no longer holds a worker: it
//! rests in the poller, and a worker only waiting on it counts as idle. A
//! test that needs "every worker is busy" therefore sends a slow request.
//! Rather than sleeping a fixed time (too short on a loaded machine, too long
//! everywhere else), the slow request is *held*: the service reports that it
//! started, so the test knows the worker is busy, and answers only when the
//! test releases it. Every other request is echoed at once.

use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::Mutex;
use std::time::Duration;

use wharf::{Response, Service, ServiceError};

/// A request whose payload starts with this is held until released.
pub const SLOW: &[u8] = b"slow";

/// The longest a test waits for a held request to start.
pub const STARTED_WITHIN: Duration = Duration::from_secs(10);

/// The longest a request is held if the test never releases it (a broken
/// test): it is then answered with ERROR, which fails any check of its reply.
pub const HOLD_LIMIT: Duration = Duration::from_secs(30);

/// The test's side of the gate. Dropping it releases every held request.
pub struct Gate {
    started: Receiver<Vec<u8>>,
    release: Sender<()>,
}

/// An echo service that holds each request starting with [`SLOW`] until the
/// returned [`Gate`] releases it.
pub fn gate() -> (impl Service, Gate) {
    let (started_tx, started_rx) = mpsc::channel();
    let (release_tx, release_rx) = mpsc::channel::<()>();
    let started_tx = Mutex::new(started_tx);
    let release_rx = Mutex::new(release_rx);
    let service = move |request: &[u8], response: &mut Response<'_>| -> Result<(), ServiceError> {
        if request.starts_with(SLOW) {
            let _ = started_tx.lock().unwrap().send(request.to_vec());
            // One release lets one held request go; a dropped gate lets all go.
            let held = release_rx.lock().unwrap().recv_timeout(HOLD_LIMIT);
            if let Err(RecvTimeoutError::Timeout) = held {
                return Err(ServiceError::from("held past the test's hold limit"));
            }
        }
        response.extend_from_slice(request);
        Ok(())
    };
    (
        service,
        Gate {
            started: started_rx,
            release: release_tx,
        },
    )
}

impl Gate {
    /// Waits (at most [`STARTED_WITHIN`]) until the service has started the
    /// held request `payload`: from then on its worker is busy.
    pub fn wait_started(&self, payload: &[u8]) {
        let got = self
            .started
            .recv_timeout(STARTED_WITHIN)
            .unwrap_or_else(|e| {
                panic!(
                    "the service did not start {:?}: {e}",
                    String::from_utf8_lossy(payload)
                )
            });
        assert_eq!(got, payload, "the held request the service started");
    }

    /// The held request that started since the last look, if any.
    pub fn try_started(&self) -> Option<Vec<u8>> {
        self.started.try_recv().ok()
    }

    /// Lets one held request finish (the one being held, or the next).
    pub fn release(&self) {
        self.release.send(()).expect("the service is alive");
    }
}
