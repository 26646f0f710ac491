//! The connections of one endpoint: a stack of idle HTTP/1.1 connections (`h1`) and one shared
//! HTTP/2 connection (`h2`), and the sweep that closes what sat idle too long.
//!
//! Each endpoint owns its pool, so there is no map keyed by authority and no lock shared between
//! endpoints: a request costs one uncontended mutex push and pop (HTTP/1.1) or one `ArcSwap` load
//! (HTTP/2). The sweep is one tokio task per endpoint, started on first use and holding only a
//! `Weak` to the pool: every 30 s it drops idle connections that closed or passed the idle
//! timeout, and it is aborted when the pool is dropped (a reload that removes the endpoint).

mod body;
mod h1;
mod h2;
#[cfg(test)]
mod tests;

use std::{
    fmt,
    pin::pin,
    sync::{Arc, OnceLock, Weak},
    time::Duration,
};

use http::{Request, Response};
use pillion_config::Keepalive;
use tokio::task::AbortHandle;

use super::connect::{ConnectError, Connector};
use crate::body::Body;
pub use body::UpstreamBody;

/// How long an idle connection is kept.
const IDLE_TIMEOUT: Duration = Duration::from_secs(90);
/// Idle HTTP/1.1 connections kept per endpoint. A burst may open many more; keeping them all
/// would hold memory (and the endpoint's sockets) for traffic that is gone.
const MAX_IDLE: usize = 64;
/// How often the sweep looks for idle connections to close.
const SWEEP_EVERY: Duration = Duration::from_secs(30);

/// Why a request got no response from the endpoint.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// No connection could be had: connect, TLS, handshake, or the service's connection limit.
    #[error("no connection to the endpoint")]
    Connect(#[source] ConnectError),
    /// The HTTP/1.1 exchange failed, or the request's own body failed.
    #[error("upstream exchange failed")]
    Http1(#[source] crate::http1::client::Error),
    /// The HTTP/2 exchange failed, or the request's own body failed.
    #[error("upstream exchange failed")]
    Http2(#[source] hyper::Error),
}

/// The HTTP/1.1 and HTTP/2 connections to one endpoint.
pub struct Pool {
    h1: h1::Http1,
    h2: h2::Http2,
    /// The sweep task, once started.
    sweeper: OnceLock<AbortHandle>,
}

impl Pool {
    /// An empty pool; `h1` and `h2` open its connections (each offers only its own ALPN), and
    /// HTTP/2 connections are kept alive by `keepalive`.
    pub fn new(h1: Connector, h2: Connector, keepalive: Option<Keepalive>) -> Arc<Self> {
        let h2 = h2::Http2::new(h2, keepalive);
        Arc::new(Self { h1: h1::Http1::new(h1), h2, sweeper: OnceLock::new() })
    }

    /// Sends `req` (origin-form URI, `Host` set) over HTTP/1.1. The connection returns to the
    /// pool when the response body has been read to its end. With `resendable` (an idempotent
    /// request without a body), a request that a pooled connection's close crossed on the wire
    /// (an idle timeout, a server stopping) with not a byte of answer goes once more, on a new
    /// connection.
    pub async fn send_http1(
        self: &Arc<Self>,
        req: Request<Body>,
        resendable: bool,
    ) -> Result<Response<UpstreamBody>, SendError> {
        let (conn, pooled) = self.h1.conn().await?;
        // The response body owns the connection and checks it back in once it is read.
        let resp = match pin!(conn.send_or_give_back(req)).await {
            Ok(resp) => resp,
            Err((e, Some(head))) if pooled && resendable && e.is_upstream_close() => {
                tracing::debug!(endpoint = %self.h1.addr(), error = %e, "pooled HTTP/1.1 connection closed under the request; sending it on a new one");
                let conn = self.h1.fresh().await?;
                pin!(conn.send(Request::from_parts(head, Body::Empty))).await.map_err(SendError::Http1)?
            }
            Err((e, _)) => return Err(SendError::Http1(e)),
        };
        let addr = self.h1.addr();
        Ok(resp.map(|body| UpstreamBody::http1(body, addr, Arc::clone(self))))
    }

    /// Sends `req` (absolute URI) on the endpoint's shared HTTP/2 connection.
    pub async fn send_http2(
        self: &Arc<Self>,
        req: Request<Body>,
    ) -> Result<Response<UpstreamBody>, SendError> {
        self.start_sweep();
        let resp = pin!(self.h2.send(req)).await?;
        let addr = self.h2.addr();
        Ok(resp.map(|body| UpstreamBody::http2(body, addr)))
    }

    /// Takes back an HTTP/1.1 connection whose response was read to its end.
    fn checkin(self: &Arc<Self>, conn: Box<super::Http1Conn>) {
        self.h1.checkin(conn);
        self.start_sweep();
    }

    /// Starts the sweep on first use: a pool made outside a runtime (`pillion check`, tests)
    /// or never used spawns nothing.
    fn start_sweep(self: &Arc<Self>) {
        self.sweeper.get_or_init(|| tokio::spawn(sweep(Arc::downgrade(self))).abort_handle());
    }

    #[cfg(test)]
    fn idle_http1(&self) -> usize {
        self.h1.idle()
    }
}

/// Every `SWEEP_EVERY`, drops the pool's closed and expired idle connections; ends with the pool.
async fn sweep(pool: Weak<Pool>) {
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + SWEEP_EVERY, SWEEP_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(pool) = pool.upgrade() else { return };
        pool.h1.sweep();
        pool.h2.sweep();
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        if let Some(task) = self.sweeper.get() {
            task.abort();
        }
    }
}

impl fmt::Debug for Pool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pool").field("h1", &self.h1).field("h2", &self.h2).finish_non_exhaustive()
    }
}
