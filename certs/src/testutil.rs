//! Test helpers: unique temporary directories and an in-memory PKI.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use crate::{Ca, Credentials, SpiffeId, TimeCheck, TrustBundle, Validity};

/// A directory under the system temp dir, removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(name: &str) -> Self {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("pillion-certs-{name}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub fn id(s: &str) -> SpiffeId {
    SpiffeId::parse(s).unwrap()
}

pub fn day() -> Validity {
    Validity::for_ttl(Duration::from_secs(86_400)).unwrap()
}

/// A CA for a trust domain, kept in memory.
pub struct TestPki {
    pub ca: Ca,
}

impl TestPki {
    pub fn new(trust_domain: &str) -> Self {
        let validity = Validity::for_ttl(Duration::from_secs(365 * 86_400)).unwrap();
        TestPki { ca: Ca::generate(trust_domain, &validity).unwrap() }
    }

    pub fn bundle(&self) -> Arc<TrustBundle> {
        Arc::new(TrustBundle::from_pem(self.ca.cert_pem().as_bytes(), Path::new("ca.pem")).unwrap())
    }

    /// Credentials for `identity`, valid for a day.
    pub fn issue(&self, identity: &str) -> Credentials {
        let issued = self.ca.issue(&id(identity), &day()).unwrap();
        Credentials::from_pem(
            issued.cert_pem.as_bytes(),
            issued.key_pem.as_bytes(),
            self.bundle(),
            TimeCheck::Now,
        )
        .unwrap()
    }
}
