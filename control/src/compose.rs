//! The mesh in force: the config directory laid over the Kubernetes model, checked once, and
//! published. Both sources report here (the directory watcher and the Kubernetes task), and this
//! is the one place that calls [`Snapshots::apply`](crate::snapshot::Snapshots::apply), behind a
//! lock, so updates from the two never race.
//!
//! The directory wins a name clash (a service, route or workload it defines replaces the
//! cluster's of that name), its routes come first (first match wins), and every service it
//! defines is visible to the cluster's workloads, whose `services` lists otherwise name only
//! what their namespace sees.

use std::{collections::HashSet, sync::Mutex};

use crate::{
    State,
    source::{Mesh, Origin, SourceError},
};

/// The last good mesh of each source, and their errors.
#[derive(Debug, Default)]
pub struct Sources {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    /// The directory's last good mesh (empty without a directory).
    dir: Mesh,
    /// The directory's current error, if its last read was refused.
    dir_error: Option<SourceError>,
    /// The cluster's last model (empty without `--kubernetes`, or before the first sync).
    cluster: Mesh,
    /// Why the last overlay was refused, if it was.
    merged_error: Option<SourceError>,
}

/// A new read of the directory: a good one replaces the last, a bad one is recorded (and the
/// last good one stays). Returns the new global version, if the published snapshots changed.
pub fn set_dir(state: &State, read: Result<Mesh, SourceError>) -> Option<u64> {
    let mut inner = state.sources.inner.lock().unwrap_or_else(|e| e.into_inner());
    match read {
        Ok(mesh) => {
            inner.dir = mesh;
            inner.dir_error = None;
        }
        Err(e) => {
            state.metrics.config_errors.inc();
            tracing::error!("config rejected, keeping the last good snapshots:\n{e}");
            inner.dir_error = Some(e);
            report(state, &inner);
            return None;
        }
    }
    publish(state, &mut inner)
}

/// A new model of the cluster. Returns the new global version, if the snapshots changed.
pub fn set_cluster(state: &State, mesh: Mesh) -> Option<u64> {
    let mut inner = state.sources.inner.lock().unwrap_or_else(|e| e.into_inner());
    inner.cluster = mesh;
    publish(state, &mut inner)
}

fn publish(state: &State, inner: &mut Inner) -> Option<u64> {
    let mesh = overlay(&inner.dir, &inner.cluster);
    // The directory alone was checked when read; together with the cluster it may still clash
    // (a directory route to a service the cluster no longer has).
    if let Err(e) = crate::validate::validate(&mesh) {
        state.metrics.config_errors.inc();
        tracing::error!("the directory over the cluster is refused, keeping the last good snapshots:\n{e}");
        inner.merged_error = Some(e);
        report(state, inner);
        return None;
    }
    inner.merged_error = None;
    report(state, inner);
    match state.snapshots.apply(&mesh) {
        Ok(Some(version)) => {
            state.metrics.config_version.set(i64::try_from(version).unwrap_or(i64::MAX));
            tracing::info!(version, workloads = mesh.workloads.len(), "config published");
            Some(version)
        }
        Ok(None) => None,
        Err(e) => {
            state.metrics.config_errors.inc();
            tracing::error!(error = %e, "cannot serialise snapshots; keeping the last good ones");
            None
        }
    }
}

fn report(state: &State, inner: &Inner) {
    state.status.set_config_error(inner.dir_error.clone().or_else(|| inner.merged_error.clone()));
}

/// `dir` over `cluster`: one mesh whose origins index the files of both (the directory's first).
pub fn overlay(dir: &Mesh, cluster: &Mesh) -> Mesh {
    if cluster.services.is_empty() && cluster.routes.is_empty() && cluster.workloads.is_empty() {
        return dir.clone();
    }
    let shift = |o: &Origin| Origin { file: o.file + dir.files.len(), index: o.index };
    let dir_services: HashSet<&str> = dir.services.iter().map(|(s, _)| s.name.as_str()).collect();
    let dir_routes: HashSet<&str> = dir.routes.iter().map(|(r, _)| r.name.as_str()).collect();

    let mut mesh = dir.clone();
    mesh.files.extend(cluster.files.iter().cloned());
    mesh.services.extend(
        cluster
            .services
            .iter()
            .filter(|(s, _)| !dir_services.contains(s.name.as_str()))
            .map(|(s, o)| (s.clone(), shift(o))),
    );
    mesh.routes.extend(
        cluster
            .routes
            .iter()
            .filter(|(r, _)| !dir_routes.contains(r.name.as_str()))
            .map(|(r, o)| (r.clone(), shift(o))),
    );
    for (name, (w, o)) in &cluster.workloads {
        if mesh.workloads.contains_key(name) {
            continue;
        }
        let mut w = w.clone();
        if let Some(list) = &mut w.services {
            let own: HashSet<String> = list.iter().cloned().collect();
            list.extend(dir_services.iter().filter(|s| !own.contains(**s)).map(|s| (*s).to_owned()));
        }
        mesh.workloads.insert(name.clone(), (w, shift(o)));
    }
    mesh
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::load;

    fn mesh(text: &str) -> Mesh {
        load(vec![("a.yaml".into(), text.to_owned())]).unwrap()
    }

    #[test]
    fn the_directory_wins_clashes_and_its_services_are_visible_to_cluster_workloads() {
        let dir = mesh(
            "services:\n  - {name: orders, endpoints: [{addr: \"10.0.0.9:80\"}]}\n  - {name: extra}\n\
             routes:\n  - {name: r, backends: [{service: orders}]}\n",
        );
        let cluster = mesh(
            "services:\n  - {name: orders, endpoints: [{addr: \"10.0.0.1:80\"}]}\n  - {name: cart}\n\
             workloads:\n  - {name: web, identity: \"spiffe://td/ns/a/sa/web\", services: [cart, orders]}\n",
        );
        let m = overlay(&dir, &cluster);
        let names: Vec<&str> = m.services.iter().map(|(s, _)| s.name.as_str()).collect();
        assert_eq!(names, ["orders", "extra", "cart"]);
        assert_eq!(m.services[0].0.endpoints[0].addr, "10.0.0.9:80");
        assert_eq!(m.services[2].1, Origin { file: 1, index: 1 });
        let mut seen = m.workloads["web"].0.services.clone().unwrap();
        seen.sort();
        assert_eq!(seen, ["cart", "extra", "orders"]);
        crate::validate::validate(&m).unwrap();
    }
}
