//! The one path by which a new config comes into force, from the file or the control plane: the
//! file's layer and the control plane's are merged, validated, built and swapped in whole.
//! Requests in flight keep the version they started with; a bad update is rejected, counted and
//! logged, and the last good version keeps serving.

use std::{fmt, sync::Arc};

use pillion_config::{Config, overlay::Overlay, schema, validate::Problem};

use super::{Serving, Shared};
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
    let version = swap_in(shared, config, source, overlay.as_ref().map(|o| o.version))?;
    if let Some(b) = base {
        layers.base = b;
    }
    if overlay.is_some() {
        layers.overlay = overlay;
    }
    Ok(version)
}

/// Builds a validated config and swaps it in, returning its version; an error (counted and
/// logged) leaves the old version serving.
fn swap_in(
    shared: &Shared,
    config: Config,
    source: UpdateSource,
    version: Option<u64>,
) -> Result<u64, String> {
    let prev = shared.serving.load_full();
    warn_on_restart_only_changes(&prev.config, &config);
    // The control plane's versions are the ones operators see in its status; files count up.
    let version = version.unwrap_or(prev.version + 1);
    let serving = match Serving::build(config, version, Some(&prev), shared.tls.as_deref()) {
        Ok(s) => s,
        Err(e) => {
            reject(shared, &e, source);
            return Err(e.to_string());
        }
    };
    shared.serving.store(Arc::new(serving));
    shared.metrics.config_version.set(version as i64);
    shared.metrics.config_updates(true, source).inc();
    shared.publish_endpoints();
    tracing::info!(version, source = source.as_str(), "config applied");
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
