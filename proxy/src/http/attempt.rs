//! The tries of one request: pick an endpoint, send, judge the outcome (endpoint health, retry
//! policy, retry budget), and try again on another endpoint when that is safe and affordable.

use crate::trace::{ClientEnd, ServerSpan};
use std::pin::pin;

use http::{HeaderValue, Request, Response, StatusCode, Version, request::Parts};
use http_body::Body as _;
use pillion_config::GrpcCode;
use tokio::time::Instant;

use super::{forward, grpc, headers, reply::LocalError};
use crate::http::deadline::Deadline;
use crate::http::retry::{self, MAX_REPLAY_BODY, TryResult};
use crate::{
    balance::Service,
    balance::{Tried, outlier::Outcome},
    body::{Body, ClientBody, replay::Replay},
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
    /// Whether the request is a gRPC call.
    pub grpc: bool,
    /// A gRPC call's deadline (`grpc-timeout`): caps each try, and goes upstream as time left.
    pub deadline: Option<Instant>,
    /// The request's server span, when traced: each try gets a client span under it.
    pub span: Option<&'a ServerSpan>,
    /// The route's name, for spans.
    pub route: &'a str,
}

/// How a request's body can be sent again.
enum Resend {
    /// It is empty.
    Empty,
    /// Through a copy (routes with a retry policy).
    Copy(Replay),
    /// It cannot: sent once, by the first try.
    Never(Option<ClientBody>),
}

impl Resend {
    fn possible(&self) -> bool {
        match self {
            Self::Empty => true,
            Self::Copy(r) => r.can_resend(),
            Self::Never(_) => false,
        }
    }

    /// The body of the next try, or `None` when it cannot be sent (again). Taking it stops
    /// the previous try's body; the `last` try leaves no copy behind.
    /// Whether the body went over the route's `max_request_bytes`.
    fn over_limit(&self) -> bool {
        matches!(self, Self::Copy(r) if r.over_limit())
    }

    fn next_body(&mut self, last: bool) -> Option<Body> {
        match self {
            Self::Empty => Some(Body::Empty),
            Self::Copy(copy) => copy.next_try(last).map(Body::Replay),
            Self::Never(body) => body.take().map(Body::Streaming),
        }
    }
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

    // A request can be sent twice only if its body can: empty, or copied as it goes (only when a
    // route asks for retries, and only the first bytes).
    let mut resend = match body {
        _ if plan.upgrade => Resend::Never(Some(body)),
        b if b.is_end_stream() => Resend::Empty,
        b if plan.retry.is_some() && b.size_hint().lower() <= MAX_REPLAY_BODY => {
            Resend::Copy(Replay::new(b, MAX_REPLAY_BODY, plan.max_body))
        }
        // Held to the route's limit, and kept for no other try once a byte went out.
        b if plan.max_body.is_some() => Resend::Copy(Replay::new(b, 0, plan.max_body)),
        b => Resend::Never(Some(b)),
    };
    let endpoints = plan.service.balancer.endpoints().len() as u32;
    let max_tries = match (&resend, plan.retry) {
        (Resend::Never(_), _) => 1,
        (_, Some(p)) => 1 + p.attempts,
        (_, None) => 1 + DEFAULT_CONNECT_RETRIES.min(endpoints.saturating_sub(1)),
    };
    let percent = plan.retry.map_or(DEFAULT_BUDGET_PERCENT, |p| p.budget_percent);

    let method = parts.method.clone();
    let mut template = Some(parts);
    let mut tried = Tried::default();
    let mut try_body = resend.next_body(max_tries == 1);
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
        let (Some(mut try_parts), Some(body)) = (head, try_body.take()) else {
            return Sent::failed(LocalError::BadRequest);
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
        let client_span = plan.span.map(|s| s.client(&mut try_parts.headers));
        let exchange = forward::send(endpoint, try_parts, body, version);
        let result = match Deadline::new(per_try, pin!(exchange)).await.unwrap_or(Err(LocalError::Timeout)) {
            // However the upstream took the cut-off request (HTTP/2 sees only a reset stream).
            Err(_) if resend.over_limit() => Err(LocalError::TooLarge),
            r => r,
        };
        if let (Some(server), Some(span)) = (plan.span, client_span) {
            let end = ClientEnd {
                endpoint: endpoint.addr,
                identity: endpoint.conn.identity.as_ref().map(|id| id.as_str()),
                route: plan.route,
                try_: n,
                result: result.as_ref().map(|r| r.status().as_u16()).map_err(|e| e.status_and_code().1),
            };
            server.end_client(&shared.spans, span, end);
        }
        let judged = match &result {
            Ok(resp) => {
                in_flight.finish();
                let head = (resp.status(), resp.headers(), resp.body().is_end_stream());
                match plan.grpc.then(|| grpc::head_status(head.0, head.1, head.2)).flatten() {
                    // The peer's sidecar could not reach its app (one stopping in a rollout):
                    // nothing reached an app, so it is retried as a connect failure of ours is.
                    _ if meshed && peer_connect_failed(resp.headers()) => {
                        TryResult::Failed(LocalError::ConnectFailed)
                    }
                    Some(code) if resp.status() == StatusCode::OK => TryResult::Grpc(code),
                    _ => TryResult::Status(resp.status().as_u16()),
                }
            }
            Err(e) => TryResult::Failed(*e),
        };
        let outcome = match judged {
            TryResult::Status(code) if code >= 500 => Outcome::Failure,
            TryResult::Status(_) => Outcome::Success,
            // Never NOT_FOUND or INVALID_ARGUMENT: the endpoint answered for itself.
            TryResult::Grpc(GrpcCode::UNAVAILABLE | GrpcCode::INTERNAL) => Outcome::Failure,
            TryResult::Grpc(_) => Outcome::Success,
            TryResult::Failed(LocalError::Overloaded | LocalError::BadRequest | LocalError::TooLarge) => {
                Outcome::Success
            }
            TryResult::Failed(_) => Outcome::Failure,
        };
        plan.service.balancer.report(i, outcome);

        let wanted = retry::wanted(plan.retry, &method, plan.grpc, judged);
        if n >= max_tries || !wanted || !resend.possible() || !budget.try_withdraw(percent) {
            return Sent { result, tls: meshed };
        }
        // Taken now, before the try is given up: its body might otherwise outgrow the copy.
        try_body = resend.next_body(n + 1 >= max_tries);
        if try_body.is_none() {
            return Sent { result, tls: meshed };
        }
        shared.metrics.retries(plan.service_name).inc();
        tracing::debug!(service = plan.service_name, endpoint = %endpoint.addr, try_ = n, result = ?judged, "retrying");
        drop(result);
        if !retry::at_once(judged) {
            tokio::time::sleep(retry::backoff(n)).await;
        }
    }
}

/// Whether a meshed peer's answer is its own `connect-failed` reply (an inbound proxy strips
/// `x-pillion-error` from its app's responses, so only the proxy can have set it).
fn peer_connect_failed(headers: &http::HeaderMap) -> bool {
    headers.get(&headers::ERROR).is_some_and(|v| v == LocalError::ConnectFailed.status_and_code().1)
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
