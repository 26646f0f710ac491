//! Creating a key and certificate signing request for an identity.
//!
//! A proxy bootstrapping from the control plane generates its key locally, sends
//! only the CSR (`POST /v1/certificates`), and pairs the returned certificate with
//! the key it kept, so private keys never cross the network.

use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair, SanType, string::Ia5String};

use crate::error::Result;
use crate::identity::SpiffeId;

/// A new private key and a CSR for it, both PEM.
#[derive(Clone)]
pub struct KeyAndCsr {
    /// The private key (PKCS#8), PEM. Keep it; pair it with the signed certificate.
    pub key_pem: String,
    /// The CSR, PEM, naming the identity as its only SAN.
    pub csr_pem: String,
}

impl std::fmt::Debug for KeyAndCsr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyAndCsr").field("csr_pem", &self.csr_pem).finish_non_exhaustive()
    }
}

/// Generates an ECDSA P-256 key and a CSR whose only SAN is `identity`.
pub fn create_csr(identity: &SpiffeId) -> Result<KeyAndCsr> {
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    params.distinguished_name.push(DnType::OrganizationName, "Pillion");
    params.subject_alt_names = vec![SanType::URI(Ia5String::try_from(identity.as_str())?)];
    let csr = params.serialize_request(&key)?;
    Ok(KeyAndCsr { key_pem: key.serialize_pem(), csr_pem: csr.pem()? })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Error;
    use crate::testutil::{TestPki, id};
    use crate::validity::Validity;
    use crate::{Credentials, TimeCheck};

    fn day() -> Validity {
        Validity::for_ttl(std::time::Duration::from_secs(86_400)).unwrap()
    }

    #[test]
    fn ca_signs_a_csr_for_the_expected_identity() {
        let pki = TestPki::new("cluster.local");
        let web = id("spiffe://cluster.local/ns/shop/sa/web");
        let req = create_csr(&web).unwrap();
        let cert_pem = pki.ca.sign_csr(&req.csr_pem, &web, &day()).unwrap();
        let creds =
            Credentials::from_pem(cert_pem.as_bytes(), req.key_pem.as_bytes(), pki.bundle(), TimeCheck::Now)
                .unwrap();
        assert_eq!(creds.identity(), &web);
    }

    #[test]
    fn ca_refuses_a_csr_for_another_identity() {
        let pki = TestPki::new("cluster.local");
        let req = create_csr(&id("spiffe://cluster.local/ns/shop/sa/admin")).unwrap();
        let err =
            pki.ca.sign_csr(&req.csr_pem, &id("spiffe://cluster.local/ns/shop/sa/web"), &day()).unwrap_err();
        assert!(matches!(err, Error::CsrRejected(_)), "{err}");
        assert!(err.to_string().contains("spiffe://cluster.local/ns/shop/sa/admin"), "{err}");
    }

    #[test]
    fn ca_refuses_a_csr_with_extra_or_dns_names() {
        let pki = TestPki::new("cluster.local");
        let web = id("spiffe://cluster.local/ns/shop/sa/web");
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(vec!["evil.example".to_string()]).unwrap();
        params.subject_alt_names.push(SanType::URI(Ia5String::try_from(web.as_str()).unwrap()));
        let csr = params.serialize_request(&key).unwrap().pem().unwrap();
        assert!(matches!(pki.ca.sign_csr(&csr, &web, &day()), Err(Error::CsrRejected(_))));
    }

    #[test]
    fn ca_refuses_garbage_and_foreign_trust_domains() {
        let pki = TestPki::new("cluster.local");
        let web = id("spiffe://cluster.local/ns/shop/sa/web");
        assert!(matches!(pki.ca.sign_csr("not a csr", &web, &day()), Err(Error::CsrRejected(_))));
        let other = id("spiffe://other.local/ns/shop/sa/web");
        let req = create_csr(&other).unwrap();
        let err = pki.ca.sign_csr(&req.csr_pem, &other, &day()).unwrap_err();
        assert!(matches!(err, Error::WrongTrustDomain { .. }), "{err}");
    }
}
