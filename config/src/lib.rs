//! Pillion's config, shared by the proxy and the control plane: the file's schema, its validation
//! into a typed, ready-to-serve form, YAML parsing with line and column errors, the compiled route
//! matcher, and the directory watch that hot reload starts from.
//!
//! Flow: `yaml::parse` (text -> `schema::File`) -> `validate::validate` (-> `Config`); the proxy
//! swaps the result in whole. The hot path only ever sees `Config`.
#![forbid(unsafe_code)]

pub mod dns;
pub mod duration;
pub mod grpc;
pub mod keepalive;
pub mod overlay;
pub mod route;
pub mod schema;
pub mod trace;
pub mod validate;
pub mod watch;
pub mod yaml;

use std::{net::SocketAddr, path::Path, str::FromStr, sync::Arc, time::Duration};

pub use grpc::GrpcCode;
pub use keepalive::Keepalive;
use route::RouteMatcher;
pub use schema::{LbPolicy, MtlsMode, Protocol};

/// A validated config, ready to serve.
#[derive(Debug)]
pub struct Config {
    /// The workload, if named.
    pub workload: Option<schema::Workload>,
    /// PEM file paths for mTLS.
    pub tls: Option<schema::Tls>,
    /// Admin listener address.
    pub admin_bind: SocketAddr,
    /// Inbound listener.
    pub inbound: InboundConfig,
    /// Outbound listeners.
    pub outbound: OutboundConfig,
    /// Services, indexed by routes and listeners.
    pub services: Vec<ServiceConfig>,
    /// Routes in match order.
    pub routes: Vec<RouteConfig>,
    /// The control plane, when `services`, `routes` and `inbound.ports` come from it.
    pub control: Option<ControlConfig>,
    /// Tracing, when on.
    pub tracing: Option<trace::TracingConfig>,
    /// How `dns` names and the control-plane address are resolved.
    pub resolver: dns::ResolverConfig,
    /// The file as given, for `/config`.
    pub file: schema::File,
}

/// Where the control plane is and who we are to it.
#[derive(Debug, Clone)]
pub struct ControlConfig {
    /// `https://host:port`.
    pub address: String,
    /// Bootstrap token file.
    pub token_file: Option<std::path::PathBuf>,
    /// Our workload name.
    pub workload: String,
    /// Our identity.
    pub identity: pillion_types::SpiffeId,
}

/// Inbound listener settings.
#[derive(Debug)]
pub struct InboundConfig {
    /// Address to bind.
    pub bind: SocketAddr,
    /// Local app address for traffic with no known original destination.
    pub app: Option<SocketAddr>,
    /// Whether clients must use mutual TLS.
    pub mtls: MtlsMode,
    /// Policy per application port.
    pub ports: Vec<PortPolicy>,
    /// Client protection limits.
    pub limits: ListenerLimits,
}

/// Policy for one inbound application port.
#[derive(Debug)]
pub struct PortPolicy {
    /// The application's port.
    pub port: u16,
    /// Protocol spoken there (`tcp` skips HTTP handling).
    pub protocol: Protocol,
    /// Allowed client identities; empty allows every client.
    pub allow: Vec<pillion_types::IdentityPattern>,
}

impl InboundConfig {
    /// The policy for an application port, if one is configured.
    pub fn port(&self, port: u16) -> Option<&PortPolicy> {
        self.ports.iter().find(|p| p.port == port)
    }
}

/// Outbound listener settings.
#[derive(Debug)]
pub struct OutboundConfig {
    /// Transparent listener address.
    pub bind: SocketAddr,
    /// Explicit listeners.
    pub listeners: Vec<ListenerConfig>,
    /// Client protection limits.
    pub limits: ListenerLimits,
}

/// An explicit outbound listener.
#[derive(Debug)]
pub struct ListenerConfig {
    /// Address to bind.
    pub bind: SocketAddr,
    /// Index into `Config::services`; `None` while the control plane has not sent it yet.
    pub service: Option<usize>,
}

/// Limits applied to a listener's clients, defaults filled in.
#[derive(Debug, Clone)]
pub struct ListenerLimits {
    /// Time allowed to receive a request head once it has started.
    pub header_read_timeout: Duration,
    /// Time a client connection may pass no bytes before it is closed.
    pub idle_timeout: Duration,
    /// Longest HTTP/1.1 request line in bytes.
    pub max_request_line_bytes: usize,
    /// Largest request head in bytes.
    pub max_header_bytes: usize,
    /// Most header fields per request.
    pub max_headers: usize,
    /// Most concurrent HTTP/2 streams per connection.
    pub max_concurrent_streams: u32,
    /// Most open connections.
    pub max_connections: usize,
    /// Most requests per HTTP/1.1 connection; 0 is no limit.
    pub max_requests_per_connection: u32,
}

impl Default for ListenerLimits {
    /// Every limit at its default.
    fn default() -> Self {
        Self::from_schema(None)
    }
}

impl ListenerLimits {
    fn from_schema(l: Option<&schema::ListenerLimits>) -> Self {
        let d = |v: Option<duration::HumanDuration>, def: u64| v.map_or(Duration::from_secs(def), |d| d.0);
        Self {
            header_read_timeout: d(l.and_then(|l| l.header_read_timeout), 30),
            idle_timeout: d(l.and_then(|l| l.idle_timeout), 300),
            max_request_line_bytes: l.and_then(|l| l.max_request_line_bytes).unwrap_or(16 * 1024),
            max_header_bytes: l.and_then(|l| l.max_header_bytes).unwrap_or(64 * 1024).max(8192),
            max_headers: l.and_then(|l| l.max_headers).unwrap_or(100),
            max_concurrent_streams: l.and_then(|l| l.max_concurrent_streams).unwrap_or(256),
            max_connections: l.and_then(|l| l.max_connections).unwrap_or(16 * 1024),
            max_requests_per_connection: l.and_then(|l| l.max_requests_per_connection).unwrap_or(0),
        }
    }
}

/// An upstream service.
#[derive(Debug)]
pub struct ServiceConfig {
    /// Unique name.
    pub name: Arc<str>,
    /// Addresses clients use for it, lowercased.
    pub addresses: Vec<String>,
    /// Upstream protocol.
    pub protocol: Protocol,
    /// Balancing algorithm.
    pub lb: LbPolicy,
    /// Upstream connect timeout.
    pub connect_timeout: Duration,
    /// PINGs on upstream HTTP/2 connections, or `None` for none.
    pub http2_keepalive: Option<Keepalive>,
    /// Passive health checking.
    pub outlier: OutlierConfig,
    /// Circuit breaking.
    pub limits: ServiceLimits,
    /// Endpoints: those listed, then (once merged in by the proxy) those resolved from `dns`.
    pub endpoints: Vec<EndpointConfig>,
    /// Names whose A and AAAA records are endpoints too.
    pub dns: Vec<dns::DnsName>,
    /// What every endpoint from `dns` must prove.
    pub identity: Option<pillion_types::SpiffeId>,
}

/// Outlier detection, defaults filled in.
#[derive(Debug, Clone)]
pub struct OutlierConfig {
    /// Consecutive failures that eject.
    pub consecutive_failures: u32,
    /// Base ejection time.
    pub ejection: Duration,
    /// Cap on ejected endpoints, percent.
    pub max_ejected_percent: u32,
}

/// Circuit-breaking limits, defaults filled in.
#[derive(Debug, Clone)]
pub struct ServiceLimits {
    /// Most upstream connections.
    pub max_connections: usize,
    /// Most requests in flight or waiting.
    pub max_pending: usize,
}

/// One endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointConfig {
    /// Address.
    pub addr: SocketAddr,
    /// Expected SPIFFE identity (mTLS when set).
    pub identity: Option<pillion_types::SpiffeId>,
    /// Relative weight, at least 1.
    pub weight: u32,
}

/// A compiled route.
#[derive(Debug)]
pub struct RouteConfig {
    /// Name, used in metrics.
    pub name: Arc<str>,
    /// Request conditions.
    pub matcher: RouteMatcher,
    /// `(service index, weight)` pairs.
    pub backends: Vec<(usize, u32)>,
    /// Response-headers timeout.
    pub timeout: Option<Duration>,
    /// Retry policy.
    pub retry: Option<RetryPolicy>,
    /// Largest request body, bytes.
    pub max_request_bytes: Option<u64>,
}

/// A route's retry policy.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// Retries after the first try.
    pub attempts: u32,
    /// When to retry.
    pub on: Vec<RetryOn>,
    /// Time allowed per try.
    pub per_try_timeout: Option<Duration>,
    /// Retries allowed as a percentage of recent requests.
    pub budget_percent: u32,
}

/// A retry condition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryOn {
    /// The upstream connection could not be made.
    ConnectFailure,
    /// The upstream reset or closed the connection before answering.
    Reset,
    /// This exact status.
    Status(u16),
    /// Any 5xx status.
    Status5xx,
    /// A gRPC call that ended with this status before any of its response was forwarded.
    Grpc(GrpcCode),
}

impl FromStr for RetryOn {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "connect-failure" => Ok(Self::ConnectFailure),
            "reset" => Ok(Self::Reset),
            "5xx" => Ok(Self::Status5xx),
            _ => match s.parse::<u16>() {
                Ok(code) if (100..600).contains(&code) => Ok(Self::Status(code)),
                _ => GrpcCode::retryable(s).map(Self::Grpc).ok_or_else(|| {
                    format!(
                        "unknown retry condition {s:?} (use connect-failure, reset, 5xx, a status \
                         code, or a gRPC status: cancelled, deadline-exceeded, resource-exhausted, \
                         internal, unavailable)"
                    )
                }),
            },
        }
    }
}

/// Reads, parses and validates a config file. The text comes back too: the file watch compares
/// later contents with what was actually loaded, not with a second read that may already be newer.
pub fn load(path: &Path) -> Result<(Config, String), yaml::FileError> {
    let text = std::fs::read_to_string(path).map_err(|e| yaml::FileError::io(path, e))?;
    Ok((yaml::load_str(path, &text)?, text))
}
