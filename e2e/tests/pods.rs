//! Transparent interception between pods built from network namespaces (root only; CI runs as
//! root and fails on any skip). Three pods on one bridge:
//!
//! - A (`ns/shop/sa/web`): the client app, `pillion init`, and a sidecar as UID 2102 that knows
//!   B's pod IP:ports as services with B's identity;
//! - B (`ns/shop/sa/orders`): `pillion-e2e-backend` on 8080, a TCP echo on 9000, `pillion init`,
//!   and a strict-mTLS sidecar allowing only `ns/shop/*`;
//! - C: no sidecar, an HTTP server on 8080 that names its client and a server-first service on
//!   2525 (greets on accept, then echoes): destinations A's sidecar does not know.
//!
//! The apps never name a sidecar: they call pod IPs, and iptables does the rest.

use std::{path::Path, time::Duration};

use pillion_e2e::{
    netns::{Network, Pod, PodProcess, give_to_proxy_user, is_root, open_dir, skipped},
    pki::{Pki, tls_section},
    process::metric_value,
    workspace_bin,
};

const WEB: &str = "spiffe://cluster.local/ns/shop/sa/web";
const ORDERS: &str = "spiffe://cluster.local/ns/shop/sa/orders";
/// What C's server-first service says as soon as it accepts.
const GREETING: &str = "220 c.pods.test ESMTP ready";
/// How long a metric gets to show what was done (they are recorded as requests finish).
const METRIC_WAIT: Duration = Duration::from_secs(10);

/// The three pods and what runs in them. Processes are dropped (killed) before their pods.
struct Mesh {
    a_sidecar: PodProcess,
    b_sidecar: PodProcess,
    _b_app: PodProcess,
    b_echo: PodProcess,
    c_http: PodProcess,
    c_smtp: PodProcess,
    a: Pod,
    b: Pod,
    c: Pod,
    _net: Network,
    _certs: tempfile::TempDir,
}

/// Builds the mesh, or reports `test` as skipped when not root.
fn mesh(test: &str) -> Option<Mesh> {
    if !is_root() {
        skipped(test);
        return None;
    }
    let net = Network::new();
    let (a, b, c) = (net.pod("a"), net.pod("b"), net.pod("c"));

    let certs = tempfile::tempdir().expect("temp dir");
    open_dir(certs.path());
    let pki = Pki::new(certs.path(), "mesh");
    let (a_certs, b_certs) = (pki.issue("web", WEB, &[]), pki.issue("orders", ORDERS, &[]));
    for dir in [&a_certs, &b_certs] {
        give_to_proxy_user(dir);
    }

    let backend = workspace_bin("pillion-e2e-backend");
    let app_cmd = b.exec(backend.to_str().expect("utf-8"), &["--listen", "0.0.0.0:8080", "--name", "b"]);
    let mut b_app = b.spawn("backend-8080", app_cmd);
    b.wait_listening(8080, &mut b_app);
    let b_echo = b.tcp_echo(9000, None);
    let c_http = c.http_whoami(8080);
    let c_smtp = c.tcp_echo(2525, Some(GREETING));

    for pod in [&a, &b] {
        pod.pillion_init(&[]);
    }
    let b_sidecar = b.sidecar(&sidecar_b(&b_certs));
    let a_sidecar = a.sidecar(&sidecar_a(&a_certs, &b));
    Some(Mesh {
        a_sidecar,
        b_sidecar,
        _b_app: b_app,
        b_echo,
        c_http,
        c_smtp,
        a,
        b,
        c,
        _net: net,
        _certs: certs,
    })
}

fn sidecar_a(certs: &Path, b: &Pod) -> String {
    let (http, tcp) = (b.addr(8080), b.addr(9000));
    format!(
        r#"
workload: {{name: web, identity: "{WEB}"}}
{tls}
admin: {{bind: "0.0.0.0:15020"}}
inbound: {{bind: "0.0.0.0:15006", mtls: strict}}
outbound: {{bind: "127.0.0.1:15001"}}
services:
  - name: orders
    addresses: ["{http}"]
    connect_timeout: 2s
    endpoints: [{{addr: "{http}", identity: "{ORDERS}"}}]
  - name: orders-echo
    addresses: ["{tcp}"]
    connect_timeout: 2s
    endpoints: [{{addr: "{tcp}", identity: "{ORDERS}"}}]
"#,
        tls = tls_section(certs),
    )
}

fn sidecar_b(certs: &Path) -> String {
    format!(
        r#"
workload: {{name: orders, identity: "{ORDERS}"}}
{tls}
admin: {{bind: "0.0.0.0:15020"}}
inbound:
  bind: "0.0.0.0:15006"
  mtls: strict
  ports:
    - {{port: 8080, allow: ["spiffe://cluster.local/ns/shop/*"]}}
    - {{port: 9000, allow: ["spiffe://cluster.local/ns/shop/*"]}}
outbound: {{bind: "127.0.0.1:15001"}}
"#,
        tls = tls_section(certs),
    )
}

/// Waits until the pod's sidecar reports `want` for the sum of `name{labels}`, then asserts it.
fn assert_metric(pod: &Pod, name: &str, labels: &[&str], want: f64) {
    let deadline = std::time::Instant::now() + METRIC_WAIT;
    let mut text = pod.metrics();
    while metric_value(&text, name, labels) != Some(want) && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
        text = pod.metrics();
    }
    let lines: Vec<&str> = text.lines().filter(|l| l.starts_with(name)).collect();
    assert_eq!(
        metric_value(&text, name, labels),
        Some(want),
        "{name}{labels:?} in {}; its samples:\n{}",
        pod.name(),
        lines.join("\n")
    );
}

fn header<'a>(heads: &'a [(String, String)], name: &str) -> Option<&'a str> {
    heads.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

/// Plain curl from A's app to B's pod IP, HTTP/1.1 then h2c; checks what B's app saw.
fn call_b_over_http(m: &Mesh) {
    let url = format!("http://{}/headers", m.b.addr(8080));
    for (flag, version) in [("--http1.1", "HTTP/1.1"), ("--http2-prior-knowledge", "HTTP/2.0")] {
        let (code, body) = m.a.curl(&[flag, "-H", "x-pillion-client-id: spiffe://evil/forged", &url]);
        assert_eq!(code, 200, "{flag}: {body}");
        let heads: Vec<(String, String)> =
            serde_json::from_str(&body).unwrap_or_else(|e| panic!("{flag}: {e}: {body}"));
        // Only B's sidecar can have put A's verified identity there, replacing the forged one.
        assert_eq!(header(&heads, "x-pillion-client-id"), Some(WEB), "{flag}: {heads:?}");
        assert_eq!(header(&heads, ":version"), Some(version), "{flag}: {heads:?}");
    }
}

/// Bytes from A's app to B's echo port come back.
fn echo_via_b(m: &Mesh) {
    let got = m.a.tcp_talk(m.b.addr(9000), false, "ping through two sidecars");
    assert_eq!(got.as_deref(), Ok("ping through two sidecars\n"));
}

/// A's app calls C, which no sidecar knows; C answers with the client address it saw.
fn call_c_over_http(m: &Mesh) {
    let (code, body) = m.a.curl(&[&format!("http://{}/", m.c.addr(8080))]);
    assert_eq!(code, 200, "{body}");
    assert_eq!(body, format!("peer {}\n", m.a.ip), "C must see A's pod IP");
}

/// A's app connects to C's server-first port and says nothing until greeted.
fn greeted_by_c(m: &Mesh) {
    let got = m.a.tcp_talk(m.c.addr(2525), true, "EHLO a.pods.test");
    assert_eq!(got, Ok(format!("{GREETING}\nEHLO a.pods.test\n")));
}

#[test]
fn app_in_pod_a_calls_pod_b_through_both_sidecars_over_mtls() {
    let Some(m) = mesh("app_in_pod_a_calls_pod_b_through_both_sidecars_over_mtls") else { return };
    call_b_over_http(&m);
    let out = ["direction=\"outbound\"", "service=\"orders\"", "tls=\"true\"", "code=\"200\""];
    assert_metric(&m.a, "pillion_requests_total", &out, 2.0);
    assert_metric(
        &m.b,
        "pillion_requests_total",
        &["direction=\"inbound\"", "tls=\"true\"", "code=\"200\""],
        2.0,
    );
    // Both requests rode one pooled mTLS connection between the sidecars.
    let conns = ["direction=\"inbound\"", "tls=\"true\"", "protocol=\"http\""];
    assert_metric(&m.b, "pillion_tcp_connections_total", &conns, 1.0);
    assert_metric(&m.b, "pillion_tcp_connections_total", &["direction=\"inbound\""], 1.0);
}

#[test]
fn raw_tcp_crosses_both_sidecars() {
    let Some(m) = mesh("raw_tcp_crosses_both_sidecars") else { return };
    echo_via_b(&m);
    let conns = ["direction=\"inbound\"", "tls=\"true\"", "protocol=\"tcp\""];
    assert_metric(&m.b, "pillion_tcp_connections_total", &conns, 1.0);
    assert_metric(
        &m.a,
        "pillion_tcp_connections_total",
        &["direction=\"outbound\"", "protocol=\"tcp\""],
        1.0,
    );
    // B's sidecar, not A's pod, connected to the echo server.
    let log = m.b_echo.log();
    assert!(log.lines().any(|l| l == "peer 127.0.0.1"), "echo server log:\n{log}");
    assert!(!log.contains(&m.a.ip.to_string()), "A reached B's app directly:\n{log}");
}

#[test]
fn unknown_destinations_pass_through() {
    let Some(m) = mesh("unknown_destinations_pass_through") else { return };
    call_c_over_http(&m);
    let out = ["direction=\"outbound\"", "service=\"passthrough\"", "code=\"200\"", "tls=\"false\""];
    assert_metric(&m.a, "pillion_requests_total", &out, 1.0);
    assert!(m.c_http.log().contains("\"GET / HTTP/1.1\" 200"), "C's server log:\n{}", m.c_http.log());
}

#[test]
fn server_first_protocols_work_through_detection() {
    let Some(m) = mesh("server_first_protocols_work_through_detection") else { return };
    greeted_by_c(&m);
    assert_metric(
        &m.a,
        "pillion_tcp_connections_total",
        &["direction=\"outbound\"", "protocol=\"tcp\""],
        1.0,
    );
    let log = m.c_smtp.log();
    assert!(log.lines().any(|l| l == format!("peer {}", m.a.ip)), "C's server log:\n{log}");
}

#[test]
fn the_proxys_own_traffic_is_not_looped() {
    let Some(m) = mesh("the_proxys_own_traffic_is_not_looped") else { return };
    // Five app connections: two HTTP calls and one TCP flow to B, one HTTP call and one
    // server-first TCP flow to C. Each makes the sidecar connect upstream as UID 2102; were
    // those connects redirected, they would come back to its own listener and count again.
    call_b_over_http(&m);
    echo_via_b(&m);
    call_c_over_http(&m);
    greeted_by_c(&m);
    assert_metric(&m.a, "pillion_tcp_connections_total", &["direction=\"outbound\""], 5.0);
    // Nothing came into A. B saw only meshed connections from A's sidecar: one pooled HTTP/2
    // connection for both HTTP calls and one TCP tunnel.
    assert_eq!(
        metric_value(&m.a.metrics(), "pillion_tcp_connections_total", &["direction=\"inbound\""]),
        None
    );
    assert_metric(&m.b, "pillion_tcp_connections_total", &["direction=\"inbound\"", "tls=\"true\""], 2.0);
    assert_metric(&m.b, "pillion_tcp_connections_total", &["direction=\"inbound\""], 2.0);
    for (pod, sidecar) in [(&m.a, &m.a_sidecar), (&m.b, &m.b_sidecar)] {
        let log = sidecar.log();
        let bad: Vec<&str> = log
            .lines()
            .filter(|l| l.contains("ERROR") || l.contains("WARN") || l.contains("not redirected"))
            .collect();
        assert!(bad.is_empty(), "{}'s sidecar complained:\n{}", pod.name(), bad.join("\n"));
    }
}
