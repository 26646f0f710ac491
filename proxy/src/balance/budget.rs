//! A service's retry budget: retries may be at most a share of its recent requests, so that
//! retries cannot multiply the load on a service that is already failing.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use tokio::time::Instant;

/// Retries allowed per budget window whatever the request rate, so a quiet service can retry.
const MIN_RETRIES_PER_WINDOW: u64 = 10;
/// The budget counts requests and retries over this many one-second buckets.
const WINDOW_SECS: u64 = 10;

/// A retry budget: retries may be at most a percentage of recent requests (plus a small floor).
/// Lock-free; counts live in one-second buckets over a ten-second window.
#[derive(Debug)]
pub struct Budget {
    buckets: [Bucket; WINDOW_SECS as usize],
    epoch: Instant,
}

#[derive(Debug, Default)]
struct Bucket {
    second: AtomicU64,
    requests: AtomicU64,
    retries: AtomicU64,
}

impl Default for Budget {
    fn default() -> Self {
        Self { buckets: Default::default(), epoch: Instant::now() }
    }
}

impl Budget {
    fn bucket(&self, now: Instant) -> &Bucket {
        let second = now.saturating_duration_since(self.epoch).as_secs() + 1;
        let b = &self.buckets[(second % WINDOW_SECS) as usize];
        // Read first: the swap (a locked write) is needed once a second, not once a request.
        if b.second.load(Relaxed) != second && b.second.swap(second, Relaxed) != second {
            // A stale bucket from a previous lap: start it afresh (a racing increment may be lost).
            b.requests.store(0, Relaxed);
            b.retries.store(0, Relaxed);
        }
        b
    }

    fn totals(&self) -> (u64, u64) {
        let now = self.epoch.elapsed().as_secs() + 1;
        self.buckets
            .iter()
            .filter(|b| now - b.second.load(Relaxed).min(now) < WINDOW_SECS)
            .fold((0, 0), |(q, r), b| (q + b.requests.load(Relaxed), r + b.retries.load(Relaxed)))
    }

    /// Counts a request (first tries only) that arrived at `now`.
    pub fn record_request(&self, now: Instant) {
        self.bucket(now).requests.fetch_add(1, Relaxed);
    }

    /// Takes one retry from the budget if `percent` of recent requests allows it.
    pub fn try_withdraw(&self, percent: u32) -> bool {
        let (requests, retries) = self.totals();
        if retries >= MIN_RETRIES_PER_WINDOW + requests * u64::from(percent) / 100 {
            return false;
        }
        self.bucket(Instant::now()).retries.fetch_add(1, Relaxed);
        true
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn budget_caps_retries_at_a_share_of_requests() {
        let b = Budget::default();
        let mut granted = 0;
        for _ in 0..1000 {
            b.record_request(Instant::now());
            // Full outage: every request wants two retries.
            for _ in 0..2 {
                if b.try_withdraw(20) {
                    granted += 1;
                }
            }
        }
        assert!(granted <= 200 + MIN_RETRIES_PER_WINDOW, "{granted}");
        assert!(granted >= 200, "{granted}");
    }

    #[tokio::test(start_paused = true)]
    async fn budget_forgets_old_requests() {
        let b = Budget::default();
        for _ in 0..1000 {
            b.record_request(Instant::now());
        }
        tokio::time::advance(Duration::from_secs(WINDOW_SECS + 1)).await;
        let granted = (0..100).filter(|_| b.try_withdraw(20)).count() as u64;
        assert_eq!(granted, MIN_RETRIES_PER_WINDOW);
    }
}
