//! An upstream response body that gives its HTTP/1.1 connection back to the pool once it has
//! been read to its end. Dropped before that, it drops the connection's sender instead, and
//! hyper closes the connection rather than reuse one with a response still on the wire.

use std::{
    fmt,
    net::SocketAddr,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll, ready},
};

use bytes::Bytes;
use http_body::{Body as _, Frame, SizeHint};
use hyper::body::Incoming;

use super::{Pool, h1::Conn};
use crate::http::forward::log_upstream_failure;

/// A response body from an endpoint.
pub struct UpstreamBody {
    inner: Incoming,
    /// The endpoint, for the log when the body fails.
    endpoint: SocketAddr,
    /// The pool and the HTTP/1.1 connection to return to it; none for HTTP/2 (multiplexed,
    /// nothing to return) or once returned.
    back: Option<(Arc<Pool>, Conn)>,
}

impl UpstreamBody {
    pub(super) fn new(inner: Incoming, endpoint: SocketAddr, back: Option<(Arc<Pool>, Conn)>) -> Self {
        Self { inner, endpoint, back }
    }

    fn check_in(&mut self) {
        if let Some((pool, conn)) = self.back.take() {
            pool.checkin(conn);
        }
    }
}

impl http_body::Body for UpstreamBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = self.get_mut();
        let frame = ready!(Pin::new(&mut this.inner).poll_frame(cx));
        match &frame {
            // A body of known length ends with its last byte: readers may stop polling there.
            None => this.check_in(),
            Some(Ok(_)) if this.inner.is_end_stream() => this.check_in(),
            Some(Ok(_)) => {}
            Some(Err(e)) => {
                // The client sees the response cut short (a reset stream, or a closed connection).
                this.back = None;
                log_upstream_failure(this.endpoint, "upstream response body failed", e);
            }
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for UpstreamBody {
    fn drop(&mut self) {
        // Empty bodies (HEAD, 204, 304) and readers that stop at the declared length end here.
        if self.back.is_some() && self.inner.is_end_stream() {
            self.check_in();
        }
    }
}

impl fmt::Debug for UpstreamBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UpstreamBody").field("inner", &self.inner).finish_non_exhaustive()
    }
}
