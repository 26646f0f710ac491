//! An optional time limit on a future, as one future type.
//!
//! `match limit { Some(t) => timeout(t, fut).await, None => fut.await }` makes the enclosing
//! async fn hold room for the future twice (once bare, once inside `Timeout`). A request's
//! future nests several of these, and hyper keeps each connection's request future allocated
//! between requests, so the doubling was memory every kept-alive connection held (the request
//! future went from 25.6 KB to 4.9 KB). `Deadline` holds the future once, and a timer only when
//! there is a limit.
//!
//! The request path passes `pin!(fut)`: a future moved in by value is copied whole, all of its
//! size (2-4 KiB for a request's) though only its arguments are set, while a pinned one is built
//! in its awaiting future's state and never moves. The request path awaits its nested sends the
//! same way.

use std::{
    future::Future,
    pin::Pin,
    task::{Context, Poll},
    time::Duration,
};

use pin_project_lite::pin_project;
use tokio::time::Sleep;

pin_project! {
    /// `fut`, which fails with `Elapsed` once `limit` (if any) has passed.
    pub struct Deadline<F> {
        #[pin]
        fut: F,
        // Boxed: only requests with a limit pay for a timer.
        timer: Option<Pin<Box<Sleep>>>,
    }
}

/// The limit passed before the future finished.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Elapsed;

impl<F: Future> Deadline<F> {
    /// Limits `fut` to `limit`, counted from now; `None` is no limit.
    pub fn new(limit: Option<Duration>, fut: F) -> Self {
        Self { fut, timer: limit.map(|t| Box::pin(tokio::time::sleep(t))) }
    }
}

impl<F: Future> Future for Deadline<F> {
    type Output = Result<F::Output, Elapsed>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        if let Poll::Ready(out) = this.fut.poll(cx) {
            return Poll::Ready(Ok(out));
        }
        match this.timer.as_mut().map(|t| t.as_mut().poll(cx)) {
            Some(Poll::Ready(())) => Poll::Ready(Err(Elapsed)),
            _ => Poll::Pending,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_limit_ends_a_slow_future_and_no_limit_waits() {
        let slow = tokio::time::sleep(Duration::from_secs(10));
        assert_eq!(Deadline::new(Some(Duration::from_secs(1)), slow).await, Err(Elapsed));
        let slow = async {
            tokio::time::sleep(Duration::from_secs(10)).await;
            7
        };
        assert_eq!(Deadline::new(None, slow).await, Ok(7));
        assert_eq!(Deadline::new(Some(Duration::from_secs(1)), async { 8 }).await, Ok(8));
    }
}
