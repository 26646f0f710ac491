//! Serving HTTP on an accepted connection: the one codec its first bytes ask for (our HTTP/1.1
//! server, or hyper's HTTP/2 one), behind the guard, each request handed to `http::handle`.

use std::sync::Arc;

use pillion_config::ListenerLimits;
use tokio::{
    io::{AsyncRead, AsyncWrite},
    sync::{OwnedSemaphorePermit, watch},
};

use super::{detect::Detected, guard::Guarded};
use crate::{body::ClientBody, drain::drained, http::Conn, http1, http2, live::Shared};

/// A listener's HTTP server settings and limits, shared by its connections.
pub struct ListenerHttp {
    /// HTTP/1.1 server settings.
    pub http1: http1::server::Settings,
    /// HTTP/2 server settings.
    pub http2: http2::server::Builder,
    /// The listener's limits.
    pub limits: ListenerLimits,
}

impl ListenerHttp {
    /// The HTTP server settings for a listener's clients.
    pub fn new(limits: &ListenerLimits) -> Self {
        // The guard keeps the header and idle timeouts.
        let h1 = http1::server::Settings {
            limits: http1::request::Limits {
                max_head: limits.max_header_bytes,
                max_headers: limits.max_headers,
                max_request_line: limits.max_request_line_bytes,
            },
            max_requests: limits.max_requests_per_connection,
        };
        Self { http1: h1, http2: http2::server::builder(limits), limits: limits.clone() }
    }
}

/// What serving one accepted connection needs. Dropping it ends the connection's claim on the
/// listener: its `max_connections` slot, and draining's wait.
pub struct ConnCtx {
    /// The listener's settings.
    pub http: Arc<ListenerHttp>,
    /// Process-wide state.
    pub shared: Arc<Shared>,
    /// Held while the connection lives, so that draining waits for it.
    pub drain: watch::Receiver<bool>,
    /// The connection's slot in the listener's `max_connections`.
    pub permit: OwnedSemaphorePermit,
}

/// Serves HTTP/1.1 and HTTP/2 on a connection until it closes, or finishes it gracefully when
/// the proxy drains.
pub async fn serve_http<S>(stream: S, conn: Conn, detected: Option<Detected>, ctx: ConnCtx)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let ConnCtx { http, shared, mut drain, permit: _permit } = ctx;
    let ListenerHttp { http1, http2, limits } = &*http;
    let peer = conn.peer;
    let rejections = shared.metrics.rejections(conn.direction);
    let mut stream = Guarded::new(stream, limits, peer, rejections.clone());
    // Each connection is served by the one codec its first bytes ask for: as detected already,
    // or (inside TLS, or on a port whose protocol the config names) read through the guard.
    let sniffed = match detected {
        Some(Detected::Http2) => Ok(stream.start_http2()),
        Some(Detected::Http1) => Ok(false),
        _ => tokio::select! {
            s = stream.sniff_http2() => s,
            _ = drained(&mut drain) => return,
        },
    };
    let is_http2 = match sniffed {
        Ok(h2) => h2,
        Err(e) => {
            tracing::debug!(%peer, error = %e, "client connection failed before its first request");
            return;
        }
    };
    let conn = Arc::new(conn);
    if !is_http2 {
        // The service's future is `handle`'s own, so the server builds it in its box: wrapped in
        // another async block, it would be made on the stack and copied in (~5 KiB a request).
        let service = |req: ::http::Request<http1::body::RequestBody>| {
            crate::http::handle(Arc::clone(&shared), Arc::clone(&conn), req.map(ClientBody::Http1))
        };
        return http1::server::serve(stream, *http1, &mut drain, &rejections, service).await;
    }
    let service = move |req: ::http::Request<hyper::body::Incoming>| {
        crate::http::handle(Arc::clone(&shared), Arc::clone(&conn), req.map(ClientBody::from))
    };
    if let Err(e) = http2::server::serve(stream, http2, &mut drain, service).await {
        tracing::debug!(%peer, error = %e, "client connection ended with an error");
    }
}
