//! What one workload sees of the mesh: the services its `services` list allows (all when absent)
//! and the routes that send only to those.
//!
//! A route whose backends are all hidden from the workload is left out of its snapshot (it is for
//! other workloads); a route that mixes visible and hidden backends is an error, since dropping
//! it would silently change where the workload's traffic goes.

use std::collections::{HashMap, HashSet};

use crate::source::{Mesh, WorkloadInbound, WorkloadSpec};

/// One workload's view, as indices into the mesh's lists.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct View {
    /// Indices into `Mesh::services`.
    pub services: Vec<usize>,
    /// Indices into `Mesh::routes`.
    pub routes: Vec<usize>,
    /// `(route index, backend index)` of backends hidden from the workload in a route it sees.
    pub hidden_backends: Vec<(usize, usize)>,
    /// Indices into the workload's `services` list that name no service.
    pub unknown_services: Vec<usize>,
}

/// What a workload's snapshot is made of: its view's services and routes, and its inbound ports
/// (as JSON). Workloads with equal keys are pushed equal content.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ViewKey(Vec<usize>, Vec<usize>, String);

impl ViewKey {
    /// The key of `workload`, whose view is `v`.
    pub fn new(v: &View, workload: &WorkloadSpec) -> Self {
        Self::of(v, &workload.inbound)
    }

    /// The key of a view with these inbound ports.
    pub fn of(v: &View, inbound: &WorkloadInbound) -> Self {
        // Serialising plain data cannot fail; an empty string would only merge no-port keys.
        let inbound = serde_json::to_string(inbound).unwrap_or_default();
        Self(v.services.clone(), v.routes.clone(), inbound)
    }
}

/// The services of one mesh by name, built once for every view taken of it.
#[derive(Debug)]
pub struct Names<'a>(HashMap<&'a str, usize>);

impl<'a> Names<'a> {
    /// Indexes `mesh`'s services.
    pub fn new(mesh: &'a Mesh) -> Self {
        Self(mesh.services.iter().enumerate().map(|(i, (s, _))| (s.name.as_str(), i)).collect())
    }
}

/// The view of `workload` (or of everything when `None`).
pub fn view(mesh: &Mesh, workload: Option<&WorkloadSpec>) -> View {
    view_in(mesh, &Names::new(mesh), workload)
}

/// As [`view`], with the mesh's [`Names`] at hand: what a workload's `services` list names, not
/// the whole mesh, is what each view costs.
pub fn view_in(mesh: &Mesh, names: &Names<'_>, workload: Option<&WorkloadSpec>) -> View {
    let list = workload.and_then(|w| w.services.as_ref());
    let allowed: Option<HashSet<&str>> = list.map(|l| l.iter().map(String::as_str).collect());
    let visible = |name: &str| allowed.as_ref().is_none_or(|a| a.contains(name));

    let mut v = View::default();
    match list {
        None => v.services = (0..mesh.services.len()).collect(),
        Some(list) => {
            for (k, name) in list.iter().enumerate() {
                match names.0.get(name.as_str()) {
                    Some(&i) => v.services.push(i),
                    None => v.unknown_services.push(k),
                }
            }
            // Mesh order, as the proxy's config lists them; a name listed twice is one service.
            v.services.sort_unstable();
            v.services.dedup();
        }
    }
    for (i, (route, _)) in mesh.routes.iter().enumerate() {
        // An unknown backend counts as visible, so that the proxy validator reports it.
        let hidden: Vec<usize> = (0..route.backends.len())
            .filter(|&k| {
                let name = route.backends[k].service.as_str();
                names.0.contains_key(name) && !visible(name)
            })
            .collect();
        if hidden.len() == route.backends.len() && !hidden.is_empty() {
            continue;
        }
        v.hidden_backends.extend(hidden.into_iter().map(|k| (i, k)));
        v.routes.push(i);
    }
    v
}
