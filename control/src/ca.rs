//! Certificates: the control plane's own serving certificate, issued from the CA at start-up and
//! renewed at two thirds of its life, and the signing service behind `POST /v1/certificates`.
//!
//! A CSR is signed only for the identity of the workload it is requested for, and only when the
//! caller presents a bootstrap token of that workload ([`crate::tokens`]) or a still-valid
//! certificate of that same identity. A client certificate of another identity is refused even
//! with a token: a caller that has proved it is `web` never gets `orders`.

use std::{path::Path, sync::Arc, time::Duration};

use pillion_certs::{
    Ca, CredentialStore, Credentials, SpiffeId, TimeCheck, TrustBundle, Validity, ca::CA_CERT_FILE,
};

use crate::tokens::{self, TokenFileError, Tokens, Verdict};

/// The control plane's identity is `spiffe://<trust domain>/` followed by this path.
pub const CONTROL_PATH: &str = "/ns/pillion-system/sa/pillion-control";

/// Why the signing service could not start.
#[derive(Debug, thiserror::Error)]
pub enum CaError {
    /// The CA directory is unusable.
    #[error("cannot load the CA: {0}")]
    Load(#[source] pillion_certs::Error),
    /// The serving certificate could not be made.
    #[error("cannot issue the control plane's certificate: {0}")]
    Issue(#[source] pillion_certs::Error),
    /// The token file is unreadable or not in the per-workload form.
    #[error(transparent)]
    Tokens(#[from] TokenFileError),
}

/// Why a CSR was not signed.
#[derive(Debug, thiserror::Error)]
pub enum SignError {
    /// The body is not a readable, correctly self-signed CSR (400).
    #[error("bad CSR: {0}")]
    BadCsr(String),
    /// The CSR names another identity than the workload's (403).
    #[error("{0}")]
    WrongIdentity(String),
    /// The CA could not sign (500).
    #[error("cannot sign: {0}")]
    Failed(String),
}

/// The CA and the rules for using it.
#[derive(Debug)]
pub struct Signer {
    ca: Ca,
    tokens: Option<Tokens>,
    ttl: Duration,
    identity: SpiffeId,
}

impl Signer {
    /// Loads the CA from `ca_dir` and the per-workload bootstrap tokens from `token_file`.
    pub fn load(ca_dir: &Path, token_file: Option<&Path>, ttl: Duration) -> Result<Self, CaError> {
        let ca = Ca::load(ca_dir).map_err(CaError::Load)?;
        let tokens = token_file.map(Tokens::load).transpose()?;
        let identity = SpiffeId::parse(&format!("spiffe://{}{CONTROL_PATH}", ca.trust_domain()))
            .map_err(|e| CaError::Load(pillion_certs::Error::CsrRejected(e.to_string())))?;
        Ok(Self { ca, tokens, ttl, identity })
    }

    /// `spiffe://<trust domain>/ns/pillion-system/sa/pillion-control`.
    pub fn identity(&self) -> &SpiffeId {
        &self.identity
    }

    /// The trust domain of every identity this CA signs.
    pub fn trust_domain(&self) -> &str {
        self.ca.trust_domain()
    }

    /// The CA certificate (the trust bundle), PEM.
    pub fn ca_pem(&self) -> &str {
        self.ca.cert_pem()
    }

    /// A fresh serving certificate for the control plane, with the CA as its bundle.
    pub fn serving_credentials(&self) -> Result<Credentials, CaError> {
        let validity = Validity::for_ttl(self.ttl).map_err(CaError::Issue)?;
        let issued = self.ca.issue(&self.identity, &validity).map_err(CaError::Issue)?;
        let bundle = TrustBundle::from_pem(self.ca.cert_pem().as_bytes(), Path::new(CA_CERT_FILE))
            .map_err(CaError::Issue)?;
        Credentials::from_pem(
            issued.cert_pem.as_bytes(),
            issued.key_pem.as_bytes(),
            Arc::new(bundle),
            TimeCheck::Now,
        )
        .map_err(CaError::Issue)
    }

    /// How many bootstrap tokens were loaded (0 without a token file).
    pub fn token_count(&self) -> usize {
        self.tokens.as_ref().map_or(0, Tokens::len)
    }

    /// What the token in an `Authorization: Bearer TOKEN` header value may do for `workload`;
    /// `None` when there is no bearer token at all.
    pub fn check_token(&self, authorization: Option<&[u8]>, workload: &str) -> Option<Verdict> {
        let token = tokens::bearer(authorization?)?;
        // Without a token file every token is unknown: renewal by certificate only.
        Some(self.tokens.as_ref().map_or(Verdict::Unknown, |t| t.check(token, workload)))
    }

    /// Signs `csr_pem` for `identity`: the leaf certificate PEM followed by the CA's PEM.
    pub fn sign(&self, csr_pem: &str, identity: &SpiffeId) -> Result<String, SignError> {
        // Parsed here first so that an unreadable CSR (400) is told from a wrong identity (403).
        rcgen::CertificateSigningRequestParams::from_pem(csr_pem)
            .map_err(|e| SignError::BadCsr(e.to_string()))?;
        let validity = Validity::for_ttl(self.ttl).map_err(|e| SignError::Failed(e.to_string()))?;
        match self.ca.sign_csr(csr_pem, identity, &validity) {
            Ok(leaf) => {
                let mut out = leaf;
                if !out.ends_with('\n') {
                    out.push('\n');
                }
                out.push_str(self.ca.cert_pem());
                Ok(out)
            }
            Err(pillion_certs::Error::CsrRejected(reason)) => Err(SignError::WrongIdentity(reason)),
            Err(e) => Err(SignError::Failed(e.to_string())),
        }
    }
}

/// Renews the serving certificate in `store` at two thirds of its lifetime, forever.
pub async fn renew_serving_cert(signer: Arc<Signer>, store: Arc<CredentialStore>) {
    loop {
        let creds = store.current();
        let life = (creds.not_after_unix() - creds.not_before_unix()).max(3) as u64;
        let renew_at = creds.not_before_unix() as u64 + life * 2 / 3;
        let now =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
        tokio::time::sleep(Duration::from_secs(renew_at.saturating_sub(now).max(1))).await;
        match signer.serving_credentials() {
            Ok(new) => {
                tracing::info!(not_after = new.not_after_unix(), "renewed the serving certificate");
                store.replace(new);
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot renew the serving certificate; retrying in a minute");
                tokio::time::sleep(Duration::from_secs(60)).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signer(dir: &Path) -> Signer {
        let ca =
            Ca::generate("cluster.local", &Validity::for_ttl(Duration::from_secs(86_400)).unwrap()).unwrap();
        ca.save(&dir.join("ca"), false).unwrap();
        std::fs::write(dir.join("tokens"), format!("web {}\n", tokens::digest_field("s3cret"))).unwrap();
        Signer::load(&dir.join("ca"), Some(&dir.join("tokens")), Duration::from_secs(3600)).unwrap()
    }

    #[test]
    fn signs_only_for_the_named_identity_and_checks_the_token() {
        let dir = tempfile::tempdir().unwrap();
        let s = signer(dir.path());
        assert_eq!(s.identity().as_str(), "spiffe://cluster.local/ns/pillion-system/sa/pillion-control");
        assert_eq!(s.token_count(), 1);
        assert_eq!(s.check_token(Some(b"Bearer s3cret"), "web"), Some(Verdict::Valid));
        assert_eq!(
            s.check_token(Some(b"Bearer s3cret"), "orders"),
            Some(Verdict::WrongWorkload("web".into()))
        );
        assert_eq!(s.check_token(Some(b"Bearer s3cre"), "web"), Some(Verdict::Unknown));
        assert_eq!(s.check_token(Some(b"s3cret"), "web"), None);
        assert_eq!(s.check_token(None, "web"), None);

        let web = SpiffeId::parse("spiffe://cluster.local/ns/shop/sa/web").unwrap();
        let orders = SpiffeId::parse("spiffe://cluster.local/ns/shop/sa/orders").unwrap();
        let req = pillion_certs::create_csr(&web).unwrap();
        let pem = s.sign(&req.csr_pem, &web).unwrap();
        assert_eq!(pem.matches("BEGIN CERTIFICATE").count(), 2);
        assert!(pem.ends_with(s.ca_pem()));
        assert!(matches!(s.sign(&req.csr_pem, &orders), Err(SignError::WrongIdentity(_))));
        assert!(matches!(s.sign("not a csr", &web), Err(SignError::BadCsr(_))));
        assert!(s.serving_credentials().is_ok());
    }

    #[test]
    fn an_old_token_file_stops_the_signer_from_loading() {
        let dir = tempfile::tempdir().unwrap();
        signer(dir.path());
        std::fs::write(dir.path().join("old"), "s3cret\n").unwrap();
        let err =
            Signer::load(&dir.path().join("ca"), Some(&dir.path().join("old")), Duration::from_secs(60))
                .unwrap_err();
        assert!(
            err.to_string().starts_with(&format!("{}:1: a bare token", dir.path().join("old").display()))
        );
        // Without a token file, only certificates renew.
        let s = Signer::load(&dir.path().join("ca"), None, Duration::from_secs(60)).unwrap();
        assert_eq!(s.check_token(Some(b"Bearer s3cret"), "web"), Some(Verdict::Unknown));
    }
}
