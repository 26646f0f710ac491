//! The proxy's live state: the current config with its balancers and endpoint pools (swapped
//! whole on reload, read with one `ArcSwap` load per request), and what lives for the whole run.

use std::{
    collections::HashMap,
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering::Relaxed},
    },
    time::Duration,
};

use arc_swap::ArcSwap;
use tokio::sync::watch;

use crate::{
    balance::Balancer,
    config::{Config, LbPolicy, OutlierConfig},
    metrics::Metrics,
    tls::Tls,
    upstream::{Endpoint, EndpointConn, Service, ServiceState},
};

/// Connect timeout to the local app.
const APP_CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// One config version made ready to serve.
#[derive(Debug)]
pub struct Runtime {
    /// Config version; bumps on every applied update.
    pub version: u64,
    /// The validated config.
    pub config: Config,
    /// One per `config.services` entry, same order.
    pub services: Vec<Service>,
    /// The local app, when `inbound.app` is set.
    pub inbound_app: Option<Service>,
}

impl Runtime {
    /// Builds the runtime for `config`, keeping the state of services (limits, retry budget)
    /// and endpoints (pools, load, health) that `previous` already had: same service name,
    /// and for endpoints the same address, identity and connect timeout.
    pub fn build(
        config: Config,
        version: u64,
        previous: Option<&Runtime>,
        tls: Option<&Tls>,
    ) -> Result<Self, pillion_certs::Error> {
        let mut old_services: HashMap<&str, &Arc<ServiceState>> = HashMap::new();
        let mut old_endpoints: HashMap<(&str, SocketAddr), &Arc<EndpointConn>> = HashMap::new();
        if let Some(prev) = previous {
            for (cfg, svc) in prev.config.services.iter().zip(&prev.services) {
                old_services.insert(&cfg.name, &svc.state);
                for e in svc.balancer.endpoints() {
                    old_endpoints.insert((&cfg.name, e.addr), &e.conn);
                }
            }
        }
        let mut services = Vec::with_capacity(config.services.len());
        for svc in &config.services {
            let state = match old_services.get(&*svc.name) {
                Some(s) => {
                    s.max_pending.store(svc.limits.max_pending, Relaxed);
                    s.connections.max.store(svc.limits.max_connections, Relaxed);
                    Arc::clone(s)
                }
                None => ServiceState::new(svc.limits.max_pending, svc.limits.max_connections),
            };
            let mut endpoints = Vec::with_capacity(svc.endpoints.len());
            for e in &svc.endpoints {
                let kept = old_endpoints
                    .get(&(&*svc.name, e.addr))
                    .filter(|c| c.connect_timeout == svc.connect_timeout && c.identity == e.identity);
                let conn = match kept {
                    Some(c) => Arc::clone(c),
                    None => Arc::new(EndpointConn::new(
                        e.addr,
                        svc.connect_timeout,
                        e.identity.clone(),
                        tls,
                        Arc::clone(&state.connections),
                    )?),
                };
                endpoints.push(Arc::new(Endpoint { addr: e.addr, weight: e.weight, conn }));
            }
            let balancer = Balancer::new(Arc::clone(&svc.name), svc.lb, svc.outlier.clone(), endpoints);
            services.push(Service { balancer, state });
        }
        let inbound_app = match config.inbound.app {
            Some(addr) => Some(local_app(addr, previous.and_then(|p| p.inbound_app.as_ref()))?),
            None => None,
        };
        drop((old_services, old_endpoints));
        Ok(Self { version, config, services, inbound_app })
    }
}

/// The local app as a one-endpoint service: no limits, no ejection (there is nowhere else to go).
fn local_app(addr: SocketAddr, previous: Option<&Service>) -> Result<Service, pillion_certs::Error> {
    if let Some(prev) = previous.filter(|p| p.balancer.endpoints().first().is_some_and(|e| e.addr == addr)) {
        let endpoints = prev.balancer.endpoints().to_vec();
        let balancer = Balancer::new(Arc::from("inbound"), LbPolicy::RoundRobin, no_ejection(), endpoints);
        return Ok(Service { balancer, state: Arc::clone(&prev.state) });
    }
    let state = ServiceState::new(usize::MAX, usize::MAX);
    let conn = EndpointConn::new(addr, APP_CONNECT_TIMEOUT, None, None, Arc::clone(&state.connections))?;
    let endpoints = vec![Arc::new(Endpoint { addr, weight: 1, conn: Arc::new(conn) })];
    Ok(Service { balancer: Balancer::new(Arc::from("inbound"), LbPolicy::RoundRobin, no_ejection(), endpoints), state })
}

fn no_ejection() -> OutlierConfig {
    OutlierConfig { consecutive_failures: 0, ejection: Duration::ZERO, max_ejected_percent: 0 }
}

/// State shared by every task for the life of the process.
#[derive(Debug)]
pub struct Shared {
    /// The config in force.
    pub runtime: ArcSwap<Runtime>,
    /// Metrics.
    pub metrics: Metrics,
    /// Log one line per request.
    pub access_log: bool,
    /// Set once listeners are up; cleared when draining.
    pub ready: AtomicBool,
    /// Tells connections to finish; each holds a receiver, so `closed()` means drained.
    pub drain: watch::Sender<bool>,
    /// The workload's mTLS material, when `tls` is configured.
    pub tls: Option<Arc<Tls>>,
}

impl Shared {
    /// Shared state around a first runtime.
    pub fn new(runtime: Runtime, metrics: Metrics, access_log: bool, tls: Option<Arc<Tls>>) -> Arc<Self> {
        let (drain, _) = watch::channel(false);
        metrics.config_version.set(runtime.version as i64);
        let shared = Arc::new(Self {
            runtime: ArcSwap::from_pointee(runtime),
            metrics,
            access_log,
            ready: AtomicBool::new(false),
            drain,
            tls,
        });
        shared.publish_endpoints();
        shared
    }

    /// Whether `/ready` should say yes.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Relaxed) && !*self.drain.borrow()
    }

    /// Updates `pillion_endpoints` from the runtime in force.
    pub fn publish_endpoints(&self) {
        let rt = self.runtime.load();
        self.metrics.endpoints.reset();
        for (cfg, svc) in rt.config.services.iter().zip(&rt.services) {
            let ejected = svc.balancer.ejected();
            let total = svc.balancer.endpoints().len();
            self.metrics.endpoints.with_label_values(&[&*cfg.name, "healthy"]).set((total - ejected) as i64);
            self.metrics.endpoints.with_label_values(&[&*cfg.name, "ejected"]).set(ejected as i64);
        }
    }
}
