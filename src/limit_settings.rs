//! The settings of the per-address limits, as the command line and
//! [`Config::per_address`](crate::Config::per_address) give them: the
//! connection cap, and the connect rate with its burst (`20/s`, `600/m`).
//! The limits themselves, and the state they keep, are the engine's
//! (`engine::per_address`).

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// The unit of a [`Rate`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RateUnit {
    /// Per second (`/s`).
    Second,
    /// Per minute (`/m`).
    Minute,
    /// Per hour (`/h`).
    Hour,
}

impl RateUnit {
    fn seconds(self) -> u64 {
        match self {
            RateUnit::Second => 1,
            RateUnit::Minute => 60,
            RateUnit::Hour => 3600,
        }
    }

    fn suffix(self) -> &'static str {
        match self {
            RateUnit::Second => "s",
            RateUnit::Minute => "m",
            RateUnit::Hour => "h",
        }
    }
}

/// A number of events per unit of time, as `--connect-rate-per-address`
/// takes it: `20/s`, `600/m` or `10/h`. Never zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    count: u32,
    unit: RateUnit,
}

impl Rate {
    /// `count` events per `unit`; `None` for a count of zero (a rate of
    /// zero would turn every connection away: that is not a limit).
    pub fn new(count: u32, unit: RateUnit) -> Option<Self> {
        (count > 0).then_some(Rate { count, unit })
    }

    /// How many events per unit.
    pub fn count(&self) -> u32 {
        self.count
    }

    /// The unit of time.
    pub fn unit(&self) -> RateUnit {
        self.unit
    }

    /// The time between two events at this rate (at least 1 ns): the time
    /// one token takes to come back.
    pub fn interval(&self) -> Duration {
        let nanos = self.unit.seconds() * 1_000_000_000 / u64::from(self.count);
        Duration::from_nanos(nanos.max(1))
    }

    /// One second's worth of this rate, rounded down, at least 1: the
    /// default `--connect-burst`.
    pub fn default_burst(&self) -> u32 {
        (self.count / self.unit.seconds() as u32).max(1)
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.count, self.unit.suffix())
    }
}

/// Why a [`Rate`] could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseRateError(String);

impl fmt::Display for ParseRateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ParseRateError {}

impl FromStr for Rate {
    type Err = ParseRateError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let expected = || ParseRateError(format!("expected N/s, N/m or N/h, got `{text}`"));
        let (count, unit) = text.trim().split_once('/').ok_or_else(expected)?;
        let unit = match unit.trim() {
            "s" => RateUnit::Second,
            "m" => RateUnit::Minute,
            "h" => RateUnit::Hour,
            _ => return Err(expected()),
        };
        let count = count.trim();
        if count.is_empty() || !count.bytes().all(|b| b.is_ascii_digit()) {
            return Err(expected());
        }
        let count: u32 = count.parse().map_err(|_| {
            ParseRateError(format!("`{text}`: the count must be at most {}", u32::MAX))
        })?;
        Rate::new(count, unit).ok_or_else(|| {
            ParseRateError(format!(
                "`{text}`: a rate must be more than 0 (leave the flag out to turn the limit off)"
            ))
        })
    }
}

/// The per-address settings, as the command line gives them. The default
/// turns both limits off.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PerAddressSettings {
    /// `--max-connections-per-address`: at most this many connections at
    /// once from one client address; `None` for no cap.
    pub max_connections: Option<u32>,
    /// `--connect-rate-per-address`: new connections from one client
    /// address beyond this rate are turned away; `None` for no rate.
    pub connect_rate: Option<Rate>,
    /// `--connect-burst`: how many connections an address may open at once
    /// after a quiet spell; `None` for one second's worth of the rate.
    pub connect_burst: Option<u32>,
}

impl PerAddressSettings {
    /// Says what is wrong with the settings, if anything: a cap or burst of
    /// zero, or a burst without a rate.
    pub fn validate(&self) -> Result<(), String> {
        if self.max_connections == Some(0) {
            return Err("max-connections-per-address must be at least 1".into());
        }
        if self.connect_burst == Some(0) {
            return Err("connect-burst must be at least 1".into());
        }
        if self.connect_burst.is_some() && self.connect_rate.is_none() {
            return Err("connect-burst needs connect-rate-per-address".into());
        }
        Ok(())
    }

    /// The burst in force: the one given, or one second's worth of the
    /// rate (at least 1); `None` when the rate is off.
    pub fn burst(&self) -> Option<u32> {
        let rate = self.connect_rate?;
        Some(
            self.connect_burst
                .unwrap_or_else(|| rate.default_burst())
                .max(1),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_parse_print_and_refuse_zero() {
        let rate: Rate = "20/s".parse().unwrap();
        assert_eq!((rate.count(), rate.unit()), (20, RateUnit::Second));
        assert_eq!(rate.to_string(), "20/s");
        assert_eq!(rate.interval(), Duration::from_millis(50));
        assert_eq!(rate.default_burst(), 20);
        let rate: Rate = " 600/m ".parse().unwrap();
        assert_eq!(rate.to_string(), "600/m");
        assert_eq!(rate.interval(), Duration::from_millis(100));
        assert_eq!(rate.default_burst(), 10);
        let rate: Rate = "30/m".parse().unwrap();
        assert_eq!(rate.default_burst(), 1);
        let rate: Rate = "10/h".parse().unwrap();
        assert_eq!(rate.interval(), Duration::from_secs(360));
        assert_eq!(rate.to_string(), "10/h");

        for bad in [
            "", "20", "20/", "/s", "20/d", "-1/s", "+1/s", "1.5/s", "x/s", "20 per s",
        ] {
            let err = bad.parse::<Rate>().unwrap_err().to_string();
            assert!(err.contains("expected N/s, N/m or N/h"), "{bad}: {err}");
        }
        let err = "0/s".parse::<Rate>().unwrap_err().to_string();
        assert!(err.contains("more than 0"), "{err}");
        let err = "99999999999/s".parse::<Rate>().unwrap_err().to_string();
        assert!(err.contains("at most"), "{err}");
        assert_eq!(Rate::new(0, RateUnit::Hour), None);
    }
}
