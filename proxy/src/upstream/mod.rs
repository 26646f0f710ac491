//! Upstream connections: connecting to an endpoint (over mTLS when it has an identity), and each
//! endpoint's pool of HTTP/1.1 and HTTP/2 connections, which outlives config reloads that keep
//! the endpoint.

pub mod connect;
pub mod log;
pub mod pool;

use std::{net::SocketAddr, sync::Arc, time::Duration};

use pillion_certs::{
    SpiffeId,
    tls::{ALPN_H2, ALPN_HTTP11},
};
use pillion_config::Keepalive;

use crate::tls::{ALPN_TCP, Tls, TlsTarget};
pub use connect::{ConnLimit, ConnectError, Connector, UpstreamStream};
pub use pool::{Pool, SendError, UpstreamBody};

/// Our HTTP/1.1 client's connection to an endpoint.
pub type Http1Conn = crate::http1::client::Conn<UpstreamStream>;
/// An endpoint's connection after it switched protocols (101).
pub type Upgraded = crate::http1::client::Upgraded<UpstreamStream>;

/// A service's settings for its endpoints' connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settings {
    /// Time allowed to connect.
    pub connect_timeout: Duration,
    /// PINGs on HTTP/2 connections.
    pub http2_keepalive: Option<Keepalive>,
}

/// The long-lived part of an endpoint.
#[derive(Debug)]
pub struct EndpointConn {
    /// HTTP/1.1 keep-alive connections and the one HTTP/2 (prior knowledge) connection.
    pub pool: Arc<Pool>,
    /// For raw TCP proxying (over mTLS it announces ALPN `pillion/tcp`, so the peer proxy
    /// knows to copy bytes rather than parse HTTP).
    pub connector: Connector,
    /// What this was built with; a change rebuilds the connection state.
    pub settings: Settings,
    /// The identity the endpoint must prove (mTLS), if meshed.
    pub identity: Option<SpiffeId>,
}

impl EndpointConn {
    /// An empty pool for `addr`, over mTLS when `identity` is set (which needs `tls`).
    pub fn new(
        addr: SocketAddr,
        settings: Settings,
        identity: Option<SpiffeId>,
        tls: Option<&Tls>,
        limit: Arc<ConnLimit>,
    ) -> Result<Self, pillion_certs::Error> {
        let (Some(id), Some(tls)) = (&identity, tls) else {
            return Ok(Self::build(addr, settings, None, [None, None, None], limit));
        };
        // Each pool offers only the ALPN protocol it speaks, so a peer never picks another.
        let targets = [tls.target(id, ALPN_HTTP11)?, tls.target(id, ALPN_H2)?, tls.target(id, ALPN_TCP)?];
        Ok(Self::build(addr, settings, identity, targets.map(Some), limit))
    }

    /// An empty plaintext pool for `addr`, with the default keepalive.
    pub fn plain(addr: SocketAddr, connect_timeout: Duration, limit: Arc<ConnLimit>) -> Self {
        let settings = Settings { connect_timeout, http2_keepalive: Some(Keepalive::DEFAULT) };
        Self::build(addr, settings, None, [None, None, None], limit)
    }

    fn build(
        addr: SocketAddr,
        settings: Settings,
        identity: Option<SpiffeId>,
        [h1_tls, h2_tls, tcp_tls]: [Option<TlsTarget>; 3],
        limit: Arc<ConnLimit>,
    ) -> Self {
        let timeout = settings.connect_timeout;
        let pool = Pool::new(
            Connector::new(addr, timeout, h1_tls, Arc::clone(&limit)),
            Connector::new(addr, timeout, h2_tls, Arc::clone(&limit)),
            settings.http2_keepalive,
        );
        let connector = Connector::new(addr, timeout, tcp_tls, limit);
        Self { pool, connector, settings, identity }
    }

    /// Whether connections to this endpoint are mutual TLS.
    pub fn meshed(&self) -> bool {
        self.identity.is_some()
    }
}
