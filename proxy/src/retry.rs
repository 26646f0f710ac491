//! Retries: which failures earn another try, which requests may be sent twice, how long to wait
//! between tries, and the budget that keeps retries from multiplying load during an outage.

use std::{
    sync::atomic::{AtomicU64, Ordering::Relaxed},
    time::Duration,
};

use http::Method;
use tokio::time::Instant;

use crate::http::reply::LocalError;
use pillion_config::{RetryOn, RetryPolicy};

/// Largest request body buffered so that it can be sent again.
pub const MAX_REPLAY_BODY: u64 = 64 * 1024;
/// Retries allowed per budget window whatever the request rate, so a quiet service can retry.
const MIN_RETRIES_PER_WINDOW: u64 = 10;
/// The budget counts requests and retries over this many one-second buckets.
const WINDOW_SECS: u64 = 10;

/// Whether the method may be sent twice without changing the outcome (RFC 9110 9.2.2).
pub fn idempotent(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE | Method::PUT | Method::DELETE
    )
}

/// What a try ended with, as far as retrying goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TryResult {
    /// A response with this status.
    Status(u16),
    /// A local error before any response.
    Failed(LocalError),
}

/// Whether `policy` retries a try that ended with `result`. A connect failure sent nothing, so
/// any method may be retried after one; anything else needs an idempotent method.
pub fn should_retry(policy: &RetryPolicy, method: &Method, result: TryResult) -> bool {
    match result {
        TryResult::Failed(LocalError::ConnectFailed) => policy.on.contains(&RetryOn::ConnectFailure),
        _ if !idempotent(method) => false,
        TryResult::Failed(LocalError::UpstreamReset | LocalError::Timeout) => {
            policy.on.iter().any(|o| matches!(o, RetryOn::Reset | RetryOn::Status5xx))
        }
        TryResult::Failed(_) => false,
        TryResult::Status(code) => policy.on.iter().any(|o| match o {
            RetryOn::Status(c) => *c == code,
            RetryOn::Status5xx => code >= 500,
            _ => false,
        }),
    }
}

/// Full-jitter exponential backoff before retry number `n` (1-based): up to 25 ms, 50 ms, ...,
/// at most 250 ms.
pub fn backoff(n: u32) -> Duration {
    let cap = Duration::from_millis(25)
        .saturating_mul(1 << n.saturating_sub(1).min(4))
        .min(Duration::from_millis(250));
    cap.mul_f64(fastrand::f64())
}

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
    use super::*;

    fn policy(on: &[RetryOn]) -> RetryPolicy {
        RetryPolicy { attempts: 2, on: on.to_vec(), per_try_timeout: None, budget_percent: 20 }
    }

    #[test]
    fn connect_failures_retry_any_method_others_only_idempotent_ones() {
        let p = policy(&[RetryOn::ConnectFailure, RetryOn::Status(503)]);
        assert!(should_retry(&p, &Method::POST, TryResult::Failed(LocalError::ConnectFailed)));
        assert!(should_retry(&p, &Method::GET, TryResult::Status(503)));
        assert!(!should_retry(&p, &Method::POST, TryResult::Status(503)));
        assert!(!should_retry(&p, &Method::GET, TryResult::Status(500)));
        assert!(!should_retry(&p, &Method::GET, TryResult::Failed(LocalError::UpstreamReset)));
        let p5 = policy(&[RetryOn::Status5xx]);
        assert!(should_retry(&p5, &Method::PUT, TryResult::Status(500)));
        assert!(should_retry(&p5, &Method::GET, TryResult::Failed(LocalError::Timeout)));
        assert!(!should_retry(&p5, &Method::GET, TryResult::Status(404)));
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        for n in 1..10 {
            let cap = Duration::from_millis((25u64 << (n - 1).min(4)).min(250));
            for _ in 0..50 {
                assert!(backoff(n) <= cap);
            }
        }
    }

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
