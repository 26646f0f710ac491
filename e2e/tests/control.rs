//! The mesh run from pillion-control: sidecars get their certificates from it, watch their
//! snapshots, serve pushed routes, survive bad files and outages, and report nacks.

use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use pillion_e2e::{Backend, Proxy, client::HttpClient, control::Control, process::free_addr};

const WEB: &str = "spiffe://cluster.local/ns/shop/sa/web";
const STRICT: &str = "spiffe://cluster.local/ns/shop/sa/strict";

fn mesh_yaml(a: SocketAddr, b: SocketAddr, target: &str) -> String {
    format!(
        r#"services:
  - {{name: orders, lb: round_robin, endpoints: [{{addr: "{a}"}}, {{addr: "{b}"}}]}}
  - {{name: orders-a, endpoints: [{{addr: "{a}"}}]}}
  - {{name: orders-b, endpoints: [{{addr: "{b}"}}]}}
routes:
  - {{name: pinned, match: {{path_prefix: /}}, backends: [{{service: {target}}}]}}
"#
    )
}

fn workloads_yaml() -> String {
    format!(
        r#"workloads:
  - {{name: web, identity: "{WEB}"}}
  - name: strict
    identity: "{STRICT}"
    inbound: {{ports: [{{port: 8080, allow: ["spiffe://cluster.local/ns/shop/*"]}}]}}
"#
    )
}

/// A sidecar for `workload` that gets its certificate and config from `control`, once ready.
fn sidecar(control: &Control, workload: &str, identity: &str, inbound_extra: &str) -> (Proxy, SocketAddr) {
    let (p, l) = sidecar_unready(control, workload, identity, inbound_extra);
    p.wait_ready();
    (p, l)
}

/// The same, returned as soon as its admin port answers.
fn sidecar_unready(
    control: &Control,
    workload: &str,
    identity: &str,
    inbound_extra: &str,
) -> (Proxy, SocketAddr) {
    let certs = tempfile::tempdir().unwrap().keep();
    std::fs::copy(control.pki.ca_pem(), certs.join("ca.pem")).unwrap();
    let listener = free_addr();
    let cfg = format!(
        r#"
workload: {{name: {workload}, identity: "{identity}"}}
tls: {{cert: "{d}/cert.pem", key: "{d}/key.pem", trust: "{d}/ca.pem"}}
control: {{address: "https://{addr}", token_file: "{token}"}}
admin: {{bind: "{{admin}}"}}
inbound: {{bind: "{inbound}"{inbound_extra}}}
outbound:
  listeners: [{{bind: "{listener}", service: orders}}]
"#,
        d = certs.display(),
        addr = control.addr,
        token = control.token_file(workload).display(),
        inbound = free_addr(),
    );
    (Proxy::spawn(&cfg, &[]), listener)
}

async fn backend_of(c: &HttpClient, l: SocketAddr) -> Result<String, String> {
    let r = c.get(l, "/", Some("orders")).await?;
    if r.status() != 200 {
        return Err(format!("status {}", r.status()));
    }
    Ok(r.headers()["x-backend"].to_str().unwrap().to_owned())
}

/// Waits (bounded) until the listener's traffic goes to `want`; returns how long it took.
async fn wait_backend(l: SocketAddr, want: &str) -> Duration {
    let c = HttpClient::http1();
    let start = Instant::now();
    while backend_of(&c, l).await.as_deref() != Ok(want) {
        assert!(start.elapsed() < Duration::from_secs(30), "traffic never went to {want}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    start.elapsed()
}

fn setup() -> (Backend, Backend, Control) {
    let (a, b) = (Backend::start("a"), Backend::start("b"));
    let control = Control::start(
        &[("mesh.yaml", &mesh_yaml(a.addr, b.addr, "orders-a")), ("workloads.yaml", &workloads_yaml())],
        &["web", "strict"],
        "1s",
    );
    (a, b, control)
}

fn status_of<'a>(status: &'a serde_json::Value, workload: &str) -> &'a serde_json::Value {
    status["proxies"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["workload"] == workload)
        .unwrap_or(&serde_json::Value::Null)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sidecars_enroll_then_serve_each_pushed_route_change() {
    let (a, b, control) = setup();
    let sidecars: Vec<_> = (0..3).map(|_| sidecar(&control, "web", WEB, "")).collect();
    for (p, l) in &sidecars {
        wait_backend(*l, "a").await;
        assert!(p.log().contains("workload certificate issued by the control plane"), "{}", p.log());
    }
    control.write("mesh.yaml", &mesh_yaml(a.addr, b.addr, "orders-b"));
    for (i, (_, l)) in sidecars.iter().enumerate() {
        let took = wait_backend(*l, "b").await;
        eprintln!("sidecar {i} served the pushed route after {took:?}");
    }
    let version = control.status()["version"].as_u64().unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while status_of(&control.status(), "web")["acked_version"].as_u64() != Some(version) {
        assert!(Instant::now() < deadline, "never acked: {}", control.status());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for (p, _) in &sidecars {
        assert_eq!(p.metric("pillion_config_version", &[]), Some(version as f64));
        assert!(
            p.metric("pillion_config_updates_total", &["source=\"control\"", "result=\"applied\""]).unwrap()
                >= 2.0
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_pushes_under_load_fail_no_request() {
    let (a, b, control) = setup();
    let (_p, l) = sidecar(&control, "web", WEB, "");
    wait_backend(l, "a").await;
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let workers: Vec<_> = (0..4)
        .map(|_| {
            let (stop, ok, failed) = (stop.clone(), ok.clone(), failed.clone());
            tokio::spawn(async move {
                let c = HttpClient::http1();
                for _ in 0..20_000 {
                    if stop.load(Ordering::Relaxed) && ok.load(Ordering::Relaxed) >= 2_000 {
                        break;
                    }
                    match backend_of(&c, l).await {
                        Ok(_) => ok.fetch_add(1, Ordering::Relaxed),
                        Err(e) => {
                            eprintln!("failed: {e}");
                            failed.fetch_add(1, Ordering::Relaxed)
                        }
                    };
                }
            })
        })
        .collect();
    let targets = ["orders-b", "orders", "orders-a", "orders"];
    for i in 0..20 {
        control.write("mesh.yaml", &mesh_yaml(a.addr, b.addr, targets[i % targets.len()]));
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.await.unwrap();
    }
    assert_eq!(failed.load(Ordering::Relaxed), 0);
    assert!(ok.load(Ordering::Relaxed) >= 2_000, "{} requests", ok.load(Ordering::Relaxed));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_file_is_reported_and_changes_nothing() {
    let (_a, _b, control) = setup();
    let (p, l) = sidecar(&control, "web", WEB, "");
    wait_backend(l, "a").await;
    let before = p.metric("pillion_config_version", &[]);
    control.write("zz-bad.yaml", "services:\n  - name: broken\n    endpoints: [{addr: nowhere}]\n");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let status = control.status();
        let err = &status["config_error"];
        if !err.is_null() {
            assert_eq!(err["file"].as_str().map(|f| f.ends_with("zz-bad.yaml")), Some(true), "{err}");
            assert_eq!((err["line"].as_u64(), err["col"].as_u64()), (Some(3), Some(24)), "{err}");
            break;
        }
        assert!(Instant::now() < deadline, "bad file never reported");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(backend_of(&HttpClient::http1(), l).await.as_deref(), Ok("a"));
    assert_eq!(p.metric("pillion_config_version", &[]), before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traffic_survives_a_control_plane_outage_and_the_proxy_reconnects() {
    let (a, b, mut control) = setup();
    let (p, l) = sidecar(&control, "web", WEB, "");
    wait_backend(l, "a").await;
    control.kill();
    let c = HttpClient::http1();
    for _ in 0..50 {
        assert_eq!(backend_of(&c, l).await.as_deref(), Ok("a"));
    }
    control.write("mesh.yaml", &mesh_yaml(a.addr, b.addr, "orders-b"));
    control.restart();
    wait_backend(l, "b").await;
    assert_eq!(p.metric("pillion_control_connected", &[]), Some(1.0));
    assert!(p.metric("pillion_control_reconnects_total", &[]).unwrap() >= 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_push_the_proxy_cannot_take_is_nacked_with_its_reason() {
    let (_a, _b, control) = setup();
    // This sidecar runs plaintext inbound, so the pushed allow list cannot be enforced.
    let (p, l) = sidecar_unready(&control, "strict", STRICT, ", mtls: disabled");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let s = control.status();
        let me = status_of(&s, "strict");
        if let Some(err) = me["last_error"].as_str() {
            assert!(err.contains("inbound.ports[0].allow"), "{err}");
            break;
        }
        assert!(Instant::now() < deadline, "no nack reported: {s}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Nothing was applied, so the proxy is not ready and its listener has no route.
    assert_eq!(pillion_e2e::client::get_status(p.admin, "/ready"), Some(503));
    let _ = l;
    assert!(
        p.metric("pillion_config_updates_total", &["source=\"control\"", "result=\"rejected\""]).unwrap()
            >= 1.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn short_lived_certificates_are_renewed_before_they_expire() {
    let (_a, _b, mut control) = setup();
    control.set_cert_ttl("9s");
    let (p, l) = sidecar(&control, "web", WEB, "");
    let first = p.metric("pillion_identity_cert_expiry_timestamp_seconds", &[]).unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while p.metric("pillion_identity_cert_expiry_timestamp_seconds", &[]).unwrap() <= first {
        assert!(Instant::now() < deadline, "never renewed:\n{}", p.log());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(p.log().contains("workload certificate renewed"), "{}", p.log());
    // Past the first certificate's expiry, the mesh still works on the renewed one.
    while (std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64())
        < first + 1.0
    {
        assert!(Instant::now() < deadline, "clock never passed the first expiry");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(backend_of(&HttpClient::http1(), l).await.as_deref(), Ok("a"));
    assert_eq!(control.get("/v1/status", None).0, 200);
}
