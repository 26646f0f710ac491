//! A client's HTTP/1.1 request body as the service sees it. The connection's driver reads it off
//! the socket and hands it over a frame at a time through a shared slot: the body asks and waits,
//! the driver fills. Usually both are polled by the connection's task; the body may also be
//! polled from another (an HTTP/2 upstream connection sends bodies from its own), hence the
//! lock and the two wakers. The lock is never contended in the common case.

use std::{
    io,
    pin::Pin,
    sync::{Arc, Mutex, MutexGuard, PoisonError},
    task::{Context, Poll, Waker},
};

use bytes::Bytes;
use http::HeaderMap;
use http_body::{Frame, SizeHint};

/// Why a request body could not be read to its end.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    /// The client closed the connection before the body's end.
    #[error("client closed the connection before the request body's end")]
    Incomplete,
    /// The chunked framing is malformed.
    #[error("malformed chunked request body")]
    Chunked,
    /// Reading the socket failed.
    #[error("reading the request body: {0}")]
    Io(#[from] io::Error),
}

/// The service's end: an `http_body::Body`.
#[derive(Debug)]
pub struct RequestBody {
    /// `None` for a request without a body.
    slot: Option<Arc<Slot>>,
    /// Bytes the head declared (`None`: chunked).
    length: Option<u64>,
}

/// The driver's end of a body.
#[derive(Debug)]
pub struct Feed {
    slot: Arc<Slot>,
}

/// What the body needs of the driver.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wanted {
    /// The body waits for its next frame.
    Frame,
    /// The body was dropped unread: the rest of it can only be skipped or the connection closed.
    Dropped,
}

#[derive(Debug, Default)]
struct Slot(Mutex<State>);

#[derive(Debug, Default)]
struct State {
    frame: Option<Result<Frame<Bytes>, BodyError>>,
    /// The body asked for a frame the driver has not given yet.
    wanted: bool,
    /// The last frame has been put in the slot.
    ended: bool,
    dropped: bool,
    body: Option<Waker>,
    driver: Option<Waker>,
}

impl Slot {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding it cannot leave the state half-written; carry on.
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Keeps `waker` in `slot`, cloning only if it would wake another task.
fn register(slot: &mut Option<Waker>, waker: &Waker) {
    if !slot.as_ref().is_some_and(|w| w.will_wake(waker)) {
        *slot = Some(waker.clone());
    }
}

impl RequestBody {
    /// A request without a body.
    pub fn empty() -> Self {
        Self { slot: None, length: Some(0) }
    }

    /// A body of `length` bytes (`None`: chunked), and the driver's end of it.
    pub fn channel(length: Option<u64>) -> (Self, Feed) {
        let slot = Arc::new(Slot::default());
        (Self { slot: Some(Arc::clone(&slot)), length }, Feed { slot })
    }
}

impl http_body::Body for RequestBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let Some(slot) = &self.slot else { return Poll::Ready(None) };
        let mut s = slot.lock();
        if let Some(frame) = s.frame.take() {
            return Poll::Ready(Some(frame));
        }
        if s.ended {
            return Poll::Ready(None);
        }
        s.wanted = true;
        register(&mut s.body, cx.waker());
        let driver = s.driver.take();
        drop(s);
        if let Some(w) = driver {
            w.wake();
        }
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        self.slot.as_ref().is_none_or(|slot| {
            let s = slot.lock();
            s.ended && s.frame.is_none()
        })
    }

    fn size_hint(&self) -> SizeHint {
        self.length.map_or_else(SizeHint::default, SizeHint::with_exact)
    }
}

impl Drop for RequestBody {
    fn drop(&mut self) {
        let Some(slot) = &self.slot else { return };
        let mut s = slot.lock();
        s.dropped = true;
        let driver = s.driver.take();
        drop(s);
        if let Some(w) = driver {
            w.wake();
        }
    }
}

impl Feed {
    /// Ready when the body wants its next frame or was dropped; until then the driver's task is
    /// woken when either happens.
    pub fn poll_wanted(&self, cx: &mut Context<'_>) -> Poll<Wanted> {
        let mut s = self.slot.lock();
        if s.dropped {
            return Poll::Ready(Wanted::Dropped);
        }
        if s.wanted && s.frame.is_none() {
            return Poll::Ready(Wanted::Frame);
        }
        register(&mut s.driver, cx.waker());
        Poll::Pending
    }

    /// Hands over data read off the socket.
    pub fn data(&self, data: Bytes, last: bool) {
        self.put(Ok(Frame::data(data)), last);
    }

    /// Hands over the trailer section that ended a chunked body.
    pub fn trailers(&self, trailers: HeaderMap) {
        self.put(Ok(Frame::trailers(trailers)), true);
    }

    /// Ends the body with an error.
    pub fn fail(&self, e: BodyError) {
        self.put(Err(e), true);
    }

    /// Ends a body whose last data frame was already handed over (a chunked body without
    /// trailers).
    pub fn end(&self) {
        let mut s = self.slot.lock();
        s.ended = true;
        Self::wake_body(s);
    }

    fn put(&self, frame: Result<Frame<Bytes>, BodyError>, last: bool) {
        let mut s = self.slot.lock();
        debug_assert!(s.frame.is_none(), "a frame handed over before the last one was taken");
        s.frame = Some(frame);
        s.wanted = false;
        s.ended |= last;
        Self::wake_body(s);
    }

    fn wake_body(mut s: MutexGuard<'_, State>) {
        let body = s.body.take();
        drop(s);
        if let Some(w) = body {
            w.wake();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::future::poll_fn;

    use http_body::Body as _;
    use http_body_util::BodyExt;

    use super::*;

    #[tokio::test]
    async fn frames_pass_in_order_as_the_body_asks_for_them() {
        let (mut body, feed) = RequestBody::channel(None);
        let driver = tokio::spawn(async move {
            for (i, part) in ["a", "bc"].into_iter().enumerate() {
                assert_eq!(poll_fn(|cx| feed.poll_wanted(cx)).await, Wanted::Frame, "frame {i}");
                feed.data(Bytes::from(part), false);
            }
            assert_eq!(poll_fn(|cx| feed.poll_wanted(cx)).await, Wanted::Frame);
            let mut t = HeaderMap::new();
            t.insert("grpc-status", "0".parse().unwrap());
            feed.trailers(t);
        });
        assert!(!body.is_end_stream());
        let collected = (&mut body).collect().await.unwrap();
        driver.await.unwrap();
        assert_eq!(collected.trailers().unwrap()["grpc-status"], "0");
        assert_eq!(collected.to_bytes(), "abc");
        assert!(body.is_end_stream());
    }

    #[tokio::test]
    async fn a_dropped_body_tells_the_driver_and_an_empty_one_ends_at_once() {
        let (body, feed) = RequestBody::channel(Some(10));
        assert_eq!(body.size_hint().exact(), Some(10));
        drop(body);
        assert_eq!(poll_fn(|cx| feed.poll_wanted(cx)).await, Wanted::Dropped);
        let mut empty = RequestBody::empty();
        assert!(empty.is_end_stream());
        assert!(poll_fn(|cx| Pin::new(&mut empty).poll_frame(cx)).await.is_none());
    }

    #[tokio::test]
    async fn an_error_ends_the_body() {
        let (body, feed) = RequestBody::channel(Some(5));
        let driver = tokio::spawn(async move {
            poll_fn(|cx| feed.poll_wanted(cx)).await;
            feed.fail(BodyError::Incomplete);
        });
        assert!(matches!(body.collect().await, Err(BodyError::Incomplete)));
        driver.await.unwrap();
    }
}
