//! What a client sidecar does with a meshed peer's own `connect-failed` reply (the peer's app is
//! gone, as when a pod stops in a rollout): the request reached no app, so it is tried on another
//! endpoint, policy or not. Only a proxy can say so: an inbound sidecar strips `x-pillion-error`
//! from its app's responses, so an app's own 503 is neither retried nor relabelled. And a GET
//! that an HTTP/2 upstream's GOAWAY catches unanswered (a server stopping) goes to another
//! endpoint. Sidecars on loopback, mTLS between them.

use std::{
    io::{BufRead, BufReader},
    net::SocketAddr,
    path::Path,
    process::{Child, Command, Stdio},
};

use pillion_e2e::{
    Backend, Proxy,
    client::curl,
    pki::{Pki, tls_section},
    process::{free_addr, free_port, python3},
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

/// `python3 -c GOAWAY_SERVER PORT`: an h2c server that answers every request's arrival with
/// GOAWAY (NO_ERROR, last stream 0: it processed none) and closes, as a server stopping does.
const GOAWAY_SERVER: &str = r#"
import socket, sys, h2.config, h2.connection, h2.events
srv = socket.create_server(("127.0.0.1", int(sys.argv[1])))
print("ready", flush=True)
while True:
    c, _ = srv.accept()
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False))
    conn.initiate_connection()
    c.sendall(conn.data_to_send())
    going = False
    while not going:
        data = c.recv(65536)
        if not data:
            break
        for event in conn.receive_data(data):
            if isinstance(event, h2.events.RequestReceived):
                conn.close_connection(error_code=0, last_stream_id=0)
                going = True
        c.sendall(conn.data_to_send())
    c.close()
"#;

/// The GOAWAY server, killed when dropped.
struct GoawayServer(Child);

impl Drop for GoawayServer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn goaway_server() -> (GoawayServer, SocketAddr) {
    let port = free_port();
    let mut child = Command::new(python3())
        .args(["-c", GOAWAY_SERVER, &port.to_string()])
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3 with h2 (scripts/setup.sh installs python3-h2)");
    let mut line = String::new();
    let stdout = child.stdout.take().expect("piped stdout");
    BufReader::new(stdout).read_line(&mut line).expect("the server's first line");
    assert_eq!(line.trim(), "ready");
    (GoawayServer(child), SocketAddr::from(([127, 0, 0, 1], port)))
}

#[test]
fn a_get_an_upstreams_goaway_catches_unanswered_goes_to_another_endpoint() {
    let (_server, going) = goaway_server();
    let app = Backend::start("alive");
    let listener = free_addr();
    let cfg = format!(
        "workload: {{name: web}}\nadmin: {{bind: \"{{admin}}\"}}\ninbound: {{bind: \"{inbound}\"}}\n\
         outbound:\n  listeners: [{{bind: \"{listener}\", service: orders}}]\nservices:\n\
         \x20 - {{name: orders, protocol: http2, lb: round_robin, endpoints: [{{addr: \"{going}\"}}, {{addr: \"{app}\"}}]}}\n",
        inbound = free_addr(),
        app = app.addr,
    );
    let client = Proxy::start(&cfg);
    for i in 0..6 {
        let (code, response) = get(listener);
        assert_eq!(code, 200, "request {i}: {response}\n{}", client.log());
        assert!(response.ends_with("backend alive\n"), "request {i}: {response}");
    }
    let retries = client.metric("pillion_retries_total", &["service=\"orders\""]).unwrap_or(0.0);
    assert!(retries >= 1.0, "retries: {retries}\n{}", client.log());
}
