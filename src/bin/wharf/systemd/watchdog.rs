//! The watchdog check: `WATCHDOG=1` vouches that the server is alive, so
//! it is sent only while the threads whose life it vouches for (the reaper,
//! and the acceptor until the drain) are seen turning between two checks.

use wharf::Liveness;

/// What one watchdog check decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Watchdog {
    /// Send `WATCHDOG=1`.
    Feed,
    /// Withhold it: the reaper has not turned since the last check.
    ReaperStuck,
    /// Withhold it: the acceptor has not turned since the last check, and
    /// the drain has not started.
    AcceptorStuck,
}

/// Whether the threads whose life the watchdog vouches for have turned
/// between two checks: the reaper always (it stops only when the drain is
/// over), the acceptor until the drain starts (then it stops on purpose).
pub(super) fn watchdog(last: Liveness, now: Liveness, draining: bool) -> Watchdog {
    if now.reaper <= last.reaper {
        Watchdog::ReaperStuck
    } else if now.acceptor <= last.acceptor && !draining {
        Watchdog::AcceptorStuck
    } else {
        Watchdog::Feed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn live(acceptor: u64, reaper: u64) -> Liveness {
        Liveness { acceptor, reaper }
    }

    #[test]
    fn the_watchdog_is_fed_only_while_the_threads_it_vouches_for_turn() {
        let last = live(10, 20);
        // Both turning: fed, before and during the drain.
        assert_eq!(watchdog(last, live(12, 22), false), Watchdog::Feed);
        assert_eq!(watchdog(last, live(12, 22), true), Watchdog::Feed);
        // A stuck acceptor before the drain: withheld.
        assert_eq!(watchdog(last, live(10, 22), false), Watchdog::AcceptorStuck);
        // The acceptor stops on purpose once the drain starts: the reaper
        // alone counts.
        assert_eq!(watchdog(last, live(10, 22), true), Watchdog::Feed);
        // A stuck reaper: withheld, draining or not.
        assert_eq!(watchdog(last, live(12, 20), false), Watchdog::ReaperStuck);
        assert_eq!(watchdog(last, live(10, 20), true), Watchdog::ReaperStuck);
        // Both stuck: the reaper is named.
        assert_eq!(watchdog(last, live(10, 20), false), Watchdog::ReaperStuck);
    }
}
