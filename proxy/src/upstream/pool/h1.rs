//! HTTP/1.1 to one endpoint: a LIFO stack of idle connections, and handing out one of them or
//! a new one for a request ([`http1`](crate::http1::client) runs the exchange in its task).
//!
//! LIFO hands out the most recently used connection, so the ones an upstream is about to close
//! for idleness age out at the bottom instead of being picked. The stack sits behind a
//! `std::sync::Mutex` held for one push or pop and never across an await: uncontended that is
//! one atomic each way, cheaper than any lock-free structure would be here.

use std::{
    fmt,
    sync::{Mutex, MutexGuard, PoisonError},
};

use tokio::time::Instant;

use super::{IDLE_TIMEOUT, MAX_IDLE, SendError};
use crate::upstream::{Http1Conn as Conn, connect::Connector};

/// The HTTP/1.1 side of an endpoint's pool.
pub(super) struct Http1 {
    connector: Connector,
    idle: Mutex<Vec<Idle>>,
}

/// A pooled connection and when it went idle.
struct Idle {
    conn: Box<Conn>,
    since: Instant,
}

impl Http1 {
    pub(super) fn new(connector: Connector) -> Self {
        Self { connector, idle: Mutex::new(Vec::new()) }
    }

    /// An idle connection, or a new one, and whether it was pooled. A pooled connection that the
    /// upstream closed is seen as closed before anything is written on it, unless the close
    /// crosses the request on the wire (see `Pool::send_http1`).
    ///
    /// It takes no request, so the request does not pass through one more future on its way
    /// (each async fn copies its arguments in, 300 bytes for a request).
    pub(super) async fn conn(&self) -> Result<(Box<Conn>, bool), SendError> {
        match self.checkout() {
            Some(conn) => Ok((conn, true)),
            // Boxed: a connect (and its TLS handshake) is rare next to a pooled send, and inline
            // it would make every request's future that much larger.
            None => Ok((Box::pin(self.connect()).await?, false)),
        }
    }

    /// A new connection, never a pooled one.
    pub(super) async fn fresh(&self) -> Result<Box<Conn>, SendError> {
        Box::pin(self.connect()).await
    }

    /// The most recently idle connection that is still open and not expired. Connections passed
    /// over are dropped, which closes them.
    fn checkout(&self) -> Option<Box<Conn>> {
        loop {
            let Idle { mut conn, since } = self.lock().pop()?;
            if since.elapsed() < IDLE_TIMEOUT && conn.is_usable() {
                return Some(conn);
            }
        }
    }

    /// Opens a connection (which holds the connection's slot in the service's
    /// `max_connections` until it closes).
    async fn connect(&self) -> Result<Box<Conn>, SendError> {
        Ok(Conn::new(self.connector.connect().await.map_err(SendError::Connect)?))
    }

    /// Puts a connection whose exchange is complete on top of the stack, unless the stack is
    /// full (then it is dropped, which closes it).
    pub(super) fn checkin(&self, conn: Box<Conn>) {
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
        stack.retain_mut(|c| now.saturating_duration_since(c.since) < IDLE_TIMEOUT && c.conn.is_usable());
    }

    #[cfg(test)]
    pub(super) fn idle(&self) -> usize {
        self.lock().len()
    }

    #[cfg(test)]
    pub(super) fn idle_open(&self) -> usize {
        self.lock().iter_mut().map(|c| c.conn.is_usable()).filter(|&open| open).count()
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
