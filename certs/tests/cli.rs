//! The `pillion-certs` binary end to end: ca init, issue, csr, sign, inspect.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use pillion_certs::{CredentialPaths, Credentials, Error, TimeCheck};

struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("pillion-certs-cli-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
    fn join(&self, p: &str) -> PathBuf {
        self.0.join(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn certs(args: &[&str]) -> Output {
    run(Command::new(env!("CARGO_BIN_EXE_pillion-certs")).args(args))
}

fn run(cmd: &mut Command) -> Output {
    // Keep the caller's environment from leaking into flag defaults.
    for (key, _) in std::env::vars() {
        if key.starts_with("PILLION_") {
            cmd.env_remove(key);
        }
    }
    cmd.output().unwrap()
}

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "status {:?}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn ca_init_issue_and_inspect_round_trip() {
    let tmp = TempDir::new("roundtrip");
    let (ca, web) = (tmp.join("ca"), tmp.join("web"));
    ok(&certs(&["ca", "init", "--out", s(&ca)]));
    ok(&certs(&[
        "issue",
        "--ca",
        s(&ca),
        "--identity",
        "spiffe://cluster.local/ns/shop/sa/web",
        "--out",
        s(&web),
        "--ttl",
        "2h",
    ]));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        for key in [ca.join("ca-key.pem"), web.join("key.pem")] {
            assert_eq!(std::fs::metadata(&key).unwrap().permissions().mode() & 0o777, 0o600, "{key:?}");
        }
    }
    let creds = Credentials::load(&CredentialPaths::in_dir(&web)).unwrap();
    assert_eq!(creds.identity().as_str(), "spiffe://cluster.local/ns/shop/sa/web");

    let out = ok(&certs(&["inspect", s(&web.join("cert.pem")), "--ca", s(&ca.join("ca.pem"))]));
    assert!(out.contains("identity: spiffe://cluster.local/ns/shop/sa/web"), "{out}");
    assert!(out.contains("status: valid"), "{out}");
    assert!(out.contains("expired: no"), "{out}");
    assert!(out.contains("issuer: O=Pillion, CN=Pillion CA cluster.local"), "{out}");
    assert!(out.contains("chain: ok"), "{out}");

    let ca_out = ok(&certs(&["inspect", s(&ca.join("ca.pem"))]));
    assert!(ca_out.contains("identity: spiffe://cluster.local\n") && ca_out.contains("ca: yes"), "{ca_out}");
}

#[test]
fn flags_come_from_environment_variables() {
    let tmp = TempDir::new("env");
    let (ca, web) = (tmp.join("ca"), tmp.join("web"));
    ok(&run(Command::new(env!("CARGO_BIN_EXE_pillion-certs"))
        .args(["ca", "init"])
        .env("PILLION_CA_DIR", &ca)
        .env("PILLION_TRUST_DOMAIN", "mesh.example")));
    ok(&run(Command::new(env!("CARGO_BIN_EXE_pillion-certs"))
        .arg("issue")
        .env("PILLION_CA_DIR", &ca)
        .env("PILLION_IDENTITY", "spiffe://mesh.example/ns/a/sa/b")
        .env("PILLION_CERT_DIR", &web)
        .env("PILLION_CERT_TTL", "30m")));
    let creds = Credentials::load(&CredentialPaths::in_dir(&web)).unwrap();
    assert_eq!(creds.identity().trust_domain(), "mesh.example");
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    assert!(creds.not_after_unix() <= now + 1800);
}

#[test]
fn issue_refuses_another_trust_domain_and_bad_ids() {
    let tmp = TempDir::new("wrong-td");
    let ca = tmp.join("ca");
    ok(&certs(&["ca", "init", "--out", s(&ca)]));
    let out = certs(&[
        "issue",
        "--ca",
        s(&ca),
        "--identity",
        "spiffe://other.local/ns/a/sa/b",
        "--out",
        s(&tmp.join("w")),
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("not in trust domain \"cluster.local\""), "{err}");
    let out = certs(&[
        "issue",
        "--ca",
        s(&ca),
        "--identity",
        "spiffe://cluster.local/a/../b",
        "--out",
        s(&tmp.join("w")),
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("bad SPIFFE ID"));
    assert!(!tmp.join("w").exists());
}

#[test]
fn ca_init_does_not_overwrite_without_force() {
    let tmp = TempDir::new("force");
    let ca = tmp.join("ca");
    ok(&certs(&["ca", "init", "--out", s(&ca)]));
    let before = std::fs::read(ca.join("ca-key.pem")).unwrap();
    let out = certs(&["ca", "init", "--out", s(&ca)]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("already exists"));
    assert_eq!(std::fs::read(ca.join("ca-key.pem")).unwrap(), before);
    ok(&certs(&["ca", "init", "--out", s(&ca), "--force"]));
    assert_ne!(std::fs::read(ca.join("ca-key.pem")).unwrap(), before);
}

#[test]
fn test_flags_make_expired_and_not_yet_valid_certificates() {
    let tmp = TempDir::new("times");
    let (ca, old, future) = (tmp.join("ca"), tmp.join("old"), tmp.join("future"));
    ok(&certs(&["ca", "init", "--out", s(&ca)]));
    let id = "spiffe://cluster.local/ns/a/sa/b";
    ok(&certs(&[
        "issue",
        "--ca",
        s(&ca),
        "--identity",
        id,
        "--out",
        s(&old),
        "--valid-from",
        "-48h",
        "--ttl",
        "24h",
    ]));
    let err = Credentials::load(&CredentialPaths::in_dir(&old)).unwrap_err();
    assert!(matches!(err, Error::Expired { .. }), "{err}");
    let out = ok(&certs(&["inspect", s(&old.join("cert.pem")), "--ca", s(&ca.join("ca.pem"))]));
    assert!(
        out.contains("status: expired") && out.contains("expired: yes") && out.contains("chain: ok"),
        "{out}"
    );

    ok(&certs(&["issue", "--ca", s(&ca), "--identity", id, "--out", s(&future), "--valid-from", "+2h"]));
    let err = Credentials::load(&CredentialPaths::in_dir(&future)).unwrap_err();
    assert!(matches!(err, Error::NotYetValid { .. }), "{err}");
    let out = ok(&certs(&["inspect", s(&future.join("cert.pem"))]));
    assert!(out.contains("status: not yet valid"), "{out}");
    assert!(Credentials::load_with(&CredentialPaths::in_dir(&future), TimeCheck::Skip).is_ok());

    // Absolute times, RFC 3339.
    let year = time::OffsetDateTime::now_utc().year() + 1;
    let (start, end) = (format!("{year}-01-01T00:00:00Z"), format!("{year}-01-02T00:00:00Z"));
    ok(&certs(&[
        "issue",
        "--ca",
        s(&ca),
        "--identity",
        id,
        "--out",
        s(&future),
        "--not-before",
        &start,
        "--not-after",
        &end,
    ]));
    let out = ok(&certs(&["inspect", s(&future.join("cert.pem"))]));
    assert!(
        out.contains(&format!("not-before: {start}")) && out.contains(&format!("not-after: {end}")),
        "{out}"
    );
    let bad =
        certs(&["issue", "--ca", s(&ca), "--identity", id, "--out", s(&future), "--not-before", "yesterday"]);
    assert!(String::from_utf8_lossy(&bad.stderr).contains("RFC 3339"));
}

#[test]
fn inspect_fails_against_another_ca() {
    let tmp = TempDir::new("other-ca");
    let (ca, other, web) = (tmp.join("ca"), tmp.join("other"), tmp.join("web"));
    ok(&certs(&["ca", "init", "--out", s(&ca)]));
    ok(&certs(&["ca", "init", "--out", s(&other), "--trust-domain", "other.local"]));
    ok(&certs(&[
        "issue",
        "--ca",
        s(&ca),
        "--identity",
        "spiffe://cluster.local/ns/a/sa/b",
        "--out",
        s(&web),
    ]));
    let out = certs(&["inspect", s(&web.join("cert.pem")), "--ca", s(&other.join("ca.pem"))]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("chain: FAILED"));
    let missing = certs(&["inspect", s(&tmp.join("nope.pem"))]);
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("nope.pem"));
}

#[test]
fn csr_and_sign_issue_only_the_requested_identity() {
    let tmp = TempDir::new("csr");
    let (ca, web) = (tmp.join("ca"), tmp.join("web"));
    ok(&certs(&["ca", "init", "--out", s(&ca)]));
    let id = "spiffe://cluster.local/ns/shop/sa/web";
    ok(&certs(&["csr", "--identity", id, "--out", s(&web)]));
    let csr = web.join("csr.pem");
    let wrong = certs(&[
        "sign",
        "--ca",
        s(&ca),
        "--csr",
        s(&csr),
        "--identity",
        "spiffe://cluster.local/ns/shop/sa/admin",
        "--out-file",
        s(&web.join("cert.pem")),
    ]);
    assert!(!wrong.status.success());
    assert!(String::from_utf8_lossy(&wrong.stderr).contains("CSR rejected"));
    ok(&certs(&[
        "sign",
        "--ca",
        s(&ca),
        "--csr",
        s(&csr),
        "--identity",
        id,
        "--out-file",
        s(&web.join("cert.pem")),
    ]));
    std::fs::copy(ca.join("ca.pem"), web.join("ca.pem")).unwrap();
    let creds = Credentials::load(&CredentialPaths::in_dir(&web)).unwrap();
    assert_eq!(creds.identity().as_str(), id);
}
