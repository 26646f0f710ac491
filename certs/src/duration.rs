//! Durations written the way Pillion's flags and config write them: `90s`, `30m`, `24h`, `1h30m`.
//!
//! Units: `ms`, `s`, `m`, `h`, `d`. Several number-unit pairs add up. A signed
//! form (`-48h`, `+1h`) expresses an offset from now, for test certificates.

use std::time::Duration;

/// A duration string that could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bad duration {input:?}: {reason} (expected e.g. 90s, 30m, 24h, 1h30m, 250ms, 7d)")]
pub struct DurationError {
    /// The string as given.
    pub input: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

/// Parses an unsigned duration such as `24h`, `30m`, `90s`, `250ms`, `7d` or `1h30m`.
pub fn parse_duration(input: &str) -> Result<Duration, DurationError> {
    let err = |reason| DurationError { input: input.to_owned(), reason };
    let mut rest = input.trim();
    if rest.is_empty() {
        return Err(err("empty"));
    }
    let mut total = Duration::ZERO;
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len());
        if digits == 0 {
            return Err(err("expected a number"));
        }
        let value: u64 = rest[..digits].parse().map_err(|_| err("number too large"))?;
        rest = &rest[digits..];
        let unit_len = rest.find(|c: char| c.is_ascii_digit()).unwrap_or(rest.len());
        let unit = match &rest[..unit_len] {
            "ms" => Duration::from_millis(1),
            "s" => Duration::from_secs(1),
            "m" => Duration::from_secs(60),
            "h" => Duration::from_secs(3600),
            "d" => Duration::from_secs(86_400),
            "" => return Err(err("missing unit")),
            _ => return Err(err("unknown unit")),
        };
        rest = &rest[unit_len..];
        let part = unit
            .checked_mul(u32::try_from(value).map_err(|_| err("number too large"))?)
            .ok_or_else(|| err("too large"))?;
        total = total.checked_add(part).ok_or_else(|| err("too large"))?;
    }
    Ok(total)
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
    }

    #[test]
    fn rejects_bad_durations() {
        for s in ["", "h", "10", "10x", "1.5h", "-1h", "99999999999999999999s"] {
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
