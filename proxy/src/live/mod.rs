//! The running proxy's state: the config version in force (swapped whole on every update, read
//! with one `ArcSwap` load per request), what lives for the whole run, and the one path by which
//! a new config comes into force ([`update`]), used by the file watch ([`file`]) and the
//! control-plane client alike.

pub mod file;
mod serving;
pub mod update;

pub use serving::Serving;

use std::sync::{
    Arc, Mutex, MutexGuard,
    atomic::{AtomicBool, Ordering::Relaxed},
};

use arc_swap::ArcSwap;
use tokio::sync::watch;

use pillion_config::{overlay::Overlay, schema};

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
            layers: Mutex::new(Layers { base: file, overlay: None }),
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
