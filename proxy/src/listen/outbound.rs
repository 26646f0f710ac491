//! Outbound connections: explicit listeners (the app calls `localhost:PORT` for a service) and
//! transparent ones (iptables sent the app's connection here; the original destination says
//! where it was going). Known destinations are routed and balanced; unknown ones pass through.

use std::net::SocketAddr;

use pillion_config::Protocol;
use tokio::net::TcpStream;

use super::{
    detect,
    metered::meter,
    original_dst::original_dst,
    serve::{ConnCtx, serve_http},
    tcp,
};
use crate::{
    balance::direct::PASSTHROUGH,
    http::{Conn, Dest},
    metrics::Direction,
};

/// Serves a connection on explicit listener `listener`.
pub async fn serve_explicit(stream: TcpStream, peer: SocketAddr, listener: usize, ctx: ConnCtx) {
    let rt = ctx.shared.serving.load_full();
    let tcp_service = rt
        .config
        .outbound
        .listeners
        .get(listener)
        .and_then(|l| l.service)
        .filter(|&s| rt.config.services[s].protocol == Protocol::Tcp);
    if let Some(s) = tcp_service {
        let stream = meter(&ctx.shared, stream, Direction::Outbound, false, "tcp");
        // A TCP flow has no graceful end to signal; holding `drain` lets it run to the deadline.
        return tcp::proxy(stream, &rt.services[s], &rt.config.services[s].name).await;
    }
    drop(rt);
    let stream = meter(&ctx.shared, stream, Direction::Outbound, false, "http");
    let conn = Conn::new(Direction::Outbound, peer, false, None, Dest::Listener(listener));
    serve_http(stream, conn, None, ctx).await
}

/// Serves a connection redirected to the transparent outbound listener.
pub async fn serve_transparent(stream: TcpStream, peer: SocketAddr, ctx: ConnCtx) {
    let Some(dst) = original_dst(&stream) else {
        // Forwarding it would connect back to ourselves.
        tracing::warn!(%peer, "connection to the transparent outbound listener was not redirected; closing");
        return;
    };
    let rt = ctx.shared.serving.load_full();
    let known = rt.by_addr.get(&dst).copied();
    let protocol = known.map_or(Protocol::Auto, |s| rt.config.services[s].protocol);
    let mut detected = None;
    let is_http = detect::is_http(protocol, &stream, &mut detected).await;
    if is_http {
        drop(rt);
        let passthrough = ctx.shared.direct.get(dst, PASSTHROUGH);
        let stream = meter(&ctx.shared, stream, Direction::Outbound, false, "http");
        let conn = Conn::new(Direction::Outbound, peer, false, None, Dest::Original { dst, passthrough });
        return serve_http(stream, conn, detected, ctx).await;
    }
    let stream = meter(&ctx.shared, stream, Direction::Outbound, false, "tcp");
    match known {
        Some(s) => tcp::proxy(stream, &rt.services[s], &rt.config.services[s].name).await,
        None => tcp::proxy(stream, &ctx.shared.direct.get(dst, PASSTHROUGH), PASSTHROUGH).await,
    }
}
