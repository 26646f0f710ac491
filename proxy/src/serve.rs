//! Listeners: the accept loop (connection limit, backoff on EMFILE, stop on drain) and serving
//! one accepted connection as HTTP/1.1 + HTTP/2, or as opaque TCP when its service says so.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use hyper::service::service_fn;
use hyper_util::{
    rt::{TokioExecutor, TokioIo, TokioTimer},
    server::conn::auto,
};
use tokio::{
    io::{AsyncRead, AsyncWrite},
    net::{TcpListener, TcpStream},
    sync::{Semaphore, watch},
};
use tokio_rustls::TlsAcceptor;

use crate::{
    config::{ListenerLimits, MtlsMode, Protocol},
    detect::{self, Detected},
    http::{self, ClientIdentity, Conn},
    metered::{ConnMetrics, Metered},
    metrics::{Direction, tls_label},
    runtime::Shared,
    tcp,
};

/// What a listener serves.
#[derive(Debug, Clone, Copy)]
pub struct ListenerSpec {
    /// Inbound or outbound.
    pub direction: Direction,
    /// Index of the explicit outbound listener in the config, if it is one.
    pub listener: Option<usize>,
}

/// The HTTP server settings for a listener's clients.
fn http_builder(limits: &ListenerLimits) -> auto::Builder<TokioExecutor> {
    let mut b = auto::Builder::new(TokioExecutor::new());
    b.http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(limits.max_header_bytes)
        .max_headers(limits.max_headers);
    b.http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(limits.max_concurrent_streams)
        .max_header_list_size(u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX))
        .max_pending_accept_reset_streams(64)
        .max_local_error_reset_streams(256)
        .adaptive_window(true)
        .keep_alive_interval(Duration::from_secs(30))
        .keep_alive_timeout(Duration::from_secs(10));
    b
}

/// Accepts connections until the proxy drains.
pub async fn accept_loop(tcp: TcpListener, spec: ListenerSpec, limits: ListenerLimits, shared: Arc<Shared>) {
    let builder = Arc::new(http_builder(&limits));
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let mut drain = shared.drain.subscribe();
    let dir = spec.direction.as_str();
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
        let shared = Arc::clone(&shared);
        let builder = Arc::clone(&builder);
        let drain = drain.clone();
        tokio::spawn(async move {
            let _permit = permit;
            serve_connection(stream, peer, spec, &builder, shared, drain).await;
        });
    }
}

/// How long an inbound client may take to complete its TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long permissive mode waits for a client's first bytes to tell TLS from plaintext.
const DETECT_TIMEOUT: Duration = Duration::from_secs(5);

async fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    spec: ListenerSpec,
    builder: &auto::Builder<TokioExecutor>,
    shared: Arc<Shared>,
    drain: watch::Receiver<bool>,
) {
    let _ = stream.set_nodelay(true);
    let rt = shared.runtime.load_full();
    let cfg = &rt.config;
    // What this connection is: TLS or not, and which service or app port it is for.
    let (tls, tcp_service, app_port) = match spec.direction {
        Direction::Outbound => {
            let tcp = spec
                .listener
                .and_then(|i| cfg.outbound.listeners.get(i))
                .map(|l| l.service)
                .filter(|&s| cfg.services[s].protocol == Protocol::Tcp);
            (false, tcp, None)
        }
        Direction::Inbound => {
            let tls = match cfg.inbound.mtls {
                MtlsMode::Strict => true,
                MtlsMode::Disabled => false,
                MtlsMode::Permissive => detect::detect(&stream, DETECT_TIMEOUT).await == Detected::Tls,
            };
            (tls, None, cfg.inbound.app.map(|a| a.port()))
        }
    };
    let inbound_tcp = app_port.and_then(|p| cfg.inbound.port(p)).is_some_and(|p| p.protocol == Protocol::Tcp);
    let protocol = if tcp_service.is_some() || inbound_tcp { "tcp" } else { "http" };
    let dir = spec.direction.as_str();
    let m = &shared.metrics;
    m.tcp_connections.with_label_values(&[dir, tls_label(tls), protocol]).inc();
    let cm = ConnMetrics {
        read: m.tcp_read_bytes.with_label_values(&[dir]),
        written: m.tcp_write_bytes.with_label_values(&[dir]),
        open: m.tcp_open.with_label_values(&[dir, tls_label(tls), protocol]),
    };
    let stream = Metered::new(stream, cm);

    if let Some(s) = tcp_service {
        // A TCP flow has no graceful end we could signal; holding `drain` lets it run to the
        // drain deadline.
        tcp::proxy(stream, &rt.services[s], &cfg.services[s].name).await;
        return;
    }

    let mut conn =
        Conn { direction: spec.direction, listener: spec.listener, peer, tls, client: None, app_port };
    if !tls {
        drop(rt);
        if inbound_tcp {
            return serve_inbound_tcp(stream, conn, shared).await;
        }
        return serve_http(stream, conn, builder, shared, drain).await;
    }
    let Some(acceptor) = shared.tls.as_ref().map(|t| TlsAcceptor::from(Arc::clone(&t.server))) else {
        return; // validation guarantees `tls` when mTLS is on
    };
    drop(rt);
    let stream = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            m.tls_handshake_errors.with_label_values(&[dir]).inc();
            tracing::warn!(%peer, error = %e, "inbound mTLS handshake failed");
            return;
        }
        Err(_) => {
            m.tls_handshake_errors.with_label_values(&[dir]).inc();
            tracing::warn!(%peer, "inbound mTLS handshake timed out");
            return;
        }
    };
    conn.client =
        pillion_certs::peer_spiffe_id(stream.get_ref().1.peer_certificates()).map(ClientIdentity::new);
    if inbound_tcp {
        return serve_inbound_tcp(stream, conn, shared).await;
    }
    serve_http(stream, conn, builder, shared, drain).await
}

/// Opaque TCP to the local app, once the client is authorized for the port.
async fn serve_inbound_tcp<S>(stream: S, conn: Conn, shared: Arc<Shared>)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let rt = shared.runtime.load_full();
    if let Err(e) = http::authorize(&rt, &conn) {
        shared.metrics.authz_denied.with_label_values(&[conn.direction.as_str()]).inc();
        tracing::info!(peer = %conn.peer, client = ?conn.client.as_ref().map(|c| c.id.to_string()), ?e, "TCP connection denied");
        return;
    }
    if let Some(app) = &rt.inbound_app {
        tcp::proxy(stream, app, "inbound").await;
    }
}

async fn serve_http<S>(
    stream: S,
    conn: Conn,
    builder: &auto::Builder<TokioExecutor>,
    shared: Arc<Shared>,
    mut drain: watch::Receiver<bool>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let peer = conn.peer;
    let conn = Arc::new(conn);
    let svc = service_fn(move |req| http::handle(Arc::clone(&shared), Arc::clone(&conn), req));
    let served = builder.serve_connection_with_upgrades(TokioIo::new(stream), svc);
    tokio::pin!(served);
    let result = tokio::select! {
        r = served.as_mut() => r,
        _ = drained(&mut drain) => {
            served.as_mut().graceful_shutdown();
            served.await
        }
    };
    if let Err(e) = result {
        tracing::debug!(%peer, error = %e, "client connection ended with an error");
    }
}

/// Resolves once the proxy starts draining (or its drain sender is gone).
pub async fn drained(drain: &mut watch::Receiver<bool>) {
    // The guard `wait_for` returns is not `Send`; drop it here, not in the caller's state.
    let _ = drain.wait_for(|d| *d).await;
}
