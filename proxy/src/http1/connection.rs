//! A client connection as the HTTP/1.1 server holds it: the socket, its read and write
//! buffers, and reading the next request head out of them (with the drain signal and the
//! header timeout in view), or why the connection ended before one.

use std::{
    future::Future,
    io,
    pin::Pin,
    task::{Context, Poll},
};

use bytes::BytesMut;

use super::{
    Stream,
    chunked::ChunkError,
    request::{self, Head, Limits},
    write::Out,
};
use crate::drain::Signal;

/// Room made in the read buffer before reading a head: most heads fit in one read. Small, as an
/// idle connection keeps it.
pub(super) const HEAD_READ: usize = 1024;
/// Buffers grown past this for one large message are let go once it is done.
const KEEP_BUFFER: usize = 8 * 1024;

/// A client connection: the socket and its buffers.
#[derive(Debug)]
pub struct Connection<S> {
    /// The socket.
    pub io: S,
    /// Bytes read and not yet used.
    pub read: BytesMut,
    /// Bytes to write.
    pub out: Out,
}

impl<S: Stream> Connection<S> {
    /// Reads more into the buffer, with at least `room` free; `Ready(Ok(0))` at the end.
    pub fn poll_fill(&mut self, cx: &mut Context<'_>, room: usize) -> Poll<io::Result<usize>> {
        if self.read.capacity() - self.read.len() < room / 4 {
            // At least doubling: a large head is read in a few reads, not in `room`-sized steps.
            self.read.reserve(room.max(self.read.len()));
        }
        tokio_util::io::poll_read_buf(Pin::new(&mut self.io), cx, &mut self.read)
    }

    /// Lets go of buffers a large message grew, between requests.
    pub(super) fn trim(&mut self) {
        if self.read.is_empty() && self.read.capacity() > KEEP_BUFFER {
            self.read = BytesMut::new();
        }
        if self.out.buf.capacity() > KEEP_BUFFER {
            self.out.buf = Vec::new();
        }
    }
}

impl<S: Client> Connection<S> {
    /// The next request head; `None` once the client closed, or the proxy drains while the
    /// connection is idle.
    pub(super) fn poll_head(
        &mut self,
        cx: &mut Context<'_>,
        limits: Limits,
        drain: &mut Signal<'_, impl Future<Output = ()>>,
    ) -> Poll<Result<Option<Head>, Ended>> {
        loop {
            if !self.read.is_empty() {
                let head = request::head(&mut self.read, limits).map_err(|e| Ended::Refused(e.into()))?;
                self.io.receiving_head(head.is_none() && !self.read.is_empty());
                if let Some(head) = head {
                    return Poll::Ready(Ok(Some(head)));
                }
            }
            if self.read.is_empty() && drain.poll_draining(cx) {
                return Poll::Ready(Ok(None));
            }
            match std::task::ready!(self.poll_fill(cx, HEAD_READ)) {
                Ok(0) => return Poll::Ready(Ok(None)),
                Ok(_) => {}
                Err(e) => return Poll::Ready(Err(Ended::Io(e))),
            }
        }
    }
}

/// A client connection as the server sees it: a stream whose request heads can be timed.
pub trait Client: Stream {
    /// Whether a request head is partly received: the header timeout runs while it is.
    fn receiving_head(&mut self, receiving: bool);
}

/// Why a connection stopped before a request.
#[derive(Debug)]
pub(super) enum Ended {
    Io(io::Error),
    Refused(Refusal),
}

/// Why a request was answered without being served.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    /// The request head cannot be served as it is.
    #[error(transparent)]
    Head(#[from] request::Error),
    /// The part of a chunked body that came with the head is malformed.
    #[error(transparent)]
    Body(#[from] ChunkError),
}
