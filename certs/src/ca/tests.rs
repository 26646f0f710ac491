//! Tests of the CA: create, save, load, issue.

use std::path::Path;
use std::time::Duration;

use super::*;
use crate::cert::CertInfo;
use crate::testutil::{TempDir, TestPki, day, id};

#[test]
fn init_save_load_round_trip_keeps_the_trust_domain() {
    let dir = TempDir::new("ca-roundtrip");
    let ca = Ca::generate("cluster.local", &day()).unwrap();
    ca.save(dir.path(), false).unwrap();
    let loaded = Ca::load(dir.path()).unwrap();
    assert_eq!(loaded.trust_domain(), "cluster.local");
    assert_eq!(loaded.cert_der(), ca.cert_der());

    let info = CertInfo::parse(ca.cert_der(), Path::new("ca.pem")).unwrap();
    assert!(info.is_ca);
    assert_eq!(info.uri_sans, ["spiffe://cluster.local"]);
    assert!(info.subject.contains("CN=Pillion CA cluster.local"), "{}", info.subject);

    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join(CA_KEY_FILE)).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}

#[test]
fn save_refuses_to_overwrite_a_ca_key_without_force() {
    let dir = TempDir::new("ca-overwrite");
    let first = Ca::generate("cluster.local", &day()).unwrap();
    first.save(dir.path(), false).unwrap();
    let second = Ca::generate("cluster.local", &day()).unwrap();
    assert!(matches!(second.save(dir.path(), false), Err(Error::Exists { .. })));
    assert_eq!(Ca::load(dir.path()).unwrap().cert_der(), first.cert_der());
    second.save(dir.path(), true).unwrap();
    assert_eq!(Ca::load(dir.path()).unwrap().cert_der(), second.cert_der());
}

#[test]
fn load_detects_a_key_that_does_not_match_the_ca() {
    let dir = TempDir::new("ca-mismatch");
    let other = TempDir::new("ca-mismatch-other");
    Ca::generate("cluster.local", &day()).unwrap().save(dir.path(), false).unwrap();
    Ca::generate("cluster.local", &day()).unwrap().save(other.path(), false).unwrap();
    std::fs::copy(other.path().join(CA_KEY_FILE), dir.path().join(CA_KEY_FILE)).unwrap();
    let err = Ca::load(dir.path()).unwrap_err();
    assert!(matches!(err, Error::KeyMismatch { .. }), "{err}");
    assert!(err.to_string().contains("ca-key.pem"), "{err}");
}

#[test]
fn load_names_the_missing_file() {
    let dir = TempDir::new("ca-missing");
    let err = Ca::load(dir.path()).unwrap_err();
    assert!(matches!(err, Error::Io { .. }));
    assert!(err.to_string().contains("ca.pem"), "{err}");
}

#[test]
fn load_refuses_a_workload_certificate_as_ca() {
    let pki = TestPki::new("cluster.local");
    let issued = pki.ca.issue(&id("spiffe://cluster.local/ns/a/sa/b"), &day()).unwrap();
    let err = Ca::from_pem(
        &issued.cert_pem,
        issued.key_pem.as_bytes(),
        Path::new("cert.pem"),
        Path::new("key.pem"),
    )
    .unwrap_err();
    assert!(matches!(err, Error::BadCa { .. }), "{err}");
}

#[test]
fn issued_certificate_has_only_the_spiffe_san_and_both_usages() {
    let pki = TestPki::new("cluster.local");
    let issued = pki.ca.issue(&id("spiffe://cluster.local/ns/shop/sa/web"), &day()).unwrap();
    let der = crate::pem::parse_certs(issued.cert_pem.as_bytes(), Path::new("cert.pem")).unwrap();
    let info = CertInfo::parse(&der[0], Path::new("cert.pem")).unwrap();
    assert_eq!(info.uri_sans, ["spiffe://cluster.local/ns/shop/sa/web"]);
    assert!(info.dns_sans.is_empty());
    assert!(!info.is_ca);
    assert_eq!(info.extended_key_usages, ["serverAuth", "clientAuth"]);
    assert!(issued.key_pem.contains("PRIVATE KEY"));
}

#[test]
fn issue_refuses_other_trust_domains_and_bare_trust_domain_ids() {
    let pki = TestPki::new("cluster.local");
    let err = pki.ca.issue(&id("spiffe://other.local/ns/a/sa/b"), &day()).unwrap_err();
    assert!(matches!(err, Error::WrongTrustDomain { .. }), "{err}");
    assert!(err.to_string().contains("cluster.local"), "{err}");
    let err = pki.ca.issue(&id("spiffe://cluster.local"), &day()).unwrap_err();
    assert!(matches!(err, Error::NotAWorkload(_)), "{err}");
}

#[test]
fn issued_certificates_do_not_outlive_the_ca() {
    let short = Validity::for_ttl(Duration::from_secs(3600)).unwrap();
    let ca = Ca::generate("cluster.local", &short).unwrap();
    let long = Validity::for_ttl(Duration::from_secs(86_400 * 30)).unwrap();
    let issued = ca.issue(&id("spiffe://cluster.local/ns/a/sa/b"), &long).unwrap();
    let der = crate::pem::parse_certs(issued.cert_pem.as_bytes(), Path::new("cert.pem")).unwrap();
    let info = CertInfo::parse(&der[0], Path::new("cert.pem")).unwrap();
    assert!(info.not_after <= short.not_after);
}

#[test]
fn generate_rejects_a_bad_trust_domain() {
    let err = Ca::generate("Cluster.Local", &day()).unwrap_err();
    assert!(matches!(err, Error::BadSpiffeId { .. }), "{err}");
}

#[test]
fn serials_differ_between_certificates() {
    let pki = TestPki::new("cluster.local");
    let a = pki.issue("spiffe://cluster.local/ns/a/sa/b");
    let b = pki.issue("spiffe://cluster.local/ns/a/sa/b");
    assert_ne!(a.cert_info().serial, b.cert_info().serial);
}
