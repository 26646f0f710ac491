//! The control plane's API, driven over HTTPS with curl against the real `pillion-control`:
//! a proxy's certificate watches its own workload only, changes arrive as new NDJSON lines, a bad
//! file is reported with file:line:col and changes nothing, certificates are signed only for the
//! caller's own workload identity (a bootstrap token enrols its own workload only, refusals are
//! counted), the old one-shared-token file stops the control plane at start, acks show in
//! `/v1/status`, and `/metrics` passes promtool.

use std::{
    io::Write,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use pillion_e2e::{
    control::{Control, make_token, serve_refused},
    pki::certs,
    process::metric_value,
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
    Control::start(
        &[("10-services.yaml", SERVICES), ("20-workloads.yaml", WORKLOADS)],
        &["web", "orders"],
        "1s",
    )
}

/// `pillion_control_certificate_refusals_total{reason="REASON"}` now.
fn refusals(control: &Control, reason: &str) -> f64 {
    let (code, text) = control.get("/metrics", None);
    assert_eq!(code, 200, "{text}");
    let label = format!("reason=\"{reason}\"");
    metric_value(&text, "pillion_control_certificate_refusals_total", &[&label])
        .unwrap_or_else(|| panic!("no {reason} refusals series:\n{text}"))
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
    let web_token = control.bearer("web");
    let web_token: Vec<&str> = web_token.iter().map(String::as_str).collect();

    // With web's bootstrap token: a cert for web, the CA after it.
    let (code, pem) = control.post("/v1/certificates?workload=web", None, &csr, &web_token);
    assert_eq!(code, 200, "{pem}");
    assert_eq!(pem.matches("-----BEGIN CERTIFICATE-----").count(), 2, "{pem}");
    assert!(pem.ends_with(&std::fs::read_to_string(control.pki.ca_pem()).unwrap()));
    std::fs::write(csr_dir.join("cert.pem"), &pem).unwrap();
    let inspected = certs(&["inspect", csr_dir.join("cert.pem").to_str().unwrap()]);
    assert!(inspected.contains(&format!("identity: {WEB_ID}")), "{inspected}");

    // The signed certificate and the CSR's key are a working identity for web.
    let stream = control.watch("web", "", &csr_dir);
    assert_eq!(stream.next_snapshot(Duration::from_secs(10)).expect("snapshot")["version"], 1);

    // Each refusal is a 403 (or 400/404) and is counted under its reason.
    let orders_dir = dir.join("orders-csr");
    certs(&["csr", "--identity", ORDERS_ID, "--out", orders_dir.to_str().unwrap()]);
    let orders_csr = orders_dir.join("csr.pem");
    let refused = |reason: &str, code: u16, query: &str, body: &std::path::Path, extra: &[&str]| {
        let before = refusals(&control, reason);
        let (got, text) = control.post(query, None, body, extra);
        assert_eq!(got, code, "{reason}: {text}");
        assert!(text.contains("\"error\""), "{text}");
        assert_eq!(refusals(&control, reason), before + 1.0, "{reason} counted once");
        text
    };
    // Web's token cannot get orders' identity, with orders' CSR or web's; nor can a web CSR
    // get through under orders' own token.
    let text = refused("wrong-workload", 403, "/v1/certificates?workload=orders", &orders_csr, &web_token);
    assert!(!text.contains(control.token("web")), "{text}");
    refused("wrong-workload", 403, "/v1/certificates?workload=orders", &csr, &web_token);
    let orders_token = control.bearer("orders");
    let orders_token: Vec<&str> = orders_token.iter().map(String::as_str).collect();
    refused("csr-identity", 403, "/v1/certificates?workload=orders", &csr, &orders_token);
    let (code, pem) = control.post("/v1/certificates?workload=orders", None, &orders_csr, &orders_token);
    assert_eq!(code, 200, "{pem}");
    // A token that is in no line of the file, a well-formed one included; no credentials at all.
    let (stranger, _) = make_token("web");
    let stranger = format!("Authorization: Bearer {stranger}");
    refused("bad-token", 403, "/v1/certificates?workload=web", &csr, &["-H", &stranger]);
    refused("bad-token", 403, "/v1/certificates?workload=web", &csr, &["-H", "Authorization: Bearer wrong"]);
    refused("no-credentials", 403, "/v1/certificates?workload=web", &csr, &[]);
    refused("unknown-workload", 404, "/v1/certificates?workload=nobody", &csr, &web_token);
    let junk = dir.join("junk.pem");
    std::fs::write(&junk, "not a CSR").unwrap();
    refused("bad-csr", 400, "/v1/certificates?workload=web", &junk, &web_token);
    // The log says whose token was misused; the caller was not told.
    assert!(control.log().contains("token_of=web"), "{}", control.log());

    // A valid web certificate renews web, and cannot get orders (not even with orders' token).
    let web = control.pki.issue("web", WEB_ID, &[]);
    assert_eq!(control.post("/v1/certificates?workload=web", Some(&web), &csr, &[]).0, 200);
    let before = refusals(&control, "wrong-identity");
    let as_web =
        |extra: &[&str]| control.post("/v1/certificates?workload=orders", Some(&web), &orders_csr, extra).0;
    assert_eq!(as_web(&[]), 403);
    assert_eq!(as_web(&orders_token), 403);
    assert_eq!(refusals(&control, "wrong-identity"), before + 2.0);
    // An expired web certificate cannot renew itself (the TLS layer refuses it outright).
    let expired = control.pki.issue("web-expired", WEB_ID, &["--valid-from", "-48h", "--ttl", "24h"]);
    assert_ne!(control.post("/v1/certificates?workload=web", Some(&expired), &csr, &[]).0, 200);
}

#[test]
fn the_old_one_shared_token_file_stops_the_control_plane_at_start() {
    let (status, stderr, file) = serve_refused("# the mesh's token\ntest-bootstrap-token\n");
    assert!(!status.success(), "{status}");
    let want =
        format!("{}:2: a bare token (the old one-shared-token form) is no longer accepted", file.display());
    assert!(stderr.contains(&want), "{stderr}");
    assert!(stderr.contains("pillion-control token --workload"), "{stderr}");
    assert!(!stderr.contains("test-bootstrap-token"), "the secret is not repeated: {stderr}");

    // A raw token where the digest goes, and one token for two workloads, are refused too.
    let (status, stderr, file) = serve_refused("web s3cret\n");
    assert!(!status.success());
    assert!(
        stderr.contains(&format!("{}:1: the second field must be `sha256:`", file.display())),
        "{stderr}"
    );
    let (_, line) = make_token("web");
    let digest = line.lines().last().unwrap().split_once(' ').unwrap().1.to_owned();
    let (status, stderr, file) = serve_refused(&format!("{line}orders {digest}\n"));
    assert!(!status.success());
    let at = line.lines().count() + 1;
    assert!(
        stderr.contains(&format!("{}:{at}: the same token digest is already on line", file.display())),
        "{stderr}"
    );
}

#[test]
fn metrics_pass_promtool_and_count_the_api() {
    let control = start();
    let web = control.pki.issue("web", WEB_ID, &[]);
    let stream = control.watch("web", "", &web);
    assert!(stream.next_snapshot(Duration::from_secs(10)).is_some());
    let csr_dir = control.dir.path().join("csr");
    certs(&["csr", "--identity", WEB_ID, "--out", csr_dir.to_str().unwrap()]);
    let bearer = control.bearer("web");
    let bearer: Vec<&str> = bearer.iter().map(String::as_str).collect();
    let (code, _) = control.post("/v1/certificates?workload=web", None, &csr_dir.join("csr.pem"), &bearer);
    assert_eq!(code, 200);
    let (code, _) = control.post("/v1/certificates?workload=orders", None, &csr_dir.join("csr.pem"), &bearer);
    assert_eq!(code, 403);
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
    let refused = |reason: &str| {
        let label = format!("reason=\"{reason}\"");
        metric_value(&text, "pillion_control_certificate_refusals_total", &[&label])
    };
    assert_eq!(refused("wrong-workload"), Some(1.0), "{text}");
    // Every reason is exported before its first refusal.
    assert_eq!(refused("bad-token"), Some(0.0), "{text}");
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
