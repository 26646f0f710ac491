//! Distributed tracing: the proxy takes part in its callers' traces (W3C Trace Context, b3),
//! starts one when there is none (sampled at the configured share), and records a server span
//! per request and a client span per try sent upstream, which `export` ships over OTLP.
//!
//! An unsampled request costs a header read (and, for a new trace, one header written); only
//! sampled ones allocate spans.

pub mod context;
pub mod export;
pub mod span;

use std::net::SocketAddr;

use http::{HeaderMap, Method};
use pillion_config::trace::TracingConfig;

pub use context::{Format, SpanId, TraceId};
pub use export::Spans;
use span::{Kind, SpanData, Value, now_nanos};

/// What the request's part in a trace is.
#[derive(Debug)]
pub enum Decision {
    /// Tracing is off: headers pass as they came.
    Off,
    /// The trace is not recorded (the parent said so, or sampling did); its ID is logged.
    Unsampled(TraceId),
    /// Recorded: the request's server span, open until its response.
    Sampled(Box<ServerSpan>),
}

impl Decision {
    /// The trace's ID, when there is one.
    pub fn trace_id(&self) -> Option<TraceId> {
        match self {
            Self::Off => None,
            Self::Unsampled(t) => Some(*t),
            Self::Sampled(s) => Some(s.trace),
        }
    }
}

/// Reads the caller's trace context from `headers` and decides; a new trace gets its context
/// written into `headers`, so that the app and the next hops join it.
pub fn begin(
    cfg: Option<&TracingConfig>,
    headers: &mut HeaderMap,
    method: &Method,
    path: &str,
    grpc: bool,
) -> Decision {
    let Some(cfg) = cfg else { return Decision::Off };
    let (trace, parent, format) = match context::read(headers) {
        Some(p) if !p.sampled => return Decision::Unsampled(p.trace),
        Some(p) => (p.trace, Some(p.span), p.format),
        None => {
            let trace = random_trace_id();
            if fastrand::f64() >= cfg.sampling {
                context::write(headers, &trace, &random_span_id(), false, Format::W3c);
                return Decision::Unsampled(trace);
            }
            (trace, None, Format::W3c)
        }
    };
    let mut attributes = Vec::with_capacity(12);
    attributes.push(("http.request.method", Value::Str(method.as_str().into())));
    attributes.push(("url.path", Value::Str(path.into())));
    Decision::Sampled(Box::new(ServerSpan {
        trace,
        id: random_span_id(),
        parent,
        format,
        start: now_nanos(),
        method: method.clone(),
        path: path.into(),
        grpc,
        attributes,
    }))
}

/// A sampled request's own span.
#[derive(Debug)]
pub struct ServerSpan {
    trace: TraceId,
    id: SpanId,
    parent: Option<SpanId>,
    format: Format,
    start: u64,
    method: Method,
    path: Box<str>,
    grpc: bool,
    attributes: Vec<(&'static str, Value)>,
}

/// How a request ended, for its server span.
#[derive(Debug)]
pub struct ServerEnd<'a> {
    /// `inbound` or `outbound`.
    pub direction: &'static str,
    /// The service it went to.
    pub service: &'a str,
    /// The route it took.
    pub route: &'a str,
    /// The client's address.
    pub client: SocketAddr,
    /// The client's verified identity.
    pub identity: Option<&'a str>,
    /// The response status.
    pub status: u16,
    /// A gRPC call's status, if known.
    pub grpc_status: Option<u8>,
    /// The local reply's cause, or empty.
    pub error: &'a str,
}

/// How one try ended, for its client span.
#[derive(Debug)]
pub struct ClientEnd<'a> {
    /// The endpoint it went to.
    pub endpoint: SocketAddr,
    /// The identity the endpoint proved.
    pub identity: Option<&'a str>,
    /// The route the request took.
    pub route: &'a str,
    /// Which try of the request (1 is the first).
    pub try_: u32,
    /// The response status, or the local error that ended it.
    pub result: Result<u16, &'static str>,
}

/// A client span in flight.
#[derive(Debug)]
pub struct ClientSpan {
    id: SpanId,
    start: u64,
}

impl ServerSpan {
    /// Opens a client span for one try and writes its context into the try's `headers`.
    pub fn client(&self, headers: &mut HeaderMap) -> ClientSpan {
        let id = random_span_id();
        context::write(headers, &self.trace, &id, true, self.format);
        ClientSpan { id, start: now_nanos() }
    }

    /// Ends the client span `c` and queues it.
    pub fn end_client(&self, spans: &Spans, c: ClientSpan, e: ClientEnd<'_>) {
        let mut attributes = vec![
            ("http.request.method", Value::Str(self.method.as_str().into())),
            ("server.address", Value::Str(e.endpoint.ip().to_string().into())),
            ("server.port", Value::Int(i64::from(e.endpoint.port()))),
            ("pillion.try", Value::Int(i64::from(e.try_))),
        ];
        if let Some(id) = e.identity {
            attributes.push(("pillion.peer.identity", Value::Str(id.into())));
        }
        let error = match e.result {
            Ok(status) => {
                attributes.push(("http.response.status_code", Value::Int(i64::from(status))));
                status >= 500
            }
            Err(cause) => {
                attributes.push(("error.type", Value::Static(cause)));
                true
            }
        };
        spans.record(SpanData {
            trace: self.trace,
            id: c.id,
            parent: Some(self.id),
            kind: Kind::Client,
            name: self.name(Some(e.route)),
            start: c.start,
            end: now_nanos(),
            attributes,
            error,
        });
    }

    /// Ends the request's span and queues it.
    pub fn end(self, spans: &Spans, e: ServerEnd<'_>) {
        let name = self.name(Some(e.route));
        let Self { trace, id, parent, start, path, mut attributes, .. } = self;
        attributes.extend([
            ("pillion.direction", Value::Static(e.direction)),
            ("pillion.service", Value::Str(e.service.into())),
            ("pillion.route", Value::Str(e.route.into())),
            ("client.address", Value::Str(e.client.ip().to_string().into())),
            ("http.response.status_code", Value::Int(i64::from(e.status))),
        ]);
        if let Some(id) = e.identity {
            attributes.push(("pillion.peer.identity", Value::Str(id.into())));
        }
        if !e.error.is_empty() {
            attributes.push(("error.type", Value::Str(e.error.into())));
        }
        let mut error = e.status >= 500;
        if let Some(code) = e.grpc_status {
            rpc_attributes(&path, &mut attributes);
            attributes.push(("rpc.grpc.status_code", Value::Int(i64::from(code))));
            // The server's fault, per the RPC conventions: UNKNOWN, DEADLINE_EXCEEDED,
            // UNIMPLEMENTED, INTERNAL, UNAVAILABLE, DATA_LOSS.
            error = matches!(code, 2 | 4 | 12 | 13 | 14 | 15);
        }
        spans.record(SpanData {
            trace,
            id,
            parent,
            kind: Kind::Server,
            name,
            start,
            end: now_nanos(),
            attributes,
            error,
        });
    }

    /// `service/method` for gRPC paths, else `METHOD route`.
    fn name(&self, route: Option<&str>) -> Box<str> {
        match (grpc_path(&self.path).filter(|_| self.grpc), route) {
            (Some((service, m)), _) => format!("{service}/{m}").into(),
            (None, Some(route)) => format!("{} {route}", self.method).into(),
            (None, None) => self.method.as_str().into(),
        }
    }
}

/// `/package.Service/Method` split, when `path` has that shape.
fn grpc_path(path: &str) -> Option<(&str, &str)> {
    let (service, method) = path.strip_prefix('/')?.split_once('/')?;
    (!service.is_empty() && !method.is_empty() && !method.contains('/')).then_some((service, method))
}

fn rpc_attributes(path: &str, attributes: &mut Vec<(&'static str, Value)>) {
    attributes.push(("rpc.system", Value::Static("grpc")));
    if let Some((service, method)) = grpc_path(path) {
        attributes.push(("rpc.service", Value::Str(service.into())));
        attributes.push(("rpc.method", Value::Str(method.into())));
    }
}

fn random_trace_id() -> TraceId {
    // Never all zeros, which means "no trace".
    let n = fastrand::u128(1..);
    n.to_be_bytes()
}

fn random_span_id() -> SpanId {
    fastrand::u64(1..).to_be_bytes()
}
