//! Reading the facts Pillion needs out of an X.509 certificate: SPIFFE ID, names, validity.
//!
//! [`CertInfo`] is an owned summary parsed once with x509-parser; it backs
//! `pillion-certs inspect`, the validity checks of [`crate::Credentials`] and the
//! peer-identity helpers used after a handshake.

use std::path::Path;
use std::time::SystemTime;

use rustls_pki_types::CertificateDer;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::error::{Error, Result};
use crate::identity::SpiffeId;

/// An owned summary of one certificate.
#[derive(Debug, Clone)]
pub struct CertInfo {
    /// Subject distinguished name, e.g. `O=Pillion`.
    pub subject: String,
    /// Issuer distinguished name.
    pub issuer: String,
    /// Serial number as colon-separated hex.
    pub serial: String,
    /// Start of validity.
    pub not_before: OffsetDateTime,
    /// End of validity.
    pub not_after: OffsetDateTime,
    /// Whether basicConstraints says this is a CA.
    pub is_ca: bool,
    /// Every URI SAN, in order.
    pub uri_sans: Vec<String>,
    /// Every DNS SAN, in order.
    pub dns_sans: Vec<String>,
    /// Extended key usages present: "serverAuth", "clientAuth", ...
    pub extended_key_usages: Vec<&'static str>,
    /// The SubjectPublicKeyInfo, DER.
    pub spki_der: Vec<u8>,
}

impl CertInfo {
    /// Parses a DER certificate; `path` names its source in errors.
    pub fn parse(der: &CertificateDer<'_>, path: &Path) -> Result<Self> {
        let bad = |reason: String| Error::BadCertificate { path: path.into(), reason };
        let (rest, cert) = X509Certificate::from_der(der).map_err(|e| bad(e.to_string()))?;
        if !rest.is_empty() {
            return Err(bad("trailing data after certificate".into()));
        }
        let mut uri_sans = Vec::new();
        let mut dns_sans = Vec::new();
        let san = cert.subject_alternative_name().map_err(|e| bad(e.to_string()))?;
        for name in san.iter().flat_map(|ext| ext.value.general_names.iter()) {
            match name {
                GeneralName::URI(uri) => uri_sans.push((*uri).to_owned()),
                GeneralName::DNSName(dns) => dns_sans.push((*dns).to_owned()),
                _ => {}
            }
        }
        let mut extended_key_usages = Vec::new();
        if let Some(eku) = cert.extended_key_usage().map_err(|e| bad(e.to_string()))? {
            let eku = eku.value;
            for (present, name) in [
                (eku.server_auth, "serverAuth"),
                (eku.client_auth, "clientAuth"),
                (eku.any, "any"),
                (eku.code_signing, "codeSigning"),
                (eku.email_protection, "emailProtection"),
                (eku.time_stamping, "timeStamping"),
                (eku.ocsp_signing, "ocspSigning"),
            ] {
                if present {
                    extended_key_usages.push(name);
                }
            }
        }
        Ok(CertInfo {
            subject: cert.subject().to_string(),
            issuer: cert.issuer().to_string(),
            serial: cert.raw_serial_as_string(),
            not_before: cert.validity().not_before.to_datetime(),
            not_after: cert.validity().not_after.to_datetime(),
            is_ca: cert.is_ca(),
            uri_sans,
            dns_sans,
            extended_key_usages,
            spki_der: cert.public_key().raw.to_vec(),
        })
    }

    /// The certificate's SPIFFE ID: its one URI SAN, which must be a valid SPIFFE ID.
    pub fn spiffe_id(&self, path: &Path) -> Result<SpiffeId> {
        match self.uri_sans.as_slice() {
            [uri] => SpiffeId::parse(uri).map_err(|source| Error::BadSpiffeId {
                what: format!("{}: URI SAN", path.display()),
                value: uri.clone(),
                source,
            }),
            [] => Err(Error::NoSpiffeId {
                path: path.into(),
                reason: "certificate has no URI SAN (SPIFFE ID)".into(),
            }),
            many => Err(Error::NoSpiffeId {
                path: path.into(),
                reason: format!(
                    "certificate has {} URI SANs; a SPIFFE certificate has exactly one",
                    many.len()
                ),
            }),
        }
    }

    /// Errors with [`Error::Expired`] or [`Error::NotYetValid`] unless `now` is inside the validity window.
    pub fn check_time(&self, now: SystemTime, path: &Path) -> Result<()> {
        let now = OffsetDateTime::from(now);
        if now > self.not_after {
            return Err(Error::Expired { path: path.into(), not_after: format_time(self.not_after) });
        }
        if now < self.not_before {
            return Err(Error::NotYetValid { path: path.into(), not_before: format_time(self.not_before) });
        }
        Ok(())
    }

    /// End of validity as unix seconds (for `pillion_identity_cert_expiry_timestamp_seconds`).
    pub fn not_after_unix(&self) -> i64 {
        self.not_after.unix_timestamp()
    }
}

/// The SPIFFE ID of an end-entity certificate, e.g. a peer's after a handshake.
pub fn spiffe_id_from_der(der: &CertificateDer<'_>) -> Result<SpiffeId> {
    let path = Path::new("peer certificate");
    CertInfo::parse(der, path)?.spiffe_id(path)
}

/// The SPIFFE ID of a verified TLS peer, from `conn.peer_certificates()`.
///
/// `None` when the peer sent no certificate or it carries no valid SPIFFE ID.
/// Pillion's verifiers refuse such peers, so with them `None` means "no client
/// certificate" (permissive inbound mode).
pub fn peer_spiffe_id(peer_certificates: Option<&[CertificateDer<'_>]>) -> Option<SpiffeId> {
    spiffe_id_from_der(peer_certificates?.first()?).ok()
}

/// Formats a time as RFC 3339 in UTC, e.g. `2025-01-02T03:04:05Z`.
pub fn format_time(t: OffsetDateTime) -> String {
    t.to_offset(time::UtcOffset::UTC).format(&Rfc3339).unwrap_or_else(|_| t.unix_timestamp().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{TestPki, id};

    #[test]
    fn reads_identity_names_and_validity() {
        let pki = TestPki::new("cluster.local");
        let issued = pki.issue("spiffe://cluster.local/ns/shop/sa/web");
        let der = &issued.chain()[0];
        let info = CertInfo::parse(der, Path::new("cert.pem")).unwrap();
        assert_eq!(
            info.spiffe_id(Path::new("cert.pem")).unwrap(),
            id("spiffe://cluster.local/ns/shop/sa/web")
        );
        assert!(!info.is_ca);
        assert!(info.dns_sans.is_empty());
        assert_eq!(info.extended_key_usages, ["serverAuth", "clientAuth"]);
        assert!(info.issuer.contains("cluster.local"), "{}", info.issuer);
        assert!(info.check_time(SystemTime::now(), Path::new("cert.pem")).is_ok());
        assert_eq!(spiffe_id_from_der(der).unwrap(), id("spiffe://cluster.local/ns/shop/sa/web"));
        assert_eq!(peer_spiffe_id(Some(issued.chain())), Some(id("spiffe://cluster.local/ns/shop/sa/web")));
        assert_eq!(peer_spiffe_id(None), None);
    }

    #[test]
    fn certificate_without_uri_san_has_no_spiffe_id() {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["example.com".to_string()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let err = spiffe_id_from_der(cert.der()).unwrap_err();
        assert!(matches!(err, Error::NoSpiffeId { .. }), "{err}");
        let err = CertInfo::parse(&CertificateDer::from(vec![1, 2, 3]), Path::new("x.pem")).unwrap_err();
        assert!(err.to_string().starts_with("x.pem: invalid certificate"), "{err}");
    }
}
