//! Tests of the credential store and file watcher.

use std::path::Path;

use super::*;
use crate::ca::write_workload_files;
use crate::testutil::{TempDir, TestPki, day, id};

fn issue_into(dir: &Path, pki: &TestPki, identity: &str) {
    let issued = pki.ca.issue(&id(identity), &day()).unwrap();
    write_workload_files(dir, &issued, pki.ca.cert_pem()).unwrap();
}

#[test]
fn reloads_when_files_change_and_keeps_old_material_when_new_is_bad() {
    let dir = TempDir::new("watch-reload");
    let pki = TestPki::new("cluster.local");
    issue_into(dir.path(), &pki, "spiffe://cluster.local/ns/a/sa/one");
    let (store, mut watcher) = CredentialWatcher::start(CredentialPaths::in_dir(dir.path())).unwrap();
    assert!(watcher.poll().unwrap().is_none(), "unchanged files do not reload");

    issue_into(dir.path(), &pki, "spiffe://cluster.local/ns/a/sa/two");
    let reloaded = watcher.poll().unwrap().expect("a change reloads");
    assert_eq!(reloaded.identity(), &id("spiffe://cluster.local/ns/a/sa/two"));
    assert_eq!(store.current().identity(), reloaded.identity());

    // A key from another issue: bad. Seen once, held back; seen twice, reported once.
    let other = pki.ca.issue(&id("spiffe://cluster.local/ns/a/sa/two"), &day()).unwrap();
    crate::pem::write_private(&dir.path().join("key.pem"), other.key_pem.as_bytes()).unwrap();
    assert!(watcher.poll().unwrap().is_none());
    let err = watcher.poll().unwrap_err();
    assert!(matches!(err, Error::KeyMismatch { .. }), "{err}");
    assert!(watcher.poll().unwrap().is_none(), "a bad set is reported once");
    assert_eq!(store.current().identity(), &id("spiffe://cluster.local/ns/a/sa/two"));

    // Fixing the files recovers.
    crate::pem::write_public(&dir.path().join("cert.pem"), other.cert_pem.as_bytes()).unwrap();
    assert!(watcher.poll().unwrap().is_some());
}

#[test]
fn a_half_finished_rotation_is_not_reported() {
    let dir = TempDir::new("watch-half");
    let pki = TestPki::new("cluster.local");
    issue_into(dir.path(), &pki, "spiffe://cluster.local/ns/a/sa/one");
    let (store, mut watcher) = CredentialWatcher::start(CredentialPaths::in_dir(dir.path())).unwrap();
    let next = pki.ca.issue(&id("spiffe://cluster.local/ns/a/sa/one"), &day()).unwrap();
    crate::pem::write_public(&dir.path().join("cert.pem"), next.cert_pem.as_bytes()).unwrap();
    assert!(watcher.poll().unwrap().is_none(), "cert without its key yet: wait");
    crate::pem::write_private(&dir.path().join("key.pem"), next.key_pem.as_bytes()).unwrap();
    let creds = watcher.poll().unwrap().expect("complete set reloads");
    assert_eq!(creds.chain()[0], store.current().chain()[0]);
}

#[test]
fn reload_now_reports_errors_immediately() {
    let dir = TempDir::new("watch-now");
    let pki = TestPki::new("cluster.local");
    issue_into(dir.path(), &pki, "spiffe://cluster.local/ns/a/sa/one");
    let (_store, mut watcher) = CredentialWatcher::start(CredentialPaths::in_dir(dir.path())).unwrap();
    std::fs::remove_file(dir.path().join("cert.pem")).unwrap();
    let err = watcher.reload_now().unwrap_err();
    assert!(err.to_string().contains("cert.pem"), "{err}");
}

#[tokio::test]
async fn run_reports_reloads() {
    let dir = TempDir::new("watch-run");
    let pki = TestPki::new("cluster.local");
    issue_into(dir.path(), &pki, "spiffe://cluster.local/ns/a/sa/one");
    let (store, watcher) = CredentialWatcher::start(CredentialPaths::in_dir(dir.path())).unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let task = tokio::spawn(watcher.run(Duration::from_millis(20), move |r| {
        let _ = tx.send(r.map(|c| c.identity().clone()).map_err(|e| e.to_string()));
    }));
    issue_into(dir.path(), &pki, "spiffe://cluster.local/ns/a/sa/two");
    let got = tokio::time::timeout(Duration::from_secs(5), rx.recv()).await.unwrap().unwrap();
    assert_eq!(got, Ok(id("spiffe://cluster.local/ns/a/sa/two")));
    assert_eq!(store.current().identity(), &id("spiffe://cluster.local/ns/a/sa/two"));
    task.abort();
}
