//! Real TLS handshakes (tokio-rustls over an in-memory pipe) between the configs of [`crate::tls`].

use std::sync::Arc;

use rustls::{ClientConfig, ServerConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::{TlsAcceptor, TlsConnector};

use crate::testutil::{TestPki, id};
use crate::tls::{self, ClientAuth};
use crate::{CredentialStore, SpiffeId, peer_spiffe_id};

/// What the server saw of a completed handshake.
#[derive(Debug)]
struct ServerView {
    peer: Option<SpiffeId>,
    alpn: Option<Vec<u8>>,
    server_cert_serial: String,
}

/// Runs one connection; returns the server's view (or error) and the client's result.
async fn connect(
    server: Arc<ServerConfig>,
    client: Arc<ClientConfig>,
    expected: &SpiffeId,
) -> (Result<ServerView, String>, Result<(), String>) {
    let (client_io, server_io) = tokio::io::duplex(64 * 1024);
    let server_side = async move {
        let mut tls = TlsAcceptor::from(server).accept(server_io).await.map_err(|e| e.to_string())?;
        let (_, conn) = tls.get_ref();
        let view = ServerView {
            peer: peer_spiffe_id(conn.peer_certificates()),
            alpn: conn.alpn_protocol().map(<[u8]>::to_vec),
            server_cert_serial: String::new(),
        };
        tls.write_all(b"hi").await.map_err(|e| e.to_string())?;
        tls.flush().await.map_err(|e| e.to_string())?;
        Ok::<_, String>(view)
    };
    let name = tls::server_name(expected);
    let client_side = async move {
        let mut tls = TlsConnector::from(client).connect(name, client_io).await.map_err(|e| e.to_string())?;
        let mut buf = [0u8; 2];
        tls.read_exact(&mut buf).await.map_err(|e| e.to_string())?;
        let serial = tls
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|c| c.first())
            .map(|c| crate::CertInfo::parse(c, "server".as_ref()).unwrap().serial)
            .unwrap_or_default();
        Ok::<_, String>(serial)
    };
    let (server_result, client_result) = tokio::join!(server_side, client_side);
    match (server_result, client_result) {
        (Ok(mut view), Ok(serial)) => {
            view.server_cert_serial = serial;
            (Ok(view), Ok(()))
        }
        (s, c) => (s, c.map(|_| ())),
    }
}

struct Pod {
    store: Arc<CredentialStore>,
    id: SpiffeId,
}

fn pod(pki: &TestPki, identity: &str) -> Pod {
    Pod { store: CredentialStore::new(pki.issue(identity)), id: id(identity) }
}

const WEB: &str = "spiffe://cluster.local/ns/shop/sa/web";
const ORDERS: &str = "spiffe://cluster.local/ns/shop/sa/orders";

#[tokio::test]
async fn mutual_tls_works_and_the_server_sees_the_client_identity() {
    let pki = TestPki::new("cluster.local");
    let (web, orders) = (pod(&pki, WEB), pod(&pki, ORDERS));
    let server = tls::server_config(&orders.store, ClientAuth::Required).unwrap();
    let client = tls::client_config(&web.store, &orders.id).unwrap();
    let (server_view, client_result) = connect(server, client, &orders.id).await;
    client_result.unwrap();
    let view = server_view.unwrap();
    assert_eq!(view.peer, Some(web.id));
    assert_eq!(view.alpn.as_deref(), Some(&b"h2"[..]));
}

#[tokio::test]
async fn client_rejects_a_server_with_another_identity() {
    let pki = TestPki::new("cluster.local");
    let (web, orders) = (pod(&pki, WEB), pod(&pki, ORDERS));
    let impostor = id("spiffe://cluster.local/ns/shop/sa/payments");
    let server = tls::server_config(&orders.store, ClientAuth::Required).unwrap();
    let client = tls::client_config(&web.store, &impostor).unwrap();
    let (server_view, client_result) = connect(server, client, &impostor).await;
    let err = client_result.unwrap_err();
    assert!(err.contains("not the expected"), "{err}");
    assert!(server_view.is_err());
}

#[tokio::test]
async fn certificates_from_another_ca_are_rejected_both_ways() {
    let ours = TestPki::new("cluster.local");
    let theirs = TestPki::new("cluster.local");
    let orders = pod(&ours, ORDERS);
    // The rogue client trusts both CAs, so only the server's check can fail.
    let both = format!("{}{}", ours.ca.cert_pem(), theirs.ca.cert_pem());
    let both = Arc::new(crate::TrustBundle::from_pem(both.as_bytes(), "both.pem".as_ref()).unwrap());
    let issued = theirs.ca.issue(&id(WEB), &crate::testutil::day()).unwrap();
    let rogue_creds = crate::Credentials::from_pem(
        issued.cert_pem.as_bytes(),
        issued.key_pem.as_bytes(),
        both,
        crate::TimeCheck::Now,
    )
    .unwrap();
    let rogue = CredentialStore::new(rogue_creds);

    // A rogue client against our server.
    let server = tls::server_config(&orders.store, ClientAuth::Required).unwrap();
    let client = tls::client_config(&rogue, &orders.id).unwrap();
    let (server_view, client_result) = connect(server, client, &orders.id).await;
    let err = server_view.unwrap_err();
    assert!(err.contains("invalid peer certificate"), "{err}");
    assert!(client_result.is_err());

    // Our client against a rogue server claiming the right identity.
    let rogue_orders = pod(&theirs, ORDERS);
    let web = pod(&ours, WEB);
    let server = tls::server_config(&rogue_orders.store, ClientAuth::Required).unwrap();
    let client = tls::client_config(&web.store, &orders.id).unwrap();
    let (_, client_result) = connect(server, client, &orders.id).await;
    let err = client_result.unwrap_err();
    assert!(err.contains("invalid peer certificate"), "{err}");
}

#[tokio::test]
async fn optional_client_auth_admits_anonymous_clients_and_strict_does_not() {
    let pki = TestPki::new("cluster.local");
    let orders = pod(&pki, ORDERS);
    let anonymous = tls::client_config_without_cert(pki.bundle(), &orders.id).unwrap();

    let permissive = tls::server_config(&orders.store, ClientAuth::Optional).unwrap();
    let (server_view, client_result) = connect(permissive, anonymous.clone(), &orders.id).await;
    client_result.unwrap();
    assert_eq!(server_view.unwrap().peer, None);

    let strict = tls::server_config(&orders.store, ClientAuth::Required).unwrap();
    let (server_view, client_result) = connect(strict, anonymous, &orders.id).await;
    assert!(server_view.is_err());
    assert!(client_result.is_err());
}

#[tokio::test]
async fn new_handshakes_use_replaced_credentials_without_rebuilding_configs() {
    let pki = TestPki::new("cluster.local");
    let (web, orders) = (pod(&pki, WEB), pod(&pki, ORDERS));
    let server = tls::server_config(&orders.store, ClientAuth::Required).unwrap();
    // Without resumption, so that the second handshake sends a certificate at all.
    let mut client = (*tls::client_config(&web.store, &orders.id).unwrap()).clone();
    client.resumption = rustls::client::Resumption::disabled();
    let client = Arc::new(client);
    let (first, _) = connect(server.clone(), client.clone(), &orders.id).await;
    let renewed = pki.issue(ORDERS);
    let renewed_serial = renewed.cert_info().serial.clone();
    orders.store.replace(renewed);
    let (second, _) = connect(server, client, &orders.id).await;
    let (first, second) = (first.unwrap(), second.unwrap());
    assert_ne!(first.server_cert_serial, second.server_cert_serial);
    assert_eq!(second.server_cert_serial, renewed_serial);
}

#[tokio::test]
async fn a_client_preferring_http1_gets_http1() {
    let pki = TestPki::new("cluster.local");
    let (web, orders) = (pod(&pki, WEB), pod(&pki, ORDERS));
    let server = tls::server_config(&orders.store, ClientAuth::Required).unwrap();
    let mut client = (*tls::client_config(&web.store, &orders.id).unwrap()).clone();
    client.alpn_protocols = vec![tls::ALPN_HTTP11.to_vec()];
    let (view, _) = connect(server, Arc::new(client), &orders.id).await;
    assert_eq!(view.unwrap().alpn.as_deref(), Some(tls::ALPN_HTTP11));
}

#[tokio::test]
async fn tls12_handshakes_also_verify_identities() {
    let pki = TestPki::new("cluster.local");
    let (web, orders) = (pod(&pki, WEB), pod(&pki, ORDERS));
    let server = tls::server_config(&orders.store, ClientAuth::Required).unwrap();
    let tls12_client = |expected: &SpiffeId| {
        let verifier = crate::SpiffeServerVerifier::live(web.store.clone(), expected.clone());
        let config = ClientConfig::builder_with_provider(tls::provider())
            .with_protocol_versions(&[&rustls::version::TLS12])
            .unwrap()
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(verifier))
            .with_client_cert_resolver(Arc::new(tls::StoreCertResolver::new(web.store.clone())));
        Arc::new(config)
    };
    let (view, client_result) = connect(server.clone(), tls12_client(&orders.id), &orders.id).await;
    client_result.unwrap();
    assert_eq!(view.unwrap().peer, Some(web.id.clone()));
    let other = id("spiffe://cluster.local/ns/shop/sa/payments");
    let (_, client_result) = connect(server, tls12_client(&other), &other).await;
    assert!(client_result.unwrap_err().contains("not the expected"));
}

#[test]
fn client_configs_are_cached_per_identity() {
    let pki = TestPki::new("cluster.local");
    let web = pod(&pki, WEB);
    let cache = tls::ClientConfigs::new(web.store.clone());
    let a = cache.get(&id(ORDERS), None).unwrap();
    let b = cache.get(&id(ORDERS), None).unwrap();
    let c = cache.get(&id("spiffe://cluster.local/ns/shop/sa/payments"), None).unwrap();
    assert!(Arc::ptr_eq(&a, &b));
    assert!(!Arc::ptr_eq(&a, &c));
    let h2 = cache.get(&id(ORDERS), Some(tls::ALPN_H2)).unwrap();
    assert!(Arc::ptr_eq(&h2, &cache.get(&id(ORDERS), Some(tls::ALPN_H2)).unwrap()));
    assert!(!Arc::ptr_eq(&h2, &a));
    assert_eq!(h2.alpn_protocols, vec![tls::ALPN_H2.to_vec()]);
}
