//! An upstream HTTP/1.1 connection's future, run by a task of its own and also polled once by
//! each request right after the request is queued on it.
//!
//! Why: on the single-threaded runtime a woken task runs after every task already queued. When
//! a burst of client requests arrives together, each connection task was woken behind the whole
//! burst, so every request waited for all the burst's reads before it was written upstream
//! (nginx writes each request as soon as it has read it; traced, this was most of our added p50
//! latency at a fixed rate). Polling the connection in the requester's task writes the request
//! out at once. The connection's own task keeps every wake-up: the requester polls with that
//! task's waker, so a requester that goes away leaves nothing unpolled.

use std::{
    future::Future,
    pin::Pin,
    sync::{Arc, Mutex, PoisonError},
    task::{Context, Poll, Waker},
};

/// A connection future shared by its task and the requests sent on it.
pub(super) struct Drive {
    slot: Mutex<Slot>,
}

struct Slot {
    /// The connection; `None` once it has finished.
    conn: Option<Pin<Box<dyn Future<Output = ()> + Send>>>,
    /// The owning task's waker, from its latest poll.
    waker: Option<Waker>,
}

impl Drive {
    /// Spawns the task that owns `conn` and returns the handle requests nudge it with.
    pub(super) fn spawn(conn: impl Future<Output = ()> + Send + 'static) -> Arc<Self> {
        let drive = Arc::new(Self { slot: Mutex::new(Slot { conn: Some(Box::pin(conn)), waker: None }) });
        let owner = Arc::clone(&drive);
        tokio::spawn(std::future::poll_fn(move |cx| owner.poll_owner(cx)));
        drive
    }

    /// The owning task's poll: remembers its waker and polls the connection.
    fn poll_owner(&self, cx: &mut Context<'_>) -> Poll<()> {
        let mut slot = self.slot.lock().unwrap_or_else(PoisonError::into_inner);
        let Slot { conn, waker } = &mut *slot;
        match waker {
            Some(w) if w.will_wake(cx.waker()) => {}
            _ => *waker = Some(cx.waker().clone()),
        }
        poll_conn(conn, cx)
    }

    /// Polls the connection once on its task's behalf, so that a request just queued is written
    /// now. Skipped when the task is polling it at this moment (another thread) or has not
    /// polled it yet (it is about to).
    pub(super) fn nudge(&self) {
        let Ok(mut slot) = self.slot.try_lock() else { return };
        let Slot { conn, waker } = &mut *slot;
        let Some(waker) = waker.as_ref() else { return };
        if poll_conn(conn, &mut Context::from_waker(waker)).is_ready() {
            // Finished here: the task must hear of it to end.
            waker.wake_by_ref();
        }
    }
}

/// Polls the connection if it has not finished; drops it when it does.
fn poll_conn(conn: &mut Option<Pin<Box<dyn Future<Output = ()> + Send>>>, cx: &mut Context<'_>) -> Poll<()> {
    let Some(fut) = conn.as_mut() else { return Poll::Ready(()) };
    let done = fut.as_mut().poll(cx);
    if done.is_ready() {
        *conn = None;
    }
    done
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering::SeqCst};

    use futures_util::FutureExt as _;
    use http::{Request, header::HOST};
    use hyper_util::rt::TokioIo;
    use tokio::io::AsyncReadExt as _;

    use super::*;
    use crate::http::body::Body;

    #[tokio::test]
    async fn a_nudge_writes_a_queued_request_before_the_connection_task_runs() {
        let (near, mut far) = tokio::io::duplex(4096);
        let (mut tx, conn) =
            hyper::client::conn::http1::handshake::<_, Body>(TokioIo::new(near)).await.unwrap();
        let drive = Drive::spawn(async move { conn.await.unwrap_or_default() });
        tx.ready().await.unwrap();
        let _response = tx.try_send_request(Request::get("/").header(HOST, "t").body(Body::Empty).unwrap());
        drive.nudge();
        // No await in between: the connection's own task has not run since the request was queued.
        let mut head = [0; 64];
        let n = far.read(&mut head).now_or_never().expect("written during the nudge").unwrap();
        assert!(head[..n].starts_with(b"GET / HTTP/1.1\r\n"), "{:?}", String::from_utf8_lossy(&head[..n]));
    }

    #[tokio::test]
    async fn a_connection_that_ends_during_a_nudge_ends_its_task() {
        let closed = Arc::new(AtomicBool::new(false));
        let seen = Arc::clone(&closed);
        let drive = Drive::spawn(std::future::poll_fn(move |_| {
            if seen.load(SeqCst) { Poll::Ready(()) } else { Poll::Pending }
        }));
        tokio::task::yield_now().await;
        closed.store(true, SeqCst);
        drive.nudge();
        tokio::task::yield_now().await;
        assert_eq!(Arc::strong_count(&drive), 1, "the connection's task still holds it");
    }
}
