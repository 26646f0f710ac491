//! A gRPC response streamed to its end. Its status comes in the trailers, after the head has
//! gone to the client, so its request is counted (with `grpc_status`) and logged when the
//! trailers pass, or when the stream ends or is dropped without them.

use std::{
    net::SocketAddr,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll, ready},
    time::Duration,
};

use bytes::Bytes;
use http::{HeaderValue, StatusCode};
use http_body::{Frame, SizeHint};
use pillion_config::GrpcCode;

use super::{access, headers, record, series::Series};
use crate::{body::BodyError, live::Shared, upstream::UpstreamBody};

/// An endpoint's gRPC response body, and what to record when it ends.
#[derive(Debug)]
pub struct GrpcBody {
    body: UpstreamBody,
    /// Taken when recorded.
    end: Option<Box<CallEnd>>,
}

/// What the request's record needs once its status is known.
#[derive(Debug)]
pub struct CallEnd {
    /// Metrics.
    pub shared: Arc<Shared>,
    /// The request's series, its duration already observed.
    pub series: Arc<Series>,
    /// The response status.
    pub code: StatusCode,
    /// `inbound` or `outbound`.
    pub direction: &'static str,
    /// The client's address.
    pub client: SocketAddr,
    /// Time to the response head.
    pub elapsed: Duration,
    /// The access log line, when the log is on.
    pub line: Option<access::AccessLine>,
    /// The response's `x-pillion-error`, for the log and the span.
    pub error: Option<HeaderValue>,
    /// The client's verified identity, for the span.
    pub identity: Option<HeaderValue>,
    /// The server span, when the call is traced.
    pub span: Option<Box<crate::trace::ServerSpan>>,
}

impl CallEnd {
    fn record(self, status: GrpcCode) {
        self.series.count(&self.shared.metrics, self.code, status.as_str());
        if self.line.is_none() && self.span.is_none() {
            return;
        }
        let closing = record::Closing {
            direction: self.direction,
            client: self.client,
            identity: self.identity.as_ref().and_then(|v| v.to_str().ok()),
            status: self.code.as_u16(),
            service: self.series.service(),
            route: self.series.route(),
            elapsed: self.elapsed,
            error: self.error.as_ref().and_then(|v| v.to_str().ok()).unwrap_or(""),
            grpc_status: Some(status),
        };
        record::close(&self.shared, self.line, self.span, &closing);
    }
}

impl GrpcBody {
    /// Watches `body` for the call's status.
    pub fn new(body: UpstreamBody, end: CallEnd) -> Self {
        Self { body, end: Some(Box::new(end)) }
    }

    fn end(&mut self, status: GrpcCode) {
        if let Some(end) = self.end.take() {
            end.record(status);
        }
    }
}

impl http_body::Body for GrpcBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let this = self.get_mut();
        let frame = ready!(Pin::new(&mut this.body).poll_frame(cx));
        match &frame {
            Some(Ok(f)) => {
                if let Some(trailers) = f.trailers_ref() {
                    let status = trailers.get(&headers::GRPC_STATUS);
                    this.end(status.map_or(GrpcCode::UNKNOWN, |v| GrpcCode::from_value(v.as_bytes())));
                } else if this.body.is_end_stream() {
                    // The last data frame, and no trailers: the client's reader stops here.
                    this.end(GrpcCode::UNKNOWN);
                }
            }
            // The client sees the stream reset.
            Some(Err(_)) => this.end(GrpcCode::INTERNAL),
            // Ended without trailers: a gRPC client reads no status.
            None => this.end(GrpcCode::UNKNOWN),
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

impl Drop for GrpcBody {
    /// Dropped before its end: the client went away or cancelled the call.
    fn drop(&mut self) {
        self.end(GrpcCode::CANCELLED);
    }
}
