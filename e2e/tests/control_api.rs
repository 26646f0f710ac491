//! The control plane's API, driven over HTTPS with curl against the real `pillion-control`:
//! a proxy's certificate watches its own workload only, changes arrive as new NDJSON lines, a bad
//! file is reported with file:line:col and changes nothing, certificates are signed only for the
//! caller's own workload identity, acks show in `/v1/status`, and `/metrics` passes promtool.

use std::{
    io::Write,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use pillion_e2e::{
    control::{Control, TOKEN},
    pki::certs,
};

const WEB_ID: &str = "spiffe://cluster.local/ns/shop/sa/web";
const ORDERS_ID: &str = "spiffe://cluster.local/ns/shop/sa/orders";

const SERVICES: &str = "\
services:
  - name: orders
    addresses: [\"orders:80\"]
    endpoints:
      - {addr: \"10.1.0.5:8080\", identity: \"spiffe://cluster.local/ns/shop/sa/orders\"}
routes:
  - name: orders-default
    match: {host: orders}
    backends: [{service: orders}]
";

const WORKLOADS: &str = "\
workloads:
  - name: web
    identity: \"spiffe://cluster.local/ns/shop/sa/web\"
  - name: orders
    identity: \"spiffe://cluster.local/ns/shop/sa/orders\"
    inbound:
      ports:
        - {port: 8080, allow: [\"spiffe://cluster.local/ns/shop/sa/web\"]}
";

fn start() -> Control {
    Control::start(&[("10-services.yaml", SERVICES), ("20-workloads.yaml", WORKLOADS)], "1s")
}

fn ack(control: &Control, cert: &std::path::Path, body: &str) -> u16 {
    let file = control.dir.path().join("ack.json");
    std::fs::write(&file, body).unwrap();
    control.post("/v1/ack", Some(cert), &file, &["-H", "content-type: application/json"]).0
}

fn proxy_entry(status: &serde_json::Value, workload: &str) -> serde_json::Value {
    status["proxies"]
        .as_array()
        .and_then(|list| list.iter().find(|p| p["workload"] == workload))
        .cloned()
        .unwrap_or_else(|| panic!("no {workload} in {status:#}"))
}

#[test]
fn a_proxy_watches_its_own_workload_and_follows_changes() {
    let control = start();
    let web = control.pki.issue("web", WEB_ID, &[]);

    let stream = control.watch("web", "", &web);
    let first = stream.next_snapshot(Duration::from_secs(10)).expect("the current snapshot at once");
    assert_eq!(first["version"], 1);
    assert_eq!(first["services"][0]["name"], "orders");
    assert_eq!(first["routes"][0]["name"], "orders-default");
    assert_eq!(first["inbound"]["ports"], serde_json::json!([]));

    // Another workload's snapshot is not web's to see; an unknown one is 404; no cert is 403.
    let (code, body) = control.get("/v1/watch/orders", Some(&web));
    assert_eq!(code, 403, "{body}");
    assert!(body.contains("\"error\""), "{body}");
    assert_eq!(control.get("/v1/watch/nobody", Some(&web)).0, 404);
    assert_eq!(control.get("/v1/watch/web", None).0, 403);

    // A change written to the directory arrives as a new line.
    let changed = SERVICES.replace("10.1.0.5:8080", "10.1.0.6:8080");
    let written = Instant::now();
    control.write("10-services.yaml", &changed);
    let second = stream.next_snapshot(Duration::from_secs(5)).expect("a line for the change");
    assert!(written.elapsed() < Duration::from_secs(3), "took {:?}", written.elapsed());
    assert_eq!(second["version"], 2);
    assert_eq!(second["services"][0]["endpoints"][0]["addr"], "10.1.0.6:8080");

    // A bad file is reported with file:line:col and the stream does not change.
    control.write(
        "30-bad.yaml",
        "routes:\n  - name: broken\n    backends: [{service: orders}]\n    colour: red\n",
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    let error = loop {
        let status = control.status();
        if !status["config_error"].is_null() {
            assert_eq!(status["version"], 2, "{status:#}");
            break status["config_error"].clone();
        }
        assert!(Instant::now() < deadline, "no config error reported: {status:#}");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(error["file"].as_str().unwrap().ends_with("30-bad.yaml"), "{error:#}");
    assert_eq!((error["line"].as_u64(), error["col"].as_u64()), (Some(4), Some(5)), "{error:#}");
    assert!(error["message"].as_str().unwrap().contains("colour"), "{error:#}");
    let quiet = stream.lines_for(Duration::from_millis(2500));
    assert!(!quiet.is_empty(), "keep-alive lines flow on a quiet stream");
    assert!(quiet.iter().all(|l| l == "{\"keepalive\":true}"), "nothing but keep-alives: {quiet:?}");

    // Fixing it clears the error; no content changed for web, so no new line for it.
    std::fs::remove_file(control.config_dir().join("30-bad.yaml")).unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while !control.status()["config_error"].is_null() {
        assert!(Instant::now() < deadline, "error never cleared");
        std::thread::sleep(Duration::from_millis(100));
    }

    // Resuming at the current version sends nothing at once; an older one gets the current line.
    let epoch = first["epoch"].as_u64().expect("lines carry the epoch");
    let resumed = control.watch("web", &format!("?version=2&epoch={epoch}"), &web);
    let lines = resumed.lines_for(Duration::from_millis(1500));
    assert!(lines.iter().all(|l| l.contains("keepalive")), "{lines:?}");
    let stale = control.watch("web", &format!("?version=1&epoch={epoch}"), &web);
    let other_epoch = control.watch("web", "?version=2&epoch=1", &web);
    assert_eq!(
        other_epoch.next_snapshot(Duration::from_secs(5)).expect("a new epoch sends the line")["version"],
        2
    );
    assert_eq!(stale.next_snapshot(Duration::from_secs(5)).expect("current line")["version"], 2);

    // Acks and nacks show in /v1/status, with the watch's certificate expiry.
    assert_eq!(ack(&control, &web, r#"{"workload":"web","version":2,"error":null}"#), 204);
    assert_eq!(ack(&control, &web, r#"{"workload":"orders","version":2,"error":null}"#), 403);
    let orders = control.pki.issue("orders", ORDERS_ID, &[]);
    let nack = r#"{"workload":"orders","version":1,"error":"routes[0]: unknown service"}"#;
    assert_eq!(ack(&control, &orders, nack), 204);
    let status = control.status();
    let w = proxy_entry(&status, "web");
    assert_eq!(w["connected"], true, "{w:#}");
    assert_eq!(w["acked_version"], 2, "{w:#}");
    assert_eq!(w["version"], 2, "{w:#}");
    assert!(w["cert_expiry"].is_string(), "{w:#}");
    let o = proxy_entry(&status, "orders");
    assert_eq!(o["connected"], false, "{o:#}");
    assert_eq!(o["nacked_version"], 1, "{o:#}");
    assert_eq!(o["last_error"], "routes[0]: unknown service", "{o:#}");
}

#[test]
fn certificates_are_signed_only_for_the_workloads_own_identity() {
    let control = start();
    let dir = control.dir.path();
    let csr_dir = dir.join("web-csr");
    certs(&["csr", "--identity", WEB_ID, "--out", csr_dir.to_str().unwrap()]);
    let csr = csr_dir.join("csr.pem");
    let bearer = format!("Authorization: Bearer {TOKEN}");

    // With the bootstrap token: a cert for web, the CA after it.
    let (code, pem) = control.post("/v1/certificates?workload=web", None, &csr, &["-H", &bearer]);
    assert_eq!(code, 200, "{pem}");
    assert_eq!(pem.matches("-----BEGIN CERTIFICATE-----").count(), 2, "{pem}");
    assert!(pem.ends_with(&std::fs::read_to_string(control.pki.ca_pem()).unwrap()));
    std::fs::write(csr_dir.join("cert.pem"), &pem).unwrap();
    let inspected = certs(&["inspect", csr_dir.join("cert.pem").to_str().unwrap()]);
    assert!(inspected.contains(&format!("identity: {WEB_ID}")), "{inspected}");

    // The signed certificate and the CSR's key are a working identity for web.
    let stream = control.watch("web", "", &csr_dir);
    assert_eq!(stream.next_snapshot(Duration::from_secs(10)).expect("snapshot")["version"], 1);

    // The web CSR for workload orders, a wrong token, no token, a bad CSR.
    let post = |query: &str, extra: &[&str]| control.post(query, None, &csr, extra).0;
    assert_eq!(post("/v1/certificates?workload=orders", &["-H", &bearer]), 403);
    assert_eq!(post("/v1/certificates?workload=web", &["-H", "Authorization: Bearer wrong"]), 403);
    assert_eq!(post("/v1/certificates?workload=web", &[]), 403);
    assert_eq!(post("/v1/certificates?workload=nobody", &["-H", &bearer]), 404);
    let junk = dir.join("junk.pem");
    std::fs::write(&junk, "not a CSR").unwrap();
    let (code, body) = control.post("/v1/certificates?workload=web", None, &junk, &["-H", &bearer]);
    assert_eq!(code, 400, "{body}");

    // A valid web certificate renews web, and cannot get orders (not even with the token).
    let web = control.pki.issue("web", WEB_ID, &[]);
    assert_eq!(control.post("/v1/certificates?workload=web", Some(&web), &csr, &[]).0, 200);
    let orders_dir = dir.join("orders-csr");
    certs(&["csr", "--identity", ORDERS_ID, "--out", orders_dir.to_str().unwrap()]);
    let orders_csr = orders_dir.join("csr.pem");
    let as_web =
        |extra: &[&str]| control.post("/v1/certificates?workload=orders", Some(&web), &orders_csr, extra).0;
    assert_eq!(as_web(&[]), 403);
    assert_eq!(as_web(&["-H", &bearer]), 403);
    // An expired web certificate cannot renew itself (the TLS layer refuses it outright).
    let expired = control.pki.issue("web-expired", WEB_ID, &["--valid-from", "-48h", "--ttl", "24h"]);
    assert_ne!(control.post("/v1/certificates?workload=web", Some(&expired), &csr, &[]).0, 200);
}

#[test]
fn metrics_pass_promtool_and_count_the_api() {
    let control = start();
    let web = control.pki.issue("web", WEB_ID, &[]);
    let stream = control.watch("web", "", &web);
    assert!(stream.next_snapshot(Duration::from_secs(10)).is_some());
    let csr_dir = control.dir.path().join("csr");
    certs(&["csr", "--identity", WEB_ID, "--out", csr_dir.to_str().unwrap()]);
    let bearer = format!("Authorization: Bearer {TOKEN}");
    let (code, _) =
        control.post("/v1/certificates?workload=web", None, &csr_dir.join("csr.pem"), &["-H", &bearer]);
    assert_eq!(code, 200);
    assert_eq!(ack(&control, &web, r#"{"workload":"web","version":1,"error":null}"#), 204);
    assert_eq!(ack(&control, &web, r#"{"workload":"web","version":1,"error":"nope"}"#), 204);
    control.write("bad.yaml", "services: [");

    let deadline = Instant::now() + Duration::from_secs(5);
    let text = loop {
        let (code, text) = control.get("/metrics", None);
        assert_eq!(code, 200);
        if pillion_e2e::process::metric_value(&text, "pillion_control_config_errors_total", &[]) == Some(1.0)
        {
            break text;
        }
        assert!(Instant::now() < deadline, "config error never counted:\n{text}");
        std::thread::sleep(Duration::from_millis(100));
    };
    let value = |name: &str| pillion_e2e::process::metric_value(&text, name, &[]);
    assert_eq!(value("pillion_control_connected_proxies"), Some(1.0), "{text}");
    assert_eq!(value("pillion_control_pushes_total"), Some(1.0), "{text}");
    assert_eq!(value("pillion_control_acks_total"), Some(1.0), "{text}");
    assert_eq!(value("pillion_control_nacks_total"), Some(1.0), "{text}");
    assert_eq!(value("pillion_control_certificates_signed_total"), Some(1.0), "{text}");
    assert_eq!(value("pillion_control_config_version"), Some(1.0), "{text}");

    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool is installed (scripts/setup.sh installs the prometheus package)");
    promtool.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = promtool.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    // A closed stream is no longer counted as connected.
    drop(stream);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (_, text) = control.get("/metrics", None);
        if pillion_e2e::process::metric_value(&text, "pillion_control_connected_proxies", &[]) == Some(0.0) {
            break;
        }
        assert!(Instant::now() < deadline, "stream still counted:\n{text}");
        std::thread::sleep(Duration::from_millis(100));
    }
}
