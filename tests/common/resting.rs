//! Helpers of the tests of resting connections (`resting_*.rs`): one
//! worker with a long heartbeat, and an echo service that sleeps for a
//! request that says `slow <ms>`, the way those tests make the worker busy.

use std::thread;
use std::time::Duration;

use wharf::{Config, Response, ServiceError};

use super::config;

/// One worker, a long heartbeat, and a service that sleeps for a request
/// that says `slow <ms>`: the way these tests make the worker busy.
pub fn one_worker() -> Config {
    Config {
        workers: 1,
        heartbeat_timeout: Duration::from_secs(20),
        reap_interval: Duration::from_millis(50),
        ..config()
    }
}

/// Echo, except that `slow <ms>` sleeps that long first.
pub fn slow_echo(request: &[u8], response: &mut Response<'_>) -> Result<(), ServiceError> {
    if let Some(ms) = request
        .strip_prefix(b"slow ")
        .and_then(|ms| std::str::from_utf8(ms).ok())
        .and_then(|ms| ms.parse::<u64>().ok())
    {
        thread::sleep(Duration::from_millis(ms));
    }
    response.extend_from_slice(request);
    Ok(())
}
