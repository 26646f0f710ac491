//! Hot reload: a new config (from the file, on SIGHUP or when it changes, or from the control
//! plane) is validated, built and swapped in whole. Requests in flight keep the config they
//! started with; a bad update is rejected, counted and logged, and the old config keeps serving.

use std::{
    fmt,
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use notify::{RecursiveMode, Watcher};
use tokio::{signal::unix::SignalKind, sync::mpsc};

use super::Config;
use crate::runtime::{Runtime, Shared};

/// Where an update came from (the `source` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The config file.
    File,
    /// pillion-control.
    Control,
}

impl Source {
    fn as_str(self) -> &'static str {
        match self {
            Self::File => "file",
            Self::Control => "control",
        }
    }
}

/// Swaps in a validated config and returns its version; an error (counted and logged) leaves
/// the old config serving.
pub fn apply(shared: &Shared, config: Config, source: Source, version: Option<u64>) -> Result<u64, String> {
    let prev = shared.runtime.load_full();
    warn_on_restart_only_changes(&prev.config, &config);
    // The control plane's versions are the ones operators see in its status; files count up.
    let version = version.unwrap_or(prev.version + 1);
    let runtime = match Runtime::build(config, version, Some(&prev), shared.tls.as_deref()) {
        Ok(rt) => rt,
        Err(e) => {
            reject(shared, &e, source);
            return Err(e.to_string());
        }
    };
    shared.runtime.store(Arc::new(runtime));
    shared.metrics.config_version.set(version as i64);
    shared.metrics.config_updates.with_label_values(&["applied", source.as_str()]).inc();
    shared.publish_endpoints();
    tracing::info!(version, source = source.as_str(), "config applied");
    Ok(version)
}

/// Counts and logs an update that failed validation; nothing else changes.
pub fn reject(shared: &Shared, error: &dyn fmt::Display, source: Source) {
    shared.metrics.config_updates.with_label_values(&["rejected", source.as_str()]).inc();
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

/// Reloads `path` on SIGHUP and whenever it changes, until the process exits. `loaded` is the
/// text the running config came from. The watch and the SIGHUP handler are registered when this
/// is called (within the Tokio runtime), not when the returned future first runs, so a change or
/// a SIGHUP after the call is not missed.
pub fn watch_file(path: PathBuf, loaded: String, shared: Arc<Shared>) -> impl Future<Output = ()> {
    // Watch the directory, not the file: editors and Kubernetes ConfigMaps replace files by
    // rename, which a watch on the old inode would miss.
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new(".")).to_owned();
    let (watcher, mut rx) = watch_dir(&dir);
    let mut hup = tokio::signal::unix::signal(SignalKind::hangup())
        .inspect_err(
            |e| tracing::warn!(error = %e, "cannot listen for SIGHUP; reloading on file changes only"),
        )
        .ok();
    let mut last = loaded;
    async move {
        let _watcher = watcher;
        // The first pass looks without waiting for an event: a change made after `loaded` was
        // read but before the watch existed raised none.
        let mut first = true;
        loop {
            let forced = if std::mem::take(&mut first) {
                false
            } else {
                let forced = tokio::select! {
                    Some(()) = async { hup.as_mut()?.recv().await } => true,
                    Some(()) = rx.recv() => false,
                    else => return,
                };
                // Let a burst of events (write, rename, chmod) settle into one reload.
                tokio::time::sleep(Duration::from_millis(100)).await;
                while rx.try_recv().is_ok() {}
                forced
            };
            let text = match std::fs::read_to_string(&path) {
                Ok(t) => t,
                Err(e) if !forced && e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => {
                    reject(&shared, &super::yaml::FileError::io(&path, e), Source::File);
                    continue;
                }
            };
            if !forced && text == last {
                continue;
            }
            reload_text(&shared, &path, &text);
            last = text;
        }
    }
}

/// Applies a new file text: with a control-plane overlay the merged result is validated as a
/// whole; without one, problems are reported at their line and column in the file.
fn reload_text(shared: &Shared, path: &Path, text: &str) {
    let file = match super::yaml::parse(path, text) {
        Ok(f) => f,
        Err(e) => return reject(shared, &e, Source::File),
    };
    if shared.layers().overlay.is_some() {
        let _ = crate::control::apply(shared, Some(file), None, Source::File);
        return;
    }
    match super::validate::validate(file.clone()) {
        Ok(config) => {
            if apply(shared, config, Source::File, None).is_ok() {
                shared.layers().base = file;
            }
        }
        Err(problems) => reject(shared, &super::yaml::locate(path, text, problems), Source::File),
    }
}

/// Watches a directory (not recursively); the receiver gets a message after changes (bursts
/// coalesce). `None` for the watcher means watching failed (logged); the caller should fall
/// back to polling or signals. Keep the watcher alive as long as events are wanted.
pub fn watch_dir(dir: &Path) -> (Option<notify::RecommendedWatcher>, mpsc::Receiver<()>) {
    let (tx, rx) = mpsc::channel::<()>(1);
    let watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
        // Only changes count: reading the file is an event too (open, access, close), and
        // reacting to it made every reload's read trigger the next one, ten times a second.
        if res.is_ok_and(|e| e.kind.is_create() || e.kind.is_modify() || e.kind.is_remove()) {
            let _ = tx.try_send(());
        }
    })
    .and_then(|mut w| w.watch(dir, RecursiveMode::NonRecursive).map(|_| w));
    match watcher {
        Ok(w) => (Some(w), rx),
        Err(e) => {
            tracing::warn!(dir = %dir.display(), error = %e, "cannot watch the config directory");
            (None, rx)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn reading_the_watched_file_is_not_a_change_and_writing_it_is() {
        let dir = std::env::temp_dir().join(format!("pillion-watch-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("config.yaml");
        std::fs::write(&file, "a").unwrap();
        let (_watcher, mut rx) = watch_dir(&dir);
        for _ in 0..5 {
            std::fs::read_to_string(&file).unwrap();
        }
        // Bounded wait for an event that must not come.
        let read = tokio::time::timeout(Duration::from_millis(300), rx.recv()).await;
        assert!(read.is_err(), "reading the file was taken for a change");
        std::fs::write(&file, "b").unwrap();
        let wrote = tokio::time::timeout(Duration::from_secs(10), rx.recv()).await;
        assert_eq!(wrote.ok().flatten(), Some(()), "a write was not seen");
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// Loads a config, changes the file before or right after the watch is set up (the start-up
    /// window in which the proxy may already answer `/ready`), and expects the change applied.
    async fn early_change_is_applied(tag: &str, change_before_watch: bool) {
        let dir = std::env::temp_dir().join(format!("pillion-watch-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("config.yaml");
        let service = |name: &str| format!("  - name: {name}\n    endpoints: [{{addr: \"127.0.0.1:1\"}}]\n");
        std::fs::write(&file, format!("services:\n{}", service("a"))).unwrap();
        let (config, loaded) = crate::config::load(&file).unwrap();
        let runtime = Runtime::build(config, 1, None, None).unwrap();
        let shared = Shared::new(runtime, crate::metrics::Metrics::new(), false, None);
        let change =
            || std::fs::write(&file, format!("services:\n{}{}", service("a"), service("b"))).unwrap();
        if change_before_watch {
            change();
        }
        let watch = watch_file(file.clone(), loaded, Arc::clone(&shared));
        if !change_before_watch {
            change();
        }
        tokio::spawn(watch);
        // Bounded wait: a reload settles for 100 ms first.
        for _ in 0..100 {
            if shared.runtime.load().version == 2 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(shared.runtime.load().version, 2, "the early change was never applied");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test]
    async fn a_change_before_the_watch_exists_is_applied() {
        early_change_is_applied("before", true).await;
    }

    /// The order `run` uses: `watch_file` called, then the task spawned a moment later. (The first
    /// pass alone would catch this change too; the registration also keeps later events.)
    #[tokio::test]
    async fn a_change_before_the_watch_first_runs_is_applied() {
        early_change_is_applied("after", false).await;
    }
}
