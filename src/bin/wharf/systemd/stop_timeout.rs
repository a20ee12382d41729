//! `EXTEND_TIMEOUT_USEC=`: while stopping, how much longer systemd is
//! asked to wait. Enough for what the stop may still legitimately take plus
//! [`EXTEND_MARGIN`], and nothing once that has passed, so that a wedged
//! stop is still ended by systemd's `TimeoutStopSec=`.

use std::time::{Duration, Instant};

use sd_notify::NotifyState;

/// How much longer than the stop can legitimately take the
/// `EXTEND_TIMEOUT_USEC` asks for: room for the forced close and the exit.
pub const EXTEND_MARGIN: Duration = Duration::from_secs(5);

/// `EXTEND_TIMEOUT_USEC=` for a stop that may still take `remaining`.
pub fn extend(remaining: Duration) -> NotifyState<'static> {
    extend_usec(remaining + EXTEND_MARGIN)
}

pub(super) fn extend_usec(extension: Duration) -> NotifyState<'static> {
    NotifyState::ExtendTimeoutUsec(u32::try_from(extension.as_micros()).unwrap_or(u32::MAX))
}

/// The `EXTEND_TIMEOUT_USEC=` to send at `now` for a stop due to be over by
/// `deadline`: what is left of it plus [`EXTEND_MARGIN`], so that systemd
/// waits until `deadline + EXTEND_MARGIN` and no longer. `None` once the
/// deadline has passed: a stop still running then is wedged, and systemd's
/// `TimeoutStopSec=` (extended at most to that point) must be free to end it.
pub(super) fn extension(now: Instant, deadline: Instant) -> Option<Duration> {
    (now < deadline).then(|| deadline - now + EXTEND_MARGIN)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: Duration = Duration::from_secs(1);

    fn usec(state: &NotifyState<'_>) -> u32 {
        match state {
            NotifyState::ExtendTimeoutUsec(usec) => *usec,
            other => panic!("not EXTEND_TIMEOUT_USEC: {other}"),
        }
    }

    #[test]
    fn the_extension_covers_what_is_left_plus_the_margin_and_stops_at_the_deadline() {
        let t0 = Instant::now();
        let deadline = t0 + 10 * SEC;
        assert_eq!(extension(t0, deadline), Some(10 * SEC + EXTEND_MARGIN));
        assert_eq!(extension(t0 + 9 * SEC, deadline), Some(SEC + EXTEND_MARGIN));
        // Every renewal asks systemd to wait until the same point, no later.
        for at in [
            t0,
            t0 + 3 * SEC,
            t0 + 9 * SEC,
            deadline - Duration::from_millis(1),
        ] {
            assert_eq!(
                at + extension(at, deadline).unwrap(),
                deadline + EXTEND_MARGIN
            );
        }
        // From the deadline on, a stop still running is wedged: nothing more,
        // however long it goes on (renewing even EXTEND_MARGIN alone every
        // second would keep a wedged stop from ever being killed).
        for late in [0, 1, 5, 6, 60, 3600] {
            assert_eq!(
                extension(deadline + late * SEC, deadline),
                None,
                "{late} s late"
            );
        }
    }

    #[test]
    fn extend_timeout_usec_is_in_microseconds_and_saturates() {
        assert_eq!(usec(&extend(10 * SEC)), 15_000_000);
        assert_eq!(usec(&extend_usec(Duration::from_millis(1500))), 1_500_000);
        // u32 microseconds end at about 71 minutes.
        assert_eq!(usec(&extend(Duration::from_secs(24 * 3600))), u32::MAX);
    }
}
