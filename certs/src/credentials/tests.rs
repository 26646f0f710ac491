//! Tests of loading and cross-checking credentials.

use std::time::Duration;

use super::*;
use crate::ca::{Ca, write_workload_files};
use crate::testutil::{TempDir, TestPki, day, id};
use crate::validity::Validity;

fn write(dir: &Path, pki: &TestPki, identity: &str, validity: &Validity) {
    let issued = pki.ca.issue(&id(identity), validity).unwrap();
    write_workload_files(dir, &issued, pki.ca.cert_pem()).unwrap();
}

#[test]
fn loads_files_written_by_issue() {
    let dir = TempDir::new("creds-load");
    let pki = TestPki::new("cluster.local");
    write(dir.path(), &pki, "spiffe://cluster.local/ns/shop/sa/web", &day());
    let creds = Credentials::load(&CredentialPaths::in_dir(dir.path())).unwrap();
    assert_eq!(creds.identity(), &id("spiffe://cluster.local/ns/shop/sa/web"));
    assert_eq!(creds.chain().len(), 1);
    assert_eq!(creds.bundle().trust_domains(), ["cluster.local"]);
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    assert!(creds.not_after_unix() > now + 86_000 && creds.not_after_unix() <= now + 86_400);
    assert!(creds.not_before_unix() < now);
}

#[test]
fn detects_a_key_that_does_not_match_the_certificate() {
    let dir = TempDir::new("creds-mismatch");
    let pki = TestPki::new("cluster.local");
    write(dir.path(), &pki, "spiffe://cluster.local/ns/shop/sa/web", &day());
    let other = pki.ca.issue(&id("spiffe://cluster.local/ns/shop/sa/web"), &day()).unwrap();
    crate::pem::write_private(&dir.path().join("key.pem"), other.key_pem.as_bytes()).unwrap();
    let err = Credentials::load(&CredentialPaths::in_dir(dir.path())).unwrap_err();
    assert!(matches!(err, Error::KeyMismatch { .. }), "{err}");
    let msg = err.to_string();
    assert!(msg.contains("key.pem") && msg.contains("cert.pem"), "{msg}");
}

#[test]
fn detects_expired_and_not_yet_valid_certificates() {
    let dir = TempDir::new("creds-time");
    let pki = TestPki::new("cluster.local");
    let paths = CredentialPaths::in_dir(dir.path());

    let expired =
        Validity::starting_at_offset(time::Duration::hours(-48), Duration::from_secs(86_400)).unwrap();
    write(dir.path(), &pki, "spiffe://cluster.local/ns/a/sa/b", &expired);
    let err = Credentials::load(&paths).unwrap_err();
    assert!(matches!(err, Error::Expired { .. }), "{err}");
    assert!(err.to_string().contains("cert.pem: certificate expired at"), "{err}");
    // Tools can still read it, and the chain is still checked.
    assert!(Credentials::load_with(&paths, TimeCheck::Skip).is_ok());

    let future = Validity::starting_at_offset(time::Duration::hours(1), Duration::from_secs(86_400)).unwrap();
    write(dir.path(), &pki, "spiffe://cluster.local/ns/a/sa/b", &future);
    let err = Credentials::load(&paths).unwrap_err();
    assert!(matches!(err, Error::NotYetValid { .. }), "{err}");
    let in_two_hours = SystemTime::now() + Duration::from_secs(7200);
    assert!(Credentials::load_with(&paths, TimeCheck::At(in_two_hours)).is_ok());
}

#[test]
fn detects_a_certificate_from_another_ca() {
    let dir = TempDir::new("creds-wrong-ca");
    let ours = TestPki::new("cluster.local");
    let theirs = TestPki::new("cluster.local");
    write(dir.path(), &theirs, "spiffe://cluster.local/ns/a/sa/b", &day());
    crate::pem::write_public(&dir.path().join("ca.pem"), ours.ca.cert_pem().as_bytes()).unwrap();
    let err = Credentials::load(&CredentialPaths::in_dir(dir.path())).unwrap_err();
    assert!(matches!(err, Error::Untrusted { .. }), "{err}");
    assert!(err.to_string().contains("ca.pem"), "{err}");
    let skip = Credentials::load_with(&CredentialPaths::in_dir(dir.path()), TimeCheck::Skip).unwrap_err();
    assert!(matches!(skip, Error::Untrusted { .. }), "{skip}");
}

#[test]
fn rejects_a_certificate_outside_the_bundles_trust_domain() {
    // A CA for other.local cannot be made to issue for cluster.local, so build the
    // mismatch by hand: a bundle that speaks for cluster.local only.
    let ours = TestPki::new("cluster.local");
    let theirs = Ca::generate("other.local", &day()).unwrap();
    let issued = theirs.issue(&id("spiffe://other.local/ns/a/sa/b"), &day()).unwrap();
    let err = Credentials::from_pem(
        issued.cert_pem.as_bytes(),
        issued.key_pem.as_bytes(),
        ours.bundle(),
        TimeCheck::Now,
    )
    .unwrap_err();
    assert!(matches!(err, Error::WrongTrustDomain { .. }), "{err}");
}

#[test]
fn names_the_missing_file() {
    let dir = TempDir::new("creds-missing");
    let pki = TestPki::new("cluster.local");
    write(dir.path(), &pki, "spiffe://cluster.local/ns/a/sa/b", &day());
    std::fs::remove_file(dir.path().join("key.pem")).unwrap();
    let err = Credentials::load(&CredentialPaths::in_dir(dir.path())).unwrap_err();
    assert!(matches!(err, Error::Io { .. }));
    assert!(err.to_string().contains("key.pem"), "{err}");
}
