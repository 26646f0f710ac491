//! Hot reload of the config file: on SIGHUP and whenever the file changes, its new text goes
//! through [`update`](super::update::update); a file that cannot be read or parsed is rejected
//! there too, and the last good config keeps serving.

use std::{
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use pillion_config::{watch::watch_dir, yaml};

use crate::metrics::UpdateSource;
use tokio::signal::unix::SignalKind;

use super::{
    Shared,
    update::{reject, update},
};

/// Reloads `path` on SIGHUP and whenever it changes, until the process exits. `loaded` is the
/// text the running config came from. The watch and the SIGHUP handler are registered when this
/// is called (within the Tokio runtime), not when the returned future first runs, so a change or
/// a SIGHUP after the call is not missed.
pub fn watch(path: PathBuf, loaded: String, shared: Arc<Shared>) -> impl Future<Output = ()> {
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
                    reject(&shared, &yaml::FileError::io(&path, e), UpdateSource::File);
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

/// Applies a new file text; problems of the file alone are reported at their line and column.
fn reload_text(shared: &Shared, path: &Path, text: &str) {
    let file = match yaml::parse(path, text) {
        Ok(f) => f,
        Err(e) => return reject(shared, &e, UpdateSource::File),
    };
    let locate = |problems| yaml::locate(path, text, problems).to_string();
    let _ = update(shared, Some(file), None, UpdateSource::File, Some(&locate));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::live::Serving;

    /// Loads a config, changes the file before or right after the watch is set up (the start-up
    /// window in which the proxy may already answer `/ready`), and expects the change applied.
    async fn early_change_is_applied(tag: &str, change_before_watch: bool) {
        let dir = std::env::temp_dir().join(format!("pillion-watch-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("config.yaml");
        let service = |name: &str| format!("  - name: {name}\n    endpoints: [{{addr: \"127.0.0.1:1\"}}]\n");
        std::fs::write(&file, format!("services:\n{}", service("a"))).unwrap();
        let (config, loaded) = pillion_config::load(&file).unwrap();
        let serving = Serving::build(config, 1, None, None).unwrap();
        let metrics = crate::metrics::Metrics::new();
        let spans = crate::trace::Spans::new(&metrics).0;
        let shared = Shared::new(serving, metrics, false, None, spans);
        let change =
            || std::fs::write(&file, format!("services:\n{}{}", service("a"), service("b"))).unwrap();
        if change_before_watch {
            change();
        }
        let watch = watch(file.clone(), loaded, Arc::clone(&shared));
        if !change_before_watch {
            change();
        }
        tokio::spawn(watch);
        // Bounded wait: a reload settles for 100 ms first.
        for _ in 0..100 {
            if shared.serving.load().version == 2 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(shared.serving.load().version, 2, "the early change was never applied");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test]
    async fn a_change_before_the_watch_exists_is_applied() {
        early_change_is_applied("before", true).await;
    }

    /// The order `run` uses: `watch` called, then the task spawned a moment later. (The first
    /// pass alone would catch this change too; the registration also keeps later events.)
    #[tokio::test]
    async fn a_change_before_the_watch_first_runs_is_applied() {
        early_change_is_applied("after", false).await;
    }
}
