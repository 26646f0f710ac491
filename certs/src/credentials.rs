//! A workload's TLS material, loaded and cross-checked as one unit.
//!
//! [`Credentials`] holds the certificate chain, the private key (as a rustls
//! `CertifiedKey`, ready to sign handshakes) and the trust bundle. Building one
//! proves the set is coherent: the key matches the certificate, the certificate
//! carries a SPIFFE ID, is currently valid, and chains to the bundle. A bad set
//! is an error, never a half-loaded value.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use rustls::sign::CertifiedKey;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, UnixTime};

use crate::bundle::TrustBundle;
use crate::ca::{CA_CERT_FILE, CERT_FILE, KEY_FILE};
use crate::cert::CertInfo;
use crate::error::{Error, Result};
use crate::identity::SpiffeId;
use crate::pem;

/// The three files of a workload's TLS material (config `tls: {cert, key, trust}`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CredentialPaths {
    /// Certificate chain, PEM, end entity first.
    pub cert: PathBuf,
    /// Private key, PEM.
    pub key: PathBuf,
    /// Trust bundle (CA certificates), PEM.
    pub trust: PathBuf,
}

impl CredentialPaths {
    /// `cert.pem`, `key.pem` and `ca.pem` in `dir`, as `pillion-certs issue` writes them.
    pub fn in_dir(dir: &Path) -> Self {
        CredentialPaths { cert: dir.join(CERT_FILE), key: dir.join(KEY_FILE), trust: dir.join(CA_CERT_FILE) }
    }
}

/// When to check the certificate's validity window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeCheck {
    /// Against the current time (the normal case).
    Now,
    /// Against a given time.
    At(SystemTime),
    /// Not at all (the chain is still checked, at a time inside the certificate's
    /// window). For tools and tests that must load an expired certificate.
    Skip,
}

/// A coherent set of certificate chain, private key and trust bundle.
pub struct Credentials {
    identity: SpiffeId,
    info: CertInfo,
    certified_key: Arc<CertifiedKey>,
    bundle: Arc<TrustBundle>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("identity", &self.identity.as_str())
            .field("not_after", &self.info.not_after)
            .field("bundle", &self.bundle)
            .finish_non_exhaustive()
    }
}

impl Credentials {
    /// Loads and cross-checks the three files, checking validity against now.
    pub fn load(paths: &CredentialPaths) -> Result<Self> {
        Self::load_with(paths, TimeCheck::Now)
    }

    /// Loads and cross-checks the three files with the given time check.
    pub fn load_with(paths: &CredentialPaths, time: TimeCheck) -> Result<Self> {
        let cert = pem::read_file(&paths.cert)?;
        let key = pem::read_file(&paths.key)?;
        let trust = pem::read_file(&paths.trust)?;
        Self::from_file_contents(paths, &cert, &key, &trust, time)
    }

    /// Cross-checks file contents already read (the watcher reads them to compare).
    pub(crate) fn from_file_contents(
        paths: &CredentialPaths,
        cert: &[u8],
        key: &[u8],
        trust: &[u8],
        time: TimeCheck,
    ) -> Result<Self> {
        let bundle = Arc::new(TrustBundle::from_pem(trust, &paths.trust)?);
        let chain = pem::parse_certs(cert, &paths.cert)?;
        let key = pem::parse_key(key, &paths.key)?;
        Self::from_parts(chain, key, bundle, &paths.cert, &paths.key, time)
    }

    /// Builds credentials from PEM held in memory, e.g. a certificate just signed by
    /// the control plane and the key generated for its CSR.
    pub fn from_pem(
        cert_pem: &[u8],
        key_pem: &[u8],
        bundle: Arc<TrustBundle>,
        time: TimeCheck,
    ) -> Result<Self> {
        let cert_label = Path::new("issued certificate");
        let key_label = Path::new("private key");
        let chain = pem::parse_certs(cert_pem, cert_label)?;
        let key = pem::parse_key(key_pem, key_label)?;
        Self::from_parts(chain, key, bundle, cert_label, key_label, time)
    }

    /// Builds credentials from DER parts; the paths name the sources in errors.
    pub fn from_parts(
        chain: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
        bundle: Arc<TrustBundle>,
        cert_path: &Path,
        key_path: &Path,
        time: TimeCheck,
    ) -> Result<Self> {
        let leaf = chain.first().ok_or_else(|| Error::NoCertificate { path: cert_path.into() })?;
        let info = CertInfo::parse(leaf, cert_path)?;
        let identity = info.spiffe_id(cert_path)?;
        if !bundle.allows_trust_domain(identity.trust_domain()) {
            return Err(Error::WrongTrustDomain { identity, expected: bundle.trust_domains().join(", ") });
        }
        let certified_key = certified_key(chain, key, cert_path, key_path)?;
        let verify_at = match time {
            TimeCheck::Now => Some(SystemTime::now()),
            TimeCheck::At(t) => Some(t),
            TimeCheck::Skip => None,
        };
        let chain_time = match verify_at {
            Some(t) => {
                info.check_time(t, cert_path)?;
                t
            }
            // Inside the leaf's window, so only the signatures and names decide.
            None => SystemTime::from(info.not_before) + std::time::Duration::from_secs(1),
        };
        let unix = chain_time
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(UnixTime::since_unix_epoch)
            .map_err(|_| Error::BadValidity("time before 1970".into()))?;
        bundle.verify_chain(&certified_key.cert, unix).map_err(|e| Error::Untrusted {
            path: cert_path.into(),
            bundle: bundle.path().into(),
            reason: e.to_string(),
        })?;
        Ok(Credentials { identity, info, certified_key, bundle })
    }

    /// The workload's SPIFFE ID (its certificate's URI SAN).
    pub fn identity(&self) -> &SpiffeId {
        &self.identity
    }

    /// The certificate chain, end entity first.
    pub fn chain(&self) -> &[CertificateDer<'static>] {
        &self.certified_key.cert
    }

    /// Chain and signing key, as rustls resolvers hand them to handshakes.
    pub fn certified_key(&self) -> &Arc<CertifiedKey> {
        &self.certified_key
    }

    /// The trust bundle loaded with this certificate.
    pub fn bundle(&self) -> &Arc<TrustBundle> {
        &self.bundle
    }

    /// The end-entity certificate's parsed summary.
    pub fn cert_info(&self) -> &CertInfo {
        &self.info
    }

    /// Certificate expiry as unix seconds (`pillion_identity_cert_expiry_timestamp_seconds`).
    pub fn not_after_unix(&self) -> i64 {
        self.info.not_after.unix_timestamp()
    }

    /// Start of certificate validity as unix seconds.
    pub fn not_before_unix(&self) -> i64 {
        self.info.not_before.unix_timestamp()
    }
}

fn certified_key(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    cert_path: &Path,
    key_path: &Path,
) -> Result<Arc<CertifiedKey>> {
    let signing_key = crate::tls::provider()
        .key_provider
        .load_private_key(key)
        .map_err(|e| Error::BadKey { path: key_path.into(), reason: e.to_string() })?;
    let certified = CertifiedKey::new(chain, signing_key);
    match certified.keys_match() {
        Ok(()) => Ok(Arc::new(certified)),
        Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch)) => {
            Err(Error::KeyMismatch { cert: cert_path.into(), key: key_path.into() })
        }
        Err(e) => Err(Error::BadKey {
            path: key_path.into(),
            reason: format!("cannot check it against the certificate: {e}"),
        }),
    }
}

#[cfg(test)]
mod tests;
