//! Passive health: consecutive failures (connect failures, resets, 5xx) eject an endpoint for a
//! while, longer on each repeat, never more than a service's `max_ejected_percent` at once.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::Relaxed};

use tokio::time::Instant;

use pillion_config::OutlierConfig;

/// Longest ejection, as a multiple of the base ejection time.
const MAX_BACKOFF_FACTOR: u32 = 10;

/// Health record of one endpoint; lock-free, shared by every request to it.
#[derive(Debug)]
pub struct Health {
    consecutive_failures: AtomicU32,
    times_ejected: AtomicU32,
    /// Nanoseconds after `epoch` until which the endpoint is ejected; 0 when it is not.
    ejected_until: AtomicU64,
    epoch: Instant,
}

impl Default for Health {
    fn default() -> Self {
        Self {
            consecutive_failures: AtomicU32::new(0),
            times_ejected: AtomicU32::new(0),
            ejected_until: AtomicU64::new(0),
            epoch: Instant::now(),
        }
    }
}

/// How a try went, as far as the endpoint's health is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Answered (any status below 500, or a 5xx the caller does not blame on the endpoint).
    Success,
    /// Connect failure, reset, timeout or 5xx.
    Failure,
}

impl Health {
    fn now(&self) -> u64 {
        (self.epoch.elapsed().as_nanos() as u64).max(1)
    }

    /// Whether the endpoint is ejected now.
    pub fn is_ejected(&self) -> bool {
        self.ejected_until.load(Relaxed) > self.now()
    }

    /// Records a try's outcome. Returns true when this failure crossed the threshold and the
    /// caller should eject the endpoint (if the service's cap allows).
    pub fn record(&self, outcome: Outcome, cfg: &OutlierConfig) -> bool {
        match outcome {
            Outcome::Success => {
                self.consecutive_failures.store(0, Relaxed);
                false
            }
            Outcome::Failure => {
                let n = self.consecutive_failures.fetch_add(1, Relaxed) + 1;
                cfg.consecutive_failures > 0 && n >= cfg.consecutive_failures && !self.is_ejected()
            }
        }
    }

    /// Ejects for the base time times the number of ejections so far (capped).
    pub fn eject(&self, cfg: &OutlierConfig) -> std::time::Duration {
        let times = self.times_ejected.fetch_add(1, Relaxed) + 1;
        let duration = cfg.ejection * times.min(MAX_BACKOFF_FACTOR);
        self.ejected_until.store(self.now() + duration.as_nanos() as u64, Relaxed);
        self.consecutive_failures.store(0, Relaxed);
        duration
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn cfg() -> OutlierConfig {
        OutlierConfig { consecutive_failures: 3, ejection: Duration::from_secs(10), max_ejected_percent: 50 }
    }

    #[tokio::test(start_paused = true)]
    async fn consecutive_failures_eject_and_time_brings_back() {
        let h = Health::default();
        assert!(!h.record(Outcome::Failure, &cfg()));
        assert!(!h.record(Outcome::Failure, &cfg()));
        assert!(h.record(Outcome::Failure, &cfg()), "third failure crosses the threshold");
        assert_eq!(h.eject(&cfg()), Duration::from_secs(10));
        assert!(h.is_ejected());
        tokio::time::advance(Duration::from_secs(11)).await;
        assert!(!h.is_ejected());
    }

    #[tokio::test(start_paused = true)]
    async fn a_success_resets_the_count() {
        let h = Health::default();
        h.record(Outcome::Failure, &cfg());
        h.record(Outcome::Failure, &cfg());
        h.record(Outcome::Success, &cfg());
        assert!(!h.record(Outcome::Failure, &cfg()));
    }

    #[tokio::test(start_paused = true)]
    async fn repeat_ejections_grow() {
        let h = Health::default();
        assert_eq!(h.eject(&cfg()), Duration::from_secs(10));
        tokio::time::advance(Duration::from_secs(11)).await;
        assert_eq!(h.eject(&cfg()), Duration::from_secs(20));
        for _ in 0..20 {
            h.eject(&cfg());
        }
        assert_eq!(h.eject(&cfg()), Duration::from_secs(100), "capped");
    }
}
