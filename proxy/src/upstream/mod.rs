//! Upstream endpoints: where requests go once routed and balanced. Each endpoint owns pooled
//! HTTP/1.1 and HTTP/2 clients and its load figures; both outlive config reloads that keep it.

pub mod connect;

use std::{net::SocketAddr, sync::Arc, time::Duration};

use hyper_util::{
    client::legacy::Client,
    rt::{TokioExecutor, TokioTimer},
};

use pillion_certs::{
    SpiffeId,
    tls::{ALPN_H2, ALPN_HTTP11},
};

use crate::{balance::load::Load, http::body::Body, tls::Tls};
pub use connect::{ConnectError, Connector, UpstreamStream};

/// How long an idle pooled connection is kept.
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(90);

/// A pooled HTTP client bound to one endpoint.
pub type HttpClient = Client<Connector, Body>;

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
    /// HTTP/1.1 client (keep-alive pool).
    pub h1: HttpClient,
    /// HTTP/2 prior-knowledge client (one multiplexed connection).
    pub h2: HttpClient,
    /// For raw TCP proxying.
    pub connector: Connector,
    /// Connect timeout this was built with; a change rebuilds the connection state.
    pub connect_timeout: Duration,
    /// The identity the endpoint must prove (mTLS), if meshed.
    pub identity: Option<SpiffeId>,
    /// Load figures for the balancer.
    pub load: Load,
}

impl EndpointConn {
    /// Fresh clients for `addr`, over mTLS when `identity` is set (which needs `tls`).
    pub fn new(
        addr: SocketAddr,
        connect_timeout: Duration,
        identity: Option<SpiffeId>,
        tls: Option<&Tls>,
    ) -> Result<Self, pillion_certs::Error> {
        // Each pool offers only the ALPN protocol it speaks, so a peer never picks the other.
        let target = |alpn: &[u8]| match (&identity, tls) {
            (Some(id), Some(tls)) => tls.target(id, alpn).map(Some),
            _ => Ok(None),
        };
        let h1_connector = Connector::new(addr, connect_timeout, target(ALPN_HTTP11)?);
        let h2_connector = Connector::new(addr, connect_timeout, target(ALPN_H2)?);
        let mut builder = Client::builder(TokioExecutor::new());
        builder.pool_timer(TokioTimer::new()).timer(TokioTimer::new()).pool_idle_timeout(POOL_IDLE_TIMEOUT);
        let h1 = builder.build(h1_connector.clone());
        builder
            .http2_only(true)
            .http2_adaptive_window(true)
            .http2_keep_alive_interval(Duration::from_secs(30))
            .http2_keep_alive_timeout(Duration::from_secs(10));
        let h2 = builder.build(h2_connector);
        Ok(Self { h1, h2, connector: h1_connector, connect_timeout, identity, load: Load::default() })
    }

    /// Whether connections to this endpoint are mutual TLS.
    pub fn meshed(&self) -> bool {
        self.identity.is_some()
    }
}
