//! Virtual time: instants and durations in integer nanoseconds.
//!
//! A trial's clock starts at `Instant::ZERO` and only the engine moves it. Durations parse from and
//! print to the human form used in scenario files (`250ms`, `1.5s`, `2m`, `1h`). Depends on nothing
//! but `serde`.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;

/// A point in virtual time, in nanoseconds since the start of the trial.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Instant(pub u64);

/// A span of virtual time in nanoseconds.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Duration(pub u64);

pub const NANOS_PER_SEC: u64 = 1_000_000_000;

impl Instant {
    pub const ZERO: Instant = Instant(0);
    pub const MAX: Instant = Instant(u64::MAX);

    pub fn as_nanos(self) -> u64 {
        self.0
    }
    pub fn as_secs_f64(self) -> f64 {
        self.0 as f64 / NANOS_PER_SEC as f64
    }
    /// Saturating: an instant never overflows past `Instant::MAX`.
    pub fn saturating_add(self, duration: Duration) -> Instant {
        Instant(self.0.saturating_add(duration.0))
    }
    /// The same as `self + duration` (saturating), callable without importing `std::ops::Add`.
    #[allow(clippy::should_implement_trait)]
    pub fn add(self, duration: Duration) -> Instant {
        self.saturating_add(duration)
    }
    /// The span from `earlier` to `self`; panics if `earlier` is later, which is a programming error.
    pub fn since(self, earlier: Instant) -> Duration {
        assert!(
            self >= earlier,
            "time went backwards: {earlier:?} > {self:?}"
        );
        Duration(self.0 - earlier.0)
    }
    pub fn saturating_since(self, earlier: Instant) -> Duration {
        Duration(self.0.saturating_sub(earlier.0))
    }
}

impl std::ops::Add<Duration> for Instant {
    type Output = Instant;
    /// Saturating, like `Instant::saturating_add`.
    fn add(self, duration: Duration) -> Instant {
        self.saturating_add(duration)
    }
}

impl Duration {
    pub const ZERO: Duration = Duration(0);
    pub const MAX: Duration = Duration(u64::MAX);
    /// The longest duration a user may write: 36 500 days (100 years), so that the sum of a
    /// trial's horizon and any handful of its durations stays far below `Duration::MAX` and
    /// nothing saturates.
    pub const WRITTEN_MAX: Duration = Duration(36_500 * 86_400 * NANOS_PER_SEC);

    pub const fn from_nanos(nanos: u64) -> Duration {
        Duration(nanos)
    }
    pub const fn from_micros(micros: u64) -> Duration {
        Duration(micros * 1_000)
    }
    pub const fn from_millis(millis: u64) -> Duration {
        Duration(millis * 1_000_000)
    }
    pub const fn from_secs(secs: u64) -> Duration {
        Duration(secs * NANOS_PER_SEC)
    }
    /// Rounds to the nearest nanosecond; negative and NaN inputs give zero, huge ones saturate.
    pub fn from_secs_f64(secs: f64) -> Duration {
        Duration::from_nanos_f64(secs * NANOS_PER_SEC as f64)
    }
    pub fn from_nanos_f64(nanos: f64) -> Duration {
        /// 2^63: below it, a value converts through `i64` exactly as through `u64`.
        const I64_LIMIT: f64 = 9_223_372_036_854_775_808.0;
        if nanos.is_nan() || nanos <= 0.0 {
            Duration(0)
        } else if nanos >= u64::MAX as f64 {
            Duration(u64::MAX)
        } else if nanos < I64_LIMIT {
            // `f64::round` without the library call (this is on every sampled duration): the
            // truncation is exact, and so is the fraction, for every positive value in range.
            // Through `i64`, whose conversions are single instructions on x86-64, unlike `u64`'s.
            let whole = nanos as i64;
            let fraction = nanos - whole as f64;
            Duration(whole as u64 + u64::from(fraction >= 0.5))
        } else {
            let whole = nanos as u64;
            let fraction = nanos - whole as f64;
            Duration(whole + u64::from(fraction >= 0.5))
        }
    }
    pub fn as_nanos(self) -> u64 {
        self.0
    }
    pub fn as_secs_f64(self) -> f64 {
        self.0 as f64 / NANOS_PER_SEC as f64
    }
    pub fn as_millis_f64(self) -> f64 {
        self.0 as f64 / 1_000_000.0
    }
    pub fn saturating_add(self, other: Duration) -> Duration {
        Duration(self.0.saturating_add(other.0))
    }
    pub fn saturating_mul(self, factor: u64) -> Duration {
        Duration(self.0.saturating_mul(factor))
    }
}

/// The most characters of a user's value an error message repeats.
pub const ECHO_CHARS_MAX: usize = 64;

/// A user's value as an error message repeats it: whole when short, else its first
/// `ECHO_CHARS_MAX` characters and how long it was, so a huge value never makes a huge line.
pub fn echo(text: &str) -> String {
    let count = text.chars().count();
    if count <= ECHO_CHARS_MAX {
        return text.to_string();
    }
    let head: String = text.chars().take(ECHO_CHARS_MAX).collect();
    format!("{head}… ({count} characters)")
}

/// The units a duration may be written in, longest suffix first so that `ms` is not read as `m`.
const UNITS: [(&str, f64); 8] = [
    ("ns", 1.0),
    ("us", 1e3),
    ("µs", 1e3),
    ("ms", 1e6),
    ("s", 1e9),
    ("m", 60e9),
    ("h", 3600e9),
    ("d", 86400e9),
];

/// Splits `"1.5s"` into `(1.5, nanoseconds per unit)`. Returns `None` when there is no known unit.
pub fn split_unit(text: &str) -> Option<(f64, f64)> {
    let text = text.trim();
    // Try two-letter units before one-letter ones.
    let mut candidates: Vec<&(&str, f64)> = UNITS.iter().collect();
    candidates.sort_by_key(|(unit, _)| std::cmp::Reverse(unit.len()));
    for (unit, scale) in candidates {
        if let Some(number) = text.strip_suffix(unit) {
            let number = number.trim();
            if number.is_empty() {
                return None;
            }
            if let Ok(value) = number.parse::<f64>() {
                return Some((value, *scale));
            }
            return None;
        }
    }
    None
}

impl std::str::FromStr for Duration {
    type Err = String;
    fn from_str(text: &str) -> Result<Duration, String> {
        let trimmed = text.trim();
        if trimmed == "0" {
            return Ok(Duration::ZERO);
        }
        match split_unit(trimmed) {
            Some((value, scale))
                if value.is_finite()
                    && value >= 0.0
                    && value * scale > Duration::WRITTEN_MAX.0 as f64 =>
            {
                Err(format!(
                    "duration `{}` is longer than {} (100 years)",
                    echo(trimmed),
                    Duration::WRITTEN_MAX
                ))
            }
            Some((value, scale)) if value.is_finite() && value >= 0.0 => {
                Ok(Duration::from_nanos_f64(value * scale))
            }
            Some(_) => Err(format!(
                "duration `{}` must be a finite, non-negative number",
                echo(text)
            )),
            None => Err(format!(
                "`{}` is not a duration: write a number with a unit (ns, us, ms, s, m, h, d), e.g. `250ms`",
                echo(text)
            )),
        }
    }
}

impl fmt::Display for Duration {
    /// Prints the largest unit that keeps the value exact to three decimals (`1.5s`, `250ms`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let nanos = self.0;
        if nanos == 0 {
            return write!(f, "0s");
        }
        let units: [(&str, u64); 7] = [
            ("d", 86_400 * NANOS_PER_SEC),
            ("h", 3_600 * NANOS_PER_SEC),
            ("m", 60 * NANOS_PER_SEC),
            ("s", NANOS_PER_SEC),
            ("ms", 1_000_000),
            ("us", 1_000),
            ("ns", 1),
        ];
        for (unit, scale) in units {
            let exact_to_milli_units = (u128::from(nanos) * 1000).is_multiple_of(u128::from(scale));
            if nanos >= scale && exact_to_milli_units || scale == 1 {
                let value = nanos as f64 / scale as f64;
                return write!(f, "{}{unit}", trim_float(value));
            }
        }
        unreachable!()
    }
}

fn trim_float(value: f64) -> String {
    let text = format!("{value:.3}");
    let text = text.trim_end_matches('0').trim_end_matches('.');
    text.to_string()
}

impl fmt::Display for Instant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:.6}s", self.as_secs_f64())
    }
}

impl Serialize for Duration {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for Duration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_units() {
        let cases = [
            ("250ms", 250_000_000),
            ("1.5s", 1_500_000_000),
            ("2m", 120_000_000_000),
            ("1h", 3_600_000_000_000),
            ("10us", 10_000),
            ("7ns", 7),
            ("0", 0),
            ("42.3s", 42_300_000_000),
        ];
        for (text, nanos) in cases {
            assert_eq!(text.parse::<Duration>().unwrap(), Duration(nanos), "{text}");
        }
    }

    #[test]
    fn rejects_bad_durations() {
        for text in ["", "5", "s", "-1s", "1.5 parsecs", "abc"] {
            assert!(text.parse::<Duration>().is_err(), "{text} should not parse");
        }
    }

    #[test]
    fn display_of_long_durations_does_not_overflow() {
        assert_eq!(Duration::from_secs(1000 * 86_400).to_string(), "1000d");
        assert!(!Duration::MAX.to_string().is_empty());
    }

    #[test]
    fn display_round_trips() {
        for text in ["250ms", "1.5s", "2m", "1h", "10us", "7ns", "42.3s", "0s"] {
            let duration: Duration = text.parse().unwrap();
            assert_eq!(duration.to_string(), text);
            assert_eq!(duration.to_string().parse::<Duration>().unwrap(), duration);
        }
    }

    #[test]
    fn from_nanos_rounds_half_away_from_zero_like_f64_round() {
        let values = [
            0.5,
            1.499_999_999_999_999_8,
            1.5,
            2.5,
            1e6 + 0.5,
            123_456.789,
            4_503_599_627_370_495.5,
            9_007_199_254_740_993.0,
            // Either side of 2^63, where the conversion changes path.
            9_223_372_036_854_774_784.0,
            9_223_372_036_854_775_808.0,
            1.8e19,
        ];
        for value in values {
            assert_eq!(
                Duration::from_nanos_f64(value).as_nanos(),
                value.round() as u64,
                "{value}"
            );
        }
        assert_eq!(Duration::from_nanos_f64(0.49).as_nanos(), 0);
        assert_eq!(Duration::from_nanos_f64(-3.0).as_nanos(), 0);
        assert_eq!(Duration::from_nanos_f64(f64::NAN).as_nanos(), 0);
        assert_eq!(Duration::from_nanos_f64(1e30), Duration::MAX);
    }
}
