//! The trust bundle: the CA certificates a workload trusts, ready for webpki.
//!
//! Built once per load of `ca.pem`: the parsed root store, the trust domains the
//! CAs name (from their `spiffe://<td>` URI SANs), and a webpki client-certificate
//! verifier, so that per-handshake work is only the verification itself.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::RootCertStore;
use rustls::client::verify_server_cert_signed_by_trust_anchor;
use rustls::server::danger::ClientCertVerifier;
use rustls::server::{ParsedCertificate, WebPkiClientVerifier};
use rustls_pki_types::{CertificateDer, UnixTime};

use crate::cert::CertInfo;
use crate::error::{Error, Result};
use crate::identity::SpiffeId;
use crate::pem;

/// The set of CA certificates that peers' certificates must chain to.
pub struct TrustBundle {
    path: PathBuf,
    certs: Vec<CertificateDer<'static>>,
    roots: Arc<RootCertStore>,
    trust_domains: Vec<String>,
    client_verifier: Arc<dyn ClientCertVerifier>,
}

impl std::fmt::Debug for TrustBundle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TrustBundle")
            .field("path", &self.path)
            .field("certs", &self.certs.len())
            .field("trust_domains", &self.trust_domains)
            .finish()
    }
}

impl TrustBundle {
    /// Loads every certificate of a PEM file (e.g. `ca.pem`) as a trust anchor.
    pub fn load(path: &Path) -> Result<Self> {
        Self::from_pem(&pem::read_file(path)?, path)
    }

    /// Builds a bundle from PEM text; `path` names the source in errors.
    pub fn from_pem(pem_bytes: &[u8], path: &Path) -> Result<Self> {
        Self::from_certs(pem::parse_certs(pem_bytes, path)?, path)
    }

    /// Builds a bundle from DER certificates; `path` names the source in errors.
    pub fn from_certs(certs: Vec<CertificateDer<'static>>, path: &Path) -> Result<Self> {
        let mut roots = RootCertStore::empty();
        let mut trust_domains = Vec::new();
        for cert in &certs {
            roots.add(cert.clone()).map_err(|e| Error::BadCertificate {
                path: path.into(),
                reason: format!("not usable as a trust anchor: {e}"),
            })?;
            let info = CertInfo::parse(cert, path)?;
            for uri in &info.uri_sans {
                if let Ok(id) = SpiffeId::parse(uri) {
                    if id.is_trust_domain_id() && !trust_domains.iter().any(|td| td == id.trust_domain()) {
                        trust_domains.push(id.trust_domain().to_owned());
                    }
                }
            }
        }
        let roots = Arc::new(roots);
        let client_verifier =
            WebPkiClientVerifier::builder_with_provider(roots.clone(), crate::tls::provider())
                .build()
                .map_err(|e| Error::BadCertificate {
                    path: path.into(),
                    reason: format!("cannot build a verifier: {e}"),
                })?;
        Ok(TrustBundle { path: path.into(), certs, roots, trust_domains, client_verifier })
    }

    /// Where the bundle came from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The CA certificates, in file order.
    pub fn certs(&self) -> &[CertificateDer<'static>] {
        &self.certs
    }

    /// The webpki root store built from the certificates.
    pub fn roots(&self) -> &Arc<RootCertStore> {
        &self.roots
    }

    /// Trust domains named by the CAs (`spiffe://<td>` URI SANs). Empty for CAs
    /// that name none, in which case any trust domain they sign for is accepted.
    pub fn trust_domains(&self) -> &[String] {
        &self.trust_domains
    }

    /// True when `trust_domain` is one this bundle's CAs speak for (or they name none).
    pub fn allows_trust_domain(&self, trust_domain: &str) -> bool {
        self.trust_domains.is_empty() || self.trust_domains.iter().any(|td| td == trust_domain)
    }

    /// Checks that `chain` (end entity first, then intermediates) chains to this
    /// bundle at time `now`; see [`TrustBundle::verify`].
    pub fn verify_chain(&self, chain: &[CertificateDer<'_>], now: UnixTime) -> Result<(), rustls::Error> {
        let (end_entity, intermediates) =
            chain.split_first().ok_or(rustls::Error::NoCertificatesPresented)?;
        self.verify(end_entity, intermediates, now)
    }

    /// Checks that `end_entity` chains to this bundle through `intermediates` at
    /// time `now`, with the `serverAuth` usage (Pillion workload certificates have
    /// both `serverAuth` and `clientAuth`).
    pub fn verify(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<(), rustls::Error> {
        let parsed = ParsedCertificate::try_from(end_entity)?;
        verify_server_cert_signed_by_trust_anchor(
            &parsed,
            &self.roots,
            intermediates,
            now,
            crate::tls::provider().signature_verification_algorithms.all,
        )
    }

    pub(crate) fn webpki_client_verifier(&self) -> &Arc<dyn ClientCertVerifier> {
        &self.client_verifier
    }
}
