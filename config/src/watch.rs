//! Watching a config directory for changes: the start of every hot reload, the proxy's file and
//! the control plane's directory alike.

use std::path::Path;

use notify::{RecursiveMode, Watcher};
use tokio::sync::mpsc;

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
    use std::time::Duration;

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
}
