//! Per-workload snapshots: `{version, services, routes, inbound}` as one NDJSON line, serialised
//! once per change and handed to every watcher as cheap `Bytes` clones.
//!
//! The config version is global and bumps on every accepted change of the directory. A
//! workload's snapshot carries the version at which *its* content last changed, so a change to
//! another workload's routes pushes nothing to it (and its acked version stays current).

use std::{
    collections::{HashMap, hash_map::Entry},
    sync::Arc,
};

use arc_swap::ArcSwap;
use bytes::Bytes;
use pillion_certs::SpiffeId;
use pillion_config::schema::{Route, Service};
use serde::Serialize;
use tokio::sync::watch;

use crate::{
    source::{Mesh, WorkloadInbound, WorkloadSpec},
    view::{Names, View, ViewKey, view_in},
};

/// One workload's current snapshot.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// The version at which this content was published.
    pub version: u64,
    /// The NDJSON line, newline included.
    pub line: Bytes,
    /// The content without the version, to tell whether a new config changes it.
    content: Bytes,
}

#[derive(Serialize)]
struct Content<'a> {
    services: Vec<&'a Service>,
    routes: Vec<&'a Route>,
    inbound: &'a WorkloadInbound,
}

/// A workload's identity and the channel its watchers follow.
#[derive(Debug)]
pub struct Channel {
    /// The SPIFFE ID its proxies must present.
    pub identity: SpiffeId,
    tx: watch::Sender<Snapshot>,
}

impl Channel {
    /// Follows the workload's snapshots; the stream ends when the workload is removed.
    pub fn subscribe(&self) -> watch::Receiver<Snapshot> {
        self.tx.subscribe()
    }

    /// The current snapshot.
    pub fn current(&self) -> Snapshot {
        self.tx.borrow().clone()
    }
}

/// The published state: the config version and every workload's channel.
#[derive(Debug, Default)]
pub struct Table {
    /// Global config version (0 until a config was accepted).
    pub version: u64,
    /// Channels by workload name.
    pub workloads: HashMap<String, Arc<Channel>>,
}

/// All snapshots, swapped whole on every accepted change.
#[derive(Debug, Default)]
pub struct Snapshots {
    table: ArcSwap<Table>,
}

impl Snapshots {
    /// The current table.
    pub fn load(&self) -> Arc<Table> {
        self.table.load_full()
    }

    /// Publishes `mesh`. Returns the new global version, or `None` when nothing changed.
    /// Called by one task only (the directory watcher), so there is no race between updates.
    pub fn apply(&self, mesh: &Mesh) -> Result<Option<u64>, serde_json::Error> {
        let old = self.table.load_full();
        let names = Names::new(mesh);
        // Workloads that see the same are pushed the same bytes: serialised once, shared.
        let mut made: HashMap<ViewKey, Bytes> = HashMap::new();
        let mut contents = HashMap::with_capacity(mesh.workloads.len());
        for (name, (w, _)) in &mesh.workloads {
            let v = view_in(mesh, &names, Some(w));
            let c = match made.entry(ViewKey::new(&v, w)) {
                Entry::Occupied(e) => e.get().clone(),
                Entry::Vacant(e) => e.insert(content(mesh, &v, w)?).clone(),
            };
            contents.insert(name.clone(), c);
        }
        let unchanged = old.version > 0
            && contents.len() == old.workloads.len()
            && mesh.workloads.iter().all(|(name, (w, _))| {
                old.workloads.get(name).is_some_and(|c| {
                    c.identity.as_str() == w.identity && c.tx.borrow().content == contents[name]
                })
            });
        if unchanged {
            return Ok(None);
        }
        let version = old.version + 1;
        let mut workloads = HashMap::with_capacity(mesh.workloads.len());
        for (name, (w, _)) in &mesh.workloads {
            let Ok(identity) = SpiffeId::parse(&w.identity) else {
                // Validation already refused it; never publish a workload no cert can match.
                continue;
            };
            let content = contents.remove(name).unwrap_or_default();
            let channel = match old.workloads.get(name).filter(|c| c.identity == identity) {
                Some(c) => {
                    if c.tx.borrow().content != content {
                        c.tx.send_replace(snapshot(version, content));
                    }
                    Arc::clone(c)
                }
                // New, or its identity changed: old watchers' streams end with the old channel.
                None => {
                    let (tx, _) = watch::channel(snapshot(version, content));
                    Arc::new(Channel { identity, tx })
                }
            };
            workloads.insert(name.clone(), channel);
        }
        self.table.store(Arc::new(Table { version, workloads }));
        Ok(Some(version))
    }
}

fn content(mesh: &Mesh, v: &View, w: &WorkloadSpec) -> Result<Bytes, serde_json::Error> {
    let c = Content {
        services: v.services.iter().map(|&i| &mesh.services[i].0).collect(),
        routes: v.routes.iter().map(|&i| &mesh.routes[i].0).collect(),
        inbound: &w.inbound,
    };
    Ok(Bytes::from(serde_json::to_vec(&c)?))
}

/// This process's start, in unix milliseconds. Versions restart at 1 with the process, so a
/// proxy may resume by version only within the same epoch (each line carries it).
pub fn epoch() -> u64 {
    static EPOCH: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *EPOCH.get_or_init(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
    })
}

fn snapshot(version: u64, content: Bytes) -> Snapshot {
    // `content` is a serialised, non-empty JSON object: splice the version in front of its
    // fields and the epoch after them rather than re-serialising it, keeping the field order
    // of the wire contract.
    let mut line = Vec::with_capacity(content.len() + 48);
    line.extend_from_slice(format!("{{\"version\":{version},").as_bytes());
    let fields = content.get(1..content.len().saturating_sub(1)).unwrap_or_default();
    line.extend_from_slice(fields);
    line.extend_from_slice(format!(",\"epoch\":{}}}", epoch()).as_bytes());
    line.push(b'\n');
    Snapshot { version, line: Bytes::from(line), content }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::load;

    fn mesh(files: &[(&str, &str)]) -> Mesh {
        load(files.iter().map(|(n, t)| (n.into(), (*t).to_owned())).collect()).unwrap()
    }

    const BASE: &str = "\
services:
  - {name: orders, endpoints: [{addr: \"127.0.0.1:1\"}]}
  - {name: cart, endpoints: [{addr: \"127.0.0.1:2\"}], connect_timeout: 250ms}
routes:
  - {name: r, match: {path_prefix: /v2}, backends: [{service: orders}], timeout: 1.5s, retry: {attempts: 2}}
workloads:
  - {name: web, identity: \"spiffe://cluster.local/ns/shop/sa/web\", services: [orders]}
  - {name: cart, identity: \"spiffe://cluster.local/ns/shop/sa/cart\"}
";

    fn line(s: &Snapshots, w: &str) -> serde_json::Value {
        serde_json::from_slice(&s.load().workloads[w].current().line).unwrap()
    }

    #[test]
    fn a_workload_sees_only_its_services_and_versions_bump_only_on_its_changes() {
        let s = Snapshots::default();
        assert_eq!(s.apply(&mesh(&[("a.yaml", BASE)])).unwrap(), Some(1));
        let web = line(&s, "web");
        assert_eq!(web["version"], 1);
        assert_eq!(web["services"].as_array().unwrap().len(), 1);
        assert_eq!(web["services"][0]["name"], "orders");
        assert_eq!(web["inbound"]["ports"], serde_json::json!([]));
        assert_eq!(line(&s, "cart")["services"].as_array().unwrap().len(), 2);

        // The same files again: no new version.
        assert_eq!(s.apply(&mesh(&[("a.yaml", BASE)])).unwrap(), None);

        // A change only `cart` sees: global version 2, `web` keeps version 1.
        let changed = BASE.replace("127.0.0.1:2", "127.0.0.1:3");
        assert_eq!(s.apply(&mesh(&[("a.yaml", &changed)])).unwrap(), Some(2));
        assert_eq!(line(&s, "web")["version"], 1);
        assert_eq!(line(&s, "cart")["version"], 2);
        // The proxy reads the sections back with its own schema types.
        let cart = line(&s, "cart");
        let services: Vec<Service> = serde_json::from_value(cart["services"].clone()).unwrap();
        let routes: Vec<Route> = serde_json::from_value(cart["routes"].clone()).unwrap();
        assert_eq!(services[1].connect_timeout.map(|d| d.0), Some(std::time::Duration::from_millis(250)));
        assert_eq!(routes[0].timeout.map(|d| d.0), Some(std::time::Duration::from_millis(1500)));
        assert_eq!(routes[0].matches.path_prefix.as_deref(), Some("/v2"));
        let raw = s.load().workloads["web"].current().line;
        assert!(raw.starts_with(b"{\"version\":1,\"services\":[") && raw.ends_with(b"}\n"));
    }
}
