//! A service as the request path sees it: its balancer over endpoints, and the state it keeps
//! across reloads (request and connection limits, the retry budget); and an endpoint as the
//! balancer sees it: its upstream connections and its load and health.

use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering::Relaxed},
    },
};

use super::{Balancer, budget::Budget, load::Load, outlier::Health};
use crate::upstream::{ConnLimit, EndpointConn};

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
    /// Connections and pools: kept across reloads while the address stays.
    pub conn: Arc<EndpointConn>,
    /// What the balancer knows of it, kept with `conn`.
    pub stats: Arc<Stats>,
}

/// The balancer's figures for one endpoint.
#[derive(Debug, Default)]
pub struct Stats {
    /// Load figures.
    pub load: Load,
    /// Passive health (outlier detection).
    pub health: Health,
}
