//! Listeners: the accept loop (connection limit, backoff on EMFILE, stop on drain), connection
//! metering, and serving HTTP/1.1 + HTTP/2 on a connection. What a connection is for is decided
//! in `inbound` and `outbound`.

use std::{convert::Infallible, sync::Arc, time::Duration};

use hyper::{server::conn::http2, service::service_fn};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::{
    io::{AsyncRead, AsyncWrite},
    net::TcpListener,
    sync::{OwnedSemaphorePermit, Semaphore, watch},
};

use crate::{
    coalesce::{Coalesce, Counted, Polls},
    graceful,
    guard::{Guarded, Rejections},
    h1::{self, server::Settings},
    http::{Conn, body::ClientBody},
    inbound,
    live::Shared,
    metered::{ConnMetrics, Metered},
    metrics::{Direction, tls_label},
    outbound,
};
use pillion_config::ListenerLimits;

/// What a listener serves.
#[derive(Debug, Clone, Copy)]
pub enum ListenerSpec {
    /// Traffic into the pod.
    Inbound,
    /// The app's traffic, redirected by iptables.
    Transparent,
    /// An explicit outbound listener: index in `outbound.listeners`.
    Explicit(usize),
}

impl ListenerSpec {
    fn direction(self) -> Direction {
        match self {
            Self::Inbound => Direction::Inbound,
            Self::Transparent | Self::Explicit(_) => Direction::Outbound,
        }
    }
}

/// A listener's HTTP server settings and limits, shared by its connections.
pub struct ListenerHttp {
    /// HTTP/1.1 server settings.
    pub http1: Settings,
    /// HTTP/2 server settings.
    pub http2: http2::Builder<TokioExecutor>,
    /// The listener's limits.
    pub limits: ListenerLimits,
}

impl ListenerHttp {
    /// The HTTP server settings for a listener's clients.
    fn new(limits: &ListenerLimits) -> Self {
        // The guard keeps the header and idle timeouts.
        let h1 = Settings {
            limits: h1::request::Limits {
                max_head: limits.max_header_bytes,
                max_headers: limits.max_headers,
                max_request_line: limits.max_request_line_bytes,
            },
            max_requests: limits.max_requests_per_connection,
        };
        let mut h2 = http2::Builder::new(TokioExecutor::new());
        h2.timer(TokioTimer::new())
            .max_concurrent_streams(limits.max_concurrent_streams)
            .max_header_list_size(u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX))
            .max_pending_accept_reset_streams(64)
            .max_local_error_reset_streams(256)
            .adaptive_window(true)
            .keep_alive_interval(Duration::from_secs(30))
            .keep_alive_timeout(Duration::from_secs(10));
        Self { http1: h1, http2: h2, limits: limits.clone() }
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

/// Accepts connections until the proxy drains.
pub async fn accept_loop(tcp: TcpListener, spec: ListenerSpec, limits: ListenerLimits, shared: Arc<Shared>) {
    // The HTTP settings and the limits, shared by the listener's connections.
    let http = Arc::new(ListenerHttp::new(&limits));
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let mut drain = shared.drain.subscribe();
    let dir = spec.direction().as_str();
    let mut backoff = Duration::from_millis(5);
    loop {
        // At the limit we stop accepting: the kernel backlog holds further clients.
        let permit = match Arc::clone(&permits).try_acquire_owned() {
            Ok(p) => p,
            Err(_) => {
                shared.metrics.connections_refused.with_label_values(&[dir]).inc();
                tracing::warn!(
                    direction = dir,
                    max = limits.max_connections,
                    "listener at max_connections; pausing accept"
                );
                tokio::select! {
                    p = Arc::clone(&permits).acquire_owned() => match p { Ok(p) => p, Err(_) => return },
                    _ = drained(&mut drain) => return,
                }
            }
        };
        let accepted = tokio::select! {
            a = tcp.accept() => a,
            _ = drained(&mut drain) => return,
        };
        let (stream, peer) = match accepted {
            Ok(a) => {
                backoff = Duration::from_millis(5);
                a
            }
            Err(e) => {
                // EMFILE, ENFILE, ENOBUFS...: back off instead of spinning on a full table.
                tracing::warn!(direction = dir, error = %e, ?backoff, "accept failed; backing off");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let ctx =
            ConnCtx { http: Arc::clone(&http), shared: Arc::clone(&shared), drain: drain.clone(), permit };
        // A task per kind of listener: each connection's task is only as large as what its
        // listener can do (an inbound one has room for a TLS handshake, an explicit one not).
        match spec {
            ListenerSpec::Inbound => tokio::spawn(inbound::serve(stream, peer, ctx)),
            ListenerSpec::Transparent => tokio::spawn(outbound::serve_transparent(stream, peer, ctx)),
            ListenerSpec::Explicit(i) => tokio::spawn(outbound::serve_explicit(stream, peer, i, ctx)),
        };
    }
}

/// Counts an accepted connection and wraps it so its bytes are counted too.
pub fn meter<S>(shared: &Shared, stream: S, direction: Direction, tls: bool, protocol: &str) -> Metered<S> {
    let (dir, tls) = (direction.as_str(), tls_label(tls));
    let m = &shared.metrics;
    m.tcp_connections.with_label_values(&[dir, tls, protocol]).inc();
    let cm = ConnMetrics {
        read: m.tcp_read_bytes.with_label_values(&[dir]),
        written: m.tcp_write_bytes.with_label_values(&[dir]),
        open: m.tcp_open.with_label_values(&[dir, tls, protocol]),
    };
    Metered::new(stream, cm)
}

/// Serves HTTP/1.1 and HTTP/2 on a connection until it closes, or finishes it gracefully when
/// the proxy drains.
pub async fn serve_http<S>(stream: S, conn: Conn, ctx: ConnCtx)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let ConnCtx { http, shared, mut drain, permit: _permit } = ctx;
    let ListenerHttp { http1, http2, limits } = &*http;
    let peer = conn.peer;
    let rejections =
        Rejections { counter: shared.metrics.http_rejected.clone(), direction: conn.direction.as_str() };
    let mut stream = Guarded::new(stream, limits, peer, rejections.clone());
    // Each connection is served by the one codec its first bytes ask for.
    let sniffed = tokio::select! {
        s = stream.sniff_http2() => s,
        _ = drained(&mut drain) => return,
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
        let service = |req: ::http::Request<h1::body::RequestBody>| {
            crate::http::handle(Arc::clone(&shared), Arc::clone(&conn), req.map(ClientBody::Http1))
        };
        return h1::server::serve(stream, *http1, &mut drain, &rejections, service).await;
    }
    let svc = service_fn(move |req: ::http::Request<hyper::body::Incoming>| {
        // Boxed where it is built, as in the HTTP/1.1 server: hyper moves the service's future
        // into its stream task and the spawn moves that again, and each move of the ~5 KiB
        // request future was a copy of all of it.
        let (shared, conn) = (Arc::clone(&shared), Arc::clone(&conn));
        let handling =
            Box::write(Box::new_uninit(), crate::http::handle(shared, conn, req.map(ClientBody::from)));
        let handling = Box::into_pin(handling);
        async move { Ok::<_, Infallible>(handling.await) }
    });
    // The frames one poll of the connection makes leave in one write (see `coalesce`); hyper's
    // server polls the codec in this task, so this task's polls are the ones counted.
    let polls = Polls::default();
    let io = TokioIo::new(Coalesce::new(stream, polls.clone()));
    // Boxed: inline, its ~5 KiB of state would be in every connection's task, HTTP/1.1 too.
    let mut served = Box::pin(Counted::new(http2.serve_connection(io, svc), polls));
    let ended = graceful::until_drained(served.as_mut(), &mut drain, |s| s.inner().graceful_shutdown());
    if let Err(e) = ended.await {
        tracing::debug!(%peer, error = %e, "client connection ended with an error");
    }
}

/// Resolves once the proxy starts draining (or its drain sender is gone).
pub async fn drained(drain: &mut watch::Receiver<bool>) {
    // The guard `wait_for` returns is not `Send`; drop it here, not in the caller's state.
    let _ = drain.wait_for(|d| *d).await;
}
