//! The workload certificate from the control plane: fetched at start when there is no valid one
//! (a CSR authenticated by the bootstrap token), and renewed at two thirds of its lifetime
//! (authenticated by the certificate itself). New files are written where `tls:` points, so the
//! rotation path is the same as for certificates mounted by anything else.

use std::{path::Path, sync::Arc, time::Duration};

use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use pillion_certs::{CredentialPaths, CredentialStore, Credentials, SpiffeId, TrustBundle, pem};

use super::client::{ClientError, ControlClient, read_body};

/// Largest certificate response accepted.
const MAX_CERT_RESPONSE: usize = 64 * 1024;

/// What getting a certificate needs.
#[derive(Debug, Clone)]
pub struct Enrollment {
    /// The control plane.
    pub client: ControlClient,
    /// Our workload name and identity.
    pub workload: String,
    /// The identity to ask for.
    pub identity: SpiffeId,
    /// Where the files go.
    pub paths: CredentialPaths,
    /// The bootstrap token file, if any.
    pub token_file: Option<std::path::PathBuf>,
}

impl Enrollment {
    /// Makes sure valid certificate files exist, asking the control plane (with the bootstrap
    /// token) when they do not.
    pub async fn ensure(&self) -> Result<(), ClientError> {
        match Credentials::load(&self.paths) {
            Ok(c) if c.identity() == &self.identity => return Ok(()),
            Ok(c) => {
                tracing::info!(have = %c.identity(), want = %self.identity, "certificate is for another identity; enrolling")
            }
            Err(e) => {
                tracing::info!(reason = %e, "no usable workload certificate; enrolling with the control plane")
            }
        }
        let bundle = Arc::new(TrustBundle::load(&self.paths.trust)?);
        let tls = pillion_certs::tls::client_config_without_cert(bundle, &self.client.identity)?;
        self.request(self.client.tls_config(&tls)).await
    }

    /// Renews at two thirds of each certificate's lifetime, forever; retries failures with
    /// backoff while the current certificate is still good.
    pub async fn renew_forever(self, store: Arc<CredentialStore>) {
        loop {
            let creds = store.current();
            let (start, end) = (creds.not_before_unix(), creds.not_after_unix());
            // Two thirds into the lifetime; but certificates are backdated for clock skew, so a
            // very short one may already be past that point: then a third of what is left, and
            // never a busy loop.
            let now = unix_now();
            let renew_at = start + (end - start) * 2 / 3;
            let wait = (renew_at - now).max((end - now) / 3).max(1);
            tokio::time::sleep(Duration::from_secs(wait as u64)).await;
            let mut backoff = Duration::from_secs(1);
            loop {
                let result = match pillion_certs::tls::client_config(&store, &self.client.identity) {
                    Ok(tls) => self.request(self.client.tls_config(&tls)).await,
                    Err(e) => Err(e.into()),
                };
                match result.and_then(|()| Credentials::load(&self.paths).map_err(ClientError::from)) {
                    Ok(new) => {
                        tracing::info!(expires = new.not_after_unix(), "workload certificate renewed");
                        store.replace(new);
                        break;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, retry_in = ?backoff, "certificate renewal failed");
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(Duration::from_secs(60));
                    }
                }
            }
        }
    }

    /// Sends a CSR and writes the key and the signed certificate.
    async fn request(&self, tls: Arc<rustls::ClientConfig>) -> Result<(), ClientError> {
        let kc = pillion_certs::create_csr(&self.identity)?;
        let mut req = Request::post(format!("/v1/certificates?workload={}", self.workload))
            .header(http::header::CONTENT_TYPE, "application/pkcs10")
            .body(Full::new(Bytes::from(kc.csr_pem)))
            .map_err(|e| ClientError::Address(e.to_string()))?;
        if let Some(token) = self.token_file.as_deref().and_then(read_token) {
            if let Ok(v) = format!("Bearer {token}").parse() {
                req.headers_mut().insert(http::header::AUTHORIZATION, v);
            }
        }
        let resp = self.client.send(tls, req).await?;
        let body = read_body(resp.into_body(), MAX_CERT_RESPONSE).await;
        // The answer is the leaf, then the CA; the cert file holds the leaf.
        let text = String::from_utf8_lossy(&body);
        let end = "-----END CERTIFICATE-----";
        let leaf = text.find(end).map(|i| &text[..i + end.len()]).ok_or_else(|| ClientError::Status {
            status: 200,
            body: "the certificate response holds no PEM certificate".into(),
        })?;
        pem::write_private(&self.paths.key, kc.key_pem.as_bytes())?;
        pem::write_public(&self.paths.cert, format!("{}\n", leaf.trim()).as_bytes())?;
        tracing::info!(identity = %self.identity, "workload certificate issued by the control plane");
        Ok(())
    }
}

fn read_token(path: &Path) -> Option<String> {
    match std::fs::read_to_string(path) {
        Ok(t) => Some(t.trim().to_owned()),
        Err(e) => {
            tracing::warn!(file = %path.display(), error = %e, "cannot read the bootstrap token");
            None
        }
    }
}

fn unix_now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64)
}
