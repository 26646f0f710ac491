//! The bodies of requests on their way upstream and of the proxy's own replies: a client's
//! body streamed through (whichever codec read it), a local one, or nothing. The response an
//! endpoint sends back is `http::body::ResponseBody`. Enums rather than boxed trait objects, so
//! forwarding a request allocates no body box. A body that a retry may send again is in
//! [`replay`].

pub mod replay;

use std::{
    pin::Pin,
    task::{Context, Poll},
};

use bytes::Bytes;
use http_body::{Frame, SizeHint};
use hyper::body::Incoming;

pub use crate::http1::BodyError;
use crate::http1::body::RequestBody;

/// A client's request body, as the codec that serves the connection reads it.
#[derive(Debug)]
pub enum ClientBody {
    /// From our HTTP/1.1 server (`http1::server`).
    Http1(RequestBody),
    /// From hyper's HTTP/2 server.
    Http2(Incoming),
}

impl From<Incoming> for ClientBody {
    fn from(b: Incoming) -> Self {
        Self::Http2(b)
    }
}

impl http_body::Body for ClientBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let mut frame = match self.get_mut() {
            Self::Http1(b) => std::task::ready!(Pin::new(b).poll_frame(cx)).map(|f| f.map_err(Into::into)),
            Self::Http2(b) => std::task::ready!(Pin::new(b).poll_frame(cx)).map(|f| f.map_err(Into::into)),
        };
        if let Some(trailers) = frame.as_mut().and_then(|f| f.as_mut().ok()?.trailers_mut()) {
            crate::http1::fields::keep_trailer_fields(trailers);
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Self::Http1(b) => b.is_end_stream(),
            Self::Http2(b) => b.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Self::Http1(b) => b.size_hint(),
            Self::Http2(b) => b.size_hint(),
        }
    }
}

/// A request body going upstream, or a reply the proxy makes.
#[derive(Debug, Default)]
pub enum Body {
    /// No bytes.
    #[default]
    Empty,
    /// A body we made, sent in one frame.
    Full(Option<Bytes>),
    /// A client's body, streamed through frame by frame.
    Streaming(ClientBody),
    /// A client's body as one try sends it: kept for another try, held to a route's
    /// `max_request_bytes`, or both.
    Replay(replay::ReplayBody),
}

/// A request body went over its route's `max_request_bytes`.
#[derive(Debug, thiserror::Error)]
#[error("request body over the route's max_request_bytes")]
pub struct TooLarge;

impl Body {
    /// A body of fixed bytes.
    pub fn full(bytes: impl Into<Bytes>) -> Self {
        Self::Full(Some(bytes.into()))
    }
}

impl http_body::Body for Body {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        match self.get_mut() {
            Self::Empty => Poll::Ready(None),
            Self::Full(b) => Poll::Ready(b.take().map(|b| Ok(Frame::data(b)))),
            Self::Streaming(b) => Pin::new(b).poll_frame(cx),
            Self::Replay(b) => Pin::new(b).poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Self::Empty => true,
            Self::Full(b) => b.is_none(),
            Self::Streaming(b) => b.is_end_stream(),
            Self::Replay(b) => b.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Self::Empty => SizeHint::with_exact(0),
            Self::Full(b) => SizeHint::with_exact(b.as_ref().map_or(0, |b| b.len() as u64)),
            Self::Streaming(b) => b.size_hint(),
            Self::Replay(b) => b.size_hint(),
        }
    }
}
