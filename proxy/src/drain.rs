//! The drain signal: a connection served until the proxy drains, then let finish gracefully.
//!
//! Why not `select!` on the connection and the drain signal: that polls the drain future on
//! every wake-up of the connection, and each poll takes the `Notify` mutex to re-register its
//! waker (and `select!` draws a random number to pick the branch order): ~700 instructions per
//! proxied request, for a signal that fires once in the process's life. Here the drain future
//! is polled with a waker of its own, and only again when that waker has fired.

use std::{
    future::{Future, poll_fn},
    pin::{Pin, pin},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    task::{Context, Wake, Waker},
};

use futures_util::task::AtomicWaker;
use tokio::sync::watch;

/// The drain future's waker: notes that it fired and wakes the connection's task.
#[derive(Default)]
struct Fired {
    fired: AtomicBool,
    task: AtomicWaker,
}

impl Wake for Fired {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.fired.store(true, Ordering::Release);
        self.task.wake();
    }
}

/// The drain signal as a connection's task polls it: cheap to ask on every wake-up, and it
/// wakes the task when the proxy starts draining.
pub struct Signal<'a, D> {
    drain: Pin<&'a mut D>,
    fired: Arc<Fired>,
    waker: Waker,
    draining: bool,
}

impl<'a, D: Future<Output = ()>> Signal<'a, D> {
    /// Watches `drain` (a [`drained`] future).
    pub fn new(drain: Pin<&'a mut D>) -> Self {
        let fired = Arc::new(Fired { fired: AtomicBool::new(true), task: AtomicWaker::new() });
        let waker = Waker::from(Arc::clone(&fired));
        Self { drain, fired, waker, draining: false }
    }

    /// Whether the proxy is draining; until it is, `cx`'s task is woken when it starts.
    pub fn poll_draining(&mut self, cx: &Context<'_>) -> bool {
        if !self.draining {
            self.fired.task.register(cx.waker());
            self.draining = self.fired.fired.swap(false, Ordering::Acquire)
                && self.drain.as_mut().poll(&mut Context::from_waker(&self.waker)).is_ready();
        }
        self.draining
    }
}

/// Polls `served` to its end; once `drain` says the proxy is draining, calls `shutdown` on it
/// (once) and keeps polling it while it finishes.
pub async fn until_drained<F: Future>(
    mut served: Pin<&mut F>,
    drain: &mut watch::Receiver<bool>,
    mut shutdown: impl FnMut(Pin<&mut F>),
) -> F::Output {
    let drain = pin!(drained(drain));
    let mut signal = Signal::new(drain);
    let mut shut = false;
    poll_fn(|cx| {
        if !shut && signal.poll_draining(cx) {
            shut = true;
            shutdown(served.as_mut());
        }
        served.as_mut().poll(cx)
    })
    .await
}

/// Resolves once the proxy starts draining (or its drain sender is gone).
pub async fn drained(drain: &mut watch::Receiver<bool>) {
    // The guard `wait_for` returns is not `Send`; drop it here, not in the caller's state.
    let _ = drain.wait_for(|d| *d).await;
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// A stand-in connection that ends only when shut down.
    #[tokio::test]
    async fn a_drain_shuts_the_connection_down_once_and_it_finishes() {
        let (tx, mut rx) = watch::channel(false);
        let mut shutdowns = 0;
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let mut stop_tx = Some(stop_tx);
        let served = pin!(async move { stop_rx.await.is_ok() });
        let drain_later = async {
            tokio::time::sleep(Duration::from_millis(10)).await;
            tx.send(true).unwrap();
        };
        let (finished, ()) = tokio::join!(
            until_drained(served, &mut rx, |_| {
                shutdowns += 1;
                if let Some(tx) = stop_tx.take() {
                    tx.send(()).unwrap();
                }
            }),
            drain_later
        );
        assert!(finished);
        assert_eq!(shutdowns, 1);
    }
}
