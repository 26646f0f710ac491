//! What a client sidecar does with a meshed peer's own `connect-failed` reply (the peer's app is
//! gone, as when a pod stops in a rollout): the request reached no app, so it is tried on another
//! endpoint, policy or not. Only a proxy can say so: an inbound sidecar strips `x-pillion-error`
//! from its app's responses, so an app's own 503 is neither retried nor relabelled. Sidecars on
//! loopback, mTLS between them.

use std::{net::SocketAddr, path::Path};

use pillion_e2e::{
    Backend, Proxy,
    client::curl,
    pki::{Pki, tls_section},
    process::free_addr,
    recorder::{Arrival, Recorder},
};

const WEB: &str = "spiffe://cluster.local/ns/shop/sa/web";
const ORDERS: &str = "spiffe://cluster.local/ns/shop/sa/orders";

/// An inbound sidecar of `orders` in front of `app`; its mTLS address.
fn inbound(certs: &Path, app: SocketAddr) -> (Proxy, SocketAddr) {
    let bind = free_addr();
    let cfg = format!(
        "workload: {{name: orders, identity: \"{ORDERS}\"}}\n{tls}\nadmin: {{bind: \"{{admin}}\"}}\n\
         inbound: {{bind: \"{bind}\", app: \"{app}\", mtls: strict}}\n",
        tls = tls_section(certs),
    );
    (Proxy::start(&cfg), bind)
}

/// A client sidecar whose service `orders` balances round robin over `peers`; its listener.
fn outbound(certs: &Path, peers: &[SocketAddr]) -> (Proxy, SocketAddr) {
    let listener = free_addr();
    let endpoints: Vec<String> =
        peers.iter().map(|p| format!("{{addr: \"{p}\", identity: \"{ORDERS}\"}}")).collect();
    let cfg = format!(
        "workload: {{name: web, identity: \"{WEB}\"}}\n{tls}\nadmin: {{bind: \"{{admin}}\"}}\n\
         inbound: {{bind: \"{inbound}\"}}\noutbound:\n  listeners: [{{bind: \"{listener}\", service: orders}}]\n\
         services:\n  - {{name: orders, lb: round_robin, endpoints: [{endpoints}]}}\n",
        tls = tls_section(certs),
        inbound = free_addr(),
        endpoints = endpoints.join(", "),
    );
    (Proxy::start(&cfg), listener)
}

/// `GET /` through `listener`: status, then the response head and body.
fn get(listener: SocketAddr) -> (u16, String) {
    let out = curl(&["-i", "-m", "10", "-w", "\n%{http_code}", &format!("http://{listener}/")]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (response, code) = text.rsplit_once('\n').unwrap_or(("", &text));
    (code.trim().parse().unwrap_or(0), response.to_owned())
}

#[test]
fn a_peers_connect_failed_reply_is_retried_on_another_endpoint() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path(), "mesh");
    let (web, orders) = (pki.issue("web", WEB, &[]), pki.issue("orders", ORDERS, &[]));
    let app = Backend::start("alive");
    // Nothing listens behind the first peer: its app has stopped.
    let (_gone, gone_peer) = inbound(&orders, free_addr());
    let (_alive, alive_peer) = inbound(&orders, app.addr);
    let (client, listener) = outbound(&web, &[gone_peer, alive_peer]);
    // Round robin sends every other request to the peer without an app first; the outlier
    // detector ejects it after five in a row, so at least five are retried.
    for i in 0..10 {
        let (code, response) = get(listener);
        assert_eq!(code, 200, "request {i}: {response}");
        assert!(response.ends_with("backend alive\n"), "request {i}: {response}");
    }
    let retries = client.metric("pillion_retries_total", &["service=\"orders\""]).unwrap_or(0.0);
    assert!(retries >= 5.0, "retries: {retries}\n{}", client.log());
}

#[test]
fn an_apps_own_x_pillion_error_is_stripped_and_its_503_not_retried() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path(), "mesh");
    let (web, orders) = (pki.issue("web", WEB, &[]), pki.issue("orders", ORDERS, &[]));
    let (first, second) = (Recorder::start(), Recorder::start());
    let forged = b"HTTP/1.1 503 Service Unavailable\r\nx-pillion-error: connect-failed\r\ncontent-length: 4\r\n\r\napp\n";
    for r in [&first, &second] {
        r.respond_with(forged);
    }
    let (_a, a_peer) = inbound(&orders, first.addr);
    let (_b, b_peer) = inbound(&orders, second.addr);
    let (client, listener) = outbound(&web, &[a_peer, b_peer]);
    let (code, response) = get(listener);
    assert_eq!(code, 503, "{response}");
    assert!(response.ends_with("app\n"), "not the app's answer: {response}");
    assert!(!response.to_ascii_lowercase().contains("x-pillion-error"), "{response}");
    // One app got the request, once: nothing was retried.
    let requests = |r: &Recorder| r.take().iter().filter(|a| matches!(a, Arrival::Request(_))).count();
    assert_eq!(requests(&first) + requests(&second), 1);
    assert_eq!(client.metric("pillion_retries_total", &["service=\"orders\""]), None, "{}", client.log());
}
