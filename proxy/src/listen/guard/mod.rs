//! The guard: a client connection's bytes pass through it on their way to the codec, and it
//! enforces the connection's clocks and budgets: a header timeout that answers 408 (the HTTP/1.1
//! server says when a head is being received), an idle timeout, and a budget for HTTP/2 control
//! frames (GOAWAY ENHANCE_YOUR_CALM), which hyper's HTTP/2 server does not count.
//!
//! A rejected connection is not handed the offending bytes: the codec reads end-of-stream
//! instead and closes. The reply goes out when the connection is dropped, written by a short task
//! that then drains what the client still sends for a moment, so the kernel does not answer
//! those bytes with a reset that destroys the reply.

mod sniff;
#[cfg(test)]
mod tests;

use std::{
    io,
    net::SocketAddr,
    pin::Pin,
    task::{Context, Poll, Waker, ready},
    time::Duration,
};

use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    sync::Semaphore,
    time::{Instant, Sleep},
};

use pillion_config::ListenerLimits;

use crate::{
    http::reply::LocalError,
    http1::{Stream, linger::close_with},
    http2::guard::{Flood, Frames},
    metrics::Rejections,
};

/// Rejected connections lingering at once, process-wide.
const MAX_CLOSERS: usize = 1024;
static CLOSERS: Semaphore = Semaphore::const_new(MAX_CLOSERS);

/// Why the guard ended a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejection {
    /// A request head took longer than `header_read_timeout`.
    HeaderTimeout,
    /// Too many HTTP/2 control frames.
    H2Flood,
}

impl Rejection {
    /// The `reason` label of `pillion_http_rejected_total` (for a header timeout also its
    /// reply's `x-pillion-error`).
    pub fn reason(self) -> &'static str {
        match self {
            Self::HeaderTimeout => "header-timeout",
            Self::H2Flood => "h2-control-flood",
        }
    }

    /// What was wrong, for the log.
    fn detail(self) -> &'static str {
        match self {
            Self::HeaderTimeout => "request head not received within header_read_timeout",
            Self::H2Flood => "too many SETTINGS, PING, PRIORITY or empty DATA frames",
        }
    }
}

/// What the guard parses the client's bytes as.
#[derive(Debug)]
enum Scan {
    /// HTTP/1.1 (or what an upgrade made of it): parsed by the server alone.
    Http1,
    Http2(Frames),
}

impl Scan {
    fn feed(&mut self, bytes: &[u8]) -> Result<(), Rejection> {
        match self {
            Self::Http1 => Ok(()),
            Self::Http2(f) => f.feed(bytes).map_err(|Flood| Rejection::H2Flood),
        }
    }
}

/// A client connection with the guard in front of it.
#[derive(Debug)]
pub struct Guarded<S: Stream> {
    /// `None` only once dropped.
    io: Option<S>,
    /// Bytes [`Guarded::sniff_http2`] read, handed out again by the next reads.
    replay: Option<bytes::Bytes>,
    scan: Scan,
    header_read_timeout: Duration,
    idle_timeout: Duration,
    head_started: Option<Instant>,
    last_active: Instant,
    timer: Option<Pin<Box<Sleep>>>,
    /// The task the timer last registered, so reads that find no data need not poll it again.
    timer_waker: Option<Waker>,
    /// Set once the guard ended the connection: the codec reads end-of-stream from then on.
    ended: bool,
    /// Sent when the connection is dropped.
    reply: Option<Vec<u8>>,
    peer: SocketAddr,
    rejections: Rejections,
}

impl<S: Stream> Guarded<S> {
    /// Guards `io`, a connection from `peer`, with a listener's limits.
    pub fn new(io: S, limits: &ListenerLimits, peer: SocketAddr, rejections: Rejections) -> Self {
        Self {
            io: Some(io),
            replay: None,
            scan: Scan::Http1,
            header_read_timeout: limits.header_read_timeout,
            idle_timeout: limits.idle_timeout,
            head_started: None,
            last_active: Instant::now(),
            timer: None,
            timer_waker: None,
            ended: false,
            reply: None,
            peer,
            rejections,
        }
    }

    fn reject(&mut self, why: Rejection) {
        self.ended = true;
        self.rejections.count(why.reason());
        tracing::debug!(peer = %self.peer, reason = why.reason(), "{}; closing the connection", why.detail());
        // HTTP/2 clients get GOAWAY; only an HTTP/1 head can time out.
        self.reply = match &self.scan {
            Scan::Http2(f) => f.goaway(),
            Scan::Http1 => Some(LocalError::HeaderTimeout.http1_closing()),
        };
    }

    /// Polls the header deadline inside a request head, else the idle deadline; ready once it
    /// has passed.
    fn poll_deadline(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let deadline = match self.head_started {
            Some(t) => t + self.header_read_timeout,
            None => self.last_active + self.idle_timeout,
        };
        let timer = self.timer.get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        // A timer set for later is moved earlier; one set for earlier is left to fire and is
        // moved on then, which saves re-arming it after every request.
        if timer.deadline() > deadline {
            timer.as_mut().reset(deadline);
            self.timer_waker = None;
        }
        // Two reads a request find no data; the timer still holds this task's waker from the
        // first, and until it fires polling it again would only re-register the same waker.
        if self.timer_waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) && !timer.is_elapsed() {
            return Poll::Pending;
        }
        // Unconstrained: a poll refused for want of the task's coop budget registers no waker,
        // and the skip above would then leave the connection to a timer that wakes no one.
        while Pin::new(&mut tokio::task::unconstrained(timer.as_mut())).poll(cx).is_ready() {
            if Instant::now() >= deadline {
                return Poll::Ready(());
            }
            timer.as_mut().reset(deadline);
        }
        self.timer_waker = Some(cx.waker().clone());
        Poll::Pending
    }

    fn wrote<'a>(&mut self, bufs: impl IntoIterator<Item = &'a [u8]>) {
        self.last_active = Instant::now();
        if let Scan::Http2(f) = &mut self.scan {
            bufs.into_iter().for_each(|b| f.wrote(b));
        }
    }
}

impl<S: Stream> crate::http1::connection::Client for Guarded<S> {
    fn receiving_head(&mut self, receiving: bool) {
        match (receiving, self.head_started) {
            // The head's first bytes came with the last read.
            (true, None) => self.head_started = Some(self.last_active),
            (false, Some(_)) => self.head_started = None,
            _ => {}
        }
    }
}

fn gone() -> io::Error {
    io::Error::new(io::ErrorKind::NotConnected, "connection handed to the guard's closer")
}

impl<S: Stream> AsyncRead for Guarded<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.ended {
            return Poll::Ready(Ok(()));
        }
        if let Some(replay) = &mut this.replay {
            // Already past the guard: an HTTP/2 preface's bytes were fed to its frame budget.
            let n = replay.len().min(buf.remaining());
            buf.put_slice(&replay.split_to(n));
            if replay.is_empty() {
                this.replay = None;
            }
            return Poll::Ready(Ok(()));
        }
        let before = buf.filled().len();
        let io = this.io.as_mut().ok_or_else(gone)?;
        match Pin::new(io).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                let new = &buf.filled()[before..];
                if new.is_empty() {
                    return Poll::Ready(Ok(()));
                }
                let now = Instant::now();
                this.last_active = now;
                if let Err(why) = this.scan.feed(new) {
                    // The codec never sees the bytes.
                    buf.set_filled(before);
                    this.reject(why);
                }
                Poll::Ready(Ok(()))
            }
            Poll::Pending => {
                ready!(this.poll_deadline(cx));
                if this.head_started.is_some() {
                    this.reject(Rejection::HeaderTimeout);
                } else {
                    this.ended = true;
                    tracing::debug!(peer = %this.peer, "idle_timeout passed; closing the connection");
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
        }
    }
}

impl<S: Stream> AsyncWrite for Guarded<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        let n = ready!(Pin::new(this.io.as_mut().ok_or_else(gone)?).poll_write(cx, buf))?;
        if n > 0 {
            this.wrote([&buf[..n]]);
        }
        Poll::Ready(Ok(n))
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        let n = ready!(Pin::new(this.io.as_mut().ok_or_else(gone)?).poll_write_vectored(cx, bufs))?;
        if n > 0 {
            let mut left = n;
            this.wrote(bufs.iter().map(|b| {
                let take = left.min(b.len());
                left -= take;
                &b[..take]
            }));
        }
        Poll::Ready(Ok(n))
    }

    fn is_write_vectored(&self) -> bool {
        self.io.as_ref().is_some_and(|io| io.is_write_vectored())
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(self.io.as_mut().ok_or_else(gone)?).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.reply.is_some() {
            // The closer sends the reply first, then shuts down.
            return Poll::Ready(Ok(()));
        }
        Pin::new(self.io.as_mut().ok_or_else(gone)?).poll_shutdown(cx)
    }
}

impl<S: Stream> Drop for Guarded<S> {
    fn drop(&mut self) {
        let (Some(reply), Some(io)) = (self.reply.take(), self.io.take()) else { return };
        let Ok(rt) = tokio::runtime::Handle::try_current() else { return };
        // Bounded: a client opening connection after connection of bad requests gets its
        // replies only while fewer than `MAX_CLOSERS` are lingering; past that it is closed.
        let Ok(permit) = CLOSERS.try_acquire() else { return };
        rt.spawn(async move {
            close_with(io, reply).await;
            drop(permit);
        });
    }
}
