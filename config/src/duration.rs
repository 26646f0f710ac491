//! Durations in config files (`250ms`, `5s`, `1.5m`, `2h`), parsed once at load time with the
//! grammar `pillion_types::parse_duration` defines, and written back exactly.

use std::{fmt, str::FromStr, time::Duration};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A duration written as numbers and units: `ms`, `s`, `m`, `h` or `d`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct HumanDuration(pub Duration);

impl FromStr for HumanDuration {
    type Err = pillion_types::DurationError;

    /// The one duration grammar, shared with the certificate tools' flags.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        pillion_types::parse_duration(s).map(Self)
    }
}

impl fmt::Display for HumanDuration {
    /// Exact, so that a config sent on (the control plane's JSON, `/config`) parses back to
    /// the same value: whole seconds as `5s`, else milliseconds, with a fraction if need be.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let nanos = self.0.as_nanos();
        if nanos.is_multiple_of(1_000_000_000) {
            write!(f, "{}s", nanos / 1_000_000_000)
        } else if nanos.is_multiple_of(1_000_000) {
            write!(f, "{}ms", nanos / 1_000_000)
        } else {
            write!(f, "{}ms", nanos as f64 / 1e6)
        }
    }
}

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl Serialize for HumanDuration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_each_unit() {
        let d = |s: &str| s.parse::<HumanDuration>().map(|d| d.0);
        assert_eq!(d("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(d("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(d("1.5m"), Ok(Duration::from_secs(90)));
        assert_eq!(d("2h"), Ok(Duration::from_secs(7200)));
    }

    #[test]
    fn rejects_missing_or_unknown_units() {
        let err = |s: &str| s.parse::<HumanDuration>().unwrap_err().to_string();
        assert!(err("5").contains("missing unit"));
        assert!(err("5 parsecs").contains("unknown unit"));
        assert!(err("fast").contains("number"));
    }

    #[test]
    fn displays_round_trip() {
        for s in ["250ms", "5s", "0.5ms", "1000.5ms"] {
            assert_eq!(s.parse::<HumanDuration>().unwrap().to_string(), s);
        }
        // Found by the `snapshot` fuzz target: sub-millisecond values used to print as `0s`.
        for s in ["0.5ms", "1.0005s", "0.001ms"] {
            let d = s.parse::<HumanDuration>().unwrap();
            assert_eq!(d.to_string().parse::<HumanDuration>().unwrap(), d, "{s}");
        }
    }
}
