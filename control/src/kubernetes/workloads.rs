//! Pods to workloads: one workload per ServiceAccount that has Pods, named `SA.NS`, with the
//! identity `spiffe://TD/ns/NS/sa/SA` its proxies' certificates carry.
//!
//! A workload sees the services of its own namespace, plus those its namespace or any of its
//! Pods names in the [`VISIBLE_ANNOTATION`], so that a proxy's snapshot (and memory) grows with
//! what it calls, not with the whole mesh.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use k8s_openapi::api::core::v1::Pod;
use pillion_certs::SpiffeId;

use super::{
    services::Built,
    translate::{Index, key},
};
use crate::source::{WorkloadInbound, WorkloadSpec};

/// Namespace or Pod annotation: more Services the workload sees, comma-separated, each
/// `NAME.NAMESPACE` (every port of that Service) or `*.NAMESPACE` (every Service there).
pub const VISIBLE_ANNOTATION: &str = "pillion.io/visible-services";

/// The ServiceAccount a Pod runs as (`default` when the spec names none).
pub fn service_account(pod: &Pod) -> &str {
    let spec = pod.spec.as_ref();
    #[allow(deprecated)] // `serviceAccount` is the old spelling some objects still carry.
    let name = spec.and_then(|s| s.service_account_name.as_deref().or(s.service_account.as_deref()));
    name.filter(|n| !n.is_empty()).unwrap_or("default")
}

/// The SPIFFE ID of ServiceAccount `sa` in `namespace`.
pub fn identity(trust_domain: &str, namespace: &str, sa: &str) -> String {
    format!("spiffe://{trust_domain}/ns/{namespace}/sa/{sa}")
}

/// The workload name of ServiceAccount `sa` in `namespace`, as proxies watch it.
pub fn workload_name(namespace: &str, sa: &str) -> String {
    format!("{sa}.{namespace}")
}

/// One entry of the annotation: a Service, or a whole namespace.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Visible {
    Service { namespace: String, name: String },
    Namespace(String),
}

fn parse_visible(value: &str) -> Result<Vec<Visible>, String> {
    let mut out = Vec::new();
    for entry in value.split([',', ' ', '\n', '\t']).filter(|e| !e.is_empty()) {
        match entry.split_once('.') {
            Some(("*", ns)) if !ns.is_empty() && !ns.contains('.') => {
                out.push(Visible::Namespace(ns.to_owned()))
            }
            Some((name, ns)) if !name.is_empty() && !ns.is_empty() && !ns.contains('.') => {
                out.push(Visible::Service { namespace: ns.to_owned(), name: name.to_owned() });
            }
            _ => return Err(format!("{VISIBLE_ANNOTATION}: {entry:?} is not NAME.NAMESPACE or *.NAMESPACE")),
        }
    }
    Ok(out)
}

/// A workload being gathered from its Pods.
struct Gathering {
    namespace: String,
    identity: String,
    visible: BTreeSet<Visible>,
}

/// The workloads of `pods`, by name, each with the pseudo-file it is located in.
pub(super) fn translate<'a>(
    index: &mut Index<'a>,
    pods: &[std::sync::Arc<Pod>],
    services: &[Built],
    routes: &[super::routes::Built],
) -> BTreeMap<String, (WorkloadSpec, String)> {
    let mut gathered: BTreeMap<String, Gathering> = BTreeMap::new();
    for pod in pods {
        let Some(namespace) = pod.metadata.namespace.as_deref() else { continue };
        // A finished Pod runs no proxy; it need not keep its workload alive.
        let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
        if matches!(phase, Some("Succeeded" | "Failed")) {
            continue;
        }
        let sa = service_account(pod);
        let id = identity(&index.settings.trust_domain, namespace, sa);
        if SpiffeId::parse(&id).is_err() {
            index.skip("Pod", key(&pod.metadata), format!("{id:?} is not a valid SPIFFE ID"));
            continue;
        }
        let name = workload_name(namespace, sa);
        let mut entry = gathered.remove(&name).unwrap_or_else(|| Gathering {
            namespace: namespace.to_owned(),
            identity: id,
            visible: BTreeSet::from([Visible::Namespace(namespace.to_owned())]),
        });
        if let Some(value) = pod.metadata.annotations.as_ref().and_then(|a| a.get(VISIBLE_ANNOTATION)) {
            match parse_visible(value) {
                Ok(list) => entry.visible.extend(list),
                Err(e) => index.skip("Pod", key(&pod.metadata), e),
            }
        }
        gathered.insert(name, entry);
    }
    // Each workload looks up the namespaces it sees, not every service of the mesh.
    let mut by_namespace: HashMap<&str, Vec<&Built>> = HashMap::new();
    for b in services {
        by_namespace.entry(b.namespace.as_str()).or_default().push(b);
    }
    let mut out = BTreeMap::new();
    for (name, mut g) in gathered {
        let namespace: Option<&'a k8s_openapi::api::core::v1::Namespace> =
            index.namespaces.get(g.namespace.as_str()).copied();
        let ns_annotation = namespace.and_then(|n| n.metadata.annotations.as_ref()?.get(VISIBLE_ANNOTATION));
        if let Some(value) = ns_annotation {
            match parse_visible(value) {
                Ok(list) => g.visible.extend(list),
                Err(e) => index.skip("Namespace", g.namespace.clone(), e),
            }
        }
        let mut seen: BTreeSet<String> = BTreeSet::new();
        for v in &g.visible {
            let (ns, only) = match v {
                Visible::Namespace(ns) => (ns, None),
                Visible::Service { namespace, name } => (namespace, Some(name)),
            };
            let there = by_namespace.get(ns.as_str()).into_iter().flatten();
            seen.extend(there.filter(|b| only.is_none_or(|n| *n == b.name)).map(|b| b.service.name.clone()));
        }
        // A route of a service it sees may send elsewhere: it sees those backends too (and so
        // on), or the route would send it to a service its snapshot lacks. A route it gets
        // because it sees one of the backends (snapshots carry every route whose backends are
        // visible) must not mix hidden ones in either, which the validator refuses.
        let mut grown = true;
        while grown {
            grown = false;
            for r in routes {
                let host_seen = r.route.matches.host.as_ref().is_some_and(|h| seen.contains(h));
                if host_seen || r.route.backends.iter().any(|b| seen.contains(&b.service)) {
                    for b in &r.route.backends {
                        grown |= seen.insert(b.service.clone());
                    }
                }
            }
        }
        let sa = name.split_once('.').map_or(name.as_str(), |(sa, _)| sa);
        let origin = format!("ServiceAccount {}/{sa}", g.namespace);
        let spec = WorkloadSpec {
            name: name.clone(),
            identity: g.identity,
            // Who may call it stays open (every mesh identity) until policy objects exist.
            inbound: WorkloadInbound::default(),
            services: Some(seen.into_iter().collect()),
        };
        out.insert(name, (spec, origin));
    }
    out
}
