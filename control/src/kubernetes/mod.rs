//! The Kubernetes API as a source (`serve --kubernetes`): watches ([`watch`]) feed stores, a
//! pure function ([`translate`]) turns what they hold into the same mesh model the directory
//! gives, and [`compose`](crate::compose) lays the directory over it and publishes. The one
//! thing written back is the status of the Gateway API routes it serves or refuses
//! ([`routes::status`]).
//!
//! The stores, not the API, are what the translation reads: while the API server is away the
//! last objects seen keep being served. Bursts of events (a rollout touches many slices) are
//! let settle for [`SETTLE`] and translated once.

pub mod routes;
pub mod services;
pub mod tokenreview;
pub mod translate;
mod watch;
pub mod workloads;

use std::{collections::BTreeSet, path::PathBuf, sync::Arc, time::Duration};

use k8s_openapi::api::{
    core::v1::{Namespace, Pod, PodSpec, PodStatus, Service},
    discovery::v1::EndpointSlice,
};
use kube::{
    Api, Client, Config, Resource,
    api::DynamicObject,
    config::{KubeConfigOptions, Kubeconfig},
};

use self::{
    routes::status::RouteKind,
    translate::{Objects, Settings, Skipped},
};
use crate::{State, compose};

/// How long a burst of changes is let settle before one translation.
pub const SETTLE: Duration = Duration::from_millis(100);
/// How long the first model waits for the Gateway API routes' first list.
const ROUTES_WAIT: Duration = Duration::from_secs(5);

/// How `serve --kubernetes` reaches the API and names what it finds.
#[derive(Debug, Clone)]
pub struct Options {
    /// A kubeconfig file; without it, the in-cluster config (the Pod's ServiceAccount).
    pub kubeconfig: Option<PathBuf>,
    /// The DNS suffix of Services (`cluster.local`).
    pub cluster_domain: String,
}

/// Why no client for the API could be made.
#[derive(Debug, thiserror::Error)]
pub enum KubeError {
    /// The kubeconfig file could not be read or used.
    #[error("kubeconfig {}: {source}", path.display())]
    Kubeconfig {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        source: kube::config::KubeconfigError,
    },
    /// Not in a Pod, or its ServiceAccount mount is missing.
    #[error("in-cluster config (no --kubeconfig given): {0}")]
    InCluster(#[from] kube::config::InClusterError),
    /// The client could not be built from the config.
    #[error("Kubernetes client: {0}")]
    Client(#[from] kube::Error),
}

/// A client for the API, from the kubeconfig or the in-cluster config.
pub async fn client(opts: &Options) -> Result<Client, KubeError> {
    let config = match &opts.kubeconfig {
        Some(path) => {
            let wrap = |source| KubeError::Kubeconfig { path: path.clone(), source };
            let file = Kubeconfig::read_from(path).map_err(wrap)?;
            Config::from_custom_kubeconfig(file, &KubeConfigOptions::default()).await.map_err(wrap)?
        }
        None => Config::incluster()?,
    };
    Ok(Client::try_from(config)?)
}

/// Watches the cluster and publishes its model on every change, forever.
pub async fn run(client: Client, settings: Settings, state: Arc<State>) {
    let (changed, mut rx) = tokio::sync::watch::channel(());
    let services = watch::spawn(Api::<Service>::all(client.clone()), (), changed.clone(), slim_meta);
    let slices = watch::spawn(Api::<EndpointSlice>::all(client.clone()), (), changed.clone(), slim_meta);
    let pods = watch::spawn(Api::<Pod>::all(client.clone()), (), changed.clone(), slim_pod);
    let namespaces = watch::spawn(Api::<Namespace>::all(client.clone()), (), changed.clone(), slim_meta);
    let route_store = |kind: RouteKind| {
        let api = Api::<DynamicObject>::all_with(client.clone(), &kind.resource());
        watch::spawn(api, kind.resource(), changed.clone(), slim_meta)
    };
    let (http_routes, grpc_routes) = (route_store(RouteKind::Http), route_store(RouteKind::Grpc));
    drop(changed);
    let mut writer = routes::status::Writer::new(client);
    // A model from half-listed stores would name endpoints whose pods are not listed yet.
    let ready = futures_util::future::try_join4(
        services.wait_until_ready(),
        slices.wait_until_ready(),
        pods.wait_until_ready(),
        namespaces.wait_until_ready(),
    );
    if ready.await.is_err() {
        tracing::error!("a Kubernetes watch stopped before its first list");
        return;
    }
    // The Gateway API's CRDs may not be installed: routes are waited for briefly, not forever.
    let routes_listed =
        futures_util::future::try_join(http_routes.wait_until_ready(), grpc_routes.wait_until_ready());
    if tokio::time::timeout(ROUTES_WAIT, routes_listed).await.is_err() {
        tracing::warn!(
            "Gateway API routes not listed yet (CRDs installed?); serving without them until they are"
        );
    }
    tracing::info!("Kubernetes objects listed; following them");
    let mut logged: BTreeSet<Skipped> = BTreeSet::new();
    loop {
        rx.borrow_and_update();
        let objects = Objects {
            services: services.state(),
            slices: slices.state(),
            pods: pods.state(),
            namespaces: namespaces.state(),
            http_routes: http_routes.state(),
            grpc_routes: grpc_routes.state(),
        };
        let t = translate::translate(&objects, &settings);
        // Logged once each, not on every translation while it stays wrong.
        let now: BTreeSet<Skipped> = t.skipped.into_iter().collect();
        for s in now.difference(&logged) {
            tracing::warn!(kind = s.kind, object = %s.object, "skipped: {}", s.reason);
        }
        logged = now;
        tracing::debug!(
            services = t.mesh.services.len(),
            workloads = t.mesh.workloads.len(),
            "cluster translated"
        );
        compose::set_cluster(&state, t.mesh);
        writer.write(&t.statuses).await;
        if rx.changed().await.is_err() {
            tracing::error!("every Kubernetes watch stopped; serving the last model");
            return;
        }
        tokio::time::sleep(SETTLE).await;
    }
}

/// Drops what no translation reads and every object carries: the managed-fields history.
fn slim_meta<K: Resource>(object: &mut K) {
    object.meta_mut().managed_fields = None;
}

/// A Pod is kept as its name, namespace, annotations, ServiceAccount and phase only.
fn slim_pod(pod: &mut Pod) {
    slim_meta(pod);
    let sa = pod.spec.as_ref().map(|_| workloads::service_account(pod).to_owned());
    pod.spec = sa.map(|sa| PodSpec { service_account_name: Some(sa), ..PodSpec::default() });
    pod.status = pod.status.take().map(|s| PodStatus { phase: s.phase, ..PodStatus::default() });
}
