//! A request body that a later try can send again. The first try streams the client's body
//! through and a copy of its first bytes is kept; a later try sends the copy, then goes on
//! reading the client where the copy ends (a client may still be sending when a try fails). A
//! body longer than the copy's limit can be sent only once: past it the copy is dropped.

use std::{
    pin::Pin,
    sync::{Arc, Mutex, MutexGuard},
    task::{Context, Poll, ready},
};

use bytes::Bytes;
use http::HeaderMap;
use http_body::{Frame, SizeHint};

use super::{BodyError, ClientBody, TooLarge};

/// A client's body and its copy, shared by the tries of one request.
#[derive(Debug)]
pub struct Replay<B = ClientBody>(Arc<Mutex<State<B>>>);

#[derive(Debug)]
struct State<B> {
    /// The client's body, until it ends.
    client: Option<B>,
    /// What the client sent so far, while it fits the limit.
    kept: Vec<Bytes>,
    /// Bytes read from the client.
    read: u64,
    /// Most bytes the copy keeps.
    keep: u64,
    /// A route's `max_request_bytes`.
    max: Option<u64>,
    trailers: Option<HeaderMap>,
    /// The copy is gone (over `keep`, or the client's body failed): no later try.
    spent: bool,
    /// The body went over `max`.
    over: bool,
    /// The try whose body reads the client; older tries' bodies stop.
    current: u32,
}

/// One try's view of the body.
#[derive(Debug)]
pub struct ReplayBody<B = ClientBody> {
    state: Arc<Mutex<State<B>>>,
    try_: u32,
    /// Kept chunks sent by this try.
    next: usize,
    /// Bytes sent by this try.
    sent: u64,
    trailers_sent: bool,
}

/// A try that was given up reads no further.
#[derive(Debug, thiserror::Error)]
#[error("request body read by a later try")]
struct Superseded;

impl<B> Replay<B> {
    /// Keeps up to `keep` bytes of `client`, which may carry at most `max` bytes.
    pub fn new(client: B, keep: u64, max: Option<u64>) -> Self {
        let state = State {
            client: Some(client),
            kept: Vec::new(),
            read: 0,
            keep,
            max,
            trailers: None,
            spent: false,
            over: false,
            current: 0,
        };
        Self(Arc::new(Mutex::new(state)))
    }

    /// The body of the next try, or `None` when the body cannot be sent again. The `last` try
    /// keeps no more than the copy it sends.
    pub fn next_try(&self, last: bool) -> Option<ReplayBody<B>> {
        let mut s = lock(&self.0);
        if s.spent {
            return None;
        }
        if last {
            // The next byte read from the client drops the copy.
            s.keep = 0;
        }
        s.current += 1;
        let try_ = s.current;
        Some(ReplayBody { state: self.0.clone(), try_, next: 0, sent: 0, trailers_sent: false })
    }

    /// Whether another try can still send the whole body.
    pub fn can_resend(&self) -> bool {
        !lock(&self.0).spent
    }

    /// Whether the body went over its `max`: whatever the upstream made of the cut-off
    /// request, the client's answer is that its body was too large.
    pub fn over_limit(&self) -> bool {
        lock(&self.0).over
    }
}

fn lock<B>(m: &Mutex<State<B>>) -> MutexGuard<'_, State<B>> {
    // The state is consistent after every step, so a panic elsewhere leaves nothing half-done.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl<B> http_body::Body for ReplayBody<B>
where
    B: http_body::Body<Data = Bytes, Error = BodyError> + Unpin,
{
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let this = self.get_mut();
        let mut s = lock(&this.state);
        if s.current != this.try_ {
            return Poll::Ready(Some(Err(Box::new(Superseded))));
        }
        if !s.spent {
            if let Some(chunk) = s.kept.get(this.next) {
                let chunk = chunk.clone();
                this.next += 1;
                this.sent += chunk.len() as u64;
                return Poll::Ready(Some(Ok(Frame::data(chunk))));
            }
        }
        let Some(client) = s.client.as_mut() else {
            if this.trailers_sent {
                return Poll::Ready(None);
            }
            this.trailers_sent = true;
            return Poll::Ready(s.trailers.clone().map(|t| Ok(Frame::trailers(t))));
        };
        let frame = ready!(Pin::new(client).poll_frame(cx));
        match frame {
            Some(Ok(frame)) => match frame.into_data() {
                Ok(data) => {
                    let n = data.len() as u64;
                    s.read += n;
                    this.sent += n;
                    if s.max.is_some_and(|max| s.read > max) {
                        s.spent = true;
                        s.over = true;
                        return Poll::Ready(Some(Err(Box::new(TooLarge))));
                    }
                    if s.spent || s.read > s.keep {
                        // Past the copy: only this try can send the body.
                        s.spent = true;
                        s.kept = Vec::new();
                    } else {
                        s.kept.push(data.clone());
                        this.next = s.kept.len();
                    }
                    Poll::Ready(Some(Ok(Frame::data(data))))
                }
                Err(frame) => {
                    if let Some(t) = frame.trailers_ref() {
                        // Trailers are the last frame: a reader may not poll for the end.
                        s.trailers = Some(t.clone());
                        s.client = None;
                        this.trailers_sent = true;
                    }
                    Poll::Ready(Some(Ok(frame)))
                }
            },
            None => {
                s.client = None;
                this.trailers_sent = true;
                Poll::Ready(None)
            }
            Some(Err(e)) => {
                // The client's body failed: no try can send it whole.
                s.spent = true;
                s.client = None;
                Poll::Ready(Some(Err(e)))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        let s = lock(&self.state);
        // Everything read from the client so far went out in this try.
        let caught_up = self.sent >= s.read;
        match &s.client {
            Some(client) => caught_up && client.is_end_stream(),
            None => caught_up && (self.trailers_sent || s.trailers.is_none()),
        }
    }

    fn size_hint(&self) -> SizeHint {
        let s = lock(&self.state);
        let kept_left = s.read.saturating_sub(self.sent);
        match &s.client {
            Some(client) => {
                let inner = client.size_hint();
                let mut hint = SizeHint::new();
                hint.set_lower(inner.lower() + kept_left);
                if let Some(upper) = inner.upper() {
                    hint.set_upper(upper + kept_left);
                }
                hint
            }
            None => SizeHint::with_exact(kept_left),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;

    use http_body::Body as _;
    use http_body_util::BodyExt as _;

    use super::*;

    /// A client body that sends `frames`, then pauses (`None`) or ends.
    #[derive(Debug, Default)]
    struct Client {
        frames: VecDeque<Option<Frame<Bytes>>>,
    }

    impl http_body::Body for Client {
        type Data = Bytes;
        type Error = BodyError;

        fn poll_frame(
            self: Pin<&mut Self>,
            cx: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
            match self.get_mut().frames.pop_front() {
                Some(Some(f)) => Poll::Ready(Some(Ok(f))),
                Some(None) => {
                    // The pause ends at once: the next poll gets what follows.
                    cx.waker().wake_by_ref();
                    Poll::Pending
                }
                None => Poll::Ready(None),
            }
        }
    }

    fn client(frames: impl IntoIterator<Item = Option<Frame<Bytes>>>) -> Client {
        Client { frames: frames.into_iter().collect() }
    }

    fn data(s: &'static str) -> Option<Frame<Bytes>> {
        Some(Frame::data(Bytes::from_static(s.as_bytes())))
    }

    /// Reads `b` as hyper sends a body: until `is_end_stream`, or trailers, or its end.
    async fn collect(mut b: ReplayBody<Client>) -> (Vec<u8>, Option<HeaderMap>) {
        let (mut bytes, mut trailers) = (Vec::new(), None);
        while !b.is_end_stream() {
            let Some(frame) = b.frame().await else { break };
            match frame.expect("frame").into_data() {
                Ok(d) => bytes.extend_from_slice(&d),
                Err(f) => {
                    trailers = f.into_trailers().ok();
                    break;
                }
            }
        }
        (bytes, trailers)
    }

    #[tokio::test]
    async fn a_later_try_sends_the_same_bytes_and_trailers() {
        let mut t = HeaderMap::new();
        t.insert("x-t", "1".parse().expect("value"));
        let r = Replay::new(client([data("ab"), data("cd"), Some(Frame::trailers(t.clone()))]), 10, None);
        let first = collect(r.next_try(false).expect("first")).await;
        assert_eq!(first, (b"abcd".to_vec(), Some(t.clone())));
        assert!(r.can_resend());
        let second = r.next_try(false).expect("second");
        assert!(!second.is_end_stream());
        assert_eq!(second.size_hint().exact(), Some(4));
        assert_eq!(collect(second).await, first);
    }

    #[tokio::test]
    async fn a_later_try_goes_on_reading_where_the_copy_ends() {
        let r = Replay::new(client([data("ab"), None, data("cd")]), 10, None);
        let mut first = r.next_try(false).expect("first");
        assert_eq!(first.frame().await.expect("frame").expect("ok").into_data().ok(), Some("ab".into()));
        let second = r.next_try(false).expect("second");
        assert!(first.frame().await.expect("frame").is_err(), "the older try stops");
        assert_eq!(collect(second).await, (b"abcd".to_vec(), None));
    }

    #[tokio::test]
    async fn the_last_try_keeps_no_copy_past_what_it_sends() {
        let r = Replay::new(client([data("ab"), None, data("cd")]), 10, None);
        let mut first = r.next_try(false).expect("first");
        assert_eq!(first.frame().await.expect("frame").expect("ok").into_data().ok(), Some("ab".into()));
        let last = r.next_try(true).expect("last");
        assert_eq!(collect(last).await.0, b"abcd");
        assert!(!r.can_resend());
    }

    #[tokio::test]
    async fn past_the_copy_limit_the_body_is_sent_once() {
        let r = Replay::new(client([data("abc"), data("def")]), 4, None);
        assert_eq!(collect(r.next_try(false).expect("first")).await.0, b"abcdef");
        assert!(!r.can_resend());
        assert!(r.next_try(false).is_none());
    }

    #[tokio::test]
    async fn the_route_limit_still_holds() {
        let r = Replay::new(client([data("abc"), data("def")]), 64, Some(4));
        assert!(r.next_try(false).expect("first").collect().await.is_err());
        assert!(!r.can_resend() && r.over_limit());
    }
}
