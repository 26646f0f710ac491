//! The life of one HTTP request through the proxy, phase by phase, in one place:
//! request filter -> route -> upstream peer -> upstream request -> response filter -> log.

pub mod access;
pub mod attempt;
pub mod body;
pub mod client_identity;
pub mod deadline;
pub mod forward;
pub mod grpc;
pub mod grpc_end;
pub mod headers;
pub mod record;
pub mod reply;
pub mod request_id;
pub mod retry;
pub mod series;

pub use client_identity::ClientIdentity;

use std::{net::SocketAddr, pin::pin, sync::Arc};

use http::{HeaderValue, Request, Response, StatusCode, Version};
use tokio::time::Instant;

use crate::body::ClientBody;
use crate::{
    balance::{Service, direct::PASSTHROUGH},
    live::{Serving, Shared},
    metrics::Direction,
    trace::{self, Decision},
};
use body::ResponseBody;
use deadline::Deadline;
use pillion_config::{Protocol, RetryPolicy, route};
use record::Record;
use reply::LocalError;
use series::SeriesCache;

/// What a connection's requests share: where they came in, from whom, and where they go.
#[derive(Debug)]
pub struct Conn {
    /// Inbound or outbound.
    pub direction: Direction,
    /// The client's address.
    pub peer: SocketAddr,
    /// Whether the client connection is mutual TLS.
    pub tls: bool,
    /// The client's verified identity, for inbound mTLS.
    pub client: Option<ClientIdentity>,
    /// Where the connection's requests go.
    pub dest: Dest,
    /// The request metrics series its requests last went to.
    pub series: SeriesCache,
}

impl Conn {
    /// A client connection's facts, before its first request.
    pub fn new(
        direction: Direction,
        peer: SocketAddr,
        tls: bool,
        client: Option<ClientIdentity>,
        dest: Dest,
    ) -> Self {
        Self { direction, peer, tls, client, dest, series: SeriesCache::default() }
    }
}

/// Where a connection's requests go before routing.
#[derive(Debug)]
pub enum Dest {
    /// Explicit outbound listener (index in `outbound.listeners`): its service.
    Listener(usize),
    /// Transparent outbound: the original destination, matched to a service per request (a
    /// reload may add or remove one); `passthrough` serves it when nothing matches.
    Original {
        /// Where the app was connecting.
        dst: SocketAddr,
        /// A direct service to `dst`.
        passthrough: Arc<Service>,
    },
    /// Inbound: the local app's port and the service that reaches it.
    App {
        /// The application port (its policy applies).
        port: u16,
        /// `127.0.0.1:port` or `inbound.app`.
        service: Arc<Service>,
    },
}

/// Whether the inbound connection's client may use the app port, per `inbound.ports[].allow`.
pub fn authorize(rt: &Serving, conn: &Conn) -> Result<(), LocalError> {
    let Dest::App { port, .. } = conn.dest else { return Ok(()) };
    let Some(policy) = rt.config.inbound.port(port) else { return Ok(()) };
    if policy.allow.is_empty() {
        return Ok(());
    }
    match &conn.client {
        Some(c) if pillion_certs::IdentityPattern::any_matches(&policy.allow, &c.id) => Ok(()),
        _ => Err(LocalError::Unauthorized),
    }
}

/// Where routing sent a request.
struct Target<'a> {
    name: &'a str,
    route: &'a str,
    protocol: Protocol,
    service: &'a Service,
    timeout: Option<std::time::Duration>,
    retry: Option<&'a RetryPolicy>,
    max_body: Option<u64>,
}

impl<'a> Target<'a> {
    /// A target outside the config's routes: the local app, or a passthrough destination.
    fn direct(name: &'a str, route: &'a str, service: &'a Service) -> Self {
        Target { name, route, protocol: Protocol::Auto, service, timeout: None, retry: None, max_body: None }
    }
}

/// Serves one request. Never fails: every problem becomes a local reply.
pub async fn handle(
    shared: Arc<Shared>,
    conn: Arc<Conn>,
    req: Request<ClientBody>,
) -> Response<ResponseBody> {
    let start = Instant::now();
    // The one config load of this request; it keeps its config until it is done.
    let rt = shared.serving.load_full();

    // Request filter.
    let survey = headers::survey(req.headers());
    // Never for CONNECT: a gRPC reply is a 200, and a 2xx to CONNECT opens a tunnel.
    let grpc = survey.grpc && req.method() != http::Method::CONNECT;
    // A request refused before it is routed (no request ID yet).
    let refuse = |e: LocalError| {
        let log = Record::new(
            &shared,
            grpc,
            req.method(),
            req.uri(),
            &HeaderValue::from_static("-"),
            Decision::Off,
        );
        log.finish(&shared, &conn, start, None, e.reply(grpc), conn.tls)
    };
    if survey.ambiguous_framing {
        tracing::info!(peer = %conn.peer, "request with ambiguous framing (Content-Length/Transfer-Encoding) refused");
        return refuse(LocalError::BadRequest);
    }
    // HTTP/2 heads are held to the Host rules the HTTP/1.1 decoder applies.
    if req.version() == Version::HTTP_2
        && crate::http1::authority::check_http2(req.uri(), req.headers()).is_err()
    {
        return refuse(LocalError::BadHost);
    }
    // Tunnels are not proxied: its 2xx would turn the client's next bytes into payload that no
    // check of ours reads. The HTTP/1 server closes the connection after this reply.
    if req.method() == http::Method::CONNECT {
        return refuse(LocalError::Connect);
    }
    let upgrade = survey.hop_by_hop
        && req.version() == Version::HTTP_11
        && crate::http1::fields::is_upgrade(req.headers());
    let (mut parts, body) = req.into_parts();
    if survey.hop_by_hop {
        headers::strip_hop_by_hop(&mut parts.headers, upgrade);
    }
    // Only a meshed peer may say its client spoke HTTP/1 before the hop was upgraded to h2.
    let orig_http1 = survey.ours
        && parts.headers.remove(&headers::ORIG_PROTO).is_some_and(|v| v == "HTTP/1.1")
        && conn.tls;
    if conn.direction == Direction::Inbound {
        if survey.ours {
            parts.headers.remove(&headers::CLIENT_ID);
        }
        if let Some(c) = &conn.client {
            parts.headers.insert(headers::CLIENT_ID.clone(), c.header.clone());
        }
    }
    let tracing = rt.config.tracing.as_ref();
    let decision = trace::begin(tracing, &mut parts.headers, &parts.method, parts.uri.path(), grpc);
    let request_id = headers::ensure_request_id(&mut parts.headers);
    let log = Record::new(&shared, grpc, &parts.method, &parts.uri, request_id, decision);

    if conn.direction == Direction::Inbound {
        if let Err(e) = authorize(&rt, &conn) {
            shared.metrics.authz_denied(conn.direction).inc();
            return log.finish(&shared, &conn, start, None, e.reply(grpc), conn.tls);
        }
    }

    // Route.
    let target = match route_request(&rt, &conn, &parts) {
        Ok(t) => t,
        Err(e) => return log.finish(&shared, &conn, start, None, e.reply(grpc), conn.tls),
    };

    let declared =
        parts.headers.get(http::header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if let (Some(limit), Some(n)) = (target.max_body, declared) {
        if n > limit {
            return log.finish(
                &shared,
                &conn,
                start,
                Some((target.name, target.route)),
                LocalError::TooLarge.reply(grpc),
                conn.tls,
            );
        }
    }

    // A gRPC call's own deadline caps the route's and each try's.
    let grpc_timeout = if grpc { grpc::timeout(&parts.headers) } else { None };

    // Upstream peer and request: balanced, sent, retried as the route allows.
    let plan = attempt::Plan {
        service: target.service,
        service_name: target.name,
        protocol: target.protocol,
        retry: target.retry,
        upgrade,
        client_version: if orig_http1 { Version::HTTP_11 } else { parts.version },
        max_body: target.max_body,
        start,
        grpc,
        deadline: grpc_timeout.map(|t| start + t),
        span: log.span(),
        route: target.route,
    };
    let timeout = match (target.timeout, grpc_timeout) {
        (Some(route), Some(call)) => Some(route.min(call)),
        (route, call) => route.or(call),
    };
    let sent = Deadline::new(timeout, pin!(attempt::send(&shared, &plan, parts, body)))
        .await
        .unwrap_or(attempt::Sent { result: Err(LocalError::Timeout), tls: false });
    let tls = conn.tls || sent.tls;

    // Response filter.
    let resp = match sent.result {
        Ok(mut resp) => {
            let survey = headers::survey(resp.headers());
            if survey.ambiguous_framing {
                tracing::warn!(service = target.name, "upstream response with ambiguous framing dropped");
                LocalError::UpstreamReset.reply(grpc)
            } else {
                // A 101's body holds the upstream connection; the client's codec joins the two.
                let switching = resp.status() == StatusCode::SWITCHING_PROTOCOLS;
                if survey.hop_by_hop {
                    headers::strip_hop_by_hop(resp.headers_mut(), switching);
                }
                // Only the proxy names a local reply's cause: a peer's proxy trusts it (and
                // retries a `connect-failed` one elsewhere), so the app may not say it.
                if survey.ours && conn.direction == Direction::Inbound {
                    resp.headers_mut().remove(&headers::ERROR);
                }
                *resp.version_mut() = Version::default();
                resp.map(ResponseBody::from)
            }
        }
        Err(e) => {
            tracing::debug!(service = target.name, error = ?e, "local reply");
            e.reply(grpc)
        }
    };
    log.finish(&shared, &conn, start, Some((target.name, target.route)), resp, tls)
}

fn route_request<'a>(
    rt: &'a Serving,
    conn: &'a Conn,
    parts: &http::request::Parts,
) -> Result<Target<'a>, LocalError> {
    let cfg = &rt.config;
    let logical = match &conn.dest {
        Dest::App { service, .. } => {
            let name = cfg.file.workload.as_ref().map_or("inbound", |w| w.name.as_str());
            return Ok(Target::direct(name, "inbound", service));
        }
        Dest::Listener(i) => {
            Some(cfg.outbound.listeners.get(*i).and_then(|l| l.service).ok_or(LocalError::NoRoute)?)
        }
        Dest::Original { dst, .. } => rt.by_addr.get(dst).copied(),
    };
    let logical_name = logical.map(|s| &*cfg.services[s].name);
    // Routes apply to known destinations; unknown transparent traffic passes through as is.
    let routed = match (&conn.dest, logical) {
        (Dest::Original { .. }, None) => None,
        _ if cfg.routes.is_empty() => None,
        _ => route::find(&cfg.routes, parts, &route::request_host(parts), logical_name),
    };
    let (service, route) = match (routed, logical, &conn.dest) {
        (Some(r), _, _) => (route::pick_backend(&r.backends), Some(r)),
        (None, Some(s), _) => (s, None),
        (None, None, Dest::Original { passthrough, .. }) => {
            return Ok(Target::direct(PASSTHROUGH, PASSTHROUGH, passthrough));
        }
        (None, None, _) => return Err(LocalError::NoRoute),
    };
    let svc = &cfg.services[service];
    Ok(Target {
        name: &svc.name,
        route: route.map_or("default", |r| &r.name),
        protocol: svc.protocol,
        service: &rt.services[service],
        timeout: route.and_then(|r| r.timeout),
        retry: route.and_then(|r| r.retry.as_ref()),
        max_body: route.and_then(|r| r.max_request_bytes),
    })
}
