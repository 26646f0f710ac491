//! Mutual TLS between two sidecars on loopback: app -> A -> mTLS -> B -> app, identities,
//! authorization, strict mode, bad certificates, rotation, and testssl.sh on the strict port.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    process::Command,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use pillion_e2e::{
    Backend, Proxy,
    client::{HttpClient, curl, curl_status},
    pki::{Pki, tls_section},
    process::free_addr,
    workspace_bin,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const WEB: &str = "spiffe://cluster.local/ns/shop/sa/web";
const ORDERS: &str = "spiffe://cluster.local/ns/shop/sa/orders";
const EVIL: &str = "spiffe://cluster.local/ns/other/sa/evil";

/// Sidecar B in front of an app, strict mTLS, allowing only `ns/shop`.
fn sidecar_b(certs: &Path, app: SocketAddr, protocol: &str) -> (Proxy, SocketAddr) {
    let inbound = free_addr();
    let cfg = format!(
        r#"
workload: {{name: orders, identity: "{ORDERS}"}}
{tls}
admin: {{bind: "{{admin}}"}}
inbound:
  bind: "{inbound}"
  app: "{app}"
  mtls: strict
  ports: [{{port: {port}, protocol: {protocol}, allow: ["spiffe://cluster.local/ns/shop/*"]}}]
"#,
        tls = tls_section(certs),
        port = app.port(),
    );
    (Proxy::start(&cfg), inbound)
}

/// Sidecar A with an explicit listener to B, expecting B to be `expect`.
fn sidecar_a(certs: &Path, b: SocketAddr, expect: &str, protocol: &str) -> (Proxy, SocketAddr) {
    let listener = free_addr();
    let cfg = format!(
        r#"
workload: {{name: web}}
{tls}
admin: {{bind: "{{admin}}"}}
inbound: {{bind: "{inbound}"}}
outbound:
  listeners: [{{bind: "{listener}", service: orders}}]
services:
  - {{name: orders, protocol: {protocol}, connect_timeout: 2s, endpoints: [{{addr: "{b}", identity: "{expect}"}}]}}
"#,
        tls = tls_section(certs),
        inbound = free_addr(),
    );
    (Proxy::start(&cfg), listener)
}

struct Mesh {
    _dir: tempfile::TempDir,
    pki: Pki,
    _app: Backend,
    a: Proxy,
    b: Proxy,
    a_listener: SocketAddr,
    b_inbound: SocketAddr,
    b_certs: PathBuf,
}

fn mesh() -> Mesh {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path(), "mesh");
    let (a_certs, b_certs) = (pki.issue("web", WEB, &[]), pki.issue("orders", ORDERS, &[]));
    let app = Backend::start("orders-app");
    let (b, b_inbound) = sidecar_b(&b_certs, app.addr, "auto");
    let (a, a_listener) = sidecar_a(&a_certs, b_inbound, ORDERS, "auto");
    Mesh { _dir: dir, pki, _app: app, a, b, a_listener, b_inbound, b_certs }
}

fn header<'a>(heads: &'a [(String, String)], name: &str) -> Option<&'a str> {
    heads.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

#[test]
fn http1_and_h2c_cross_both_sidecars_with_the_client_identity() {
    let m = mesh();
    for flag in ["--http1.1", "--http2-prior-knowledge"] {
        let (code, body) = curl_status(&[
            flag,
            "-H",
            "x-pillion-client-id: spiffe://cluster.local/ns/shop/sa/forged",
            &format!("http://{}/headers", m.a_listener),
        ]);
        assert_eq!(code, 200, "{flag}: {body}");
        let heads: Vec<(String, String)> = serde_json::from_str(&body).unwrap();
        assert_eq!(header(&heads, "x-pillion-client-id"), Some(WEB), "{flag}: {heads:?}");
        assert!(header(&heads, "x-pillion-orig-proto").is_none(), "internal header leaked: {heads:?}");
        // The app sees the client's protocol, though the hop between sidecars is HTTP/2.
        let want = if flag == "--http1.1" { "HTTP/1.1" } else { "HTTP/2.0" };
        assert_eq!(header(&heads, ":version"), Some(want));
    }
    assert_eq!(
        m.a.metric("pillion_requests_total", &["direction=\"outbound\"", "tls=\"true\"", "code=\"200\""]),
        Some(2.0)
    );
    assert_eq!(
        m.b.metric("pillion_requests_total", &["direction=\"inbound\"", "tls=\"true\"", "code=\"200\""]),
        Some(2.0)
    );
    // Who called whom, from metrics alone: the inbound side labels the verified caller.
    let from_web = format!("client_id=\"{WEB}\"");
    assert_eq!(m.b.metric("pillion_requests_total", &["direction=\"inbound\"", &from_web]), Some(2.0));
    assert_eq!(
        m.a.metric("pillion_requests_total", &["direction=\"outbound\"", "client_id=\"\""]),
        Some(2.0)
    );
    assert_eq!(
        m.b.metric("pillion_tcp_connections_total", &["direction=\"inbound\"", "tls=\"true\""]),
        Some(1.0),
        "HTTP/1 and h2 app connections share one meshed connection"
    );
    let expiry = m.b.metric("pillion_identity_cert_expiry_timestamp_seconds", &[]).unwrap();
    assert!(expiry > 1.7e9, "{expiry}");
}

#[tokio::test]
async fn raw_tcp_crosses_both_sidecars_over_mtls() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path(), "mesh");
    let echo = pillion_e2e::backend::tcp_echo().await;
    let (b, b_inbound) = sidecar_b(&pki.issue("orders", ORDERS, &[]), echo, "tcp");
    let (_a, a_listener) = sidecar_a(&pki.issue("web", WEB, &[]), b_inbound, ORDERS, "tcp");
    let mut s = tokio::net::TcpStream::connect(a_listener).await.unwrap();
    let msg = b"opaque bytes \x00\x01\x02 through two sidecars";
    s.write_all(msg).await.unwrap();
    s.shutdown().await.unwrap();
    let mut back = Vec::new();
    s.read_to_end(&mut back).await.unwrap();
    assert_eq!(back, msg);
    assert_eq!(b.metric("pillion_tcp_connections_total", &["tls=\"true\"", "protocol=\"tcp\""]), Some(1.0));
}

#[test]
fn an_identity_outside_the_allow_list_gets_403() {
    let m = mesh();
    let evil = m.pki.issue("evil", EVIL, &[]);
    let (_c, c_listener) = sidecar_a(&evil, m.b_inbound, ORDERS, "auto");
    let out = curl(&["-i", &format!("http://{c_listener}/")]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("HTTP/1.1 403"), "{text}");
    assert!(text.contains("x-pillion-error: unauthorized"), "{text}");
    assert_eq!(m.b.metric("pillion_authz_denied_total", &["direction=\"inbound\""]), Some(1.0));
    let from_evil = format!("client_id=\"{EVIL}\"");
    assert_eq!(m.b.metric("pillion_requests_total", &["code=\"403\"", &from_evil]), Some(1.0));
}

#[test]
fn strict_inbound_refuses_plaintext_and_tls_without_a_client_cert() {
    let m = mesh();
    let plain = curl(&["-m", "10", &format!("http://{}/", m.b_inbound)]);
    assert!(!plain.status.success(), "plaintext was served");

    let ca = m.pki.ca_pem();
    let no_cert =
        curl(&["-m", "10", "--cacert", ca.to_str().unwrap(), "-k", &format!("https://{}/", m.b_inbound)]);
    assert!(!no_cert.status.success(), "TLS without a client cert was served");

    let text = s_client(m.b_inbound, &ca, None);
    assert!(text.contains("alert certificate required"), "openssl without a client cert: {text}");
    assert!(!text.contains("HTTP/1.1 200"), "{text}");

    // With the workload's cert, openssl gets an answer (so the refusals above were about the
    // missing client cert, not a broken listener).
    let web = m.pki.issue("web2", WEB, &[]);
    let text = s_client(m.b_inbound, &ca, Some(&web));
    assert!(text.contains("HTTP/1.1 200"), "{text}");
    assert!(m.b.metric("pillion_tls_handshake_errors_total", &[]).unwrap_or(0.0) >= 2.0);
}

fn wait_for_log(p: &Proxy, needle: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !p.log().contains(needle) {
        assert!(Instant::now() < deadline, "log never said {needle:?}:\n{}", p.log());
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn foreign_ca_expired_cert_and_identity_mismatch_each_fail_clearly() {
    let m = mesh();
    // A client certificate from another CA: B refuses the handshake, A answers 503.
    let other = Pki::new(m._dir.path(), "other");
    let (_d, d_listener) = sidecar_a(&other.issue("web", WEB, &[]), m.b_inbound, ORDERS, "auto");
    let (code, _) = curl_status(&[&format!("http://{d_listener}/")]);
    assert_eq!(code, 503);
    wait_for_log(&m.b, "inbound mTLS handshake failed");

    // B must prove it is `payments`; it is `orders`, so A refuses it and names both.
    let web = m.pki.issue("web3", WEB, &[]);
    let payments = "spiffe://cluster.local/ns/shop/sa/payments";
    let (wrong, wrong_listener) = sidecar_a(&web, m.b_inbound, payments, "auto");
    let out = curl(&["-i", &format!("http://{wrong_listener}/")]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("HTTP/1.1 503") && text.contains("connect-failed"), "{text}");
    wait_for_log(&wrong, payments);
    assert!(wrong.log().contains(ORDERS), "the log names the identity presented: {}", wrong.log());

    // An expired certificate: the sidecar refuses to start with it, and says why.
    let expired = m.pki.issue("expired", WEB, &["--valid-from", "-48h", "--ttl", "24h"]);
    let cfg = format!(
        "{}\nadmin: {{bind: \"{}\"}}\ninbound: {{bind: \"{}\"}}\n",
        tls_section(&expired),
        free_addr(),
        free_addr()
    );
    let file = m._dir.path().join("expired.yaml");
    std::fs::write(&file, cfg).unwrap();
    let out = Command::new(workspace_bin("pillion"))
        .args(["run", "--config", file.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("expired"), "{err}");
    // And B refuses an expired client certificate presented directly.
    let text = s_client(m.b_inbound, &m.pki.ca_pem(), Some(&expired));
    assert!(text.contains("alert certificate expired"), "{text}");
    wait_for_log(&m.b, "certificate expired");
}

/// `openssl s_client` sending one GET, optionally with a client certificate; all it printed.
fn s_client(addr: SocketAddr, ca: &Path, client: Option<&Path>) -> String {
    // `timeout` bounds the run should the server never close.
    let mut cmd = Command::new("timeout");
    cmd.args([
        "20",
        "openssl",
        "s_client",
        "-quiet",
        "-connect",
        &addr.to_string(),
        "-CAfile",
        ca.to_str().unwrap(),
    ]);
    if let Some(dir) = client {
        cmd.args([
            "-cert",
            dir.join("cert.pem").to_str().unwrap(),
            "-key",
            dir.join("key.pem").to_str().unwrap(),
        ]);
    }
    let mut child = cmd
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("openssl is installed");
    use std::io::Write;
    let mut stdin = child.stdin.take().unwrap();
    let _ = stdin.write_all(b"GET / HTTP/1.1\r\nHost: orders\r\nConnection: close\r\n\r\n");
    // stdin stays open until s_client exits, which it does when the server closes: after the
    // reply (Connection: close) or after its alert. At EOF on stdin it would quit too early.
    let out = child.wait_with_output().unwrap();
    drop(stdin);
    String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotating_the_server_certificate_under_traffic_fails_no_request() {
    let m = mesh();
    let before = m.b.metric("pillion_identity_cert_expiry_timestamp_seconds", &[]).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let mut workers = Vec::new();
    for _ in 0..2 {
        let (stop, ok, failed, listener) = (stop.clone(), ok.clone(), failed.clone(), m.a_listener);
        workers.push(tokio::spawn(async move {
            let c = HttpClient::http1();
            for _ in 0..50_000 {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                match c.get(listener, "/", None).await {
                    Ok(r) if r.status() == 200 => ok.fetch_add(1, Ordering::Relaxed),
                    other => {
                        eprintln!("failed: {other:?}");
                        failed.fetch_add(1, Ordering::Relaxed)
                    }
                };
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    // A fresh key and certificate, written over B's files (two renames, as a cert manager does).
    let fresh = m.pki.issue("orders-next", ORDERS, &["--ttl", "48h"]);
    for f in ["key.pem", "cert.pem"] {
        let tmp = m.b_certs.join(format!("{f}.tmp"));
        std::fs::copy(fresh.join(f), &tmp).unwrap();
        std::fs::rename(&tmp, m.b_certs.join(f)).unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    while m.b.metric("pillion_identity_cert_expiry_timestamp_seconds", &[]) == Some(before) {
        assert!(Instant::now() < deadline, "rotation never applied:\n{}", m.b.log());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.await.unwrap();
    }
    assert_eq!(failed.load(Ordering::Relaxed), 0);
    assert!(ok.load(Ordering::Relaxed) > 50);
    assert!(m.b.log().contains("workload certificate rotated"));
}

#[test]
fn testssl_finds_no_old_protocol_and_no_non_aead_cipher_on_the_strict_port() {
    let m = mesh();
    let report_dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("testssl");
    std::fs::create_dir_all(&report_dir).unwrap();
    let json = report_dir.join("strict-inbound.json");
    let log = report_dir.join("strict-inbound.log");
    let _ = std::fs::remove_file(&json);
    let _ = std::fs::remove_file(&log);
    let out = Command::new("testssl")
        .args(["--quiet", "--color", "0", "--warnings", "batch", "--protocols", "--std"])
        .args(["--jsonfile", json.to_str().unwrap(), "--logfile", log.to_str().unwrap()])
        .arg(m.b_inbound.to_string())
        .output()
        .expect("testssl is installed (scripts/setup.sh installs testssl.sh)");
    let findings: Vec<serde_json::Value> = serde_json::from_slice(&std::fs::read(&json).unwrap_or_default())
        .unwrap_or_else(|e| {
            panic!("testssl report {json:?} unreadable ({e}): {}", String::from_utf8_lossy(&out.stdout))
        });
    let finding = |id: &str| {
        findings
            .iter()
            .find(|f| f["id"] == id)
            .and_then(|f| f["finding"].as_str())
            .unwrap_or("missing")
            .to_owned()
    };
    for old in ["SSLv2", "SSLv3", "TLS1", "TLS1_1"] {
        assert!(finding(old).starts_with("not offered"), "{old}: {} (report {json:?})", finding(old));
    }
    assert!(finding("TLS1_2").starts_with("offered"), "TLS1_2: {}", finding("TLS1_2"));
    assert!(finding("TLS1_3").starts_with("offered"), "TLS1_3: {}", finding("TLS1_3"));
    for weak in [
        "cipherlist_NULL",
        "cipherlist_aNULL",
        "cipherlist_EXPORT",
        "cipherlist_LOW",
        "cipherlist_3DES_IDEA",
        "cipherlist_AVERAGE",
    ] {
        assert!(finding(weak).starts_with("not offered"), "{weak}: {} (report {json:?})", finding(weak));
    }
    eprintln!("testssl report saved to {} and {}", json.display(), log.display());
}

#[test]
fn permissive_inbound_serves_mtls_and_plaintext_on_one_port() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path(), "mesh");
    let app = Backend::start("orders-app");
    let inbound = free_addr();
    let cfg = format!(
        "{}\nadmin: {{bind: \"{{admin}}\"}}\ninbound: {{bind: \"{inbound}\", app: \"{}\", mtls: permissive}}\n",
        tls_section(&pki.issue("orders", ORDERS, &[])),
        app.addr
    );
    let b = Proxy::start(&cfg);
    // Plaintext: served, and no client identity reaches the app.
    let (code, body) = curl_status(&[&format!("http://{inbound}/headers")]);
    assert_eq!(code, 200, "{body}");
    assert!(!body.contains("x-pillion-client-id"), "{body}");
    // mTLS through a sidecar on the same port: served with the identity.
    let (_a, a_listener) = sidecar_a(&pki.issue("web", WEB, &[]), inbound, ORDERS, "auto");
    let (code, body) = curl_status(&[&format!("http://{a_listener}/headers")]);
    assert_eq!(code, 200, "{body}");
    assert!(body.contains(WEB), "{body}");
    assert_eq!(
        b.metric("pillion_tcp_connections_total", &["direction=\"inbound\"", "tls=\"true\""]),
        Some(1.0)
    );
    assert_eq!(
        b.metric("pillion_tcp_connections_total", &["direction=\"inbound\"", "tls=\"false\""]),
        Some(1.0)
    );
}
