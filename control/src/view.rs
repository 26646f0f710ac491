//! What one workload sees of the mesh: the services its `services` list allows (all when absent)
//! and the routes that send only to those.
//!
//! A route whose backends are all hidden from the workload is left out of its snapshot (it is for
//! other workloads); a route that mixes visible and hidden backends is an error, since dropping
//! it would silently change where the workload's traffic goes.

use std::collections::HashSet;

use crate::source::{Mesh, WorkloadSpec};

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

/// The view of `workload` (or of everything when `None`).
pub fn view(mesh: &Mesh, workload: Option<&WorkloadSpec>) -> View {
    let allowed: Option<HashSet<&str>> =
        workload.and_then(|w| w.services.as_ref()).map(|list| list.iter().map(String::as_str).collect());
    let known: HashSet<&str> = mesh.services.iter().map(|(s, _)| s.name.as_str()).collect();
    let visible = |name: &str| allowed.as_ref().is_none_or(|a| a.contains(name));

    let services = (0..mesh.services.len()).filter(|&i| visible(&mesh.services[i].0.name)).collect();
    let mut v = View { services, ..View::default() };
    for (i, (route, _)) in mesh.routes.iter().enumerate() {
        // An unknown backend counts as visible, so that the proxy validator reports it.
        let hidden: Vec<usize> = (0..route.backends.len())
            .filter(|&k| {
                let name = route.backends[k].service.as_str();
                known.contains(name) && !visible(name)
            })
            .collect();
        if hidden.len() == route.backends.len() && !hidden.is_empty() {
            continue;
        }
        v.hidden_backends.extend(hidden.into_iter().map(|k| (i, k)));
        v.routes.push(i);
    }
    if let Some(list) = workload.and_then(|w| w.services.as_ref()) {
        v.unknown_services = (0..list.len()).filter(|&k| !known.contains(list[k].as_str())).collect();
    }
    v
}
