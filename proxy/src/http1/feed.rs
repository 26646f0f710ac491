//! Reading a request body off the client connection into the body the service holds, one frame
//! each time the service asks for one: what the service does not ask for stays in the kernel's
//! buffer, so a slow upstream slows the client down instead of filling our memory.

use std::task::{Context, Poll};

use super::{
    Stream,
    body::{BodyError, Feed, Wanted},
    chunked::Step,
    connection::Connection,
    framing::{Framing, Reading},
};

/// The interim response a client that sent `Expect: 100-continue` waits for.
const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";
/// Room made in the read buffer before each read of a body.
const BODY_READ: usize = 16 * 1024;

/// How the body ended, as far as the connection is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fed {
    /// Read to its end: the connection is positioned at the next request.
    Complete,
    /// The service dropped the body before its end: the rest of it is unread.
    Dropped,
    /// The client closed, the read failed, or the framing is broken; the body got the error.
    Failed,
}

/// The driver's side of a request body being read.
#[derive(Debug)]
pub struct Feeder {
    feed: Feed,
    reading: Reading,
    /// A 100 Continue is owed before the first read.
    send_continue: bool,
}

impl Feeder {
    /// Feeds `feed` a body framed as `framing` (not empty). `expect_continue`: the client waits
    /// for a 100 before sending it.
    pub fn new(feed: Feed, framing: Framing, expect_continue: bool) -> Self {
        Self { feed, reading: Reading::new(framing), send_continue: expect_continue }
    }

    /// Hands the body frames while it wants them. `answered`: the response head is already
    /// queued, so a 100 may no longer be sent.
    pub fn poll<S: Stream>(
        &mut self,
        cx: &mut Context<'_>,
        conn: &mut Connection<S>,
        answered: bool,
    ) -> Poll<Fed> {
        loop {
            match self.feed.poll_wanted(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Wanted::Dropped) => return Poll::Ready(Fed::Dropped),
                Poll::Ready(Wanted::Frame) => {}
            }
            if std::mem::take(&mut self.send_continue) && !answered && conn.read.is_empty() {
                conn.out.buf.extend_from_slice(CONTINUE);
            }
            if !conn.out.buf.is_empty() && !answered {
                match conn.out.poll_write(cx, &mut conn.io) {
                    Poll::Ready(Ok(())) => {}
                    Poll::Ready(Err(e)) => return self.fail(BodyError::Io(e)),
                    Poll::Pending => return Poll::Pending,
                }
            }
            let step = match self.reading.step(&mut conn.read) {
                Ok(step) => step,
                Err(e) => {
                    tracing::debug!(error = %e, "malformed chunked request body");
                    return self.fail(BodyError::Chunked);
                }
            };
            match step {
                Step::Data(data) => {
                    let last = self.reading.is_done();
                    self.feed.data(data, last);
                    if last {
                        return Poll::Ready(Fed::Complete);
                    }
                }
                Step::Trailers(t) => {
                    self.feed.trailers(t);
                    return Poll::Ready(Fed::Complete);
                }
                Step::End => {
                    self.feed.end();
                    return Poll::Ready(Fed::Complete);
                }
                Step::More => match conn.poll_fill(cx, BODY_READ) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(Ok(0)) => return self.fail(BodyError::Incomplete),
                    Poll::Ready(Ok(_)) => {}
                    Poll::Ready(Err(e)) => return self.fail(BodyError::Io(e)),
                },
            }
        }
    }

    fn fail(&self, e: BodyError) -> Poll<Fed> {
        self.feed.fail(e);
        Poll::Ready(Fed::Failed)
    }
}
