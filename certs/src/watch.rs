//! Hot reload: the current [`Credentials`] behind an `ArcSwap`, and a file watcher.
//!
//! [`CredentialStore`] is what TLS configs read at each handshake (see
//! [`crate::tls`]): replacing its contents makes new handshakes use the new
//! certificate, key and bundle while established connections carry on.
//!
//! [`CredentialWatcher`] polls the three files (by content, once a second is
//! plenty for certificates) and swaps in a new set only when it loads and
//! cross-checks cleanly; a bad set leaves the old material in place and is
//! returned as an error for the caller to log. Writers rarely update the three
//! files at once, so a bad set is reported only once it has stayed the same
//! for two polls in a row: a rotation caught halfway does not raise an alarm.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;

use crate::credentials::{CredentialPaths, Credentials, TimeCheck};
use crate::error::{Error, Result};

/// The current credentials, shared by every TLS config built from it.
#[derive(Debug)]
pub struct CredentialStore {
    current: ArcSwap<Credentials>,
}

impl CredentialStore {
    /// A store holding `initial`.
    pub fn new(initial: Credentials) -> Arc<Self> {
        Arc::new(CredentialStore { current: ArcSwap::from_pointee(initial) })
    }

    /// The current credentials.
    pub fn current(&self) -> Arc<Credentials> {
        self.current.load_full()
    }

    /// Replaces the credentials (e.g. after the control plane signed a renewal);
    /// returns the previous ones.
    pub fn replace(&self, new: Credentials) -> Arc<Credentials> {
        self.current.swap(Arc::new(new))
    }
}

/// What one file looked like at a poll: its bytes, or why it could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
enum FileState {
    Read(Vec<u8>),
    Failed(io::ErrorKind, String),
}

impl FileState {
    fn read(path: &std::path::Path) -> Self {
        match std::fs::read(path) {
            Ok(bytes) => FileState::Read(bytes),
            Err(e) => FileState::Failed(e.kind(), e.to_string()),
        }
    }

    fn bytes(&self, path: &std::path::Path) -> Result<&[u8]> {
        match self {
            FileState::Read(bytes) => Ok(bytes),
            FileState::Failed(kind, msg) => Err(Error::io(path, io::Error::new(*kind, msg.clone()))),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Snapshot {
    cert: FileState,
    key: FileState,
    trust: FileState,
}

impl Snapshot {
    fn read(paths: &CredentialPaths) -> Self {
        Snapshot {
            cert: FileState::read(&paths.cert),
            key: FileState::read(&paths.key),
            trust: FileState::read(&paths.trust),
        }
    }

    fn load(&self, paths: &CredentialPaths) -> Result<Credentials> {
        Credentials::from_file_contents(
            paths,
            self.cert.bytes(&paths.cert)?,
            self.key.bytes(&paths.key)?,
            self.trust.bytes(&paths.trust)?,
            TimeCheck::Now,
        )
    }
}

/// Reloads a [`CredentialStore`] when its files change.
#[derive(Debug)]
pub struct CredentialWatcher {
    paths: CredentialPaths,
    store: Arc<CredentialStore>,
    /// The file contents last applied or reported; polls that see these do nothing.
    settled: Option<Snapshot>,
    /// Bad contents seen once and not reported yet.
    pending: Option<Snapshot>,
}

impl CredentialWatcher {
    /// Loads the files into a new store and returns it with a watcher for them.
    pub fn start(paths: CredentialPaths) -> Result<(Arc<CredentialStore>, CredentialWatcher)> {
        let snapshot = Snapshot::read(&paths);
        let store = CredentialStore::new(snapshot.load(&paths)?);
        let watcher =
            CredentialWatcher { paths, store: store.clone(), settled: Some(snapshot), pending: None };
        Ok((store, watcher))
    }

    /// A watcher for a store filled some other way; its first poll loads the files.
    pub fn new(paths: CredentialPaths, store: Arc<CredentialStore>) -> Self {
        CredentialWatcher { paths, store, settled: None, pending: None }
    }

    /// The store this watcher updates.
    pub fn store(&self) -> &Arc<CredentialStore> {
        &self.store
    }

    /// Checks the files once. `Ok(Some(new))` after a reload, `Ok(None)` when
    /// nothing changed (or a bad change is waiting for its second sighting),
    /// `Err` when a changed set is bad (reported once per distinct bad set; the
    /// store keeps the old credentials).
    pub fn poll(&mut self) -> Result<Option<Arc<Credentials>>> {
        let snapshot = Snapshot::read(&self.paths);
        if self.settled.as_ref() == Some(&snapshot) {
            self.pending = None;
            return Ok(None);
        }
        match snapshot.load(&self.paths) {
            Ok(creds) => {
                self.settled = Some(snapshot);
                self.pending = None;
                self.store.replace(creds);
                Ok(Some(self.store.current()))
            }
            Err(e) if self.pending.as_ref() == Some(&snapshot) => {
                self.settled = Some(snapshot);
                self.pending = None;
                Err(e)
            }
            Err(_) => {
                self.pending = Some(snapshot);
                Ok(None)
            }
        }
    }

    /// Loads the files now and reports any error at once (no second sighting);
    /// for an explicit reload request.
    pub fn reload_now(&mut self) -> Result<Arc<Credentials>> {
        let snapshot = Snapshot::read(&self.paths);
        let result = snapshot.load(&self.paths);
        self.settled = Some(snapshot);
        self.pending = None;
        self.store.replace(result?);
        Ok(self.store.current())
    }

    /// Polls every `every` forever, passing each reload or error to `report`
    /// (log it; set the expiry gauge from `not_after_unix()`). Spawn it as a task.
    /// The three reads per poll are small and synchronous, like a config file read.
    pub async fn run(mut self, every: Duration, mut report: impl FnMut(Result<Arc<Credentials>>) + Send) {
        let mut ticker = tokio::time::interval(every);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticker.tick().await; // the first tick is immediate; the files were just loaded
        loop {
            ticker.tick().await;
            match self.poll() {
                Ok(None) => {}
                Ok(Some(creds)) => report(Ok(creds)),
                Err(e) => report(Err(e)),
            }
        }
    }
}

#[cfg(test)]
mod tests;
