//! The running proxy's state: the config version in force (swapped whole on every update, read
//! with one `ArcSwap` load per request), what lives for the whole run, and the one path by which
//! a new config comes into force ([`update`]), used by the file watch ([`file`]) and the
//! control-plane client alike.

pub mod file;
mod serving;
pub mod update;

pub use serving::Serving;

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    sync::{
        Arc, Mutex, MutexGuard,
        atomic::{AtomicBool, Ordering::Relaxed},
    },
};

use arc_swap::ArcSwap;
use tokio::sync::watch;

use pillion_config::{dns::DnsName, overlay::Overlay, schema};

use crate::{
    balance::direct::Direct,
    metrics::{EndpointState, Metrics},
    tls::Tls,
};

/// State shared by every task for the life of the process.
#[derive(Debug)]
pub struct Shared {
    /// The config in force.
    pub serving: ArcSwap<Serving>,
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
    /// Where finished spans go.
    pub spans: crate::trace::Spans,
    /// Services for the local app's ports and passthrough destinations.
    pub direct: Direct,
    /// Ticks whenever a version is swapped in: the DNS watch follows the names it lists.
    pub config_changed: watch::Sender<()>,
    /// What the config in force was made from: the file, the control plane's sections, DNS.
    layers: Mutex<Layers>,
}

/// The addresses each `dns` name resolved to last, sorted.
pub type Resolved = BTreeMap<DnsName, Vec<SocketAddr>>;

/// The sources of config: the file, what the control plane pushed over it, and the endpoints
/// DNS answered for the names its services list.
#[derive(Debug)]
pub struct Layers {
    /// The file as last accepted.
    pub base: schema::File,
    /// The control plane's sections as last accepted.
    pub overlay: Option<Overlay>,
    /// The last good answer for each name.
    pub resolved: Resolved,
}

impl Shared {
    /// Shared state around the first config version.
    pub fn new(
        serving: Serving,
        metrics: Metrics,
        access_log: bool,
        tls: Option<Arc<Tls>>,
        spans: crate::trace::Spans,
    ) -> Arc<Self> {
        let (drain, _) = watch::channel(false);
        let file = serving.config.file.clone();
        metrics.config_version.set(serving.version as i64);
        let shared = Arc::new(Self {
            serving: ArcSwap::from_pointee(serving),
            metrics,
            access_log,
            ready: AtomicBool::new(false),
            drain,
            config_changed: watch::channel(()).0,
            layers: Mutex::new(Layers { base: file, overlay: None, resolved: Resolved::new() }),
            tls,
            spans,
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
        let rt = self.serving.load();
        self.metrics.reset_endpoints();
        for (cfg, svc) in rt.config.services.iter().zip(&rt.services) {
            let ejected = svc.balancer.ejected();
            let total = svc.balancer.endpoints().len();
            self.metrics.endpoints(&cfg.name, EndpointState::Healthy).set((total - ejected) as i64);
            self.metrics.endpoints(&cfg.name, EndpointState::Ejected).set(ejected as i64);
        }
    }
}
