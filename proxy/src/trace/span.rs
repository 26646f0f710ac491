//! A finished span as the proxy records it: IDs, times, and a few typed attributes, cheap to
//! build on the request path. It becomes an OTLP span only in the exporter's task.

use std::time::{SystemTime, UNIX_EPOCH};

use opentelemetry_proto::tonic::{
    common::v1::{AnyValue, KeyValue, any_value},
    trace::v1::{Span, Status, span::SpanKind, status::StatusCode},
};

use super::context::{SpanId, TraceId};

/// Which side of a call a span is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A request the proxy received.
    Server,
    /// One try the proxy sent.
    Client,
}

/// An attribute's value.
#[derive(Debug, Clone)]
pub enum Value {
    /// Text.
    Str(Box<str>),
    /// A static text, which costs no allocation.
    Static(&'static str),
    /// A number.
    Int(i64),
}

/// One finished span.
#[derive(Debug, Clone)]
pub struct SpanData {
    /// Its trace.
    pub trace: TraceId,
    /// Its own ID.
    pub id: SpanId,
    /// Its parent, if any.
    pub parent: Option<SpanId>,
    /// Server or client.
    pub kind: Kind,
    /// `METHOD route` for HTTP, `service/method` for gRPC.
    pub name: Box<str>,
    /// Start, nanoseconds since the epoch.
    pub start: u64,
    /// End, likewise.
    pub end: u64,
    /// Attributes, OpenTelemetry semantic-convention names.
    pub attributes: Vec<(&'static str, Value)>,
    /// Whether it failed (a 5xx, a local error, a gRPC status the server's fault).
    pub error: bool,
}

/// Now, as nanoseconds since the epoch.
pub fn now_nanos() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64)
}

impl SpanData {
    /// The OTLP form.
    pub fn to_otlp(&self) -> Span {
        let kind = match self.kind {
            Kind::Server => SpanKind::Server,
            Kind::Client => SpanKind::Client,
        };
        let code = if self.error { StatusCode::Error } else { StatusCode::Unset };
        Span {
            trace_id: self.trace.to_vec(),
            span_id: self.id.to_vec(),
            parent_span_id: self.parent.map(|p| p.to_vec()).unwrap_or_default(),
            // Sampled, and whether the parent is remote (OTLP span flags bits 8 and 9): a server
            // span's parent is the caller's, a client span's our own server span.
            flags: 0x1 | 0x100 | if self.kind == Kind::Server && self.parent.is_some() { 0x200 } else { 0 },
            name: self.name.to_string(),
            kind: kind as i32,
            start_time_unix_nano: self.start,
            end_time_unix_nano: self.end.max(self.start),
            attributes: self.attributes.iter().map(|(k, v)| key_value(k, v)).collect(),
            status: Some(Status { code: code as i32, message: String::new() }),
            ..Span::default()
        }
    }
}

/// An OTLP attribute.
pub fn key_value(key: &str, value: &Value) -> KeyValue {
    let value = match value {
        Value::Str(s) => any_value::Value::StringValue(s.to_string()),
        Value::Static(s) => any_value::Value::StringValue((*s).to_owned()),
        Value::Int(n) => any_value::Value::IntValue(*n),
    };
    KeyValue { key: key.to_owned(), value: Some(AnyValue { value: Some(value) }), ..KeyValue::default() }
}
