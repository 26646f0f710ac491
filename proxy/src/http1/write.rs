//! Writing a message's body out behind its head, framed by length, in chunks, or up to the
//! connection's close, as its frames become ready: a request to an upstream (polled by the
//! exchange, then by the response body, as an upstream may answer before it has read the whole
//! upload), or a response to a client.
//!
//! Small frames are copied behind the head into one buffer, so a request with a small body
//! costs one write; large ones are written from the frame itself.

use std::{
    io,
    pin::Pin,
    task::{Context, Poll, ready},
};

use bytes::{Buf, Bytes};
use http::HeaderMap;
use tokio::io::AsyncWrite;

use super::BodyError;
use super::{framing::Framing, wire};

/// Why a body could not be written to its end.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// Writing to the connection failed.
    #[error("writing: {0}")]
    Io(#[source] io::Error),
    /// The body being sent failed.
    #[error("body failed")]
    Body(#[source] BodyError),
    /// The body's size differs from the length its head declared.
    #[error("body length differs from its content-length")]
    Length,
}

/// Frames up to this size are copied into the output buffer rather than written on their own.
const COPY_UP_TO: usize = 16 * 1024;

/// Bytes waiting to be written: the buffer, then a large frame, then its chunk's CRLF.
#[derive(Debug, Default)]
pub struct Out {
    /// Bytes queued to go first: a head, small frames, chunk lines.
    pub buf: Vec<u8>,
    pos: usize,
    data: Bytes,
    tail: &'static [u8],
}

impl Out {
    /// Writes everything pending, then flushes.
    pub fn poll_write<W: AsyncWrite + Unpin>(
        &mut self,
        cx: &mut Context<'_>,
        io: &mut W,
    ) -> Poll<io::Result<()>> {
        while self.pos < self.buf.len() {
            self.pos += nonzero(ready!(Pin::new(&mut *io).poll_write(cx, &self.buf[self.pos..]))?)?;
        }
        while !self.data.is_empty() {
            let n = nonzero(ready!(Pin::new(&mut *io).poll_write(cx, &self.data))?)?;
            self.data.advance(n);
        }
        while !self.tail.is_empty() {
            let n = nonzero(ready!(Pin::new(&mut *io).poll_write(cx, self.tail))?)?;
            self.tail = &self.tail[n..];
        }
        self.buf.clear();
        self.pos = 0;
        Pin::new(io).poll_flush(cx)
    }

    /// Queues one data frame.
    fn push(&mut self, data: Bytes, chunked: bool) {
        if chunked {
            wire::chunk_size(&mut self.buf, data.len());
        }
        if data.len() <= COPY_UP_TO {
            self.buf.extend_from_slice(&data);
            if chunked {
                self.buf.extend_from_slice(b"\r\n");
            }
        } else {
            self.data = data;
            self.tail = if chunked { b"\r\n" } else { b"" };
        }
    }
}

fn nonzero(n: usize) -> io::Result<usize> {
    if n == 0 { Err(io::ErrorKind::WriteZero.into()) } else { Ok(n) }
}

/// A body that can be written: frames of bytes, and an error that can be boxed.
pub trait WriteBody: http_body::Body<Data = Bytes, Error: Into<BodyError>> + Unpin {}

impl<B: http_body::Body<Data = Bytes, Error: Into<BodyError>> + Unpin> WriteBody for B {}

/// The body still to be written.
#[derive(Debug)]
pub struct Writer<B> {
    body: B,
    framing: Framing,
    /// The body has ended and its end (if chunked) is queued.
    ended: bool,
    /// The message has no body on the wire (a response to HEAD, a 304): frames are read and
    /// dropped, so that the upstream connection they come from is read to its end.
    discard: bool,
}

impl<B: WriteBody> Writer<B> {
    /// Writes `body` with `framing`.
    pub fn new(body: B, framing: Framing) -> Self {
        Self { body, framing, ended: false, discard: false }
    }

    /// Reads `body` to its end without writing it.
    pub fn discarding(body: B) -> Self {
        Self { body, framing: Framing::Length(0), ended: false, discard: true }
    }

    /// Writes what is queued and whatever the body has ready; `Ready(Ok)` once the whole request
    /// is written and flushed. The head must already be in `out`.
    pub fn poll<W: AsyncWrite + Unpin>(
        &mut self,
        cx: &mut Context<'_>,
        out: &mut Out,
        io: &mut W,
    ) -> Poll<Result<(), WriteError>> {
        loop {
            // Take frames while they fit behind what is queued, so that small ones share a write.
            let full = out.buf.len() >= COPY_UP_TO || !out.data.is_empty();
            if !self.ended && !full {
                match Pin::new(&mut self.body).poll_frame(cx) {
                    Poll::Ready(Some(Ok(frame))) => {
                        self.frame(frame, out)?;
                        continue;
                    }
                    Poll::Ready(Some(Err(e))) => return Poll::Ready(Err(WriteError::Body(e.into()))),
                    Poll::Ready(None) => self.end(out, &HeaderMap::new())?,
                    Poll::Pending => {
                        // The body will wake us; until then, write what is queued.
                        ready!(out.poll_write(cx, io)).map_err(WriteError::Io)?;
                        return Poll::Pending;
                    }
                }
            }
            ready!(out.poll_write(cx, io)).map_err(WriteError::Io)?;
            if self.ended {
                return Poll::Ready(Ok(()));
            }
        }
    }

    fn frame(&mut self, frame: http_body::Frame<Bytes>, out: &mut Out) -> Result<(), WriteError> {
        match frame.into_data() {
            Ok(_) if self.discard => Ok(()),
            Ok(data) => {
                if let Framing::Length(left) = &mut self.framing {
                    *left = left.checked_sub(data.len() as u64).ok_or(WriteError::Length)?;
                }
                if !data.is_empty() {
                    out.push(data, self.framing == Framing::Chunked);
                }
                Ok(())
            }
            Err(frame) => {
                let trailers = frame.into_trailers().unwrap_or_default();
                self.end(out, &trailers)
            }
        }
    }

    /// The body ended (with `trailers`, sent only when chunked).
    fn end(&mut self, out: &mut Out, trailers: &HeaderMap) -> Result<(), WriteError> {
        self.ended = true;
        if self.discard {
            return Ok(());
        }
        match self.framing {
            Framing::Chunked => wire::last_chunk(&mut out.buf, trailers),
            Framing::Length(0) | Framing::Close => {}
            Framing::Length(_) => return Err(WriteError::Length),
        }
        Ok(())
    }
}
