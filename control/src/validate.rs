//! Validation by the proxy's own validator: for every workload, the proxy config it would be
//! pushed (its services, routes and inbound ports) goes through `pillion_config::validate`,
//! so that a snapshot the control plane accepts is one every proxy accepts.
//!
//! The validator speaks in paths of that per-workload config (`routes[3].backends[0].service`);
//! they are mapped back to the file and list index each item came from, then to line and column.

use std::collections::{BTreeSet, HashSet};

use pillion_config::{schema, validate::Problem as ProxyProblem};

use crate::{
    source::{Mesh, Origin, Problem, SourceError, WorkloadInbound, WorkloadSpec},
    view::{Names, View, ViewKey, view_in},
};

/// Checks the whole mesh and every workload's view of it.
pub fn validate(mesh: &Mesh) -> Result<(), SourceError> {
    // Sorted and deduplicated: the same bad service shows up in every workload's view.
    let mut problems = BTreeSet::new();
    let mut add = |p: Problem| {
        problems.insert((p.file.clone(), p.line, p.col, p.message));
    };
    let names = Names::new(mesh);
    // Everything at once, so that a service no workload sees is still checked.
    let everything = view_in(mesh, &names, None);
    check(mesh, None, &everything, &mut add);
    // Workloads with the same view and inbound ports get the same services, routes and ports:
    // those are checked once, and each workload's own fields (name, identity) on their own. A
    // workload that sees everything and has no ports was checked just now.
    let mut checked = HashSet::from([ViewKey::of(&everything, &WorkloadInbound::default())]);
    for (w, origin) in mesh.workloads.values() {
        let v = view_in(mesh, &names, Some(w));
        for &k in &v.unknown_services {
            let mut p = mesh.locate(origin.file, &format!("workloads[{}].services[{k}]", origin.index));
            p.message = format!("unknown service {:?}", w.services.as_deref().unwrap_or_default()[k]);
            add(p);
        }
        for &(r, k) in &v.hidden_backends {
            let (route, at) = &mesh.routes[r];
            let mut p = mesh.locate(at.file, &format!("routes[{}].backends[{k}].service", at.index));
            p.message = format!(
                "route {:?} sends to service {:?}, which workload {:?} may not see (its `services` list)",
                route.name, route.backends[k].service, w.name
            );
            add(p);
        }
        if checked.insert(ViewKey::new(&v, w)) {
            check(mesh, Some((w, *origin)), &v, &mut add);
        } else {
            check(mesh, Some((w, *origin)), &View::default(), &mut add);
        }
    }
    if problems.is_empty() {
        return Ok(());
    }
    let problems =
        problems.into_iter().map(|(file, line, col, message)| Problem { file, line, col, message }).collect();
    Err(SourceError { problems })
}

/// The proxy-side config a workload's view becomes (what `snapshot` pushes, in schema form).
pub fn proxy_file(mesh: &Mesh, workload: Option<&WorkloadSpec>, v: &View) -> schema::File {
    schema::File {
        workload: workload
            .map(|w| schema::Workload { name: w.name.clone(), identity: Some(w.identity.clone()) }),
        // A meshed proxy always has certificates; the paths are never read here.
        tls: Some(schema::Tls { cert: String::new(), key: String::new(), trust: String::new() }),
        inbound: schema::Inbound {
            ports: workload.map(|w| w.inbound.ports.clone()).unwrap_or_default(),
            ..schema::Inbound::default()
        },
        services: v.services.iter().map(|&i| mesh.services[i].0.clone()).collect(),
        routes: v.routes.iter().map(|&i| mesh.routes[i].0.clone()).collect(),
        ..schema::File::default()
    }
}

fn check(mesh: &Mesh, workload: Option<(&WorkloadSpec, Origin)>, v: &View, add: &mut impl FnMut(Problem)) {
    let file = proxy_file(mesh, workload.map(|(w, _)| w), v);
    let Err(found) = pillion_config::validate::validate(file) else {
        return;
    };
    // A hidden backend was reported above in words that say why; skip the validator's own
    // "unknown service" for it.
    let hidden: Vec<String> = v
        .hidden_backends
        .iter()
        .filter_map(|&(r, k)| v.routes.iter().position(|&i| i == r).map(|n| (n, k)))
        .map(|(n, k)| format!("routes[{n}].backends[{k}].service"))
        .collect();
    for ProxyProblem { path, message } in found {
        if hidden.contains(&path) {
            continue;
        }
        let (origin, local) = map_path(mesh, workload.map(|(_, o)| o), v, &path);
        let mut p = match origin {
            Some(file) => mesh.locate(file, &local),
            None => Problem { file: "<config>".into(), line: 0, col: 0, message: String::new() },
        };
        // Duplicate names never get here (merging reports them), so no message names an index
        // of the per-workload config; the path is rewritten to the file's own.
        p.message = format!("{local}: {message}");
        add(p);
    }
}

/// Maps a per-workload path to (file index, path within that file).
fn map_path(mesh: &Mesh, workload: Option<Origin>, v: &View, path: &str) -> (Option<usize>, String) {
    let indexed = |prefix: &str, list: &[usize], origins: &dyn Fn(usize) -> Origin| {
        let rest = path.strip_prefix(prefix)?.strip_prefix('[')?;
        let (n, tail) = rest.split_once(']')?;
        let at = origins(*list.get(n.parse::<usize>().ok()?)?);
        Some((Some(at.file), format!("{prefix}[{}]{tail}", at.index)))
    };
    if let Some(found) = indexed("services", &v.services, &|i| mesh.services[i].1) {
        return found;
    }
    if let Some(found) = indexed("routes", &v.routes, &|i| mesh.routes[i].1) {
        return found;
    }
    match workload {
        Some(o) => {
            let tail = path.strip_prefix("workload").unwrap_or(path);
            let tail = if tail.starts_with('.') { tail.to_owned() } else { format!(".{tail}") };
            (Some(o.file), format!("workloads[{}]{tail}", o.index))
        }
        None => (None, path.to_owned()),
    }
}
