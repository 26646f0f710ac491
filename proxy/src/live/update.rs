//! The one path by which a new config comes into force, from the file, the control plane or DNS:
//! the file's layer and the control plane's are merged and validated, the addresses DNS gave for
//! services' `dns` names are added as endpoints, and the result is built and swapped in whole.
//! Requests in flight keep the version they started with; a bad update is rejected, counted and
//! logged, and the last good version keeps serving.

use std::{fmt, net::SocketAddr, sync::Arc};

use pillion_config::{Config, EndpointConfig, dns::DnsName, overlay::Overlay, schema, validate::Problem};

use super::{Resolved, Serving, Shared};
use crate::metrics::UpdateSource;

/// Brings a new layer into force: `base` (a new file) or `overlay` (a new control-plane
/// snapshot), merged with the current other layer, validated and applied. On success the given
/// layer becomes current and the new version is returned; on failure nothing changes and the
/// reason is returned. `in_file` says where each problem is in the file, for an update that is
/// the file's alone (no control-plane layer in force).
pub fn update(
    shared: &Shared,
    base: Option<schema::File>,
    overlay: Option<Overlay>,
    source: UpdateSource,
    in_file: Option<&dyn Fn(Vec<Problem>) -> String>,
) -> Result<u64, String> {
    let mut layers = shared.layers();
    let file = base.as_ref().unwrap_or(&layers.base).clone();
    let over = overlay.as_ref().or(layers.overlay.as_ref());
    let merged = match over {
        Some(o) => o.apply_to(file),
        None => file,
    };
    let config = pillion_config::validate::validate(merged).map_err(|problems| {
        let text = match (in_file, over) {
            (Some(locate), None) => locate(problems),
            _ => problems.iter().map(|p| format!("{}: {}", p.path, p.message)).collect::<Vec<_>>().join("; "),
        };
        reject(shared, &text, source);
        text
    })?;
    let version =
        swap_in(shared, config, &layers.resolved, Some(source), overlay.as_ref().map(|o| o.version))?;
    if let Some(b) = base {
        layers.base = b;
    }
    if overlay.is_some() {
        layers.overlay = overlay;
    }
    Ok(version)
}

/// Brings a new DNS answer for `name` into force: the config in force, with `addrs` as the
/// endpoints `name` stands for. Nothing happens when they are the ones already in force, so
/// only a changed answer rebuilds; the config version stays (the config did not change).
pub fn resolved(shared: &Shared, name: &DnsName, addrs: Vec<SocketAddr>) {
    let mut layers = shared.layers();
    if layers.resolved.get(name) == Some(&addrs) {
        return;
    }
    tracing::info!(%name, addrs = ?addrs, "endpoints from DNS changed");
    layers.resolved.insert(name.clone(), addrs);
    let merged = match &layers.overlay {
        Some(o) => o.apply_to(layers.base.clone()),
        None => layers.base.clone(),
    };
    // The layers were accepted together already, so this holds; if not, the old version stays.
    match pillion_config::validate::validate(merged) {
        Ok(config) => {
            let _ = swap_in(shared, config, &layers.resolved, None, None);
        }
        Err(problems) => tracing::error!(?problems, "the config in force no longer validates"),
    }
}

/// Forgets the answer for a name no service lists any more (it no longer adds endpoints, so
/// nothing is rebuilt); a name listed again starts from no answer.
pub fn forget(shared: &Shared, name: &DnsName) {
    shared.layers().resolved.remove(name);
}

/// Adds each service's endpoints from DNS: the addresses its names resolved to, with the
/// service's identity and weight 1, after (and never repeating) the ones it lists.
fn add_resolved(config: &mut Config, resolved: &Resolved) {
    for svc in &mut config.services {
        for name in &svc.dns {
            for &addr in resolved.get(name).into_iter().flatten() {
                if !svc.endpoints.iter().any(|e| e.addr == addr) {
                    svc.endpoints.push(EndpointConfig { addr, identity: svc.identity.clone(), weight: 1 });
                }
            }
        }
    }
}

/// Builds a validated config with its DNS endpoints and swaps it in, returning its version; an
/// error (counted and logged) leaves the old version serving. `source` is `None` for a DNS
/// answer, which keeps the version and is not a config update.
fn swap_in(
    shared: &Shared,
    mut config: Config,
    resolved: &Resolved,
    source: Option<UpdateSource>,
    version: Option<u64>,
) -> Result<u64, String> {
    let prev = shared.serving.load_full();
    if source.is_some() {
        warn_on_restart_only_changes(&prev.config, &config);
    }
    add_resolved(&mut config, resolved);
    // The control plane's versions are the ones operators see in its status; files count up.
    let version = version.unwrap_or(prev.version + u64::from(source.is_some()));
    let serving = match Serving::build(config, version, Some(&prev), shared.tls.as_deref()) {
        Ok(s) => s,
        Err(e) => {
            match source {
                Some(source) => reject(shared, &e, source),
                None => tracing::error!(error = %e, "cannot apply endpoints from DNS; keeping the last ones"),
            }
            return Err(e.to_string());
        }
    };
    shared.serving.store(Arc::new(serving));
    shared.config_changed.send_replace(());
    shared.publish_endpoints();
    if let Some(source) = source {
        shared.metrics.config_version.set(version as i64);
        shared.metrics.config_updates(true, source).inc();
        tracing::info!(version, source = source.as_str(), "config applied");
    }
    Ok(version)
}

/// Counts and logs an update that could not be applied; nothing else changes.
pub fn reject(shared: &Shared, error: &dyn fmt::Display, source: UpdateSource) {
    shared.metrics.config_updates(false, source).inc();
    tracing::error!(source = source.as_str(), "config rejected, keeping the last good one:\n{error}");
}

/// Listener addresses are bound once; say so rather than silently ignoring a change.
fn warn_on_restart_only_changes(old: &Config, new: &Config) {
    let binds = |c: &Config| {
        let mut v = vec![c.admin_bind, c.inbound.bind, c.outbound.bind];
        v.extend(c.outbound.listeners.iter().map(|l| l.bind));
        v
    };
    if binds(old) != binds(new) {
        tracing::warn!("listener addresses changed; they take effect at the next restart");
    }
    let tls_paths = |c: &Config| c.tls.as_ref().map(|t| (t.cert.clone(), t.key.clone(), t.trust.clone()));
    if tls_paths(old) != tls_paths(new) {
        tracing::warn!(
            "tls file paths changed; they take effect at the next restart (the files themselves are watched)"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shared(yaml: &str) -> Arc<Shared> {
        let file = pillion_config::yaml::parse(std::path::Path::new("t.yaml"), yaml).unwrap();
        let config = pillion_config::validate::validate(file).unwrap();
        let serving = Serving::build(config, 1, None, None).unwrap();
        let metrics = crate::metrics::Metrics::new();
        let spans = crate::trace::Spans::new(&metrics).0;
        Shared::new(serving, metrics, false, None, spans)
    }

    fn endpoints(shared: &Shared) -> Vec<(SocketAddr, Arc<crate::balance::Endpoint>)> {
        let rt = shared.serving.load();
        rt.services[0].balancer.endpoints().iter().map(|e| (e.addr, Arc::clone(e))).collect()
    }

    #[test]
    fn dns_answers_add_and_remove_endpoints_and_keep_the_others() {
        let shared = shared(
            "services:\n  - name: a\n    endpoints: [{addr: \"10.0.0.1:80\"}]\n    dns: [\"a.test:80\"]\n",
        );
        let name = pillion_config::dns::parse_name("a.test:80").unwrap();
        let addr = |s: &str| s.parse::<SocketAddr>().unwrap();
        resolved(&shared, &name, vec![addr("10.0.0.1:80"), addr("10.0.0.2:80")]);
        let first = endpoints(&shared);
        // The listed endpoint is not repeated by the answer that also has it.
        assert_eq!(first.iter().map(|e| e.0).collect::<Vec<_>>(), [addr("10.0.0.1:80"), addr("10.0.0.2:80")]);
        assert_eq!(shared.serving.load().version, 1, "a DNS answer is not a new config version");

        resolved(&shared, &name, vec![addr("10.0.0.2:80"), addr("10.0.0.3:80")]);
        let second = endpoints(&shared);
        assert_eq!(
            second.iter().map(|e| e.0).collect::<Vec<_>>(),
            [addr("10.0.0.1:80"), addr("10.0.0.2:80"), addr("10.0.0.3:80")]
        );
        for (a, e) in &first {
            let now = &second.iter().find(|(b, _)| b == a).unwrap().1;
            assert!(
                Arc::ptr_eq(&e.conn, &now.conn) && Arc::ptr_eq(&e.stats, &now.stats),
                "{a} lost its pool"
            );
        }

        // The same answer again rebuilds nothing; a file reload keeps the DNS endpoints.
        let before = shared.serving.load_full();
        resolved(&shared, &name, vec![addr("10.0.0.2:80"), addr("10.0.0.3:80")]);
        assert!(Arc::ptr_eq(&before, &shared.serving.load_full()));
        let file = pillion_config::yaml::parse(
            std::path::Path::new("t.yaml"),
            "services:\n  - name: a\n    dns: [\"a.test:80\"]\n",
        )
        .unwrap();
        update(&shared, Some(file), None, UpdateSource::File, None).unwrap();
        assert_eq!(
            endpoints(&shared).iter().map(|e| e.0).collect::<Vec<_>>(),
            [addr("10.0.0.2:80"), addr("10.0.0.3:80")]
        );
        assert_eq!(shared.serving.load().version, 2);
    }
}
