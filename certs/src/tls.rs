//! rustls configs for mesh traffic: mTLS inbound, identity-checked outbound.
//!
//! One crypto provider, aws-lc-rs, passed explicitly everywhere (two providers
//! compiled in make rustls' implicit builders panic). TLS 1.3 and 1.2, with the
//! provider's default suites, all of them AEAD (AES-GCM, ChaCha20-Poly1305).
//!
//! Configs built from a [`CredentialStore`] read it at every handshake: our
//! certificate through a resolver, the trust bundle through the verifier. Build
//! them once (a client config per expected peer identity) and keep them; a
//! reload needs no rebuild, and live connections keep the material they started
//! with.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use rustls::client::ResolvesClientCert;
use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::{ClientConfig, ServerConfig, SignatureScheme};
use rustls_pki_types::ServerName;

use crate::bundle::TrustBundle;
use crate::error::Result;
use crate::identity::SpiffeId;
use crate::verify::{SpiffeClientVerifier, SpiffeServerVerifier};
use crate::watch::CredentialStore;

/// ALPN id of HTTP/2.
pub const ALPN_H2: &[u8] = b"h2";
/// ALPN id of HTTP/1.1.
pub const ALPN_HTTP11: &[u8] = b"http/1.1";

const VERSIONS: &[&rustls::SupportedProtocolVersion] = &[&rustls::version::TLS13, &rustls::version::TLS12];

/// The one crypto provider Pillion uses: aws-lc-rs with its default (AEAD-only) suites.
pub fn provider() -> Arc<CryptoProvider> {
    static PROVIDER: OnceLock<Arc<CryptoProvider>> = OnceLock::new();
    PROVIDER.get_or_init(|| Arc::new(rustls::crypto::aws_lc_rs::default_provider())).clone()
}

/// Whether an inbound listener requires a client certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth {
    /// The handshake fails without a valid client certificate (`mtls: strict`).
    Required,
    /// A client certificate is verified if sent, but may be absent; the caller
    /// decides what an anonymous client may do (`mtls: permissive`, bootstrap).
    Optional,
}

/// Serves the store's current certificate to every handshake.
#[derive(Debug, Clone)]
pub struct StoreCertResolver {
    store: Arc<CredentialStore>,
}

impl StoreCertResolver {
    /// A resolver reading `store`.
    pub fn new(store: Arc<CredentialStore>) -> Self {
        StoreCertResolver { store }
    }

    fn current(&self) -> Arc<CertifiedKey> {
        self.store.current().certified_key().clone()
    }
}

impl ResolvesServerCert for StoreCertResolver {
    fn resolve(&self, _client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }
}

impl ResolvesClientCert for StoreCertResolver {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        _sigschemes: &[SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

/// Inbound mTLS config: presents our certificate, verifies client certificates
/// against the current bundle, offers ALPN `h2` and `http/1.1`.
///
/// After the handshake, [`crate::peer_spiffe_id`] on `peer_certificates()` gives
/// the client's identity (None only for an anonymous client in `Optional` mode).
pub fn server_config(store: &Arc<CredentialStore>, client_auth: ClientAuth) -> Result<Arc<ServerConfig>> {
    let verifier = SpiffeClientVerifier::live(store.clone(), client_auth == ClientAuth::Required);
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(VERSIONS)?
        .with_client_cert_verifier(Arc::new(verifier))
        .with_cert_resolver(Arc::new(StoreCertResolver::new(store.clone())));
    config.alpn_protocols = vec![ALPN_H2.to_vec(), ALPN_HTTP11.to_vec()];
    Ok(Arc::new(config))
}

/// Outbound mTLS config: presents our certificate and accepts only a server that
/// chains to the current bundle and is exactly `expected`. ALPN `h2`, then `http/1.1`.
///
/// Cheap to keep: build one per expected identity and cache it (it also holds
/// that peer's session-resumption cache). Connect with [`server_name`].
pub fn client_config(store: &Arc<CredentialStore>, expected: &SpiffeId) -> Result<Arc<ClientConfig>> {
    let verifier = SpiffeServerVerifier::live(store.clone(), expected.clone());
    let mut config = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(VERSIONS)?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_client_cert_resolver(Arc::new(StoreCertResolver::new(store.clone())));
    config.alpn_protocols = vec![ALPN_H2.to_vec(), ALPN_HTTP11.to_vec()];
    // Every peer of one identity is reached under one server name (the trust domain), so the
    // cache needs room for that one name's tickets, not rustls's default of 256 names: that
    // default is allocated up front and, kept per identity, was most of a proxy's memory in a
    // mesh of thousands of identities.
    config.resumption = rustls::client::Resumption::in_memory_sessions(SESSION_NAMES);
    Ok(Arc::new(config))
}

/// Server names a client config's resumption cache holds (see [`client_config`]).
const SESSION_NAMES: usize = 2;

/// Outbound config without a client certificate, verifying the server against a
/// fixed bundle: for bootstrapping (fetching a first certificate from the control
/// plane with a token). ALPN `h2`, then `http/1.1`.
pub fn client_config_without_cert(
    bundle: Arc<TrustBundle>,
    expected: &SpiffeId,
) -> Result<Arc<ClientConfig>> {
    let verifier = SpiffeServerVerifier::new(bundle, expected.clone());
    let mut config = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(VERSIONS)?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    config.alpn_protocols = vec![ALPN_H2.to_vec(), ALPN_HTTP11.to_vec()];
    Ok(Arc::new(config))
}

/// The TLS server name (SNI) to connect with when the peer is `expected`.
///
/// The verifier checks the SPIFFE ID, not this name; the trust domain is sent
/// (when it is a valid DNS name) so that a TLS-aware middlebox sees something meaningful.
pub fn server_name(expected: &SpiffeId) -> ServerName<'static> {
    // The fallback, an IP address, sends no SNI at all.
    ServerName::try_from(expected.trust_domain().to_owned())
        .unwrap_or(ServerName::IpAddress(std::net::Ipv4Addr::LOCALHOST.into()))
}

/// Outbound configs cached per expected peer identity and ALPN offer, all reading one store.
///
/// Endpoints with the same identity share a config (and its resumption cache), so a proxy
/// holds one per identity and protocol, not one per endpoint.
/// The lock is taken when a new connection is set up, not per request.
#[derive(Debug)]
pub struct ClientConfigs {
    store: Arc<CredentialStore>,
    by_identity: Mutex<HashMap<ConfigKey, Arc<ClientConfig>>>,
}

/// A peer identity and the one ALPN protocol offered to it (`None`: h2, then http/1.1).
type ConfigKey = (SpiffeId, Option<&'static [u8]>);

impl ClientConfigs {
    /// An empty cache over `store`.
    pub fn new(store: Arc<CredentialStore>) -> Self {
        ClientConfigs { store, by_identity: Mutex::new(HashMap::new()) }
    }

    /// The config for connecting to `expected`, offering `alpn` only (or, when `None`, h2 then
    /// http/1.1), built on first use.
    pub fn get(&self, expected: &SpiffeId, alpn: Option<&'static [u8]>) -> Result<Arc<ClientConfig>> {
        // A poisoned lock only means another thread panicked mid-insert; the map is still usable.
        let mut map = self.by_identity.lock().unwrap_or_else(|e| e.into_inner());
        let key = (expected.clone(), alpn);
        if let Some(config) = map.get(&key) {
            return Ok(config.clone());
        }
        let mut config = client_config(&self.store, expected)?;
        if let Some(alpn) = alpn {
            let mut one = (*config).clone();
            one.alpn_protocols = vec![alpn.to_vec()];
            config = Arc::new(one);
        }
        map.insert(key, config.clone());
        Ok(config)
    }
}
