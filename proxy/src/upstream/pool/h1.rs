//! HTTP/1.1 to one endpoint: a LIFO stack of idle connections, and sending on one of them or on
//! a new one. Each connection runs in its own task and is nudged by the request sent on it
//! ([`Drive`]).
//!
//! LIFO hands out the most recently used connection, so the ones an upstream is about to close
//! for idleness age out at the bottom instead of being picked. The stack sits behind a
//! `std::sync::Mutex` held for one push or pop and never across an await: uncontended that is
//! one atomic each way, cheaper than any lock-free structure would be here.

use std::{
    fmt,
    sync::{Arc, Mutex, MutexGuard, PoisonError},
    time::Duration,
};

use http::{Request, Response};
use hyper::{
    body::Incoming,
    client::conn::{
        TrySendError,
        http1::{Builder, SendRequest},
    },
};
use hyper_util::rt::TokioIo;
use tokio::time::Instant;

use super::{IDLE_TIMEOUT, MAX_IDLE, SendError, drive::Drive};
use crate::{
    http::body::Body,
    upstream::connect::{ConnectError, Connector},
};

/// How long checkout waits for a pooled connection that is not yet ready. A connection goes
/// back to the pool as soon as its response body ends, a moment before its own task has made
/// it idle; waiting that moment out beats opening a new connection. Longer means the request
/// body is still being written after the response (an early answer to an upload): give up on
/// that connection.
const READY_WAIT: Duration = Duration::from_millis(20);

/// The HTTP/1.1 side of an endpoint's pool.
pub(super) struct Http1 {
    connector: Connector,
    builder: Builder,
    idle: Mutex<Vec<Idle>>,
}

/// A connection: the handle requests are sent on, and the future that runs it.
pub(super) struct Conn {
    pub(super) tx: SendRequest<Body>,
    drive: Arc<Drive>,
}

impl Conn {
    /// Runs `conn`, the connection's future, in a task of its own, nudged by each request sent
    /// on `tx`.
    pub(super) fn spawn(tx: SendRequest<Body>, conn: impl Future<Output = ()> + Send + 'static) -> Self {
        Self { tx, drive: Drive::spawn(conn) }
    }

    /// Queues `req` on the connection and, when `write_now`, writes it out in the caller's task
    /// ([`Drive::nudge`]); the future is the response.
    fn send(
        &mut self,
        req: Request<Body>,
        write_now: bool,
    ) -> impl Future<Output = Result<Response<Incoming>, TrySendError<Request<Body>>>> + use<> {
        let sent = self.tx.try_send_request(req);
        if write_now {
            self.drive.nudge();
        }
        sent
    }
}

/// A pooled connection and when it went idle.
struct Idle {
    conn: Conn,
    since: Instant,
}

impl Http1 {
    pub(super) fn new(connector: Connector) -> Self {
        Self { connector, builder: Builder::new(), idle: Mutex::new(Vec::new()) }
    }

    /// Sends `req` on an idle connection or a new one; returns the response with the connection,
    /// for the caller to check in once the body is read. A request that an idle connection
    /// refused unsent (it closed while pooled) goes once more, on a new connection; one that
    /// may have been written is never sent again.
    pub(super) async fn send(
        &self,
        req: Request<Body>,
        write_now: bool,
    ) -> Result<(Response<Incoming>, Conn), SendError> {
        let mut req = req;
        if let Some(mut conn) = self.checkout().await {
            match conn.send(req, write_now).await {
                Ok(resp) => return Ok((resp, conn)),
                Err(mut e) => match e.take_message() {
                    Some(unsent) => {
                        tracing::debug!(
                            endpoint = %self.connector.addr(),
                            error = %e.error(),
                            "pooled connection closed before the request was written; retrying on a new one"
                        );
                        req = unsent;
                    }
                    None => return Err(SendError::Http(e.into_error())),
                },
            }
        }
        // Boxed: a connect (and its TLS handshake) is rare next to a pooled send, and inline it
        // would make every request's future, which each connection keeps, that much larger.
        let mut conn = Box::pin(self.connect()).await?;
        let resp = conn.send(req, write_now).await.map_err(|e| SendError::Http(e.into_error()))?;
        Ok((resp, conn))
    }

    /// The most recently idle connection that is open, ready and not expired. Connections
    /// passed over are dropped, which closes them.
    async fn checkout(&self) -> Option<Conn> {
        loop {
            let Idle { mut conn, since } = self.lock().pop()?;
            if conn.tx.is_closed() || since.elapsed() >= IDLE_TIMEOUT {
                continue;
            }
            if conn.tx.is_ready()
                || matches!(tokio::time::timeout(READY_WAIT, conn.tx.ready()).await, Ok(Ok(())))
            {
                return Some(conn);
            }
        }
    }

    /// Opens a connection and runs it in its own task (which holds the connection's slot in
    /// the service's `max_connections` until the connection closes).
    async fn connect(&self) -> Result<Conn, SendError> {
        let addr = self.connector.addr();
        let io = self.connector.connect().await.map_err(SendError::Connect)?;
        let (tx, conn) = self
            .builder
            .handshake(TokioIo::new(io))
            .await
            .map_err(|e| SendError::Connect(ConnectError::Handshake(addr, e.into())))?;
        Ok(Conn::spawn(tx, async move {
            if let Err(e) = conn.with_upgrades().await {
                tracing::debug!(endpoint = %addr, error = %e, "upstream HTTP/1.1 connection failed");
            }
        }))
    }

    /// Puts a connection whose exchange is complete on top of the stack, unless it closed or
    /// the stack is full (then it is dropped, which closes it).
    pub(super) fn checkin(&self, conn: Conn) {
        if conn.tx.is_closed() {
            return;
        }
        let idle = Idle { conn, since: Instant::now() };
        let mut stack = self.lock();
        if stack.len() < MAX_IDLE {
            stack.push(idle);
            return;
        }
        drop(stack);
        drop(idle);
    }

    /// The endpoint's address.
    pub(super) fn addr(&self) -> std::net::SocketAddr {
        self.connector.addr()
    }

    /// Drops idle connections that closed or expired.
    pub(super) fn sweep(&self) {
        let now = Instant::now();
        let mut stack = self.lock();
        stack.retain(|c| !c.conn.tx.is_closed() && now.saturating_duration_since(c.since) < IDLE_TIMEOUT);
    }

    #[cfg(test)]
    pub(super) fn idle(&self) -> usize {
        self.lock().len()
    }

    #[cfg(test)]
    pub(super) fn idle_open(&self) -> usize {
        self.lock().iter().filter(|c| !c.conn.tx.is_closed()).count()
    }

    /// The stack; a panic while it was held cannot leave it inconsistent (one push or pop).
    fn lock(&self) -> MutexGuard<'_, Vec<Idle>> {
        self.idle.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl fmt::Debug for Http1 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Http1").field("addr", &self.connector.addr()).finish_non_exhaustive()
    }
}
