//! One kube-runtime watcher per kind, feeding an in-memory store: list, then watch from the
//! list's resourceVersion, with bookmarks, a relist on 410 Gone, and a capped backoff on errors.
//!
//! Errors are logged and the stream carries on; the store keeps the last objects it had, so the
//! translation (and every proxy's snapshot) stays as it was while the API server is away. A
//! relist replaces the store's content at once when it completes, never half-way.

use std::{fmt::Debug, pin::pin, time::Duration};

use futures_util::StreamExt;
use kube::{
    Api, Resource,
    runtime::{
        WatchStreamExt,
        reflector::{self, Store},
        utils::Backoff,
        watcher::{self, Event},
    },
};
use serde::de::DeserializeOwned;
use tokio::sync::watch;

/// First wait after an error, doubled up to [`MAX_BACKOFF`].
const MIN_BACKOFF: Duration = Duration::from_millis(250);
/// Longest wait between retries: short enough that a restarted API server is followed within
/// seconds, long enough that a few replicas' four watches are no load on a struggling one.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// Doubling backoff, reset by the watcher's first good event after errors.
#[derive(Debug, Clone)]
struct Capped {
    next: Duration,
}

impl Iterator for Capped {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        let now = self.next;
        self.next = (self.next * 2).min(MAX_BACKOFF);
        Some(now)
    }
}

impl Backoff for Capped {
    fn reset(&mut self) {
        self.next = MIN_BACKOFF;
    }
}

/// Starts watching every object `api` lists into a store; `changed` is bumped after every
/// change the store took (not for each object of a relist, only once it is done). `slim` drops
/// what the translation never reads, to keep memory to what matters.
pub(super) fn spawn<K>(
    api: Api<K>,
    dyntype: K::DynamicType,
    changed: watch::Sender<()>,
    slim: fn(&mut K),
) -> Store<K>
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    K::DynamicType: Clone + Eq + std::hash::Hash + Send + Sync,
{
    let kind = K::kind(&dyntype).into_owned();
    let writer = reflector::store::Writer::new(dyntype);
    let reader = writer.as_reader();
    let events = watcher::watcher(api, watcher::Config::default())
        .backoff(Capped { next: MIN_BACKOFF })
        .modify(slim)
        .reflect(writer);
    tokio::spawn(async move {
        let mut events = pin!(events);
        let mut failing = false;
        while let Some(event) = events.next().await {
            match event {
                Ok(Event::Init | Event::InitApply(_)) => {}
                Ok(_) => {
                    if std::mem::take(&mut failing) {
                        tracing::info!(%kind, "watch resumed");
                    }
                    changed.send_replace(());
                }
                Err(e) => {
                    failing = true;
                    tracing::warn!(%kind, error = %e, "watch failed; retrying (the last objects seen stay served)");
                }
            }
        }
        // The watcher retries forever; this is only reached if kube-runtime changes that.
        tracing::error!(%kind, "watch ended; its objects are no longer followed");
    });
    reader
}
