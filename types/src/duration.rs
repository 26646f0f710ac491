//! Durations written the way Pillion's flags and config files write them: `250ms`, `90s`, `1.5m`,
//! `24h`, `7d`, `1h30m`. The one grammar for every duration Pillion reads.
//!
//! Units: `ms`, `s`, `m`, `h`, `d`. A number may have a fraction, and several number-unit pairs
//! add up. A signed form (`-48h`, `+1h`) expresses an offset from now, for test certificates.

use std::time::Duration;

/// A duration string that could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bad duration {input:?}: {reason} (expected e.g. 250ms, 5s, 1.5m, 24h, 1h30m, 7d)")]
pub struct DurationError {
    /// The string as given.
    pub input: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

/// The longest duration accepted, in nanoseconds (about 317 years): far beyond any timeout or
/// lifetime.
const MAX_NANOS: u64 = 10_000_000_000 * 1_000_000_000;

/// Parses an unsigned duration such as `250ms`, `5s`, `1.5m`, `24h`, `7d` or `1h30m`.
pub fn parse_duration(input: &str) -> Result<Duration, DurationError> {
    let err = |reason| DurationError { input: input.to_owned(), reason };
    let mut rest = input.trim();
    if rest.is_empty() {
        return Err(err("empty"));
    }
    let mut total: u64 = 0;
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(rest.len());
        if digits == 0 {
            return Err(err("expected a number"));
        }
        let value: f64 = rest[..digits].parse().map_err(|_| err("expected a number"))?;
        rest = &rest[digits..];
        let unit_len = rest.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(rest.len());
        let nanos_per_unit = match &rest[..unit_len] {
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            "d" => 86_400e9,
            "" => return Err(err("missing unit (use ms, s, m, h or d)")),
            _ => return Err(err("unknown unit (use ms, s, m, h or d)")),
        };
        rest = &rest[unit_len..];
        // One multiplication, rounded once: a fraction of a millisecond written out by
        // `Display` impls elsewhere parses back to the same nanoseconds.
        let part = (value * nanos_per_unit).round();
        if !part.is_finite() || part > MAX_NANOS as f64 {
            return Err(err("too large"));
        }
        total = total.checked_add(part as u64).filter(|t| *t <= MAX_NANOS).ok_or_else(|| err("too large"))?;
    }
    Ok(Duration::from_nanos(total))
}

/// Parses a signed offset such as `-48h`, `+1h` or `30m` (positive).
pub fn parse_offset(input: &str) -> Result<time::Duration, DurationError> {
    let trimmed = input.trim();
    let (negative, magnitude) = match trimmed.as_bytes().first() {
        Some(b'-') => (true, &trimmed[1..]),
        Some(b'+') => (false, &trimmed[1..]),
        _ => (false, trimmed),
    };
    let d =
        parse_duration(magnitude).map_err(|e| DurationError { input: input.to_owned(), reason: e.reason })?;
    let d = time::Duration::try_from(d)
        .map_err(|_| DurationError { input: input.to_owned(), reason: "too large" })?;
    Ok(if negative { -d } else { d })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_units_and_sums() {
        assert_eq!(parse_duration("90s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("30m").unwrap(), Duration::from_secs(1800));
        assert_eq!(parse_duration("24h").unwrap(), Duration::from_secs(86_400));
        assert_eq!(parse_duration("7d").unwrap(), Duration::from_secs(7 * 86_400));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("1h30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse_duration("1.5m").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("0.5ms").unwrap(), Duration::from_micros(500));
        assert_eq!(parse_duration("1000.5ms").unwrap(), Duration::from_micros(1_000_500));
    }

    #[test]
    fn rejects_bad_durations() {
        for s in ["", "h", "10", "10x", "1..5h", "-1h", "99999999999999999999s", "5 parsecs"] {
            assert!(parse_duration(s).is_err(), "{s}");
        }
        assert!(parse_duration("10").unwrap_err().to_string().contains("missing unit"));
    }

    #[test]
    fn parses_signed_offsets() {
        assert_eq!(parse_offset("-48h").unwrap(), time::Duration::hours(-48));
        assert_eq!(parse_offset("+1h").unwrap(), time::Duration::hours(1));
        assert_eq!(parse_offset("5m").unwrap(), time::Duration::minutes(5));
        assert!(parse_offset("-").is_err());
    }
}
