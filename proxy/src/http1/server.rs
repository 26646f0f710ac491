//! Our HTTP/1.1 server: serves a client connection's requests one after another, in the
//! connection's own task, as the upstream side ([`client`](super::client)) is served in the request's.
//!
//! Why not hyper's server: an idle keep-alive connection kept 18 KiB (16 KiB of buffers, and
//! room for a request's future) where it now keeps about 6; and hyper forgave framing a proxy
//! must refuse, so a second parser (the guard's) read every byte again. Here a request is read
//! into one small buffer (its fields are slices of it), its future is allocated only while it
//! is in flight, and the response head and small bodies go out in one write.
//!
//! While the service works, the connection is still read: a pipelined request waits in the
//! buffer, a reset cancels the request, and a client that half-closes after a whole request
//! (RFC 9112 section 9.6) is answered, as TCP cannot tell that from one that left. A connection
//! closes after a response that says so (the client asked, `max_requests_per_connection`, the
//! proxy is draining, or the request body was not read to its end). A request that cannot be
//! served as it is gets a local 400, 414 or 431 and the connection closes, before anything of it
//! goes upstream.

use std::{
    future::{Future, poll_fn},
    pin::{Pin, pin},
    task::{Context, Poll},
};

use bytes::BytesMut;
use http::{Method, Request, Response, StatusCode, Version};
use tokio::{
    io::{AsyncRead, AsyncWrite},
    sync::watch,
};

use super::{
    Stream,
    body::RequestBody,
    chunked,
    client::Upgraded,
    connection::{Client, Connection, Ended, HEAD_READ, Refusal},
    date,
    feed::{Fed, Feeder},
    fields,
    framing::Framing,
    linger,
    request::{Head, Limits},
    response::{self, Answering},
    upgrade,
    write::{Out, WriteBody, Writer},
};
use crate::{
    drain::{Signal, drained},
    metrics::Rejections,
};

/// What a listener's HTTP/1.1 connections are served with.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    /// Request head limits.
    pub limits: Limits,
    /// Requests served on one connection before it closes (0: no limit).
    pub max_requests: u32,
}

/// What the server needs of the responses it writes, beyond a body it can frame: the connection
/// a 101 switches to, and the replies it makes itself (which status and which words is the
/// proxy's policy, not the codec's).
pub trait Respond: WriteBody + Sized {
    /// The other side of a protocol switch.
    type Upgrade: AsyncRead + AsyncWrite + Unpin;
    /// For a 101 response: the connection to join the client to, once.
    fn take_upgrade(&mut self) -> Option<Upgraded<Self::Upgrade>>;
    /// The reply to a request refused before it was served, and its `reason` label.
    fn refusal(why: &Refusal) -> (Response<Self>, &'static str);
    /// The reply in place of a 101 the client did not ask for, or with no connection to join.
    fn bad_switch() -> Response<Self>;
}

/// How one exchange left the connection.
#[derive(Debug)]
enum Outcome<U> {
    /// Ready for the next request.
    KeepAlive,
    /// To be closed; `unread`: the client may still be sending the request body.
    Close { unread: bool },
    /// The client is gone, or the connection failed mid-exchange.
    Abort,
    /// Switched protocols: join the client to this upstream connection.
    Upgrade(Upgraded<U>),
}

/// Serves HTTP/1.1 requests on `io` with `service` until the connection closes.
pub async fn serve<S, F, Fut, B>(
    io: S,
    settings: Settings,
    drain: &mut watch::Receiver<bool>,
    rejections: &Rejections,
    mut service: F,
) where
    S: Client,
    F: FnMut(Request<RequestBody>) -> Fut,
    Fut: Future<Output = Response<B>>,
    B: Respond,
{
    let drain = pin!(drained(drain));
    let mut drain = Signal::new(drain);
    let mut conn = Connection { io, read: BytesMut::new(), out: Out::default() };
    let mut served = 0u32;
    loop {
        let head = match poll_fn(|cx| conn.poll_head(cx, settings.limits, &mut drain)).await {
            Ok(Some(head)) => head,
            Ok(None) => return,
            Err(Ended::Io(e)) => return tracing::debug!(error = %e, "client connection failed"),
            // The ways a connection ends are boxed: inline, the largest of them would size every
            // connection's task.
            Err(Ended::Refused(e)) => return Box::pin(refuse::<S, B>(conn, e, rejections)).await,
        };
        // A malformed chunk that came with the head is refused before anything goes upstream.
        if head.body == Framing::Chunked && !conn.read.is_empty() {
            if let Err(e) = chunked::check(&conn.read) {
                return Box::pin(refuse::<S, B>(conn, e.into(), rejections)).await;
            }
        }
        served = served.wrapping_add(1);
        let last = settings.max_requests > 0 && served >= settings.max_requests;
        let (req, mut exchange) = Exchange::start(head, last);
        // Boxed: held only while a request is in flight, so an idle connection's task stays small.
        // Allocated, then written: `Box::pin` would build the future on the stack and copy it.
        let mut fut = Box::into_pin(Box::write(Box::new_uninit(), service(req)));
        let outcome = poll_fn(|cx| exchange.poll(cx, &mut conn, fut.as_mut(), &mut drain)).await;
        match outcome {
            Outcome::KeepAlive => conn.trim(),
            Outcome::Close { unread: false } => {
                let _ = tokio::io::AsyncWriteExt::shutdown(&mut conn.io).await;
                return;
            }
            // Closing with unread bytes would reset the connection and could lose the response.
            Outcome::Close { unread: true } => {
                return Box::pin(linger::close_with(conn.io, Vec::new())).await;
            }
            Outcome::Abort => return,
            Outcome::Upgrade(upstream) => {
                let early = conn.read.split().freeze();
                return Box::pin(upgrade::tunnel(&mut conn.io, early, upstream)).await;
            }
        }
    }
}

/// Answers a request that cannot be served, then closes.
async fn refuse<S: Stream, B: Respond>(mut conn: Connection<S>, why: Refusal, rejections: &Rejections) {
    let (reply, code) = B::refusal(&why);
    rejections.count(code);
    tracing::debug!(reason = code, "request refused: {why}");
    let (parts, body) = reply.into_parts();
    let answering = Answering { method: &Method::GET, version: Version::HTTP_11, keep_alive: false };
    let len = body.size_hint().exact();
    let (framing, _) = date::with_now(|d| response::head(&parts, len, answering, d, &mut conn.out.buf));
    let mut writer = Writer::new(body, framing.unwrap_or(Framing::Length(0)));
    let written = poll_fn(|cx| writer.poll(cx, &mut conn.out, &mut conn.io));
    if tokio::time::timeout(linger::LINGER, written).await.is_ok() {
        linger::close_with(conn.io, Vec::new()).await;
    }
}

/// One request and its response.
struct Exchange<B: Respond> {
    method: Method,
    version: Version,
    /// The connection may carry another request after this one.
    keep_alive: bool,
    /// The request asked to switch protocols.
    upgrade: bool,
    /// Reading the request body; `None` once it is read, or there is none.
    feeder: Option<Feeder>,
    /// The request body was not read to its end.
    unread: bool,
    /// The client shut down its sending side after the whole request.
    half_closed: bool,
    /// Writing the response, once the service has answered.
    writer: Option<Writer<B>>,
    upgraded: Option<Upgraded<B::Upgrade>>,
}

impl<B: Respond> Exchange<B> {
    /// The request the service gets, and the exchange that serves it.
    fn start(head: Head, last: bool) -> (Request<RequestBody>, Self) {
        let Head { parts, body, keep_alive, expect_continue } = head;
        let (body, feeder) = match body {
            Framing::Length(0) | Framing::Close => (RequestBody::empty(), None),
            framing => {
                let length = match framing {
                    Framing::Length(n) => Some(n),
                    _ => None,
                };
                let (body, feed) = RequestBody::channel(length);
                (body, Some(Feeder::new(feed, framing, expect_continue)))
            }
        };
        let upgrade = parts.version == Version::HTTP_11 && fields::is_upgrade(&parts.headers);
        let exchange = Self {
            method: parts.method.clone(),
            version: parts.version,
            keep_alive: keep_alive && !last,
            upgrade,
            feeder,
            unread: false,
            half_closed: false,
            writer: None,
            upgraded: None,
        };
        (Request::from_parts(parts, body), exchange)
    }

    fn poll<S: Stream, Fut: Future<Output = Response<B>>>(
        &mut self,
        cx: &mut Context<'_>,
        conn: &mut Connection<S>,
        fut: Pin<&mut Fut>,
        drain: &mut Signal<'_, impl Future<Output = ()>>,
    ) -> Poll<Outcome<B::Upgrade>> {
        if let Some(f) = &mut self.feeder {
            match f.poll(cx, conn, self.writer.is_some()) {
                Poll::Pending => {}
                Poll::Ready(Fed::Complete) => self.feeder = None,
                // On a failure the body got the error and the service answers it; either way the
                // connection closes after the response.
                Poll::Ready(Fed::Dropped | Fed::Failed) => {
                    self.feeder = None;
                    self.unread = true;
                }
            }
        }
        if self.writer.is_none() {
            match fut.poll(cx) {
                Poll::Pending => return self.poll_hangup(cx, conn),
                Poll::Ready(resp) => {
                    let draining = drain.poll_draining(cx);
                    self.writer = Some(self.respond(resp, draining, &mut conn.out));
                }
            }
        }
        let written = match &mut self.writer {
            Some(w) => w.poll(cx, &mut conn.out, &mut conn.io),
            None => Poll::Pending,
        };
        match written {
            Poll::Pending => self.poll_hangup(cx, conn),
            Poll::Ready(Err(e)) => {
                tracing::debug!(error = %e, "response not written to its end");
                Poll::Ready(Outcome::Abort)
            }
            Poll::Ready(Ok(())) => Poll::Ready(match self.upgraded.take() {
                Some(u) => Outcome::Upgrade(u),
                None if self.keep_alive && self.body_read() => Outcome::KeepAlive,
                // Bytes past this request (a CONNECT's payload...) are read off before the close.
                None => Outcome::Close {
                    unread: !self.body_read() || !conn.read.is_empty() || self.method == Method::CONNECT,
                },
            }),
        }
    }

    /// The request body was read to its end (or there was none): the next request is next.
    fn body_read(&self) -> bool {
        self.feeder.is_none() && !self.unread
    }

    /// Queues the response head and returns the writer of its body.
    fn respond(&mut self, resp: Response<B>, draining: bool, out: &mut Out) -> Writer<B> {
        let (mut parts, mut body) = resp.into_parts();
        if parts.status == StatusCode::SWITCHING_PROTOCOLS {
            self.upgraded = if self.upgrade { body.take_upgrade() } else { None };
            if self.upgraded.is_none() {
                // A 101 the client did not ask for, or without a connection to join it to.
                (parts, body) = B::bad_switch().into_parts();
            }
        }
        let keep_alive = self.keep_alive && self.body_read() && !draining;
        let answering = Answering { method: &self.method, version: self.version, keep_alive };
        let len = body.size_hint().exact();
        let (framing, keep_alive) =
            date::with_now(|d| response::head(&parts, len, answering, d, &mut out.buf));
        super::maps::give(parts.headers);
        self.keep_alive = keep_alive;
        match framing {
            Some(f) => Writer::new(body, f),
            None => Writer::discarding(body),
        }
    }

    /// While the request body is read and the service works, watches for the client hanging up,
    /// keeping what it sends next (a pipelined request) in the buffer, up to a head's limit.
    fn poll_hangup<S: Stream>(
        &mut self,
        cx: &mut Context<'_>,
        conn: &mut Connection<S>,
    ) -> Poll<Outcome<B::Upgrade>> {
        if !self.body_read() || self.half_closed {
            return Poll::Pending;
        }
        while conn.read.len() < HEAD_READ {
            match conn.poll_fill(cx, HEAD_READ) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Ok(0)) => {
                    tracing::debug!("client half-closed after its request; answering it");
                    self.half_closed = true;
                    // Nothing more will come: the answer says so, and the connection closes.
                    self.keep_alive = false;
                    return Poll::Pending;
                }
                Poll::Ready(Ok(_)) => {}
                Poll::Ready(Err(e)) => {
                    tracing::debug!(error = %e, "client connection failed before its response");
                    return Poll::Ready(Outcome::Abort);
                }
            }
        }
        Poll::Pending
    }
}
