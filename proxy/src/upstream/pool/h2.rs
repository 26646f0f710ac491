//! HTTP/2 to one endpoint: one multiplexed connection shared by every request, reopened when it
//! closes. Requests that find it closed or missing wait on one shared connect instead of each
//! opening a connection of their own.

use std::{
    fmt,
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicBool, AtomicU32, Ordering::Relaxed},
    },
};

use arc_swap::ArcSwapOption;
use http::{Request, Response};
use hyper::{body::Incoming, client::conn::http2::SendRequest};
use pillion_config::Keepalive;
use tokio::sync::OnceCell;

use super::{IDLE_TIMEOUT, SWEEP_EVERY, SendError};
use crate::{
    body::Body,
    http2,
    upstream::connect::{ConnectError, Connector},
};

/// One connect, awaited by every request that found no open connection while it ran.
type Attempt = OnceCell<Result<SendRequest<Body>, ConnectError>>;

/// The HTTP/2 side of an endpoint's pool.
pub(super) struct Http2 {
    connector: Connector,
    keepalive: Option<Keepalive>,
    /// The connection requests go on, read without a lock on every request.
    current: ArcSwapOption<SendRequest<Body>>,
    /// The connect running or last finished. Held only to read or replace it, never across an
    /// await.
    attempt: Mutex<Option<Arc<Attempt>>>,
    /// Whether a request came since the last sweep (set only when clear, so that the hot path
    /// writes the shared cache line once per sweep, not once per request).
    used: AtomicBool,
    /// Sweeps in a row that found the connection unused.
    unused_sweeps: AtomicU32,
}

impl Http2 {
    /// The endpoint's address.
    pub(super) fn addr(&self) -> std::net::SocketAddr {
        self.connector.addr()
    }

    pub(super) fn new(connector: Connector, keepalive: Option<Keepalive>) -> Self {
        Self {
            connector,
            keepalive,
            current: ArcSwapOption::empty(),
            attempt: Mutex::new(None),
            used: AtomicBool::new(false),
            unused_sweeps: AtomicU32::new(0),
        }
    }

    /// Sends `req` on the shared connection. A request the connection gave back unsent (it
    /// closed, or got a GOAWAY, before taking it) goes once more, on a new connection.
    pub(super) async fn send(&self, req: Request<Body>) -> Result<Response<Incoming>, SendError> {
        if !self.used.load(Relaxed) {
            self.used.store(true, Relaxed);
        }
        let mut tx = self.sender().await.map_err(SendError::Connect)?;
        match try_send(&mut tx, req).await {
            Ok(resp) => Ok(resp),
            Err((e, Some(unsent))) => {
                tracing::debug!(
                    endpoint = %self.connector.addr(),
                    error = %e,
                    "HTTP/2 connection closed before the request was sent; retrying on a new one"
                );
                let mut tx = self.sender().await.map_err(SendError::Connect)?;
                try_send(&mut tx, unsent).await.map_err(|(e, _)| SendError::Http2(e))
            }
            Err((e, None)) => Err(SendError::Http2(e)),
        }
    }

    /// The open connection, or the result of the connect that replaces it.
    async fn sender(&self) -> Result<SendRequest<Body>, ConnectError> {
        if let Some(tx) = self.open() {
            return Ok(tx);
        }
        let attempt = {
            let mut slot = self.attempt.lock().unwrap_or_else(PoisonError::into_inner);
            match &*slot {
                Some(running) if !running.initialized() => Arc::clone(running),
                _ => {
                    // A connect that finished since the check above left a connection.
                    if let Some(tx) = self.open() {
                        return Ok(tx);
                    }
                    let fresh = Arc::new(Attempt::new());
                    *slot = Some(Arc::clone(&fresh));
                    fresh
                }
            }
        };
        // If the request running the connect is cancelled, a waiting one takes it over.
        // Boxed, as in HTTP/1.1: every request's future would otherwise have room for a connect.
        attempt.get_or_init(|| Box::pin(self.connect())).await.clone()
    }

    fn open(&self) -> Option<SendRequest<Body>> {
        self.current.load().as_deref().filter(|tx| !tx.is_closed()).cloned()
    }

    /// Opens a connection, runs it in its own task (which holds the connection's slot in the
    /// service's `max_connections` until it closes) and makes it the current one.
    async fn connect(&self) -> Result<SendRequest<Body>, ConnectError> {
        let addr = self.connector.addr();
        let io = self.connector.connect().await?;
        let tx = http2::client::handshake(io, addr, self.keepalive)
            .await
            .map_err(|e| ConnectError::Handshake(addr, e.into()))?;
        self.current.store(Some(Arc::new(tx.clone())));
        Ok(tx)
    }

    /// Lets go of the connection once it closed or went unused for the idle timeout; requests
    /// still on it keep it open until they end.
    pub(super) fn sweep(&self) {
        let unused = if self.used.swap(false, Relaxed) {
            self.unused_sweeps.store(0, Relaxed);
            0
        } else {
            self.unused_sweeps.fetch_add(1, Relaxed).saturating_add(1)
        };
        let closed = self.current.load().as_ref().is_some_and(|tx| tx.is_closed());
        if closed || SWEEP_EVERY.saturating_mul(unused) >= IDLE_TIMEOUT {
            self.current.store(None);
            let mut slot = self.attempt.lock().unwrap_or_else(PoisonError::into_inner);
            if slot.as_ref().is_some_and(|a| a.initialized()) {
                *slot = None;
            }
        }
    }
}

/// Sends once; on failure, the error and the request if it was never sent.
async fn try_send(
    tx: &mut SendRequest<Body>,
    req: Request<Body>,
) -> Result<Response<Incoming>, (hyper::Error, Option<Request<Body>>)> {
    if let Err(e) = tx.ready().await {
        return Err((e, Some(req)));
    }
    tx.try_send_request(req).await.map_err(|mut e| {
        let unsent = e.take_message();
        (e.into_error(), unsent)
    })
}

impl fmt::Debug for Http2 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Http2").field("addr", &self.connector.addr()).finish_non_exhaustive()
    }
}
