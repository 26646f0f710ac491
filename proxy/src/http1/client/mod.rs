//! Our HTTP/1.1 client: one request at a time on an upstream connection, run entirely in the
//! task of the request that uses it.
//!
//! Why not hyper's client: it runs each connection in a task of its own and hands every request,
//! response and body chunk across channels to it. That hand-off was a third of the proxy's
//! per-request CPU, and each wake-up put the request behind whatever else the runtime had queued.
//! Here the request's task writes the request and reads the response straight off the socket,
//! as nginx does; an idle connection is just a socket and its buffers in the endpoint's pool.
//! Client connections get the same treatment from `http1::server`; hyper serves HTTP/2, both
//! sides. Generic over the stream (`Transport`) and the request body.

mod body;
pub mod decode;
pub mod encode;

use std::{
    future::poll_fn,
    io,
    pin::Pin,
    task::{Context, Poll, Waker},
};

use bytes::{Bytes, BytesMut};
use http::{Method, Request, Response, StatusCode, request::Parts};

pub use body::ResponseBody;
use tokio::io::{AsyncRead, AsyncWrite};

use super::{
    BodyError,
    chunked::ChunkError,
    write::{Out, WriteBody, WriteError, Writer},
};

/// Room kept free in the read buffer before each read.
const READ_SPACE: usize = 8 * 1024;

/// Why an HTTP/1.1 exchange failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Writing the request failed (and no response came).
    #[error("writing the request: {0}")]
    Write(#[source] io::Error),
    /// Reading the response failed.
    #[error("reading the response: {0}")]
    Read(#[source] io::Error),
    /// The upstream closed the connection before a whole response head.
    #[error("connection closed before the response head")]
    ClosedBeforeHead,
    /// The upstream closed the connection inside a body it had framed.
    #[error("connection closed before the end of the response body")]
    ClosedInBody,
    /// The response head is not HTTP/1.x.
    #[error("invalid response head: {0}")]
    Parse(#[source] httparse::Error),
    /// The status code is outside 100-999.
    #[error("invalid status code {0}")]
    Status(u16),
    /// A header name is not valid.
    #[error("invalid header name")]
    HeaderName,
    /// A header value is not valid.
    #[error("invalid header value")]
    HeaderValue,
    /// The response head is over the size we accept.
    #[error("response head over {} bytes", decode::MAX_HEAD)]
    HeadTooLarge,
    /// Both `content-length` and `transfer-encoding`.
    #[error("response has both content-length and transfer-encoding")]
    AmbiguousFraming,
    /// `content-length` values that are invalid or disagree.
    #[error("invalid content-length")]
    ContentLength,
    /// A chunked body that does not follow the syntax.
    #[error(transparent)]
    Chunk(#[from] ChunkError),
    /// The client's request body failed (its error is the source).
    #[error("request body failed")]
    RequestBody(#[source] BodyError),
    /// The request body did not match the length it declared.
    #[error("request body length differs from its content-length")]
    RequestLength,
}

impl From<WriteError> for Error {
    fn from(e: WriteError) -> Self {
        match e {
            WriteError::Io(e) => Self::Write(e),
            WriteError::Body(e) => Self::RequestBody(e),
            WriteError::Length => Self::RequestLength,
        }
    }
}

impl Error {
    /// The client's side failed, not the upstream's.
    pub fn is_client(&self) -> bool {
        matches!(self, Self::RequestBody(_) | Self::RequestLength)
    }

    /// The upstream closed or reset the connection (rather than answering badly).
    pub fn is_upstream_close(&self) -> bool {
        matches!(self, Self::ClosedBeforeHead | Self::Write(_) | Self::Read(_))
    }
}

/// A stream to an upstream.
pub trait Transport: AsyncRead + AsyncWrite + Unpin + Send {
    /// Between exchanges, whether the upstream has neither sent anything nor closed the stream,
    /// when that can be told without a read; `None` when only a read can tell.
    fn quiet(&self) -> Option<bool> {
        None
    }
}

impl Transport for tokio::net::TcpStream {
    /// While no readiness event has come in this is one atomic load, with no syscall and no
    /// waker to register.
    fn quiet(&self) -> Option<bool> {
        Some(matches!(self.try_read(&mut [0; 1]), Err(e) if e.kind() == io::ErrorKind::WouldBlock))
    }
}

/// An upstream HTTP/1.1 connection between exchanges: the socket and its buffers.
#[derive(Debug)]
pub struct Conn<S> {
    io: S,
    /// Bytes read and not yet used.
    read: BytesMut,
    /// Bytes to write.
    out: Out,
}

/// An upstream connection after a 101: the socket, and what the upstream sent after the head.
#[derive(Debug)]
pub struct Upgraded<S> {
    /// The socket.
    pub io: S,
    /// Bytes already read past the 101's head, to be passed on first.
    pub read: Bytes,
}

impl<S: Transport> Conn<S> {
    /// A fresh connection, boxed once: it moves in and out of the pool and the response body
    /// as a pointer rather than as its sockets and buffers.
    pub fn new(io: S) -> Box<Self> {
        Box::new(Self { io, read: BytesMut::new(), out: Out::default() })
    }

    /// Whether an idle connection can carry a request: the upstream has neither closed it nor
    /// sent anything (an idle connection has nothing to say). Never waits.
    pub fn is_usable(&mut self) -> bool {
        if let Some(quiet) = self.io.quiet() {
            return quiet;
        }
        let mut cx = Context::from_waker(Waker::noop());
        matches!(self.poll_fill(&mut cx), Poll::Pending)
    }

    /// Sends `req` and reads the response head; the body is read from the socket as the response
    /// body is polled. Dropping either closes the connection (nothing half-done is reused).
    pub async fn send<B: WriteBody>(
        self: Box<Self>,
        req: Request<B>,
    ) -> Result<Response<ResponseBody<S, B>>, Error> {
        self.send_or_give_back(req).await.map_err(|(e, _)| e)
    }

    /// [`Conn::send`], giving the request's head back with the error when the upstream sent
    /// not one byte of a response, for a caller that may send it again.
    pub async fn send_or_give_back<B: WriteBody>(
        mut self: Box<Self>,
        req: Request<B>,
    ) -> Result<Response<ResponseBody<S, B>>, (Error, Option<Parts>)> {
        let (parts, body) = req.into_parts();
        let framing = encode::head(&parts, &body, &mut self.out.buf);
        let mut writer = Some(Writer::new(body, framing));
        let mut write_failed = None;
        let head = match poll_fn(|cx| self.poll_head(cx, &parts.method, &mut writer, &mut write_failed)).await
        {
            Ok(head) => head,
            Err(e) => return Err((e, self.read.is_empty().then_some(parts))),
        };
        let status = head.parts.status;
        super::maps::give(parts.headers);
        Ok(Response::from_parts(
            head.parts,
            ResponseBody::new(self, writer, head.framing, head.keep_alive, status),
        ))
    }

    /// Writes the request while reading for the response head (an upstream may answer, say with
    /// a 413, before it has read the upload); skips interim (1xx) heads except a 101.
    fn poll_head<B: WriteBody>(
        &mut self,
        cx: &mut Context<'_>,
        method: &Method,
        writer: &mut Option<Writer<B>>,
        write_failed: &mut Option<io::Error>,
    ) -> Poll<Result<decode::Head, Error>> {
        if let Some(w) = writer {
            match w.poll(cx, &mut self.out, &mut self.io) {
                Poll::Ready(Ok(())) => *writer = None,
                // Keep reading: an upstream that answers and closes makes our write fail.
                Poll::Ready(Err(WriteError::Io(e))) => {
                    *writer = None;
                    *write_failed = Some(e);
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e.into())),
                Poll::Pending => {}
            }
        }
        loop {
            if let Some(head) = decode::head(&mut self.read, method)? {
                if head.parts.status.is_informational()
                    && head.parts.status != StatusCode::SWITCHING_PROTOCOLS
                {
                    continue;
                }
                if write_failed.is_some() {
                    // A response to a request we could not finish: the connection goes with it.
                    return Poll::Ready(Ok(decode::Head { keep_alive: false, ..head }));
                }
                return Poll::Ready(Ok(head));
            }
            match ready_or_pending(self.poll_fill(cx))? {
                Some(0) => {
                    return Poll::Ready(Err(write_failed
                        .take()
                        .map_or(Error::ClosedBeforeHead, Error::Write)));
                }
                Some(_) => {}
                None => return Poll::Pending,
            }
        }
    }

    /// Reads more into the buffer; `Ready(Ok(0))` at the end of the stream.
    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        if self.read.capacity() - self.read.len() < READ_SPACE / 2 {
            self.read.reserve(READ_SPACE);
        }
        tokio_util::io::poll_read_buf(Pin::new(&mut self.io), cx, &mut self.read)
    }
}

/// `Poll<io::Result<T>>` as `Result<Option<T>, Error>`, read errors typed.
fn ready_or_pending<T>(p: Poll<io::Result<T>>) -> Result<Option<T>, Error> {
    match p {
        Poll::Ready(Ok(v)) => Ok(Some(v)),
        Poll::Ready(Err(e)) => Err(Error::Read(e)),
        Poll::Pending => Ok(None),
    }
}

#[cfg(test)]
mod tests;
