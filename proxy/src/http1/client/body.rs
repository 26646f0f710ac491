//! A response body read straight off the upstream connection as the client side asks for it;
//! once it has been read to its end, the connection can be taken back for the next request.

use std::task::{Context, Poll};

use bytes::Bytes;
use http::StatusCode;
use http_body::{Frame, SizeHint};

use super::{Conn, Error, Transport, Upgraded};
use crate::http1::{
    chunked::Step,
    framing::{Framing, Reading},
    write::{WriteBody, Writer},
};

/// The body of an upstream HTTP/1.1 response, owning the connection it comes from.
#[derive(Debug)]
pub struct ResponseBody<S, B> {
    /// None once the body failed, or the connection was taken back or upgraded.
    conn: Option<Box<Conn<S>>>,
    /// The request body, when the upstream answered before we had written it all (boxed: the
    /// request body may itself be a response body, and it is rare).
    writer: Option<Box<Writer<B>>>,
    reading: Reading,
    /// A 101: no body; the connection belongs to whoever takes the upgrade.
    upgrade: bool,
    /// The connection can carry another request once this body is read.
    keep_alive: bool,
}

impl<S: Transport, B: WriteBody> ResponseBody<S, B> {
    pub(super) fn new(
        conn: Box<Conn<S>>,
        writer: Option<Writer<B>>,
        framing: Framing,
        keep_alive: bool,
        status: StatusCode,
    ) -> Self {
        let upgrade = status == StatusCode::SWITCHING_PROTOCOLS;
        Self {
            conn: Some(conn),
            writer: writer.map(Box::new),
            reading: Reading::new(framing),
            upgrade,
            keep_alive,
        }
    }

    /// The next frame: data, or the trailers of a chunked body.
    pub fn poll_frame(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Error>>> {
        let Some(conn) = self.conn.as_mut() else { return Poll::Ready(None) };
        if let Some(w) = &mut self.writer {
            match w.poll(cx, &mut conn.out, &mut conn.io) {
                Poll::Ready(Ok(())) => self.writer = None,
                Poll::Pending => {}
                // The response goes on; the connection will not be reused.
                Poll::Ready(Err(e)) => {
                    tracing::debug!(error = %e, "request body not finished after the response began");
                    self.writer = None;
                    self.keep_alive = false;
                }
            }
        }
        if self.upgrade {
            return Poll::Ready(None);
        }
        loop {
            let step = match self.reading.step(&mut conn.read) {
                Ok(step) => step,
                Err(e) => return self.fail(e.into()),
            };
            match step {
                Step::Data(data) => return Poll::Ready(Some(Ok(Frame::data(data)))),
                Step::Trailers(t) => return Poll::Ready(Some(Ok(Frame::trailers(t)))),
                Step::End => return Poll::Ready(None),
                Step::More => match conn.poll_fill(cx) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(Ok(0)) if self.reading.closed() => {
                        self.keep_alive = false;
                        return Poll::Ready(None);
                    }
                    Poll::Ready(Ok(0)) => return self.fail(Error::ClosedInBody),
                    Poll::Ready(Ok(_)) => {}
                    Poll::Ready(Err(e)) => return self.fail(Error::Read(e)),
                },
            }
        }
    }

    /// Ends the body with `e`, closing the connection.
    fn fail(&mut self, e: Error) -> Poll<Option<Result<Frame<Bytes>, Error>>> {
        self.conn = None;
        self.reading = Reading::Done;
        Poll::Ready(Some(Err(e)))
    }

    /// Read to its end.
    pub fn is_end_stream(&self) -> bool {
        self.upgrade || self.reading.is_done()
    }

    /// Exact for a body of known length.
    pub fn size_hint(&self) -> SizeHint {
        match self.reading {
            _ if self.upgrade => SizeHint::with_exact(0),
            Reading::Length(n) => SizeHint::with_exact(n),
            Reading::Done => SizeHint::with_exact(0),
            Reading::Chunked(_) | Reading::Close => SizeHint::default(),
        }
    }

    /// The connection, once the exchange is complete and it can carry another: the body read
    /// to its end, the request written, and nothing more from the upstream (bytes past the
    /// body's end are a response nobody asked for).
    pub fn take_reusable(&mut self) -> Option<Box<Conn<S>>> {
        let done = self.reading.is_done() && !self.upgrade && self.keep_alive && self.writer.is_none();
        if done && self.conn.as_ref().is_some_and(|c| c.read.is_empty()) { self.conn.take() } else { None }
    }

    /// The connection after a 101, with what the upstream already sent past the head.
    pub fn take_upgrade(&mut self) -> Option<Upgraded<S>> {
        if !self.upgrade {
            return None;
        }
        let mut conn = *self.conn.take()?;
        Some(Upgraded { io: conn.io, read: conn.read.split().freeze() })
    }
}
