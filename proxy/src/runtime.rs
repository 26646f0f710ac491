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
    config::{Config, LbPolicy},
    metrics::Metrics,
    tls::Tls,
    upstream::{Endpoint, EndpointConn},
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
    /// One balancer per `config.services` entry, same order.
    pub services: Vec<Balancer>,
    /// The local app, when `inbound.app` is set.
    pub inbound_app: Option<Balancer>,
}

impl Runtime {
    /// Builds the runtime for `config`, keeping the pools and load of endpoints that `previous`
    /// already had (same service, address, identity and connect timeout).
    pub fn build(
        config: Config,
        version: u64,
        previous: Option<&Runtime>,
        tls: Option<&Tls>,
    ) -> Result<Self, pillion_certs::Error> {
        let mut old: HashMap<(&str, SocketAddr), &Arc<EndpointConn>> = HashMap::new();
        if let Some(prev) = previous {
            for (svc, bal) in prev.config.services.iter().zip(&prev.services) {
                for e in bal.endpoints() {
                    old.insert((&svc.name, e.addr), &e.conn);
                }
            }
        }
        let mut services = Vec::with_capacity(config.services.len());
        for svc in &config.services {
            let mut endpoints = Vec::with_capacity(svc.endpoints.len());
            for e in &svc.endpoints {
                let kept = old
                    .get(&(&*svc.name, e.addr))
                    .filter(|c| c.connect_timeout == svc.connect_timeout && c.identity == e.identity);
                let conn = match kept {
                    Some(c) => Arc::clone(c),
                    None => {
                        Arc::new(EndpointConn::new(e.addr, svc.connect_timeout, e.identity.clone(), tls)?)
                    }
                };
                endpoints.push(Arc::new(Endpoint { addr: e.addr, weight: e.weight, conn }));
            }
            services.push(Balancer::new(svc.lb, endpoints));
        }
        let inbound_app = match config.inbound.app {
            Some(addr) => {
                let kept = previous
                    .and_then(|p| p.inbound_app.as_ref())
                    .and_then(|b| b.endpoints().first())
                    .filter(|e| e.addr == addr)
                    .map(|e| Arc::clone(&e.conn));
                let conn = match kept {
                    Some(c) => c,
                    None => Arc::new(EndpointConn::new(addr, APP_CONNECT_TIMEOUT, None, None)?),
                };
                Some(Balancer::new(LbPolicy::RoundRobin, vec![Arc::new(Endpoint { addr, weight: 1, conn })]))
            }
            None => None,
        };
        drop(old);
        Ok(Self { version, config, services, inbound_app })
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
        for (svc, bal) in rt.config.services.iter().zip(&rt.services) {
            self.metrics
                .endpoints
                .with_label_values(&[&*svc.name, "healthy"])
                .set(bal.endpoints().len() as i64);
            self.metrics.endpoints.with_label_values(&[&*svc.name, "ejected"]).set(0);
        }
    }
}
