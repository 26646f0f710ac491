//! A request's record, however it ended: its count and duration in the metrics, its access log
//! line and its server span. Written when the response head goes out, or, for a gRPC call whose
//! status is still to come in the trailers, when its response ends (`grpc_end`).

use std::{net::SocketAddr, sync::Arc, time::Duration};

use http::{HeaderValue, Response};
use pillion_config::GrpcCode;
use tokio::time::Instant;

use super::{Conn, access, body::ResponseBody, grpc, grpc_end, headers, series::Sample};
use crate::{
    live::Shared,
    trace::{Decision, ServerEnd, ServerSpan},
};

/// What a request's record needs once its parts went upstream: whether it is a gRPC call, the
/// access log's part (if the log is on) and the server span (if the trace is sampled).
#[derive(Debug)]
pub struct Record {
    grpc: bool,
    line: Option<access::AccessLine>,
    span: Option<Box<ServerSpan>>,
}

/// How a request ended, for its log line and span.
#[derive(Debug)]
pub struct Closing<'a> {
    /// `inbound` or `outbound`.
    pub direction: &'static str,
    /// The client's address.
    pub client: SocketAddr,
    /// The client's verified identity.
    pub identity: Option<&'a str>,
    /// The response status.
    pub status: u16,
    /// The service label.
    pub service: &'a str,
    /// The route label.
    pub route: &'a str,
    /// Time to the response head.
    pub elapsed: Duration,
    /// The local reply's cause, or empty.
    pub error: &'a str,
    /// A gRPC call's final status.
    pub grpc_status: Option<GrpcCode>,
}

/// Writes the access log line and ends the span, once the request's outcome is known.
pub fn close(
    shared: &Shared,
    line: Option<access::AccessLine>,
    span: Option<Box<ServerSpan>>,
    c: &Closing<'_>,
) {
    let grpc_status = c.grpc_status.map_or("", GrpcCode::as_str);
    if let Some(line) = line {
        line.write(&access::Outcome {
            direction: c.direction,
            client: c.client,
            status: c.status,
            service: c.service,
            route: c.route,
            elapsed: c.elapsed,
            error: c.error,
            grpc_status,
        });
    }
    if let Some(span) = span {
        span.end(
            &shared.spans,
            ServerEnd {
                direction: c.direction,
                service: c.service,
                route: c.route,
                client: c.client,
                identity: c.identity,
                status: c.status,
                grpc_status: c.grpc_status.map(GrpcCode::value),
                error: c.error,
            },
        );
    }
}

impl Record {
    /// Keeps what the access log will need (nothing when it is off) and the trace `decision`.
    pub fn new(
        shared: &Shared,
        grpc: bool,
        method: &http::Method,
        uri: &http::Uri,
        request_id: &HeaderValue,
        decision: Decision,
    ) -> Self {
        let trace_id = decision.trace_id();
        let line = shared.access_log.then(|| access::AccessLine {
            method: method.clone(),
            uri: uri.clone(),
            request_id: request_id.clone(),
            trace_id,
        });
        let span = match decision {
            Decision::Sampled(span) => Some(span),
            Decision::Off | Decision::Unsampled(_) => None,
        };
        Self { grpc, line, span }
    }

    /// The server span, when the request is traced.
    pub fn span(&self) -> Option<&ServerSpan> {
        self.span.as_deref()
    }

    /// Records the request however it ended: now, or for a gRPC call whose status is still to
    /// come, when its response ends. `target` is its (service, route), once routed.
    pub fn finish(
        self,
        shared: &Arc<Shared>,
        conn: &Conn,
        start: Instant,
        target: Option<(&str, &str)>,
        resp: Response<ResponseBody>,
        tls: bool,
    ) -> Response<ResponseBody> {
        let elapsed = start.elapsed();
        let (service, route) = target.unwrap_or(("unknown", "none"));
        let status = self.grpc.then(|| {
            grpc::head_status(resp.status(), resp.headers(), http_body::Body::is_end_stream(resp.body()))
        });
        let mut grpc_status = status.flatten();
        let mut sample = Sample {
            direction: conn.direction.as_str(),
            service,
            route,
            client_id: conn.client.as_ref().map_or("", |c| &*c.label),
            tls,
            code: resp.status(),
            grpc_status: grpc_status.map_or("", GrpcCode::as_str),
            seconds: elapsed.as_secs_f64(),
        };
        if status == Some(None) {
            let (parts, body) = resp.into_parts();
            match body {
                ResponseBody::Upstream(body) => {
                    let series = conn.series.series(&shared.metrics, &sample);
                    series.observe(sample.seconds);
                    let keep_error = self.line.is_some() || self.span.is_some();
                    let end = grpc_end::CallEnd {
                        shared: shared.clone(),
                        series,
                        code: parts.status,
                        direction: sample.direction,
                        client: conn.peer,
                        identity: self.span.as_ref().and(conn.client.as_ref()).map(|c| c.header.clone()),
                        elapsed,
                        error: keep_error.then(|| parts.headers.get(&headers::ERROR).cloned()).flatten(),
                        line: self.line,
                        span: self.span,
                    };
                    let body = ResponseBody::Grpc(grpc_end::GrpcBody::new(body, end));
                    return Response::from_parts(parts, body);
                }
                // Only an endpoint's body has trailers: nothing more will tell the status.
                body => {
                    sample.grpc_status = GrpcCode::UNKNOWN.as_str();
                    grpc_status = Some(GrpcCode::UNKNOWN);
                    let resp = Response::from_parts(parts, body);
                    return self.record(shared, conn, sample, grpc_status, resp, elapsed);
                }
            }
        }
        self.record(shared, conn, sample, grpc_status, resp, elapsed)
    }

    fn record(
        self,
        shared: &Shared,
        conn: &Conn,
        sample: Sample<'_>,
        grpc_status: Option<GrpcCode>,
        resp: Response<ResponseBody>,
        elapsed: Duration,
    ) -> Response<ResponseBody> {
        conn.series.record(&shared.metrics, sample);
        if self.line.is_some() || self.span.is_some() {
            let closing = Closing {
                direction: sample.direction,
                client: conn.peer,
                identity: conn.client.as_ref().map(|c| c.id.as_str()),
                status: resp.status().as_u16(),
                service: sample.service,
                route: sample.route,
                elapsed,
                error: resp.headers().get(&headers::ERROR).and_then(|v| v.to_str().ok()).unwrap_or(""),
                grpc_status,
            };
            close(shared, self.line, self.span, &closing);
        }
        resp
    }
}
