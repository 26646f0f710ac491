//! A small certificate authority for one trust domain: create, load, issue, sign CSRs.
//!
//! The CA certificate carries its trust domain as a URI SAN (`spiffe://<td>`) and
//! in its common name, so that a CA loaded from disk knows which identities it
//! may issue. Workload certificates get exactly one SAN, their SPIFFE ID, the
//! `serverAuth` and `clientAuth` usages, and are never CAs. A CSR is trusted for
//! its public key only: everything else in the certificate comes from the CA.

use std::path::Path;

use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType, SerialNumber,
    string::Ia5String,
};
use rustls_pki_types::CertificateDer;
use time::OffsetDateTime;

use crate::cert::CertInfo;
use crate::error::{Error, Result};
use crate::identity::SpiffeId;
use crate::pem;
use crate::validity::Validity;

/// File name of the CA certificate (also the trust bundle handed to workloads).
pub const CA_CERT_FILE: &str = "ca.pem";
/// File name of the CA private key.
pub const CA_KEY_FILE: &str = "ca-key.pem";
/// File name of a workload certificate.
pub const CERT_FILE: &str = "cert.pem";
/// File name of a workload private key.
pub const KEY_FILE: &str = "key.pem";

const ORGANIZATION: &str = "Pillion";

/// A CA that can issue workload certificates for its trust domain.
pub struct Ca {
    cert_der: CertificateDer<'static>,
    cert_pem: String,
    trust_domain: SpiffeId,
    not_after: OffsetDateTime,
    issuer: Issuer<'static, KeyPair>,
}

impl std::fmt::Debug for Ca {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ca")
            .field("trust_domain", &self.trust_domain.trust_domain())
            .field("not_after", &self.not_after)
            .finish_non_exhaustive()
    }
}

/// A freshly issued workload certificate and its private key, PEM.
#[derive(Clone)]
pub struct IssuedCert {
    /// The certificate, PEM.
    pub cert_pem: String,
    /// The private key (PKCS#8), PEM.
    pub key_pem: String,
}

impl std::fmt::Debug for IssuedCert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IssuedCert").finish_non_exhaustive()
    }
}

impl Ca {
    /// Creates a new root CA (ECDSA P-256) for `trust_domain`, e.g. `cluster.local`.
    pub fn generate(trust_domain: &str, validity: &Validity) -> Result<Ca> {
        let td_id = SpiffeId::for_trust_domain(trust_domain).map_err(|source| Error::BadSpiffeId {
            what: "trust domain".into(),
            value: trust_domain.to_owned(),
            source,
        })?;
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params.distinguished_name.push(DnType::OrganizationName, ORGANIZATION);
        params.distinguished_name.push(DnType::CommonName, format!("Pillion CA {trust_domain}"));
        params.subject_alt_names = vec![uri_san(&td_id)?];
        // Path length 0: this CA signs workloads only, never another CA.
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages =
            vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
        params.not_before = validity.not_before;
        params.not_after = validity.not_after;
        params.serial_number = Some(random_serial());
        let cert = params.self_signed(&key)?;
        Ok(Ca {
            cert_pem: cert.pem(),
            cert_der: cert.der().clone(),
            trust_domain: td_id,
            not_after: validity.not_after,
            issuer: Issuer::new(params, key),
        })
    }

    /// Loads `ca.pem` and `ca-key.pem` from `dir`, checking that the key matches, the
    /// certificate is a CA, is currently valid, and names a trust domain.
    pub fn load(dir: &Path) -> Result<Ca> {
        let cert_path = dir.join(CA_CERT_FILE);
        let key_path = dir.join(CA_KEY_FILE);
        let cert_pem = String::from_utf8(pem::read_file(&cert_path)?)
            .map_err(|_| Error::NotPem { path: cert_path.clone(), reason: "not UTF-8 text".into() })?;
        let key_bytes = pem::read_file(&key_path)?;
        Self::from_pem(&cert_pem, &key_bytes, &cert_path, &key_path)
    }

    /// Builds a CA from PEM text; the paths name the sources in errors.
    pub fn from_pem(cert_pem: &str, key_pem: &[u8], cert_path: &Path, key_path: &Path) -> Result<Ca> {
        let cert_der = pem::parse_certs(cert_pem.as_bytes(), cert_path)?.remove(0);
        let key_der = pem::parse_key(key_pem, key_path)?;
        let key = KeyPair::try_from(&key_der)
            .map_err(|e| Error::BadKey { path: key_path.into(), reason: e.to_string() })?;
        let info = CertInfo::parse(&cert_der, cert_path)?;
        let bad_ca = |reason: String| Error::BadCa { path: cert_path.into(), reason };
        if !info.is_ca {
            return Err(bad_ca("certificate is not a CA (basicConstraints)".into()));
        }
        if rcgen::PublicKeyData::subject_public_key_info(&key) != info.spki_der {
            return Err(Error::KeyMismatch { cert: cert_path.into(), key: key_path.into() });
        }
        info.check_time(std::time::SystemTime::now(), cert_path)?;
        let trust_domain = info
            .uri_sans
            .iter()
            .find_map(|uri| SpiffeId::parse(uri).ok().filter(SpiffeId::is_trust_domain_id))
            .ok_or_else(|| bad_ca("no trust domain URI SAN (spiffe://<trust domain>)".into()))?;
        let issuer = Issuer::from_ca_cert_der(&cert_der, key).map_err(|e| bad_ca(e.to_string()))?;
        Ok(Ca { cert_pem: cert_pem.to_owned(), cert_der, trust_domain, not_after: info.not_after, issuer })
    }

    /// Writes `ca.pem` and `ca-key.pem` (mode 0600) into `dir`, creating it.
    /// Refuses to replace an existing key unless `overwrite`.
    pub fn save(&self, dir: &Path, overwrite: bool) -> Result<()> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let key_path = dir.join(CA_KEY_FILE);
        if !overwrite && key_path.exists() {
            return Err(Error::Exists { path: key_path });
        }
        pem::write_private(&key_path, self.issuer.key().serialize_pem().as_bytes())?;
        pem::write_public(&dir.join(CA_CERT_FILE), self.cert_pem.as_bytes())
    }

    /// The trust domain, e.g. `cluster.local`.
    pub fn trust_domain(&self) -> &str {
        self.trust_domain.trust_domain()
    }

    /// The CA certificate file's PEM text: the trust bundle workloads need (during a CA
    /// rotation it may hold the next CA too; the first certificate is the signer).
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The CA certificate, DER.
    pub fn cert_der(&self) -> &CertificateDer<'static> {
        &self.cert_der
    }

    /// Issues a new P-256 key and certificate for `identity`.
    pub fn issue(&self, identity: &SpiffeId, validity: &Validity) -> Result<IssuedCert> {
        let params = self.workload_params(identity, validity)?;
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok(IssuedCert { cert_pem: cert.pem(), key_pem: key.serialize_pem() })
    }

    /// Signs a CSR (PEM) for `expected`, returning the certificate PEM.
    ///
    /// The CSR's signature must verify and its only SAN must be exactly `expected`;
    /// only its public key is used, everything else comes from the CA.
    pub fn sign_csr(&self, csr_pem: &str, expected: &SpiffeId, validity: &Validity) -> Result<String> {
        let csr = CertificateSigningRequestParams::from_pem(csr_pem)
            .map_err(|e| Error::CsrRejected(format!("unreadable or badly signed CSR: {e}")))?;
        match csr.params.subject_alt_names.as_slice() {
            [SanType::URI(uri)] if uri.as_str() == expected.as_str() => {}
            sans => {
                let named: Vec<String> = sans.iter().map(describe_san).collect();
                return Err(Error::CsrRejected(format!(
                    "CSR must name exactly {expected}, it names [{}]",
                    named.join(", ")
                )));
            }
        }
        let params = self.workload_params(expected, validity)?;
        Ok(params.signed_by(&csr.public_key, &self.issuer)?.pem())
    }

    fn workload_params(&self, identity: &SpiffeId, validity: &Validity) -> Result<CertificateParams> {
        if identity.trust_domain() != self.trust_domain() {
            return Err(Error::WrongTrustDomain {
                identity: identity.clone(),
                expected: self.trust_domain().to_owned(),
            });
        }
        if identity.is_trust_domain_id() {
            return Err(Error::NotAWorkload(identity.clone()));
        }
        let validity = validity.clamped_to(self.not_after)?;
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params.distinguished_name.push(DnType::OrganizationName, ORGANIZATION);
        params.subject_alt_names = vec![uri_san(identity)?];
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
        params.extended_key_usages =
            vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
        params.use_authority_key_identifier_extension = true;
        params.not_before = validity.not_before;
        params.not_after = validity.not_after;
        params.serial_number = Some(random_serial());
        Ok(params)
    }
}

/// Writes a workload's `cert.pem`, `key.pem` (0600) and `ca.pem` into `dir`, creating it.
pub fn write_workload_files(dir: &Path, issued: &IssuedCert, ca_pem: &str) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    // Key first: a watcher that sees the new cert before its key reports a mismatch.
    pem::write_private(&dir.join(KEY_FILE), issued.key_pem.as_bytes())?;
    pem::write_public(&dir.join(CERT_FILE), issued.cert_pem.as_bytes())?;
    pem::write_public(&dir.join(CA_CERT_FILE), ca_pem.as_bytes())
}

fn uri_san(id: &SpiffeId) -> Result<SanType> {
    // A valid SPIFFE ID is ASCII, so this cannot fail; map it anyway rather than unwrap.
    Ok(SanType::URI(Ia5String::try_from(id.as_str())?))
}

fn describe_san(san: &SanType) -> String {
    match san {
        SanType::URI(uri) => format!("URI:{}", uri.as_str()),
        SanType::DnsName(dns) => format!("DNS:{}", dns.as_str()),
        SanType::IpAddress(ip) => format!("IP:{ip}"),
        SanType::Rfc822Name(mail) => format!("email:{}", mail.as_str()),
        _ => "other name".into(),
    }
}

/// A random positive 16-byte serial, from the same provider as the TLS stack.
fn random_serial() -> SerialNumber {
    let mut bytes = [0u8; 16];
    if crate::tls::provider().secure_random.fill(&mut bytes).is_err() {
        // Fall back to the time: serials need to be unique, not secret.
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        bytes = nanos.to_be_bytes();
    }
    bytes[0] &= 0x7f; // keep the INTEGER positive
    SerialNumber::from_slice(&bytes)
}

#[cfg(test)]
mod tests;
