//! The access log: one line per request (target `pillion::access`), written when the request is
//! answered, or for a gRPC call whose status comes in trailers, when its response ends.

use std::{net::SocketAddr, time::Duration};

use http::HeaderValue;

/// A request's part of its access log line, kept only while the log is on.
#[derive(Debug)]
pub struct AccessLine {
    /// The request's method.
    pub method: http::Method,
    /// Its target.
    pub uri: http::Uri,
    /// Its `x-request-id`.
    pub request_id: HeaderValue,
    /// Its trace, when tracing is on.
    pub trace_id: Option<crate::trace::TraceId>,
}

/// How the request went.
#[derive(Debug)]
pub struct Outcome<'a> {
    /// `inbound` or `outbound`.
    pub direction: &'static str,
    /// The client's address.
    pub client: SocketAddr,
    /// The response status.
    pub status: u16,
    /// The service label.
    pub service: &'a str,
    /// The route label.
    pub route: &'a str,
    /// Time to the response head.
    pub elapsed: Duration,
    /// The local reply's cause (`x-pillion-error`), or empty.
    pub error: &'a str,
    /// A gRPC call's final status; empty for other requests.
    pub grpc_status: &'a str,
}

impl AccessLine {
    /// Writes the line.
    pub fn write(&self, o: &Outcome<'_>) {
        tracing::info!(
            target: "pillion::access",
            direction = o.direction,
            client = %o.client,
            method = %self.method,
            path = self.uri.path(),
            status = o.status,
            service = o.service,
            route = o.route,
            duration_ms = o.elapsed.as_secs_f64() * 1000.0,
            request_id = self.request_id.to_str().unwrap_or("-"),
            error = o.error,
            grpc_status = o.grpc_status,
            trace_id = self.trace_id.map(|t| crate::trace::context::to_hex(&t)).as_deref().unwrap_or(""),
        );
    }
}
