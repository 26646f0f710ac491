//! Watching the config directory: on every change (notify events, with a one-second poll as the
//! fallback for filesystems that send none) the directory is re-read; a changed, valid set of
//! files is published as a new version, a bad one is logged with file:line:col, counted, and
//! recorded for `/v1/status`, while the last good snapshots stay served.

use std::{path::PathBuf, sync::Arc, time::Duration};

use crate::{
    State, compose,
    source::{self, SourceError, Texts},
};

/// How often the directory is re-read when no event arrives.
const POLL: Duration = Duration::from_secs(1);
/// Lets a burst of events (write, rename, chmod) settle into one reload.
const SETTLE: Duration = Duration::from_millis(50);

/// Loads `files` and publishes them (over the cluster's model, see [`compose`]), or records why
/// not. Returns the new version, if any.
pub fn apply(state: &State, files: Result<Texts, SourceError>) -> Option<u64> {
    compose::set_dir(state, files.and_then(source::load))
}

/// Re-reads `dir` whenever it changes, forever. `last` is what was loaded at start-up. The watch
/// is registered when this is called, before the API listens, so no early change waits for a poll.
pub fn watch_dir(
    dir: PathBuf,
    state: Arc<State>,
    mut last: Result<Texts, SourceError>,
) -> impl Future<Output = ()> {
    // Events make changes quick; the poll below catches anything events miss.
    let (watcher, mut rx) = pillion_config::watch::watch_dir(&dir);
    async move {
        let _watcher = watcher;
        let mut tick = tokio::time::interval(POLL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                Some(()) = rx.recv() => {
                    tokio::time::sleep(SETTLE).await;
                    while rx.try_recv().is_ok() {}
                }
            }
            let files = source::read_dir(&dir);
            if files == last {
                continue;
            }
            last = files.clone();
            apply(&state, files);
        }
    }
}
