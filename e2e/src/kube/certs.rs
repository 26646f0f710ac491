//! The Kubernetes harness's key material, made in-process with rcgen: one cluster CA that signs
//! the API server's serving certificate and the admin's client certificate (and that the API
//! server trusts for client certificates), and the service-account token signing key pair.
//! Also the admin kubeconfig that names them.

use std::{
    fs,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    path::{Path, PathBuf},
};

use anyhow::{Context, Result};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer,
    KeyPair, KeyUsagePurpose, SanType,
};

/// The admin's user name and group: `system:masters` is bound to cluster-admin by the API
/// server's bootstrap RBAC, and also bypasses authorization outright.
pub const ADMIN_USER: &str = "pillion-e2e-admin";
const ADMIN_GROUP: &str = "system:masters";

/// Where each piece was written, all inside the harness's temporary directory.
#[derive(Debug, Clone)]
pub struct KubeCerts {
    /// The cluster CA certificate: trust it to talk to the API server; it also signs clients.
    pub ca_pem: PathBuf,
    /// The API server's serving certificate (SANs 127.0.0.1, ::1, localhost) and key.
    pub serving_cert: PathBuf,
    pub serving_key: PathBuf,
    /// The admin's client certificate (O=system:masters) and key.
    pub admin_cert: PathBuf,
    pub admin_key: PathBuf,
    /// The service-account token signing key (private, PKCS#8) and its public half (PKIX).
    pub sa_key: PathBuf,
    pub sa_pub: PathBuf,
}

impl KubeCerts {
    /// Makes all of it in `dir`. Keys are ECDSA P-256, which every piece of Kubernetes accepts
    /// (service-account tokens are then ES256).
    pub fn generate(dir: &Path) -> Result<Self> {
        fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
        let path = |name: &str| dir.join(name);

        let ca_key = KeyPair::generate()?;
        let mut ca = CertificateParams::default();
        ca.distinguished_name = name("pillion-e2e-kube-ca", None);
        ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::DigitalSignature];
        let ca_cert = ca.self_signed(&ca_key)?;
        let issuer = Issuer::new(ca, ca_key);

        let serving_key = KeyPair::generate()?;
        let mut serving = CertificateParams::new(vec!["localhost".to_owned()])?;
        serving.distinguished_name = name("kube-apiserver", None);
        serving.subject_alt_names.push(SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST)));
        serving.subject_alt_names.push(SanType::IpAddress(IpAddr::V6(Ipv6Addr::LOCALHOST)));
        serving.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let serving_cert = serving.signed_by(&serving_key, &issuer)?;

        let admin_key = KeyPair::generate()?;
        let mut admin = CertificateParams::default();
        // Kubernetes reads the user from CN and groups from O.
        admin.distinguished_name = name(ADMIN_USER, Some(ADMIN_GROUP));
        admin.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let admin_cert = admin.signed_by(&admin_key, &issuer)?;

        let sa = KeyPair::generate()?;

        let certs = Self {
            ca_pem: path("ca.pem"),
            serving_cert: path("apiserver.pem"),
            serving_key: path("apiserver-key.pem"),
            admin_cert: path("admin.pem"),
            admin_key: path("admin-key.pem"),
            sa_key: path("sa-key.pem"),
            sa_pub: path("sa.pub"),
        };
        write(&certs.ca_pem, &ca_cert.pem())?;
        write(&certs.serving_cert, &serving_cert.pem())?;
        write(&certs.serving_key, &serving_key.serialize_pem())?;
        write(&certs.admin_cert, &admin_cert.pem())?;
        write(&certs.admin_key, &admin_key.serialize_pem())?;
        write(&certs.sa_key, &sa.serialize_pem())?;
        write(&certs.sa_pub, &sa.public_key_pem())?;
        Ok(certs)
    }

    /// Writes a kubeconfig for the admin user against `server` to `path`: what `kubectl
    /// --kubeconfig` and `kube::Config` read.
    pub fn write_kubeconfig(&self, path: &Path, server: &str) -> Result<()> {
        // JSON strings are valid YAML scalars, and quote any path safely.
        let q = |p: &Path| serde_json::to_string(&p.display().to_string()).expect("a string serialises");
        let text = format!(
            "apiVersion: v1\nkind: Config\n\
             clusters:\n- name: pillion-e2e\n  cluster:\n    server: {server}\n    certificate-authority: {ca}\n\
             users:\n- name: {ADMIN_USER}\n  user:\n    client-certificate: {cert}\n    client-key: {key}\n\
             contexts:\n- name: pillion-e2e\n  context:\n    cluster: pillion-e2e\n    user: {ADMIN_USER}\n\
             current-context: pillion-e2e\n",
            server = serde_json::to_string(server).expect("a string serialises"),
            ca = q(&self.ca_pem),
            cert = q(&self.admin_cert),
            key = q(&self.admin_key),
        );
        write(path, &text)
    }
}

fn name(common: &str, organization: Option<&str>) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    if let Some(o) = organization {
        dn.push(DnType::OrganizationName, o);
    }
    dn.push(DnType::CommonName, common);
    dn
}

/// Writes owner-only: these are private keys, even if only a test's.
fn write(path: &Path, text: &str) -> Result<()> {
    use std::{io::Write, os::unix::fs::OpenOptionsExt};
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("create {}", path.display()))?;
    f.write_all(text.as_bytes()).with_context(|| format!("write {}", path.display()))
}
