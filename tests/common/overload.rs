//! Helpers of the overload tests (`overload_*.rs`): the lock that runs the
//! tests of one file one at a time, and one worker with a long heartbeat.

use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use wharf::{Config, Overload};

use super::config;

/// Taken by every test of an `overload_*` file so that the tests of one file
/// (one test binary) do not overlap.
pub fn serial() -> MutexGuard<'static, ()> {
    static SERIAL: Mutex<()> = Mutex::new(());
    SERIAL
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// One worker and a long heartbeat, so nothing here is ever reaped: any
/// GOAWAY 3 comes from the overload policy, not from a queue deadline.
pub fn one_worker(queue: usize, overload: Overload) -> Config {
    Config {
        workers: 1,
        queue,
        overload,
        heartbeat_timeout: Duration::from_secs(20),
        reap_interval: Duration::from_millis(100),
        ..config()
    }
}
