//! Logging upstream failures: an error with its causes on one line, and at most one warning a
//! second however many requests fail.

use std::{
    net::SocketAddr,
    sync::atomic::{AtomicU64, Ordering::Relaxed},
    time::{SystemTime, UNIX_EPOCH},
};

/// Upstream failures are warnings, at most one a second (the rest at debug): a dead upstream
/// under load would otherwise log a line per request. Each is counted in
/// `pillion_requests_total` under its local reply's code either way.
pub fn log_upstream_failure(endpoint: SocketAddr, what: &'static str, e: &(dyn std::error::Error + 'static)) {
    static LAST_WARNED: AtomicU64 = AtomicU64::new(0);
    let second = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    if LAST_WARNED.swap(second, Relaxed) != second {
        tracing::warn!(%endpoint, error = %source_chain(e), "{what}");
    } else {
        tracing::debug!(%endpoint, error = %source_chain(e), "{what}");
    }
}

/// An error and its causes on one line, for logs.
pub fn source_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}
