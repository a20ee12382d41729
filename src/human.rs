//! Durations as people read them in log lines: rounded to two or three
//! significant digits, with an ASCII unit (`us`, not the micro sign), e.g.
//! `583 us`, `4.2 ms`, `250 ms`, `4.0 s`, `30 s`, `5 min`.
//!
//! `Duration`'s `Debug` form (`3.996889795s`, `582.944µs`) is exact but
//! noisy, and not ASCII; every log line that shows a duration goes through
//! [`duration`] instead, so they all look alike. The key=value `summary:`
//! and `stats:` lines hold counts, not durations, and are not affected.

use std::fmt;
use std::time::Duration;

/// `d` for a log line; see the module docs.
pub fn duration(d: Duration) -> HumanDuration {
    HumanDuration(d)
}

/// A duration that displays rounded, with an ASCII unit (see [`duration`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HumanDuration(pub Duration);

impl fmt::Display for HumanDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const US: f64 = 1e3;
        const MS: f64 = 1e6;
        const S: f64 = 1e9;
        const MIN: f64 = 60.0 * S;
        const H: f64 = 60.0 * MIN;
        let ns = self.0.as_nanos() as f64;
        // Each unit takes over where the one below would round up to its
        // next step, so that no value reads `1000 ms` or `10.0 ms`.
        if self.0.is_zero() {
            f.write_str("0 s")
        } else if ns < 999.5 * US {
            write!(f, "{} us", (ns / US).round().max(1.0))
        } else if ns < 9.95 * MS {
            write!(f, "{:.1} ms", ns / MS)
        } else if ns < 999.5 * MS {
            write!(f, "{} ms", (ns / MS).round())
        } else if ns < 9.95 * S {
            write!(f, "{:.1} s", ns / S)
        } else if ns < 119.5 * S {
            write!(f, "{} s", (ns / S).round())
        } else if ns < 119.5 * MIN {
            whole_or_tenths(f, ns / MIN, "min")
        } else {
            whole_or_tenths(f, ns / H, "h")
        }
    }
}

/// `5 min` for a whole number, `2.5 min` otherwise (to a tenth).
fn whole_or_tenths(f: &mut fmt::Formatter<'_>, value: f64, unit: &str) -> fmt::Result {
    let tenths = (value * 10.0).round();
    if tenths % 10.0 == 0.0 {
        write!(f, "{} {unit}", tenths / 10.0)
    } else {
        write!(f, "{:.1} {unit}", tenths / 10.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn show(d: Duration) -> String {
        duration(d).to_string()
    }

    #[test]
    fn rounded_with_ascii_units() {
        let cases = [
            (Duration::ZERO, "0 s"),
            (Duration::from_nanos(1), "1 us"),
            (Duration::from_nanos(582_944), "583 us"),
            (Duration::from_nanos(999_400), "999 us"),
            (Duration::from_nanos(999_600), "1.0 ms"),
            (Duration::from_micros(4_240), "4.2 ms"),
            (Duration::from_micros(9_960), "10 ms"),
            (Duration::from_millis(250), "250 ms"),
            (Duration::from_micros(999_700), "1.0 s"),
            (Duration::from_nanos(3_996_889_795), "4.0 s"),
            (Duration::from_millis(9_960), "10 s"),
            (Duration::from_secs(30), "30 s"),
            (Duration::from_secs(90), "90 s"),
            (Duration::from_secs(150), "2.5 min"),
            (Duration::from_secs(300), "5 min"),
            (Duration::from_secs(3 * 3600), "3 h"),
            (Duration::from_secs(365 * 24 * 3600), "8760 h"),
        ];
        for (d, expected) in cases {
            assert_eq!(show(d), expected, "{d:?}");
        }
    }

    #[test]
    fn always_ascii() {
        for power in 0..40 {
            let text = show(Duration::from_nanos(3u64.pow(power)));
            assert!(text.is_ascii(), "{text}");
        }
    }
}
