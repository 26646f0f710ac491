//! Services for addresses the config does not name: the local app's ports (inbound) and
//! passthrough destinations (outbound traffic to unknown addresses). Made on first use, kept
//! so their pools are reused, and bounded so that arbitrary egress cannot grow it forever.

use std::{
    collections::HashMap,
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

use super::{Balancer, Endpoint, Service, ServiceState};
use crate::upstream::EndpointConn;
use pillion_config::{LbPolicy, OutlierConfig};

/// The service name of destinations the config does not know, in metrics and logs.
pub const PASSTHROUGH: &str = "passthrough";

/// Most remembered addresses; past it the cache starts over (pools of live connections are
/// dropped with it, which only costs new connects).
const MAX_ENTRIES: usize = 4096;
/// Connect timeout to the local app and to passthrough destinations.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// One-endpoint services by address. Looked up once per connection, not per request.
#[derive(Debug, Default)]
pub struct Direct {
    by_addr: Mutex<HashMap<SocketAddr, Arc<Service>>>,
}

impl Direct {
    /// The service that sends to exactly `addr`, named `name` in metrics.
    pub fn get(&self, addr: SocketAddr, name: &str) -> Arc<Service> {
        let mut map = self.by_addr.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(s) = map.get(&addr) {
            return Arc::clone(s);
        }
        if map.len() >= MAX_ENTRIES {
            map.clear();
        }
        let state = ServiceState::new(usize::MAX, usize::MAX);
        let conn = EndpointConn::plain(addr, CONNECT_TIMEOUT, Arc::clone(&state.connections));
        let endpoints =
            vec![Arc::new(Endpoint { addr, weight: 1, conn: Arc::new(conn), stats: Arc::default() })];
        // One endpoint: nothing to eject to, nothing to balance.
        let outlier =
            OutlierConfig { consecutive_failures: 0, ejection: Duration::ZERO, max_ejected_percent: 0 };
        let balancer = Balancer::new(Arc::from(name), LbPolicy::RoundRobin, outlier, endpoints);
        let service = Arc::new(Service { balancer, state });
        map.insert(addr, Arc::clone(&service));
        service
    }
}
