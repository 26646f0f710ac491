//! HTTP/2 keepalive on a service's upstream connections: `http2_keepalive` as written, and
//! validated with its defaults.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::duration::HumanDuration;

/// HTTP/2 keepalive settings.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Http2Keepalive {
    /// Quiet time before a PING; `0s` sends none.
    #[serde(default)]
    pub interval: Option<HumanDuration>,
    /// Time a PING's answer may take before the connection is closed.
    #[serde(default)]
    pub timeout: Option<HumanDuration>,
}

/// HTTP/2 keepalive: a connection that carries requests and has been quiet for `interval` gets a
/// PING, and is closed when the answer takes longer than `timeout` (long-lived gRPC streams
/// through NAT and load balancers need it, and it finds a dead peer before a request's timeout).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Keepalive {
    /// Quiet time before a PING.
    pub interval: Duration,
    /// Longest wait for its answer.
    pub timeout: Duration,
}

impl Keepalive {
    /// What a service gets unless it says otherwise.
    pub const DEFAULT: Keepalive =
        Keepalive { interval: Duration::from_secs(30), timeout: Duration::from_secs(10) };
}

/// A service's keepalive, defaults filled in; an `interval` of zero turns it off. The error is
/// what is wrong with its `timeout`.
pub fn validate(k: Option<&Http2Keepalive>) -> Result<Option<Keepalive>, &'static str> {
    let Some(k) = k else { return Ok(Some(Keepalive::DEFAULT)) };
    let interval = k.interval.map_or(Keepalive::DEFAULT.interval, |d| d.0);
    let timeout = k.timeout.map_or(Keepalive::DEFAULT.timeout, |d| d.0);
    if interval.is_zero() {
        return Ok(None);
    }
    if timeout.is_zero() {
        return Err("timeout must be more than 0s (an interval of 0s turns keepalive off)");
    }
    Ok(Some(Keepalive { interval, timeout }))
}
