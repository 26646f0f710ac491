//! Keeps services' `dns` endpoints current: one task per process follows the config in force
//! and runs a task per name it lists, which resolves the name, hands each changed answer to
//! [`update::resolved`], and asks again at the answer's TTL (clamped into `[min_ttl, max_ttl]`).
//! A failed resolution (timeout, SERVFAIL, nameserver away; of A or AAAA alone, or both) keeps
//! that family's last good answer and is retried with backoff from `min_ttl` up to `max_ttl`;
//! a definitive answer with no records (NXDOMAIN, as a headless Service with no ready pod gives)
//! removes the name's endpoints: those pods are gone, and their addresses may be reused.

use std::{collections::BTreeMap, sync::Arc};

use pillion_config::dns::{DnsName, ResolverConfig};
use tokio::{sync::oneshot, task::JoinHandle};

use super::Resolver;
use crate::live::{Shared, update};

/// A name's task, ended when its handle is dropped.
struct NameTask {
    services: Vec<Arc<str>>,
    handle: JoinHandle<()>,
}

impl Drop for NameTask {
    fn drop(&mut self) {
        self.handle.abort();
    }
}

/// Starts following the config in force. The returned future ends once every name the current
/// config lists has had its first answer or failure (the caller bounds the wait).
pub fn spawn(shared: Arc<Shared>, resolver: Resolver) -> impl Future<Output = ()> {
    let (first_tx, first_rx) = oneshot::channel();
    tokio::spawn(follow(shared, resolver, first_tx));
    async move {
        let Ok(firsts) = first_rx.await else { return };
        for rx in firsts {
            let _ = rx.await;
        }
    }
}

/// The names each service lists, with the services that list them.
fn wanted(shared: &Shared) -> (BTreeMap<DnsName, Vec<Arc<str>>>, ResolverConfig) {
    let rt = shared.serving.load();
    let mut names: BTreeMap<DnsName, Vec<Arc<str>>> = BTreeMap::new();
    for svc in &rt.config.services {
        for n in &svc.dns {
            names.entry(n.clone()).or_default().push(Arc::clone(&svc.name));
        }
    }
    (names, rt.config.resolver.clone())
}

async fn follow(
    shared: Arc<Shared>,
    mut resolver: Resolver,
    first: oneshot::Sender<Vec<oneshot::Receiver<()>>>,
) {
    let mut changes = shared.config_changed.subscribe();
    let mut running: BTreeMap<DnsName, NameTask> = BTreeMap::new();
    let mut first = Some(first);
    loop {
        changes.mark_unchanged();
        let (names, config) = wanted(&shared);
        if &config != resolver.config() {
            tracing::info!("resolver settings changed; resolving every name again");
            resolver = Resolver::new(&config);
            running.clear();
        }
        running.retain(|name, task| {
            let keep = names.get(name) == Some(&task.services);
            if !names.contains_key(name) {
                update::forget(&shared, name);
            }
            keep
        });
        let mut firsts = Vec::new();
        for (name, services) in names {
            if running.contains_key(&name) {
                continue;
            }
            let (tx, rx) = oneshot::channel();
            firsts.push(rx);
            let task =
                keep_resolved(Arc::clone(&shared), resolver.clone(), name.clone(), services.clone(), tx);
            running.insert(name, NameTask { services, handle: tokio::spawn(task) });
        }
        if let Some(f) = first.take() {
            let _ = f.send(firsts);
        }
        if changes.changed().await.is_err() {
            return;
        }
    }
}

/// Resolves one name for as long as it is listed.
async fn keep_resolved(
    shared: Arc<Shared>,
    resolver: Resolver,
    name: DnsName,
    services: Vec<Arc<str>>,
    first: oneshot::Sender<()>,
) {
    let (min, max) = (resolver.config().min_ttl, resolver.config().max_ttl);
    let mut backoff = min;
    let mut first = Some(first);
    // The last good answer per family: a family that fails keeps its own, so that a resolver
    // that answers A but fails AAAA (or the reverse) neither loses nor blocks the other.
    let (mut last_v4, mut last_v6) = (Vec::new(), Vec::new());
    let mut had_records = false;
    loop {
        let answer = resolver.resolve(&name.host).await;
        let mut failure = None;
        for (got, last) in [(answer.v4, &mut last_v4), (answer.v6, &mut last_v6)] {
            match got {
                Ok(ips) => *last = ips,
                Err(e) => failure = Some(e),
            }
        }
        let ok = failure.is_none();
        services.iter().for_each(|s| shared.metrics.dns_resolutions(s, ok).inc());
        let ips: Vec<_> = last_v4.iter().chain(&last_v6).copied().collect();
        if ips.is_empty() && had_records && ok {
            tracing::warn!(%name, "the name has no A or AAAA records now; its endpoints are removed");
        }
        had_records = !ips.is_empty();
        let addrs = ips.into_iter().map(|ip| std::net::SocketAddr::new(ip, name.port)).collect();
        update::resolved(&shared, &name, addrs);
        let wait = match failure {
            None => {
                backoff = min;
                answer.ttl
            }
            Some(e) => {
                let retry_in = backoff;
                tracing::warn!(error = %e, ?retry_in, "DNS resolution failed; keeping the last good answer");
                let wait = backoff;
                backoff = (backoff * 2).min(max);
                wait
            }
        };
        if let Some(tx) = first.take() {
            let _ = tx.send(());
        }
        tokio::time::sleep(wait).await;
    }
}
