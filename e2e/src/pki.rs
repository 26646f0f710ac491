//! Certificates for tests, made by the real `pillion-certs` binary.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use crate::workspace_bin;

/// A CA in a directory, issuing workload certificates beside it.
pub struct Pki {
    /// Holds `ca/` and one directory per issued identity.
    pub dir: PathBuf,
}

impl Pki {
    /// Creates a CA for `cluster.local` in `dir/NAME`.
    pub fn new(dir: &Path, name: &str) -> Self {
        let dir = dir.join(name);
        certs(&["ca", "init", "--out", dir.join("ca").to_str().expect("utf-8 path")]);
        Self { dir }
    }

    /// The CA certificate.
    pub fn ca_pem(&self) -> PathBuf {
        self.dir.join("ca").join("ca.pem")
    }

    /// Issues a certificate for `spiffe://cluster.local/ns/NS/sa/SA` into `dir/label/`, with any
    /// extra `pillion-certs issue` flags (e.g. `--valid-from -48h --ttl 24h`).
    pub fn issue(&self, label: &str, identity: &str, extra: &[&str]) -> PathBuf {
        let out = self.dir.join(label);
        let ca = self.dir.join("ca");
        let mut args = vec!["issue", "--ca", ca.to_str().expect("utf-8"), "--identity", identity];
        args.extend(["--out", out.to_str().expect("utf-8")]);
        args.extend_from_slice(extra);
        certs(&args);
        out
    }
}

/// The `tls:` config section for an issued directory.
pub fn tls_section(dir: &Path) -> String {
    format!("tls: {{cert: \"{0}/cert.pem\", key: \"{0}/key.pem\", trust: \"{0}/ca.pem\"}}", dir.display())
}

/// Runs `pillion-certs` and panics with its output on failure.
pub fn certs(args: &[&str]) -> String {
    let out = Command::new(workspace_bin("pillion-certs")).args(args).output().expect("run pillion-certs");
    assert!(
        out.status.success(),
        "pillion-certs {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}
