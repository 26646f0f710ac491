//! An upstream response body. Over HTTP/1.1 it gives its connection back to the pool once it
//! has been read to its end; dropped before that, the connection closes with it (one with a
//! response still on the wire is never reused).

use std::{
    fmt,
    net::SocketAddr,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll, ready},
};

use bytes::Bytes;
use http_body::{Frame, SizeHint};
use hyper::body::Incoming;

use super::Pool;
use crate::{
    body::Body,
    http1::{BodyError, client::ResponseBody},
    upstream::{Upgraded, UpstreamStream, log::log_upstream_failure},
};

/// A response body from an endpoint.
pub struct UpstreamBody {
    inner: Inner,
    /// The endpoint, for the log when the body fails.
    endpoint: SocketAddr,
}

enum Inner {
    /// HTTP/1.1, and the pool its connection returns to (none once returned).
    Http1(ResponseBody<UpstreamStream, Body>, Option<Arc<Pool>>),
    /// HTTP/2: multiplexed, nothing to return.
    Http2(Incoming),
}

impl UpstreamBody {
    pub(super) fn http1(
        body: ResponseBody<UpstreamStream, Body>,
        endpoint: SocketAddr,
        pool: Arc<Pool>,
    ) -> Self {
        let mut b = Self { inner: Inner::Http1(body, Some(pool)), endpoint };
        // Empty bodies (HEAD, 204, 304) are complete already.
        b.check_in();
        b
    }

    pub(super) fn http2(body: Incoming, endpoint: SocketAddr) -> Self {
        Self { inner: Inner::Http2(body), endpoint }
    }

    /// Returns the HTTP/1.1 connection to the pool if its exchange is complete.
    fn check_in(&mut self) {
        if let Inner::Http1(body, pool @ Some(_)) = &mut self.inner {
            if body.is_end_stream() {
                if let (Some(conn), Some(pool)) = (body.take_reusable(), pool.take()) {
                    pool.checkin(conn);
                }
            }
        }
    }

    /// The upstream connection after a 101 Switching Protocols.
    pub fn take_upgrade(&mut self) -> Option<Upgraded> {
        match &mut self.inner {
            Inner::Http1(body, _) => body.take_upgrade(),
            Inner::Http2(_) => None,
        }
    }
}

impl http_body::Body for UpstreamBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let this = self.get_mut();
        let mut frame = match &mut this.inner {
            Inner::Http1(body, _) => ready!(body.poll_frame(cx)).map(|r| r.map_err(BodyError::from)),
            Inner::Http2(body) => ready!(Pin::new(body).poll_frame(cx)).map(|r| r.map_err(BodyError::from)),
        };
        if let Some(trailers) = frame.as_mut().and_then(|f| f.as_mut().ok()?.trailers_mut()) {
            crate::http1::fields::keep_trailer_fields(trailers);
        }
        match &frame {
            // A body of known length ends with its last byte: readers may stop polling there.
            None | Some(Ok(_)) => this.check_in(),
            // The client sees the response cut short (a reset stream, or a closed connection).
            Some(Err(e)) => log_upstream_failure(this.endpoint, "upstream response body failed", &**e),
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        match &self.inner {
            Inner::Http1(body, _) => body.is_end_stream(),
            Inner::Http2(body) => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.inner {
            Inner::Http1(body, _) => body.size_hint(),
            Inner::Http2(body) => body.size_hint(),
        }
    }
}

impl fmt::Debug for UpstreamBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UpstreamBody").field("endpoint", &self.endpoint).finish_non_exhaustive()
    }
}
