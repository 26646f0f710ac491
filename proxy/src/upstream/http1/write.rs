//! Writing a request out: its head, then its body frames as the client sends them, framed by
//! length or in chunks. Polled by the exchange until the response head arrives and by the
//! response body after that (an upstream may answer before it has read the whole upload).
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
use http_body::Body as _;
use tokio::io::AsyncWrite;

use super::Error;
use crate::{
    h1::wire::{self, Framing},
    http::body::Body,
    upstream::UpstreamStream,
};

/// Frames up to this size are copied into the output buffer rather than written on their own.
const COPY_UP_TO: usize = 16 * 1024;

/// Bytes waiting to be written: the buffer, then a large frame, then its chunk's CRLF.
#[derive(Debug, Default)]
pub(super) struct Out {
    pub buf: Vec<u8>,
    pos: usize,
    data: Bytes,
    tail: &'static [u8],
}

impl Out {
    /// Writes everything pending, then flushes.
    pub(super) fn poll_write(
        &mut self,
        cx: &mut Context<'_>,
        io: &mut UpstreamStream,
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

/// The request body still to be written.
#[derive(Debug)]
pub(super) struct Writer {
    body: Body,
    framing: Framing,
    /// The body has ended and its end (if chunked) is queued.
    ended: bool,
}

impl Writer {
    pub(super) fn new(body: Body, framing: Framing) -> Self {
        Self { body, framing, ended: false }
    }

    /// Writes what is queued and whatever the body has ready; `Ready(Ok)` once the whole request
    /// is written and flushed. The head must already be in `out`.
    pub(super) fn poll(
        &mut self,
        cx: &mut Context<'_>,
        out: &mut Out,
        io: &mut UpstreamStream,
    ) -> Poll<Result<(), Error>> {
        loop {
            // Take frames while they fit behind what is queued, so that small ones share a write.
            let full = out.buf.len() >= COPY_UP_TO || !out.data.is_empty();
            if !self.ended && !full {
                match Pin::new(&mut self.body).poll_frame(cx) {
                    Poll::Ready(Some(Ok(frame))) => {
                        self.frame(frame, out)?;
                        continue;
                    }
                    Poll::Ready(Some(Err(e))) => return Poll::Ready(Err(Error::RequestBody(e))),
                    Poll::Ready(None) => self.end(out, &HeaderMap::new())?,
                    Poll::Pending => {
                        // The body will wake us; until then, write what is queued.
                        ready!(out.poll_write(cx, io)).map_err(Error::Write)?;
                        return Poll::Pending;
                    }
                }
            }
            ready!(out.poll_write(cx, io)).map_err(Error::Write)?;
            if self.ended {
                return Poll::Ready(Ok(()));
            }
        }
    }

    fn frame(&mut self, frame: http_body::Frame<Bytes>, out: &mut Out) -> Result<(), Error> {
        match frame.into_data() {
            Ok(data) => {
                if let Framing::Length(left) = &mut self.framing {
                    *left = left.checked_sub(data.len() as u64).ok_or(Error::RequestLength)?;
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
    fn end(&mut self, out: &mut Out, trailers: &HeaderMap) -> Result<(), Error> {
        self.ended = true;
        match self.framing {
            Framing::Chunked => wire::last_chunk(&mut out.buf, trailers),
            Framing::Length(0) | Framing::Close => {}
            Framing::Length(_) => return Err(Error::RequestLength),
        }
        Ok(())
    }
}
