//! Retry policy: which failures earn another try, which requests may be sent twice, and how long
//! to wait between tries. The budget that caps a service's retries is `balance::budget`.

use std::time::Duration;

use http::Method;

use crate::http::reply::LocalError;
use pillion_config::{GrpcCode, RetryOn, RetryPolicy};

/// Largest request body buffered so that it can be sent again.
pub const MAX_REPLAY_BODY: u64 = 64 * 1024;

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
    /// A gRPC call that ended with its head (trailers-only).
    Grpc(GrpcCode),
    /// A local error before any response.
    Failed(LocalError),
}

/// Whether a try that ended with `result` is tried again on another endpoint, under `policy`
/// or with none: without one, only a connect failure (nothing was sent). A stopping peer's
/// GOAWAY may have caught the request unprocessed, or not: it is retried, policy or not, when
/// sending it twice is harmless.
pub fn wanted(policy: Option<&RetryPolicy>, method: &Method, grpc: bool, result: TryResult) -> bool {
    if result == TryResult::Failed(LocalError::UpstreamClosing) && idempotent(method) {
        return true;
    }
    match policy {
        Some(p) => should_retry(p, method, grpc, result),
        None => result == TryResult::Failed(LocalError::ConnectFailed),
    }
}

/// Whether a retry after `result` goes to the next endpoint at once: a connect failure sent
/// nothing, and a peer going away is no overload to back off from.
pub fn at_once(result: TryResult) -> bool {
    matches!(result, TryResult::Failed(LocalError::ConnectFailed | LocalError::UpstreamClosing))
}

/// Whether `policy` retries a try that ended with `result`. A connect failure sent nothing, so
/// any method may be retried after one. A gRPC call (always a POST) is retried on the gRPC codes
/// the policy names, its HTTP status read as gRPC clients read it; anything else needs an
/// idempotent method.
pub fn should_retry(policy: &RetryPolicy, method: &Method, grpc: bool, result: TryResult) -> bool {
    let grpc_code = match result {
        TryResult::Grpc(code) => Some(code),
        // 200 without a status in its head: the status is still to come.
        TryResult::Status(status) if grpc && status != 200 => Some(GrpcCode::from_http(status)),
        _ => None,
    };
    match result {
        TryResult::Failed(LocalError::ConnectFailed) => policy.on.contains(&RetryOn::ConnectFailure),
        _ if grpc_code.is_some() => grpc_code.is_some_and(|c| policy.on.contains(&RetryOn::Grpc(c))),
        _ if !idempotent(method) => false,
        TryResult::Failed(LocalError::UpstreamReset | LocalError::UpstreamClosing | LocalError::Timeout) => {
            policy.on.iter().any(|o| matches!(o, RetryOn::Reset | RetryOn::Status5xx))
        }
        TryResult::Failed(_) | TryResult::Grpc(_) => false,
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

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(on: &[RetryOn]) -> RetryPolicy {
        RetryPolicy { attempts: 2, on: on.to_vec(), per_try_timeout: None, budget_percent: 20 }
    }

    #[test]
    fn connect_failures_retry_any_method_others_only_idempotent_ones() {
        let p = policy(&[RetryOn::ConnectFailure, RetryOn::Status(503)]);
        let retry = |p: &RetryPolicy, m: &Method, r| should_retry(p, m, false, r);
        assert!(retry(&p, &Method::POST, TryResult::Failed(LocalError::ConnectFailed)));
        assert!(retry(&p, &Method::GET, TryResult::Status(503)));
        assert!(!retry(&p, &Method::POST, TryResult::Status(503)));
        assert!(!retry(&p, &Method::GET, TryResult::Status(500)));
        assert!(!retry(&p, &Method::GET, TryResult::Failed(LocalError::UpstreamReset)));
        let p5 = policy(&[RetryOn::Status5xx]);
        assert!(retry(&p5, &Method::PUT, TryResult::Status(500)));
        assert!(retry(&p5, &Method::GET, TryResult::Failed(LocalError::Timeout)));
        assert!(!retry(&p5, &Method::GET, TryResult::Status(404)));
        // A peer's GOAWAY reads as a reset: idempotent methods only.
        assert!(retry(&p5, &Method::GET, TryResult::Failed(LocalError::UpstreamClosing)));
        assert!(!retry(&p5, &Method::POST, TryResult::Failed(LocalError::UpstreamClosing)));
    }

    #[test]
    fn grpc_calls_retry_on_the_codes_named_and_nothing_else() {
        let p = policy(&[RetryOn::Grpc(GrpcCode::UNAVAILABLE), RetryOn::Status5xx]);
        let grpc = |r| should_retry(&p, &Method::POST, true, r);
        assert!(grpc(TryResult::Grpc(GrpcCode::UNAVAILABLE)));
        assert!(grpc(TryResult::Status(503)), "503 reads as UNAVAILABLE");
        assert!(!grpc(TryResult::Grpc(GrpcCode::INTERNAL)));
        assert!(!grpc(TryResult::Status(500)), "5xx alone never resends a POST");
        assert!(!grpc(TryResult::Failed(LocalError::UpstreamReset)));
        assert!(!grpc(TryResult::Status(200)), "a 200 has its status still to come");
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
}
