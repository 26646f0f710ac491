//! Mutual TLS for the proxy: the workload's live credentials (reloaded when their files change),
//! the inbound acceptor, and per-endpoint outbound client configs that check the peer's SPIFFE ID.

use std::{sync::Arc, time::Duration};

use pillion_certs::{
    ClientAuth, ClientConfigs, CredentialPaths, CredentialStore, CredentialWatcher, SpiffeId,
    tls as certs_tls,
};
use rustls::{ClientConfig, ServerConfig};
use rustls_pki_types::ServerName;

use crate::metrics::Metrics;
use pillion_config::schema;

/// ALPN a sidecar offers when it tunnels opaque TCP to a peer sidecar over mTLS.
pub const ALPN_TCP: &[u8] = b"pillion/tcp";

/// How often the certificate files are checked for a rotation.
const WATCH_EVERY: Duration = Duration::from_secs(1);

/// The workload's TLS material and the configs built on it. Configs read the store at every
/// handshake, so a rotation reaches new connections without rebuilding anything.
#[derive(Debug)]
pub struct Tls {
    /// The live credentials.
    pub store: Arc<CredentialStore>,
    /// Inbound: client certificate required.
    pub server: Arc<ServerConfig>,
    clients: ClientConfigs,
}

/// What an outbound connection to a meshed endpoint needs.
#[derive(Debug, Clone)]
pub struct TlsTarget {
    /// Client config offering one ALPN protocol (h2 for the HTTP/2 pool, http/1.1 otherwise).
    pub config: Arc<ClientConfig>,
    /// SNI to send.
    pub server_name: ServerName<'static>,
    /// The identity the endpoint must prove.
    pub identity: SpiffeId,
}

impl Tls {
    /// Loads and cross-checks the files, and starts watching them for rotation.
    pub fn start(paths: &schema::Tls, metrics: &Metrics) -> Result<Arc<Self>, pillion_certs::Error> {
        let paths = CredentialPaths {
            cert: paths.cert.clone().into(),
            key: paths.key.clone().into(),
            trust: paths.trust.clone().into(),
        };
        let (store, watcher) = CredentialWatcher::start(paths)?;
        let creds = store.current();
        metrics.cert_expiry.set(creds.not_after_unix() as f64);
        tracing::info!(identity = %creds.identity(), expires = creds.not_after_unix(), "workload certificate loaded");
        let expiry = metrics.cert_expiry.clone();
        tokio::spawn(watcher.run(WATCH_EVERY, move |result| match result {
            Ok(creds) => {
                expiry.set(creds.not_after_unix() as f64);
                tracing::info!(identity = %creds.identity(), expires = creds.not_after_unix(), "workload certificate rotated");
            }
            Err(e) => tracing::error!(error = %e, "new certificate files rejected; keeping the current ones"),
        }));
        let mut server = (*certs_tls::server_config(&store, ClientAuth::Required)?).clone();
        server.alpn_protocols.push(ALPN_TCP.to_vec());
        let tls = Arc::new(Self {
            server: Arc::new(server),
            clients: ClientConfigs::new(Arc::clone(&store)),
            store,
        });
        tokio::spawn(warn_near_expiry(Arc::clone(&tls)));
        Ok(tls)
    }

    /// Outbound TLS for an endpoint that must be `identity`, offering `alpn` only.
    pub fn target(
        &self,
        identity: &SpiffeId,
        alpn: &'static [u8],
    ) -> Result<TlsTarget, pillion_certs::Error> {
        Ok(TlsTarget {
            config: self.clients.get(identity, Some(alpn))?,
            server_name: certs_tls::server_name(identity),
            identity: identity.clone(),
        })
    }
}

/// Logs a warning once an hour while less than a third of the certificate's life is left.
async fn warn_near_expiry(tls: Arc<Tls>) {
    loop {
        let creds = tls.store.current();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        let (start, end) = (creds.not_before_unix(), creds.not_after_unix());
        let left = end - now;
        if left < (end - start) / 3 {
            tracing::warn!(identity = %creds.identity(), seconds_left = left, "workload certificate expires soon");
        }
        tokio::time::sleep(Duration::from_secs(3600).min(Duration::from_secs(left.max(60) as u64))).await;
    }
}
