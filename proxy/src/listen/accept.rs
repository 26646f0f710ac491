//! The accept loop: the listener's connection limit, backoff when the process is out of file
//! descriptors, and stopping on drain; each connection goes to `inbound` or `outbound`, which
//! decide what it is for.

use std::{sync::Arc, time::Duration};

use pillion_config::ListenerLimits;
use tokio::{net::TcpListener, sync::Semaphore};

use super::{
    inbound, outbound,
    serve::{ConnCtx, ListenerHttp},
};
use crate::{drain::drained, live::Shared, metrics::Direction};

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
                shared.metrics.connections_refused(spec.direction()).inc();
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
