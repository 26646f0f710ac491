//! The body of a response on its way to the client: an endpoint's, streamed through (its
//! connection goes back to the pool at the end), or one the proxy made. It is what both servers
//! write, and it tells our HTTP/1.1 server which replies to make itself.

use std::{
    pin::Pin,
    task::{Context, Poll},
};

use bytes::Bytes;
use http::Response;
use http_body::{Frame, SizeHint};

use super::{grpc_end::GrpcBody, reply::LocalError};
use crate::{
    body::{Body, BodyError},
    http1::{client::Upgraded, connection::Refusal, server::Respond},
    upstream::{UpstreamBody, UpstreamStream},
};

/// A response body.
#[derive(Debug)]
pub enum ResponseBody {
    /// A reply the proxy made.
    Local(Body),
    /// An endpoint's response.
    Upstream(UpstreamBody),
    /// An endpoint's response to a gRPC call, whose status is in its trailers.
    Grpc(GrpcBody),
}

impl From<Body> for ResponseBody {
    fn from(b: Body) -> Self {
        Self::Local(b)
    }
}

impl From<UpstreamBody> for ResponseBody {
    fn from(b: UpstreamBody) -> Self {
        Self::Upstream(b)
    }
}

impl http_body::Body for ResponseBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        match self.get_mut() {
            Self::Local(b) => Pin::new(b).poll_frame(cx),
            Self::Upstream(b) => Pin::new(b).poll_frame(cx),
            Self::Grpc(b) => Pin::new(b).poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Self::Local(b) => b.is_end_stream(),
            Self::Upstream(b) => b.is_end_stream(),
            Self::Grpc(b) => b.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Self::Local(b) => b.size_hint(),
            Self::Upstream(b) => b.size_hint(),
            Self::Grpc(b) => b.size_hint(),
        }
    }
}

impl Respond for ResponseBody {
    type Upgrade = UpstreamStream;

    fn take_upgrade(&mut self) -> Option<Upgraded<UpstreamStream>> {
        match self {
            Self::Upstream(b) => b.take_upgrade(),
            Self::Local(_) | Self::Grpc(_) => None,
        }
    }

    fn refusal(why: &Refusal) -> (Response<Self>, &'static str) {
        let reply = LocalError::from(why);
        (reply.response(), reply.status_and_code().1)
    }

    fn bad_switch() -> Response<Self> {
        LocalError::UpstreamReset.response()
    }
}
