//! Upstream services and endpoints: where requests go once routed. Each endpoint owns its pool
//! of HTTP/1.1 and HTTP/2 connections, its load and its health; each service its limits and retry
//! budget. All of it outlives config reloads that keep the service or endpoint.

pub mod connect;
pub mod direct;
pub mod http1;
pub mod pool;

use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering::Relaxed},
    },
    time::Duration,
};

use pillion_certs::{
    SpiffeId,
    tls::{ALPN_H2, ALPN_HTTP11},
};

use crate::{
    balance::{Balancer, load::Load, outlier::Health},
    retry::Budget,
    tls::{ALPN_TCP, Tls, TlsTarget},
};
pub use connect::{ConnLimit, ConnectError, Connector, UpstreamStream};
pub use pool::{Pool, SendError, UpstreamBody};

/// A service as the request path sees it: its balancer over endpoints, and its shared state.
#[derive(Debug)]
pub struct Service {
    /// Picks endpoints.
    pub balancer: Balancer,
    /// Limits and retry budget.
    pub state: Arc<ServiceState>,
}

/// What a service keeps across reloads: request and connection limits, and the retry budget.
#[derive(Debug)]
pub struct ServiceState {
    /// Retries against recent requests.
    pub budget: Budget,
    /// Requests waiting for or in flight to an endpoint.
    pending: AtomicUsize,
    /// `limits.max_pending`; updated in place on reload.
    pub max_pending: AtomicUsize,
    /// Upstream connections against `limits.max_connections`.
    pub connections: Arc<ConnLimit>,
}

impl ServiceState {
    /// State with the given limits.
    pub fn new(max_pending: usize, max_connections: usize) -> Arc<Self> {
        Arc::new(Self {
            budget: Budget::default(),
            pending: AtomicUsize::new(0),
            max_pending: AtomicUsize::new(max_pending),
            connections: ConnLimit::new(max_connections),
        })
    }

    /// Admits one more request, or `None` when the service is at `max_pending`.
    pub fn admit(self: &Arc<Self>) -> Option<Pending> {
        if self.pending.fetch_add(1, Relaxed) >= self.max_pending.load(Relaxed) {
            self.pending.fetch_sub(1, Relaxed);
            return None;
        }
        Some(Pending(Arc::clone(self)))
    }
}

/// A request counted against `max_pending` until dropped.
#[derive(Debug)]
pub struct Pending(Arc<ServiceState>);

impl Drop for Pending {
    fn drop(&mut self) {
        self.0.pending.fetch_sub(1, Relaxed);
    }
}

/// One upstream endpoint and what we know of it.
#[derive(Debug)]
pub struct Endpoint {
    /// Address.
    pub addr: SocketAddr,
    /// Relative weight.
    pub weight: u32,
    /// Connections, pools and load: kept across reloads while the address stays.
    pub conn: Arc<EndpointConn>,
}

/// The long-lived part of an endpoint.
#[derive(Debug)]
pub struct EndpointConn {
    /// HTTP/1.1 keep-alive connections and the one HTTP/2 (prior knowledge) connection.
    pub pool: Arc<Pool>,
    /// For raw TCP proxying (over mTLS it announces ALPN `pillion/tcp`, so the peer proxy
    /// knows to copy bytes rather than parse HTTP).
    pub connector: Connector,
    /// Connect timeout this was built with; a change rebuilds the connection state.
    pub connect_timeout: Duration,
    /// The identity the endpoint must prove (mTLS), if meshed.
    pub identity: Option<SpiffeId>,
    /// Load figures for the balancer.
    pub load: Load,
    /// Passive health (outlier detection).
    pub health: Health,
}

impl EndpointConn {
    /// An empty pool for `addr`, over mTLS when `identity` is set (which needs `tls`).
    pub fn new(
        addr: SocketAddr,
        connect_timeout: Duration,
        identity: Option<SpiffeId>,
        tls: Option<&Tls>,
        limit: Arc<ConnLimit>,
    ) -> Result<Self, pillion_certs::Error> {
        let (Some(id), Some(tls)) = (&identity, tls) else {
            return Ok(Self::plain(addr, connect_timeout, limit));
        };
        // Each pool offers only the ALPN protocol it speaks, so a peer never picks another.
        let targets = [tls.target(id, ALPN_HTTP11)?, tls.target(id, ALPN_H2)?, tls.target(id, ALPN_TCP)?];
        Ok(Self::build(addr, connect_timeout, identity, targets.map(Some), limit))
    }

    /// An empty plaintext pool for `addr`.
    pub fn plain(addr: SocketAddr, connect_timeout: Duration, limit: Arc<ConnLimit>) -> Self {
        Self::build(addr, connect_timeout, None, [None, None, None], limit)
    }

    fn build(
        addr: SocketAddr,
        connect_timeout: Duration,
        identity: Option<SpiffeId>,
        [h1_tls, h2_tls, tcp_tls]: [Option<TlsTarget>; 3],
        limit: Arc<ConnLimit>,
    ) -> Self {
        let pool = Pool::new(
            Connector::new(addr, connect_timeout, h1_tls, Arc::clone(&limit)),
            Connector::new(addr, connect_timeout, h2_tls, Arc::clone(&limit)),
        );
        let connector = Connector::new(addr, connect_timeout, tcp_tls, limit);
        let (load, health) = (Load::default(), Health::default());
        Self { pool, connector, connect_timeout, identity, load, health }
    }

    /// Whether connections to this endpoint are mutual TLS.
    pub fn meshed(&self) -> bool {
        self.identity.is_some()
    }
}
