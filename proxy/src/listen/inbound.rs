//! Inbound connections: where the client was going (original destination, or `inbound.app`),
//! mutual TLS per `inbound.mtls`, the port's policy, then HTTP or opaque TCP to the local app.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use pillion_config::{MtlsMode, Protocol};
use tokio::{
    io::{AsyncRead, AsyncWrite},
    net::TcpStream,
};
use tokio_rustls::TlsAcceptor;

use super::{
    detect::{self, DETECT_TIMEOUT, Detected},
    metered::meter,
    original_dst::original_dst,
    serve::{ConnCtx, serve_http},
    tcp,
};
use crate::{
    balance::Service,
    http::{self, ClientIdentity, Conn, Dest},
    metrics::Direction,
    tls::ALPN_TCP,
};

/// How long a client may take to complete its TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves one inbound connection.
pub async fn serve(stream: TcpStream, peer: SocketAddr, ctx: ConnCtx) {
    let rt = ctx.shared.serving.load_full();
    let cfg = &rt.config.inbound;
    // Redirected traffic goes to the app on the port it was sent to; other traffic to
    // `inbound.app`.
    let (port, app) = match (original_dst(&stream), cfg.app) {
        (Some(dst), _) => (dst.port(), SocketAddr::from(([127, 0, 0, 1], dst.port()))),
        (None, Some(app)) => (app.port(), app),
        (None, None) => {
            tracing::debug!(%peer, "inbound connection with no original destination and no inbound.app; closing");
            return;
        }
    };
    let port_protocol = cfg.port(port).map_or(Protocol::Auto, |p| p.protocol);
    // Detected at most once: what permissive mode peeks at also tells HTTP from opaque TCP.
    let mut detected = None;
    let tls = match cfg.mtls {
        MtlsMode::Strict => true,
        MtlsMode::Disabled => false,
        MtlsMode::Permissive => {
            *detected.insert(detect::detect(&stream, DETECT_TIMEOUT).await) == Detected::Tls
        }
    };
    let service = ctx.shared.direct.get(app, "inbound");
    drop(rt);

    if !tls {
        let is_http = detect::is_http(port_protocol, &stream, &mut detected).await;
        let conn = Conn::new(Direction::Inbound, peer, false, None, Dest::App { port, service });
        return to_app(stream, conn, is_http, detected, ctx).await;
    }

    let Some(tls) = ctx.shared.tls.as_ref() else {
        return; // validation requires `tls` whenever mTLS is on
    };
    let acceptor = TlsAcceptor::from(Arc::clone(&tls.server));
    let errors = ctx.shared.metrics.tls_handshake_errors(Direction::Inbound);
    // Boxed: the handshake's state is needed once, not for the connection's whole life.
    let stream = match Box::pin(tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream))).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            errors.inc();
            tracing::warn!(%peer, error = %e, "inbound mTLS handshake failed");
            return;
        }
        Err(_) => {
            errors.inc();
            tracing::warn!(%peer, "inbound mTLS handshake timed out");
            return;
        }
    };
    let session = stream.get_ref().1;
    // A peer sidecar says by ALPN whether it tunnels opaque TCP; otherwise the port decides.
    let is_http = match session.alpn_protocol() {
        Some(ALPN_TCP) => false,
        Some(_) => true,
        None => port_protocol != Protocol::Tcp,
    };
    let client = pillion_certs::peer_spiffe_id(session.peer_certificates()).map(|id| {
        let ours = tls.store.current();
        ClientIdentity::new(id, ours.identity().trust_domain())
    });
    let conn = Conn::new(Direction::Inbound, peer, true, client, Dest::App { port, service });
    to_app(stream, conn, is_http, None, ctx).await
}

async fn to_app<S>(stream: S, conn: Conn, is_http: bool, detected: Option<Detected>, ctx: ConnCtx)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let stream =
        meter(&ctx.shared, stream, Direction::Inbound, conn.tls, if is_http { "http" } else { "tcp" });
    if is_http {
        return serve_http(stream, conn, detected, ctx).await;
    }
    let rt = ctx.shared.serving.load_full();
    if http::authorize(&rt, &conn).is_err() {
        ctx.shared.metrics.authz_denied(Direction::Inbound).inc();
        let client = conn.client.as_ref().map(|c| c.id.to_string());
        tracing::info!(peer = %conn.peer, ?client, "inbound TCP connection denied by policy");
        return;
    }
    let Dest::App { service, .. } = &conn.dest else { return };
    let service: &Service = service;
    tcp::proxy(stream, service, "inbound").await;
}
