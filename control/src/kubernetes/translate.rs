//! API objects to the mesh model: a pure function over what the watches hold, so that every
//! rule is tested with plain object fixtures and no API server.
//!
//! The result is sorted (services by name, endpoints by address, workloads by name), whatever
//! order the stores list in, so an unchanged cluster translates to an identical mesh and pushes
//! nothing. What cannot be translated is skipped and listed, with the object's kind and
//! namespace/name, for the caller to log; API data is never trusted to be well formed.

use std::{
    collections::{BTreeMap, HashMap},
    fmt,
    path::PathBuf,
    sync::Arc,
};

use k8s_openapi::api::{
    core::v1::{Namespace, Pod, Service},
    discovery::v1::EndpointSlice,
};
use kube::{ResourceExt, api::DynamicObject};

use super::{
    routes::{self, status::RouteKind, status::RouteStatus},
    services, workloads,
};
use crate::source::{Mesh, Origin};

/// The label an EndpointSlice names its Service by.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// What the watches hold, as the translation reads it.
#[derive(Debug, Clone, Default)]
pub struct Objects {
    /// Every Service.
    pub services: Vec<Arc<Service>>,
    /// Every EndpointSlice.
    pub slices: Vec<Arc<EndpointSlice>>,
    /// Every Pod.
    pub pods: Vec<Arc<Pod>>,
    /// Every Namespace (for its visibility annotation).
    pub namespaces: Vec<Arc<Namespace>>,
    /// Every Gateway API HTTPRoute.
    pub http_routes: Vec<Arc<DynamicObject>>,
    /// Every Gateway API GRPCRoute.
    pub grpc_routes: Vec<Arc<DynamicObject>>,
}

/// The cluster-wide names the translation needs.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The SPIFFE trust domain (the CA's).
    pub trust_domain: String,
    /// The DNS suffix of Services, `cluster.local` by default.
    pub cluster_domain: String,
}

/// An object, or part of one, left out of the mesh, and why.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Skipped {
    /// Its kind: `Service`, `EndpointSlice`, `Pod`, `Namespace`.
    pub kind: &'static str,
    /// `namespace/name` (or the name of a cluster-scoped object).
    pub object: String,
    /// What is wrong with it.
    pub reason: String,
}

impl fmt::Display for Skipped {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}: {}", self.kind, self.object, self.reason)
    }
}

/// The mesh the cluster describes, and what was left out of it.
#[derive(Debug, Clone, Default)]
pub struct Translation {
    /// Services, routes and workloads, with one pseudo-file per object as origin.
    pub mesh: Mesh,
    /// The status of every route with a Service parent, to be written back.
    pub statuses: Vec<RouteStatus>,
    /// Sorted, so that a caller can tell new problems from ones it already logged.
    pub skipped: Vec<Skipped>,
}

/// The objects indexed the ways the translation looks them up.
pub(super) struct Index<'a> {
    pub settings: &'a Settings,
    /// Pods by (namespace, name).
    pub pods: HashMap<(&'a str, &'a str), &'a Pod>,
    /// EndpointSlices by (namespace, service name).
    pub slices: HashMap<(&'a str, &'a str), Vec<&'a EndpointSlice>>,
    /// Namespaces by name.
    pub namespaces: HashMap<&'a str, &'a Namespace>,
    pub skipped: Vec<Skipped>,
}

impl<'a> Index<'a> {
    fn new(objects: &'a Objects, settings: &'a Settings) -> Self {
        let mut index = Index {
            settings,
            pods: HashMap::new(),
            slices: HashMap::new(),
            namespaces: HashMap::new(),
            skipped: Vec::new(),
        };
        for pod in &objects.pods {
            if let (Some(ns), Some(name)) = (pod.metadata.namespace.as_deref(), pod.metadata.name.as_deref())
            {
                index.pods.insert((ns, name), pod);
            }
        }
        for slice in &objects.slices {
            let Some(ns) = slice.metadata.namespace.as_deref() else { continue };
            match slice.labels().get(SERVICE_NAME_LABEL) {
                Some(service) => index.slices.entry((ns, service.as_str())).or_default().push(slice),
                // Slices of other owners (custom controllers) have no Service to join.
                None => {
                    tracing::trace!(slice = %key(&slice.metadata), "EndpointSlice without a service name")
                }
            }
        }
        for ns in &objects.namespaces {
            if let Some(name) = ns.metadata.name.as_deref() {
                index.namespaces.insert(name, ns);
            }
        }
        index
    }

    pub fn skip(&mut self, kind: &'static str, object: String, reason: impl Into<String>) {
        self.skipped.push(Skipped { kind, object, reason: reason.into() });
    }
}

/// `namespace/name` of an object, for logs.
pub(super) fn key(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> String {
    format!("{}/{}", meta.namespace.as_deref().unwrap_or(""), meta.name.as_deref().unwrap_or(""))
}

/// Builds the mesh the objects describe.
pub fn translate(objects: &Objects, settings: &Settings) -> Translation {
    let mut index = Index::new(objects, settings);
    let mut built = Vec::new();
    for svc in &objects.services {
        built.extend(services::translate(&mut index, svc));
    }
    built.sort_by(|a, b| a.service.name.cmp(&b.service.name));
    let (mut taken, mut statuses) =
        routes::translate(&mut index, RouteKind::Http, &objects.http_routes, &built);
    let (grpc, grpc_statuses) = routes::translate(&mut index, RouteKind::Grpc, &objects.grpc_routes, &built);
    taken.extend(grpc);
    taken.sort_by(|a, b| a.order.cmp(&b.order));
    statuses.extend(grpc_statuses);
    let specs = workloads::translate(&mut index, &objects.pods, &built, &taken);

    let mut mesh = Mesh::default();
    // One pseudo-file per object, named after it, so that a problem found later (by the proxy's
    // validator, over the merged mesh) still says which object it came from.
    let mut files: BTreeMap<String, usize> = BTreeMap::new();
    let mut file_of = |mesh: &mut Mesh, name: String| {
        *files.entry(name).or_insert_with_key(|name| {
            mesh.files.push((PathBuf::from(name), String::new()));
            mesh.files.len() - 1
        })
    };
    for b in built {
        let file = file_of(&mut mesh, b.origin);
        let index = mesh.services.iter().filter(|(_, o)| o.file == file).count();
        mesh.services.push((b.service, Origin { file, index }));
    }
    for r in taken {
        let file = file_of(&mut mesh, r.origin);
        let index = mesh.routes.iter().filter(|(_, o)| o.file == file).count();
        mesh.routes.push((r.route, Origin { file, index }));
    }
    for (name, (spec, origin)) in specs {
        let file = file_of(&mut mesh, origin);
        mesh.workloads.insert(name, (spec, Origin { file, index: 0 }));
    }
    let mut skipped = index.skipped;
    skipped.sort();
    skipped.dedup();
    Translation { mesh, statuses, skipped }
}

#[cfg(test)]
#[path = "translate_tests.rs"]
mod tests;
