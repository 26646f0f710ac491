//! Upstream endpoints: where requests go once routed and balanced. Each endpoint owns pooled
//! HTTP/1.1 and HTTP/2 clients and its load figures; both outlive config reloads that keep it.

pub mod connect;

use std::{net::SocketAddr, sync::Arc, time::Duration};

use hyper_util::{
    client::legacy::Client,
    rt::{TokioExecutor, TokioTimer},
};

use crate::{balance::load::Load, http::body::Body};
pub use connect::{ConnectError, Connector};

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
    /// Load figures for the balancer.
    pub load: Load,
}

impl EndpointConn {
    /// Fresh clients for `addr`.
    pub fn new(addr: SocketAddr, connect_timeout: Duration) -> Self {
        let connector = Connector::new(addr, connect_timeout);
        let mut builder = Client::builder(TokioExecutor::new());
        builder
            .pool_timer(TokioTimer::new())
            .timer(TokioTimer::new())
            .pool_idle_timeout(POOL_IDLE_TIMEOUT);
        let h1 = builder.build(connector.clone());
        builder
            .http2_only(true)
            .http2_adaptive_window(true)
            .http2_keep_alive_interval(Duration::from_secs(30))
            .http2_keep_alive_timeout(Duration::from_secs(10));
        let h2 = builder.build(connector.clone());
        Self {
            h1,
            h2,
            connector,
            connect_timeout,
            load: Load::default(),
        }
    }
}
