//! rustls verifiers that check peers by SPIFFE ID instead of DNS name.
//!
//! Workload certificates carry only a URI SAN, so rustls' stock server verifier
//! (which matches a DNS name) cannot be used as is. Both verifiers here first let
//! webpki check the chain against the trust bundle (signatures, validity, key
//! usage), then require the end-entity certificate to carry exactly one valid
//! SPIFFE ID in a trust domain of the bundle; the server verifier also requires
//! it to equal the identity the client expected.
//!
//! The trust bundle is either fixed or read from a [`CredentialStore`] at each
//! handshake, so a reloaded `ca.pem` applies to new connections without
//! rebuilding any config.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{WebPkiSupportedAlgorithms, verify_tls12_signature, verify_tls13_signature};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{CertificateError, DigitallySignedStruct, DistinguishedName, OtherError, SignatureScheme};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};

use crate::bundle::TrustBundle;
use crate::cert::spiffe_id_from_der;
use crate::identity::SpiffeId;
use crate::watch::CredentialStore;

/// Why a peer's otherwise valid certificate was refused.
#[derive(Clone, thiserror::Error)]
pub enum PeerIdentityError {
    /// The certificate has no usable SPIFFE ID.
    #[error("peer certificate has no valid SPIFFE ID: {0}")]
    NoSpiffeId(String),
    /// The SPIFFE ID's trust domain is not one the bundle's CAs speak for.
    #[error("peer identity {presented} is outside the trusted trust domains {trusted:?}")]
    UntrustedDomain {
        /// The peer's ID.
        presented: SpiffeId,
        /// The bundle's trust domains.
        trusted: Vec<String>,
    },
    /// The server is a different workload than the one the client meant to reach.
    #[error("peer identity {presented} is not the expected {expected}")]
    Mismatch {
        /// The ID the client expected.
        expected: SpiffeId,
        /// The ID the server presented.
        presented: SpiffeId,
    },
}

// rustls prints the error inside `CertificateError::Other` with `Debug`; make
// that the readable message so handshake-failure logs say what happened.
impl std::fmt::Debug for PeerIdentityError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(self, f)
    }
}

impl From<PeerIdentityError> for rustls::Error {
    fn from(e: PeerIdentityError) -> Self {
        rustls::Error::InvalidCertificate(CertificateError::Other(OtherError(Arc::new(e))))
    }
}

/// Where a verifier gets its trust bundle.
#[derive(Debug, Clone)]
enum Trust {
    Fixed(Arc<TrustBundle>),
    Live(Arc<CredentialStore>),
}

impl Trust {
    fn bundle(&self) -> Arc<TrustBundle> {
        match self {
            Trust::Fixed(bundle) => bundle.clone(),
            Trust::Live(store) => store.current().bundle().clone(),
        }
    }
}

fn algorithms() -> WebPkiSupportedAlgorithms {
    crate::tls::provider().signature_verification_algorithms
}

/// The peer's SPIFFE ID, checked against the bundle's trust domains.
fn peer_identity(
    end_entity: &CertificateDer<'_>,
    bundle: &TrustBundle,
) -> Result<SpiffeId, PeerIdentityError> {
    let id = spiffe_id_from_der(end_entity).map_err(|e| PeerIdentityError::NoSpiffeId(e.to_string()))?;
    if !bundle.allows_trust_domain(id.trust_domain()) {
        return Err(PeerIdentityError::UntrustedDomain {
            presented: id,
            trusted: bundle.trust_domains().to_vec(),
        });
    }
    Ok(id)
}

/// Client-side verifier: the server must chain to the bundle and be exactly `expected`.
#[derive(Debug, Clone)]
pub struct SpiffeServerVerifier {
    trust: Trust,
    expected: SpiffeId,
    algorithms: WebPkiSupportedAlgorithms,
}

impl SpiffeServerVerifier {
    /// A verifier against a fixed bundle (e.g. bootstrapping before a workload cert exists).
    pub fn new(bundle: Arc<TrustBundle>, expected: SpiffeId) -> Self {
        Self::with_trust(Trust::Fixed(bundle), expected)
    }

    /// A verifier that reads the current bundle from `store` at each handshake.
    pub fn live(store: Arc<CredentialStore>, expected: SpiffeId) -> Self {
        Self::with_trust(Trust::Live(store), expected)
    }

    fn with_trust(trust: Trust, expected: SpiffeId) -> Self {
        SpiffeServerVerifier { trust, expected, algorithms: algorithms() }
    }

    /// The identity the server must present.
    pub fn expected(&self) -> &SpiffeId {
        &self.expected
    }
}

impl ServerCertVerifier for SpiffeServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let bundle = self.trust.bundle();
        bundle.verify(end_entity, intermediates, now)?;
        let presented = peer_identity(end_entity, &bundle)?;
        if presented != self.expected {
            return Err(PeerIdentityError::Mismatch { expected: self.expected.clone(), presented }.into());
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// Server-side verifier: a client certificate must chain to the bundle and carry a
/// SPIFFE ID in a trusted trust domain. Authorization (which IDs may call) is the
/// caller's, after the handshake, with [`crate::peer_spiffe_id`].
#[derive(Debug, Clone)]
pub struct SpiffeClientVerifier {
    trust: Trust,
    mandatory: bool,
    algorithms: WebPkiSupportedAlgorithms,
}

impl SpiffeClientVerifier {
    /// A verifier against a fixed bundle. `mandatory: false` lets clients without a
    /// certificate through (a certificate that is sent is still verified).
    pub fn new(bundle: Arc<TrustBundle>, mandatory: bool) -> Self {
        Self::with_trust(Trust::Fixed(bundle), mandatory)
    }

    /// A verifier that reads the current bundle from `store` at each handshake.
    pub fn live(store: Arc<CredentialStore>, mandatory: bool) -> Self {
        Self::with_trust(Trust::Live(store), mandatory)
    }

    fn with_trust(trust: Trust, mandatory: bool) -> Self {
        SpiffeClientVerifier { trust, mandatory, algorithms: algorithms() }
    }
}

impl ClientCertVerifier for SpiffeClientVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        self.mandatory
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        // Hints are optional; Pillion clients always send their one certificate.
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let bundle = self.trust.bundle();
        bundle.webpki_client_verifier().verify_client_cert(end_entity, intermediates, now)?;
        peer_identity(end_entity, &bundle)?;
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{TestPki, id};

    fn now() -> UnixTime {
        UnixTime::now()
    }

    fn dummy_name() -> ServerName<'static> {
        ServerName::try_from("pillion.invalid").unwrap()
    }

    #[test]
    fn server_verifier_accepts_the_expected_identity_only() {
        let pki = TestPki::new("cluster.local");
        let orders = pki.issue("spiffe://cluster.local/ns/shop/sa/orders");
        let ok = SpiffeServerVerifier::new(pki.bundle(), id("spiffe://cluster.local/ns/shop/sa/orders"));
        let (ee, rest) = orders.chain().split_first().unwrap();
        assert!(ok.verify_server_cert(ee, rest, &dummy_name(), &[], now()).is_ok());

        let other = SpiffeServerVerifier::new(pki.bundle(), id("spiffe://cluster.local/ns/shop/sa/payments"));
        let err = other.verify_server_cert(ee, rest, &dummy_name(), &[], now()).unwrap_err();
        assert!(err.to_string().contains("not the expected"), "{err}");
    }

    #[test]
    fn verifiers_reject_a_certificate_from_another_ca() {
        let ours = TestPki::new("cluster.local");
        let theirs = TestPki::new("cluster.local");
        let foreign = theirs.issue("spiffe://cluster.local/ns/shop/sa/orders");
        let (ee, rest) = foreign.chain().split_first().unwrap();
        let server = SpiffeServerVerifier::new(ours.bundle(), id("spiffe://cluster.local/ns/shop/sa/orders"));
        let err = server.verify_server_cert(ee, rest, &dummy_name(), &[], now()).unwrap_err();
        // Same CA name, different key: webpki finds the anchor by name and the
        // signature fails; a differently named CA gives UnknownIssuer.
        assert!(
            matches!(
                err,
                rustls::Error::InvalidCertificate(
                    CertificateError::BadSignature | CertificateError::UnknownIssuer
                )
            ),
            "{err:?}"
        );
        let client = SpiffeClientVerifier::new(ours.bundle(), true);
        assert!(client.verify_client_cert(ee, rest, now()).is_err());
    }

    #[test]
    fn client_verifier_accepts_our_workloads_and_rejects_expired_ones() {
        let pki = TestPki::new("cluster.local");
        let web = pki.issue("spiffe://cluster.local/ns/shop/sa/web");
        let v = SpiffeClientVerifier::new(pki.bundle(), false);
        assert!(!v.client_auth_mandatory());
        let (ee, rest) = web.chain().split_first().unwrap();
        assert!(v.verify_client_cert(ee, rest, now()).is_ok());
        let later = UnixTime::since_unix_epoch(std::time::Duration::from_secs(
            u64::try_from(web.not_after_unix()).unwrap() + 10,
        ));
        let err = v.verify_client_cert(ee, rest, later).unwrap_err();
        assert!(
            matches!(err, rustls::Error::InvalidCertificate(CertificateError::ExpiredContext { .. })),
            "{err:?}"
        );
    }
}
