//! The config file's shape: serde types that mirror the YAML one to one.
//!
//! Nothing here is trusted: `validate` turns these into the typed runtime form. The same types are
//! what the control plane pushes for `services`, `routes` and `inbound`, so there is one schema.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::duration::HumanDuration;

/// A whole proxy config file.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct File {
    /// Who this proxy runs beside.
    #[serde(default)]
    pub workload: Option<Workload>,
    /// The workload's certificate, key and trust bundle.
    #[serde(default)]
    pub tls: Option<Tls>,
    /// The admin listener.
    #[serde(default)]
    pub admin: Admin,
    /// Traffic coming into the pod.
    #[serde(default)]
    pub inbound: Inbound,
    /// Traffic leaving the pod.
    #[serde(default)]
    pub outbound: Outbound,
    /// Upstream services and their endpoints.
    #[serde(default)]
    pub services: Vec<Service>,
    /// Routing rules, first match wins.
    #[serde(default)]
    pub routes: Vec<Route>,
    /// Where to get `services`, `routes` and `inbound.ports` from instead of this file.
    #[serde(default)]
    pub control: Option<Control>,
    /// Where spans go, and how many requests start a trace.
    #[serde(default)]
    pub tracing: Option<crate::trace::Tracing>,
    /// How `dns` endpoints and the control-plane address are resolved.
    #[serde(default)]
    pub resolver: Option<crate::dns::Resolver>,
}

/// The workload this proxy serves.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Workload {
    /// Workload name, as the control plane knows it.
    pub name: String,
    /// SPIFFE identity, `spiffe://TRUST_DOMAIN/ns/NS/sa/SA`.
    #[serde(default)]
    pub identity: Option<String>,
}

/// Paths to the workload's PEM files.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Tls {
    /// Certificate chain, leaf first.
    pub cert: String,
    /// Private key of the leaf.
    pub key: String,
    /// Trust bundle (CA certificates).
    pub trust: String,
}

/// The admin listener (`/metrics`, `/ready`, ...).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Admin {
    /// Address to bind.
    #[serde(default = "defaults::admin_bind")]
    pub bind: String,
}

impl Default for Admin {
    fn default() -> Self {
        Self { bind: defaults::admin_bind() }
    }
}

/// The inbound listener and its per-port policy.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Inbound {
    /// Address to bind.
    #[serde(default = "defaults::inbound_bind")]
    pub bind: String,
    /// Where to send traffic whose original destination is unknown.
    #[serde(default)]
    pub app: Option<String>,
    /// Whether inbound connections must use mutual TLS.
    #[serde(default)]
    pub mtls: Option<MtlsMode>,
    /// Policy per application port.
    #[serde(default)]
    pub ports: Vec<InboundPort>,
    /// Connection and request limits.
    #[serde(default)]
    pub limits: Option<ListenerLimits>,
}

impl Default for Inbound {
    fn default() -> Self {
        Self { bind: defaults::inbound_bind(), app: None, mtls: None, ports: Vec::new(), limits: None }
    }
}

/// Inbound mutual TLS mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MtlsMode {
    /// Only mutual TLS is accepted.
    Strict,
    /// TLS and plaintext are both accepted, told apart by their first bytes.
    Permissive,
    /// Plaintext only.
    Disabled,
}

/// Policy for one application port.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct InboundPort {
    /// The application's port.
    pub port: u16,
    /// Protocol spoken on it; `auto` detects.
    #[serde(default)]
    pub protocol: Protocol,
    /// Client identities allowed (exact SPIFFE IDs or `.../*` prefixes); empty allows all.
    #[serde(default)]
    pub allow: Vec<String>,
}

/// Outbound listeners.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Outbound {
    /// Transparent listener address.
    #[serde(default = "defaults::outbound_bind")]
    pub bind: String,
    /// Explicit listeners the app calls on localhost.
    #[serde(default)]
    pub listeners: Vec<Listener>,
    /// Connection and request limits.
    #[serde(default)]
    pub limits: Option<ListenerLimits>,
}

impl Default for Outbound {
    fn default() -> Self {
        Self { bind: defaults::outbound_bind(), listeners: Vec::new(), limits: None }
    }
}

/// An explicit outbound listener bound to one service.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Listener {
    /// Address to bind, e.g. `127.0.0.1:9001`.
    pub bind: String,
    /// Service that requests on it go to when no route matches.
    pub service: String,
}

/// Limits that protect a listener from its clients. Every field has a safe default.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ListenerLimits {
    /// Time allowed to receive a request's head once its first byte has arrived (408 after).
    #[serde(default)]
    pub header_read_timeout: Option<HumanDuration>,
    /// How long a client connection may pass no bytes either way before it is closed.
    #[serde(default)]
    pub idle_timeout: Option<HumanDuration>,
    /// Longest HTTP/1.1 request line, in bytes (414 beyond).
    #[serde(default)]
    pub max_request_line_bytes: Option<usize>,
    /// Largest request head, in bytes.
    #[serde(default)]
    pub max_header_bytes: Option<usize>,
    /// Most header fields in one request.
    #[serde(default)]
    pub max_headers: Option<usize>,
    /// Most concurrent HTTP/2 streams per connection.
    #[serde(default)]
    pub max_concurrent_streams: Option<u32>,
    /// Most open client connections; beyond it the listener stops accepting.
    #[serde(default)]
    pub max_connections: Option<usize>,
    /// Most requests on one HTTP/1.1 connection before the proxy closes it (0: no limit).
    #[serde(default)]
    pub max_requests_per_connection: Option<u32>,
}

/// Wire protocol of a service or port.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Protocol {
    /// Detect from the client's bytes; upstream HTTP follows the client's version.
    #[default]
    Auto,
    /// HTTP/1.1.
    Http1,
    /// HTTP/2 (prior knowledge when plaintext).
    Http2,
    /// Opaque TCP.
    Tcp,
}

/// Load-balancing algorithm.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LbPolicy {
    /// Each endpoint in turn, by weight.
    RoundRobin,
    /// Uniformly at random, by weight.
    Random,
    /// Power of two choices over in-flight requests.
    LeastRequest,
    /// Power of two choices over a peak-sensitive latency EWMA.
    #[default]
    PeakEwma,
}

/// An upstream service.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Service {
    /// Unique name, used by routes and listeners.
    pub name: String,
    /// Addresses clients use for it (`ClusterIP:port`, `name:port`).
    #[serde(default)]
    pub addresses: Vec<String>,
    /// Upstream protocol.
    #[serde(default)]
    pub protocol: Protocol,
    /// Balancing algorithm.
    #[serde(default)]
    pub lb: LbPolicy,
    /// Time allowed to establish an upstream connection.
    #[serde(default)]
    pub connect_timeout: Option<HumanDuration>,
    /// PINGs on upstream HTTP/2 connections while they carry requests.
    #[serde(default)]
    pub http2_keepalive: Option<crate::keepalive::Http2Keepalive>,
    /// Passive health checking.
    #[serde(default)]
    pub outlier: Option<Outlier>,
    /// Circuit-breaking limits.
    #[serde(default)]
    pub limits: Option<ServiceLimits>,
    /// Where the service runs.
    #[serde(default)]
    pub endpoints: Vec<Endpoint>,
    /// `host:port` names whose A and AAAA records are endpoints too, re-resolved at their TTL.
    /// Left out of the JSON when empty, so that a proxy that predates it still reads snapshots.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dns: Vec<String>,
    /// The SPIFFE identity every `dns` endpoint must prove (mTLS when set).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity: Option<String>,
}

/// Outlier detection settings.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Outlier {
    /// Consecutive failures that eject an endpoint.
    #[serde(default)]
    pub consecutive_failures: Option<u32>,
    /// Base ejection time (grows on repeat ejections).
    #[serde(default)]
    pub ejection: Option<HumanDuration>,
    /// Most endpoints that may be ejected at once, in percent.
    #[serde(default)]
    pub max_ejected_percent: Option<u32>,
}

/// Per-service circuit-breaking limits.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceLimits {
    /// Most upstream connections.
    #[serde(default)]
    pub max_connections: Option<usize>,
    /// Most requests waiting or in flight.
    #[serde(default)]
    pub max_pending: Option<usize>,
}

/// One endpoint of a service.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Endpoint {
    /// `IP:port`.
    pub addr: String,
    /// SPIFFE identity expected from the endpoint; set means mTLS.
    #[serde(default)]
    pub identity: Option<String>,
    /// Relative weight.
    #[serde(default = "defaults::weight")]
    pub weight: u32,
}

/// A routing rule.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Route {
    /// Unique name, used in metrics.
    pub name: String,
    /// What requests it applies to; empty matches all.
    #[serde(default, rename = "match")]
    pub matches: RouteMatch,
    /// Services to send to, split by weight.
    pub backends: Vec<Backend>,
    /// Time allowed for the upstream's response headers.
    #[serde(default)]
    pub timeout: Option<HumanDuration>,
    /// Retry policy.
    #[serde(default)]
    pub retry: Option<Retry>,
    /// Largest request body accepted, in bytes; larger ones get 413.
    #[serde(default)]
    pub max_request_bytes: Option<u64>,
}

/// Conditions that all must hold for a route to match.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RouteMatch {
    /// Host (authority without port), or `*.suffix`.
    #[serde(default)]
    pub host: Option<String>,
    /// Exact path.
    #[serde(default)]
    pub path: Option<String>,
    /// Path prefix, on segment boundaries or not (plain string prefix).
    #[serde(default)]
    pub path_prefix: Option<String>,
    /// Regular expression the whole path must match.
    #[serde(default)]
    pub path_regex: Option<String>,
    /// Header values that must be present exactly.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Request method.
    #[serde(default)]
    pub method: Option<String>,
    /// Query parameters that must be present with exactly these values (as sent, not
    /// percent-decoded). Left out of the JSON when empty, so that a proxy that predates it still
    /// reads the snapshots of routes that do not use it.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub query: BTreeMap<String, String>,
}

/// A weighted backend of a route.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Backend {
    /// Service name.
    pub service: String,
    /// Relative weight.
    #[serde(default = "defaults::weight")]
    pub weight: u32,
}

/// Retry policy of a route.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Retry {
    /// Retries after the first try.
    pub attempts: u32,
    /// Conditions: `connect-failure`, `reset`, or a status code like `"503"` or `"5xx"`.
    #[serde(default)]
    pub on: Vec<String>,
    /// Time allowed for each try.
    #[serde(default)]
    pub per_try_timeout: Option<HumanDuration>,
    /// Retries allowed as a percentage of recent requests.
    #[serde(default)]
    pub budget_percent: Option<u32>,
}

/// Control-plane connection.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Control {
    /// `https://host:port` of pillion-control.
    pub address: String,
    /// Bootstrap token used to get the first certificate.
    #[serde(default)]
    pub token_file: Option<String>,
}

mod defaults {
    pub fn admin_bind() -> String {
        "0.0.0.0:15020".into()
    }
    pub fn inbound_bind() -> String {
        "0.0.0.0:15006".into()
    }
    pub fn outbound_bind() -> String {
        "127.0.0.1:15001".into()
    }
    pub fn weight() -> u32 {
        1
    }
}
