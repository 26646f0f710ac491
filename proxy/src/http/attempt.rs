//! The tries of one request: pick an endpoint, send, judge the outcome (endpoint health, retry
//! policy, retry budget), and try again on another endpoint when that is safe and affordable.

use std::pin::pin;

use bytes::Bytes;
use http::{HeaderValue, Request, Response, Version, request::Parts};
use http_body::Body as _;
use http_body_util::BodyExt;
use tokio::time::Instant;

use super::{forward, grpc, headers, reply::LocalError};
use crate::http::deadline::Deadline;
use crate::http::retry::{self, MAX_REPLAY_BODY, TryResult};
use crate::{
    balance::Service,
    balance::{Tried, outlier::Outcome},
    body::{Body, ClientBody},
    live::Shared,
    upstream::UpstreamBody,
};
use pillion_config::{Protocol, RetryPolicy};

/// Retry share of recent requests when a route sets no policy (connect failures only).
const DEFAULT_BUDGET_PERCENT: u32 = 20;
/// Connect-failure retries for routes without a policy.
const DEFAULT_CONNECT_RETRIES: u32 = 2;

/// Where and how a routed request is to be sent.
pub struct Plan<'a> {
    /// The backend service.
    pub service: &'a Service,
    /// Its name, for metrics.
    pub service_name: &'a str,
    /// Its protocol.
    pub protocol: Protocol,
    /// The route's retry policy.
    pub retry: Option<&'a RetryPolicy>,
    /// An HTTP/1.1 upgrade (never retried).
    pub upgrade: bool,
    /// The HTTP version the client (or the meshed peer's client) spoke.
    pub client_version: Version,
    /// The route's `max_request_bytes`.
    pub max_body: Option<u64>,
    /// When the request arrived: the clock reading its first try starts from.
    pub start: Instant,
    /// A gRPC call's deadline (`grpc-timeout`): caps each try, and goes upstream as time left.
    pub deadline: Option<Instant>,
}

/// The final try's result, and whether it went over mTLS.
pub struct Sent {
    /// The upstream response, or why there is none.
    pub result: Result<Response<UpstreamBody>, LocalError>,
    /// Whether the endpoint that answered is meshed.
    pub tls: bool,
}

impl Sent {
    fn failed(e: LocalError) -> Self {
        Self { result: Err(e), tls: false }
    }
}

/// Sends the request, retrying per the plan.
pub async fn send(shared: &Shared, plan: &Plan<'_>, parts: Parts, body: ClientBody) -> Sent {
    let Some(_pending) = plan.service.state.admit() else {
        shared.metrics.overloaded(plan.service_name).inc();
        return Sent::failed(LocalError::Overloaded);
    };
    let budget = &plan.service.state.budget;
    budget.record_request(plan.start);

    // A request can be sent twice only if its body can: empty, or small enough to buffer (and
    // buffered only when a route asks for retries).
    let mut body = Some(body);
    let replay = match body.take() {
        _ if plan.upgrade => None,
        Some(b) if b.is_end_stream() => Some(Bytes::new()),
        Some(b) if plan.retry.is_some() && b.size_hint().upper().is_some_and(|n| n <= MAX_REPLAY_BODY) => {
            match b.collect().await {
                Ok(collected) => Some(collected.to_bytes()),
                Err(_) => return Sent::failed(LocalError::BadRequest),
            }
        }
        other => {
            body = other;
            None
        }
    };
    let endpoints = plan.service.balancer.endpoints().len() as u32;
    let max_tries = match (&replay, plan.retry) {
        (None, _) => 1,
        (Some(_), Some(p)) => 1 + p.attempts,
        (Some(_), None) => 1 + DEFAULT_CONNECT_RETRIES.min(endpoints.saturating_sub(1)),
    };
    let percent = plan.retry.map_or(DEFAULT_BUDGET_PERCENT, |p| p.budget_percent);

    let method = parts.method.clone();
    let mut template = Some(parts);
    let mut tried = Tried::default();
    let mut n = 0;
    loop {
        n += 1;
        let Some(i) = plan.service.balancer.pick_index(tried) else {
            return Sent::failed(LocalError::NoEndpoint);
        };
        tried.add(i);
        let endpoint = plan.service.balancer.endpoint(i);
        // The last possible try takes the head itself; earlier ones copy it.
        let head = if n >= max_tries { template.take() } else { template.as_ref().map(clone_parts) };
        let Some(mut try_parts) = head else { return Sent::failed(LocalError::BadRequest) };
        let try_body = match &replay {
            Some(bytes) => replay_body(bytes),
            None => match (body.take(), plan.max_body) {
                (Some(inner), Some(left)) => Body::Limited { inner, left },
                (Some(inner), None) => Body::Streaming(inner),
                (None, _) => Body::Empty,
            },
        };

        // Meshed hops use HTTP/2 whatever the app spoke, so many app connections share a few
        // multiplexed ones; the peer learns the original protocol from a header.
        let meshed = endpoint.conn.meshed();
        let version = forward::upstream_version(plan.protocol, plan.client_version, plan.upgrade, meshed);
        if meshed && version == Version::HTTP_2 && plan.client_version != Version::HTTP_2 {
            try_parts.headers.insert(headers::ORIG_PROTO.clone(), HeaderValue::from_static("HTTP/1.1"));
        }

        let in_flight = endpoint.stats.load.start_at(if n == 1 { plan.start } else { Instant::now() });
        let mut per_try = plan.retry.and_then(|p| p.per_try_timeout);
        if let Some(deadline) = plan.deadline {
            let left = deadline.saturating_duration_since(Instant::now());
            per_try = Some(per_try.map_or(left, |t| t.min(left)));
            try_parts.headers.insert(grpc::GRPC_TIMEOUT.clone(), grpc::timeout_value(left));
        }
        let result = Deadline::new(per_try, pin!(forward::send(endpoint, try_parts, try_body, version)))
            .await
            .unwrap_or(Err(LocalError::Timeout));
        let judged = match &result {
            Ok(resp) => {
                in_flight.finish();
                TryResult::Status(resp.status().as_u16())
            }
            Err(e) => TryResult::Failed(*e),
        };
        let outcome = match judged {
            TryResult::Status(code) if code >= 500 => Outcome::Failure,
            TryResult::Status(_) => Outcome::Success,
            TryResult::Failed(LocalError::Overloaded | LocalError::BadRequest | LocalError::TooLarge) => {
                Outcome::Success
            }
            TryResult::Failed(_) => Outcome::Failure,
        };
        plan.service.balancer.report(i, outcome);

        let wanted = match plan.retry {
            Some(p) => retry::should_retry(p, &method, judged),
            None => judged == TryResult::Failed(LocalError::ConnectFailed),
        };
        if n >= max_tries || !wanted || !budget.try_withdraw(percent) {
            return Sent { result, tls: meshed };
        }
        shared.metrics.retries(plan.service_name).inc();
        tracing::debug!(service = plan.service_name, endpoint = %endpoint.addr, try_ = n, result = ?judged, "retrying");
        drop(result);
        // A connect failure sent nothing: go straight to the next endpoint.
        if judged != TryResult::Failed(LocalError::ConnectFailed) {
            tokio::time::sleep(retry::backoff(n)).await;
        }
    }
}

fn replay_body(bytes: &Bytes) -> Body {
    if bytes.is_empty() { Body::Empty } else { Body::full(bytes.clone()) }
}

/// A copy of the request head for one try (extensions are not carried).
fn clone_parts(p: &Parts) -> Parts {
    let mut r = Request::new(());
    *r.method_mut() = p.method.clone();
    *r.uri_mut() = p.uri.clone();
    *r.version_mut() = p.version;
    *r.headers_mut() = p.headers.clone();
    r.into_parts().0
}
