//! The validity window written into a new certificate.
//!
//! Certificates start a minute in the past by default so that a peer whose clock
//! is slightly behind still accepts them; tests can place the window anywhere
//! (already expired, not yet valid).

use std::time::Duration;

use time::OffsetDateTime;

use crate::error::{Error, Result};

/// How far in the past a default validity window starts, to absorb clock skew.
pub const CLOCK_SKEW_ALLOWANCE: Duration = Duration::from_secs(60);

/// The `notBefore`..`notAfter` window of a certificate to issue, whole seconds, UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Validity {
    /// Start of validity.
    pub not_before: OffsetDateTime,
    /// End of validity.
    pub not_after: OffsetDateTime,
}

impl Validity {
    /// A window from `not_before` to `not_after`; errors unless it ends after it starts.
    pub fn new(not_before: OffsetDateTime, not_after: OffsetDateTime) -> Result<Self> {
        let not_before = truncate(not_before);
        let not_after = truncate(not_after);
        if not_after <= not_before {
            return Err(Error::BadValidity(format!(
                "not-after {} is not later than not-before {}",
                crate::cert::format_time(not_after),
                crate::cert::format_time(not_before)
            )));
        }
        Ok(Validity { not_before, not_after })
    }

    /// Valid from a minute ago (see [`CLOCK_SKEW_ALLOWANCE`]) until `ttl` from now.
    pub fn for_ttl(ttl: Duration) -> Result<Self> {
        let now = OffsetDateTime::now_utc();
        let start = now - CLOCK_SKEW_ALLOWANCE;
        Self::new(start, add(now, ttl)?)
    }

    /// Valid for `ttl` starting at now + `offset` (negative offsets reach into the past).
    ///
    /// `Validity::starting_at_offset(time::Duration::hours(-48), 24h)` ended a day ago.
    pub fn starting_at_offset(offset: time::Duration, ttl: Duration) -> Result<Self> {
        let start = OffsetDateTime::now_utc()
            .checked_add(offset)
            .ok_or_else(|| Error::BadValidity("offset out of range".into()))?;
        Self::new(start, add(start, ttl)?)
    }

    /// The window, with its end pulled in to `limit` if it ran past it (a certificate
    /// must not outlive the CA that signed it).
    pub fn clamped_to(self, limit: OffsetDateTime) -> Result<Self> {
        if self.not_after <= limit {
            return Ok(self);
        }
        if self.not_before >= limit {
            return Err(Error::BadValidity(format!(
                "the certificate would start after its CA expires ({})",
                crate::cert::format_time(limit)
            )));
        }
        Self::new(self.not_before, limit)
    }
}

fn add(t: OffsetDateTime, d: Duration) -> Result<OffsetDateTime> {
    time::Duration::try_from(d)
        .ok()
        .and_then(|d| t.checked_add(d))
        .ok_or_else(|| Error::BadValidity(format!("duration {d:?} out of range")))
}

fn truncate(t: OffsetDateTime) -> OffsetDateTime {
    t.to_offset(time::UtcOffset::UTC).replace_nanosecond(0).unwrap_or(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttl_window_starts_in_the_past_and_ends_in_the_future() {
        let v = Validity::for_ttl(Duration::from_secs(3600)).unwrap();
        let now = OffsetDateTime::now_utc();
        assert!(v.not_before < now && v.not_after > now);
        assert_eq!(v.not_before.nanosecond(), 0);
    }

    #[test]
    fn rejects_empty_windows_and_clamps_to_a_limit() {
        let now = OffsetDateTime::now_utc();
        assert!(matches!(Validity::new(now, now), Err(Error::BadValidity(_))));
        let v =
            Validity::starting_at_offset(time::Duration::hours(-48), Duration::from_secs(86_400)).unwrap();
        assert!(v.not_after < now);
        let clamped = Validity::for_ttl(Duration::from_secs(86_400))
            .unwrap()
            .clamped_to(now + time::Duration::hours(1))
            .unwrap();
        assert!(clamped.not_after <= now + time::Duration::hours(1));
    }
}
