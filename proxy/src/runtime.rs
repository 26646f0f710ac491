//! The proxy's live state: the current config with its balancers and endpoint pools (swapped
//! whole on reload, read with one `ArcSwap` load per request), and what lives for the whole run.

use std::{
    collections::HashMap,
    net::SocketAddr,
    sync::{
        Arc, Mutex, MutexGuard,
        atomic::{AtomicBool, Ordering::Relaxed},
    },
};

use arc_swap::ArcSwap;
use tokio::sync::watch;

use crate::{
    balance::Balancer,
    config::{Config, schema},
    control::Overlay,
    metrics::Metrics,
    tls::Tls,
    upstream::{Endpoint, EndpointConn, Service, ServiceState, direct::Direct},
};

/// One config version made ready to serve.
#[derive(Debug)]
pub struct Runtime {
    /// Config version; bumps on every applied update.
    pub version: u64,
    /// The validated config.
    pub config: Config,
    /// One per `config.services` entry, same order.
    pub services: Vec<Service>,
    /// Service index by an address it answers on (service address or endpoint).
    pub by_addr: HashMap<SocketAddr, usize>,
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
        // Transparent outbound traffic is matched by its original destination: a service's
        // `IP:port` addresses, then any endpoint's address.
        let mut by_addr = HashMap::new();
        for (i, svc) in config.services.iter().enumerate() {
            for e in &svc.endpoints {
                by_addr.entry(e.addr).or_insert(i);
            }
        }
        for (i, svc) in config.services.iter().enumerate() {
            for a in svc.addresses.iter().filter_map(|a| a.parse::<SocketAddr>().ok()) {
                by_addr.insert(a, i);
            }
        }
        drop((old_services, old_endpoints));
        Ok(Self { version, config, services, by_addr })
    }
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
    /// Services for the local app's ports and passthrough destinations.
    pub direct: Direct,
    /// What the config in force was made from: the file and the control plane's sections.
    layers: Mutex<Layers>,
}

/// The two sources of config: the file, and what the control plane pushed over it.
#[derive(Debug)]
pub struct Layers {
    /// The file as last accepted.
    pub base: schema::File,
    /// The control plane's sections as last accepted.
    pub overlay: Option<Overlay>,
}

impl Shared {
    /// Shared state around a first runtime.
    pub fn new(runtime: Runtime, metrics: Metrics, access_log: bool, tls: Option<Arc<Tls>>) -> Arc<Self> {
        let (drain, _) = watch::channel(false);
        let runtime_file = runtime.config.file.clone();
        metrics.config_version.set(runtime.version as i64);
        let shared = Arc::new(Self {
            runtime: ArcSwap::from_pointee(runtime),
            metrics,
            access_log,
            ready: AtomicBool::new(false),
            drain,
            layers: Mutex::new(Layers { base: runtime_file, overlay: None }),
            tls,
            direct: Direct::default(),
        });
        shared.publish_endpoints();
        shared
    }

    /// The config layers, locked while an update is merged and applied (updates are rare and
    /// never on the request path).
    pub fn layers(&self) -> MutexGuard<'_, Layers> {
        self.layers.lock().unwrap_or_else(|e| e.into_inner())
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
