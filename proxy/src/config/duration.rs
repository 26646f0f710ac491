//! Human durations in config files (`250ms`, `5s`, `1.5m`, `2h`), parsed once at load time.

use std::{fmt, str::FromStr, time::Duration};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A duration written as a number and a unit: `ms`, `s`, `m` or `h`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct HumanDuration(pub Duration);

impl FromStr for HumanDuration {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        let split = s
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(|| format!("duration {s:?} has no unit (use ms, s, m or h, e.g. \"250ms\")"))?;
        let (number, unit) = s.split_at(split);
        let value: f64 =
            number.parse().map_err(|_| format!("duration {s:?} does not start with a number"))?;
        let scale = match unit {
            "ms" => 0.001,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => {
                return Err(format!("duration {s:?} has unknown unit {unit:?} (use ms, s, m or h)"));
            }
        };
        let secs = value * scale;
        if !secs.is_finite() || secs > 1e9 {
            return Err(format!("duration {s:?} is out of range"));
        }
        Ok(Self(Duration::from_secs_f64(secs)))
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
        assert!("5".parse::<HumanDuration>().unwrap_err().contains("no unit"));
        assert!("5 parsecs".parse::<HumanDuration>().unwrap_err().contains("unknown unit"));
        assert!("fast".parse::<HumanDuration>().unwrap_err().contains("number"));
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
