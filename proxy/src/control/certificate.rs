//! The workload certificate from the control plane: fetched at start when there is no valid one
//! (a CSR authenticated by the token in `control.token_file`: a bootstrap token, or a projected
//! ServiceAccount token), and renewed at two thirds of its lifetime
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
    /// The token file (a bootstrap token, or a projected ServiceAccount token), if any; read
    /// on every request.
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
        let token = self.token_file.as_deref().map(read_token).transpose()?;
        let bundle = Arc::new(TrustBundle::load(&self.paths.trust)?);
        let tls = pillion_certs::tls::client_config_without_cert(bundle, &self.client.identity)?;
        self.request(self.client.tls_config(&tls), token).await
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
                // The certificate authenticates a renewal; the token only backs it up.
                let token = self.token_file.as_deref().and_then(|p| read_token(p).ok());
                let result = match pillion_certs::tls::client_config(&store, &self.client.identity) {
                    Ok(tls) => self.request(self.client.tls_config(&tls), token).await,
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
    async fn request(
        &self,
        tls: Arc<rustls::ClientConfig>,
        token: Option<String>,
    ) -> Result<(), ClientError> {
        let kc = pillion_certs::create_csr(&self.identity)?;
        let mut req = Request::post(format!("/v1/certificates?workload={}", self.workload))
            .header(http::header::CONTENT_TYPE, "application/pkcs10")
            .body(Full::new(Bytes::from(kc.csr_pem)))
            .map_err(|e| ClientError::Address(e.to_string()))?;
        if let Some(token) = token {
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

/// The token, read afresh for every request: a projected ServiceAccount token is rewritten by
/// the kubelet as it rotates.
fn read_token(path: &Path) -> Result<String, ClientError> {
    let no_token = |reason: String| {
        tracing::warn!(file = %path.display(), %reason, "no token in control.token_file");
        ClientError::NoToken { path: path.display().to_string(), reason }
    };
    match std::fs::read_to_string(path) {
        Ok(t) if !t.trim().is_empty() => Ok(t.trim().to_owned()),
        Ok(_) => Err(no_token("the file is empty".into())),
        Err(e) => Err(no_token(format!("cannot read it: {e}"))),
    }
}

fn unix_now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64)
}
