//! `pillion-control serve --kubernetes` on a real API server, with pods that run: network
//! namespaces on a bridge, each with `pillion init` and a sidecar that enrols with the control
//! plane and watches its workload (harness: `pillion_e2e::kube::pods`). The test plays the
//! kubelet and the EndpointSlice controller, writing the Pods (status included), Services and
//! EndpointSlices they would. Apps call a Service's ClusterIP; their sidecar matches the original
//! destination against the service's addresses and balances over the pods behind it, over mTLS.
//!
//! A pod added to a slice takes traffic within 10 s; a rolling replacement of every pod behind a
//! Service fails none of a steady stream of requests; a Service recreated with a new ClusterIP is
//! followed; a change only one workload sees is pushed to that workload alone, and one no
//! snapshot shows to none.

use std::{
    net::{IpAddr, SocketAddr},
    time::{Duration, Instant},
};

use k8s_openapi::api::core::v1::Service;
use pillion_e2e::{
    control::{Control, WatchStream},
    kube::{
        KubeApi,
        objects::{Cluster, READY, TERMINATING, endpoint},
        pods::{KubeMesh, MeshPod},
    },
};
use serde_json::{Value, json};

/// For setting up (the API server and the control plane share two cores with builds).
const WAIT: Duration = Duration::from_secs(90);
/// The correctness bound on a change reaching a sidecar: generous, not a speed claim.
const PROPAGATION: Duration = Duration::from_secs(10);
const ENROLLED: &[&str] = &["orders.shop", "web.shop"];
const WEB: &str = "spiffe://cluster.local/ns/shop/sa/web";
const UI: &str = "spiffe://cluster.local/ns/front/sa/ui";

fn service_ports() -> Value {
    json!([{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}])
}

fn slice_ports() -> Value {
    json!([{"name": "http", "port": 8080, "protocol": "TCP"}])
}

/// The endpoint of a running pod of `shop`, with conditions.
fn ep(pod: &MeshPod, conditions: (bool, bool, bool)) -> Value {
    endpoint(pod.ip(), "shop", &pod.name, conditions)
}

fn cluster_ip(svc: &Service) -> SocketAddr {
    let ip = svc.spec.as_ref().and_then(|s| s.cluster_ip.as_deref()).expect("a ClusterIP");
    SocketAddr::new(ip.parse().expect("an IP"), 80)
}

/// Namespace `shop`: Service `orders` with a slice `orders-1` holding pod `orders-a`, and the
/// client pod `web-1` (no app), once its app gets through to `orders-a` by the ClusterIP.
async fn shop(mesh: &KubeMesh) -> (Service, MeshPod, MeshPod) {
    mesh.cluster.namespace("shop", &["orders", "web"]).await.expect("namespace");
    let a = mesh.pod("shop", "orders-a", "orders", true).await;
    let svc = mesh.cluster.service("shop", "orders", "orders", service_ports(), None).await.expect("service");
    mesh.cluster.slice(&svc, "orders-1", slice_ports(), json!([ep(&a, READY)])).await.expect("slice");
    let web = mesh.pod("shop", "web-1", "web", false).await;
    wait_for_backend(&web, cluster_ip(&svc), "orders-a", WAIT);
    (svc, a, web)
}

/// Calls `to` from `client` until `backend` answers, for up to `limit`.
fn wait_for_backend(client: &MeshPod, to: SocketAddr, backend: &str, limit: Duration) {
    let deadline = Instant::now() + limit;
    loop {
        let got = client.backend_at(to);
        if got.as_deref() == Ok(backend) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{backend} never answered at {to} within {limit:?}; last: {got:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_added_to_the_endpoint_slice_takes_traffic_within_ten_seconds() {
    let Some(mesh) = KubeMesh::start_or_skip("kube_pods::added", ENROLLED).await else { return };
    let (svc, a, web) = shop(&mesh).await;
    let b = mesh.pod("shop", "orders-b", "orders", true).await;
    mesh.cluster.set_endpoints("shop", "orders-1", json!([ep(&a, READY), ep(&b, READY)])).await.unwrap();
    wait_for_backend(&web, cluster_ip(&svc), "orders-b", PROPAGATION);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_replacement_of_every_pod_fails_no_request() {
    let Some(mesh) = KubeMesh::start_or_skip("kube_pods::rolling", ENROLLED).await else { return };
    let (svc, a, web) = shop(&mesh).await;
    let b = mesh.pod("shop", "orders-b", "orders", true).await;
    let c = &mesh.cluster;
    c.set_endpoints("shop", "orders-1", json!([ep(&a, READY), ep(&b, READY)])).await.unwrap();
    wait_for_backend(&web, cluster_ip(&svc), "orders-b", PROPAGATION);

    // Six keep-alive loops, two of requests that take 50 ms at the app: enough that requests
    // meet every step of each replacement, and that a stopping app has some to finish.
    let paths = ["/", "/", "/", "/", "/delay?ms=50", "/delay?ms=50"];
    let load = web.load(cluster_ip(&svc), &paths);
    let mut serving = vec![a, b];
    let mut new_names = Vec::new();
    for next in ["orders-c", "orders-d"] {
        // maxSurge 1, maxUnavailable 0: the new pod is started and ready before an old one goes.
        let new = mesh.pod("shop", next, "orders", true).await;
        new_names.push(new.name.clone());
        let mut old = serving.remove(0);
        serving.push(new);
        let with_old = |old_conditions| {
            let mut list = vec![ep(&old, old_conditions)];
            list.extend(serving.iter().map(|p| ep(p, READY)));
            Value::Array(list)
        };
        c.set_endpoints("shop", "orders-1", with_old(READY)).await.unwrap();
        // minReadySeconds: 1, before the controller goes on.
        std::thread::sleep(Duration::from_secs(1));
        // The old Pod is deleted: the controller marks it terminating while the kubelet stops it.
        c.set_endpoints("shop", "orders-1", with_old(TERMINATING)).await.unwrap();
        log(&format!("{} terminating", old.name));
        old.stop();
        log(&format!("{} stopped", old.name));
        let list: Vec<Value> = serving.iter().map(|p| ep(p, READY)).collect();
        c.set_endpoints("shop", "orders-1", Value::Array(list)).await.unwrap();
        c.delete_pod("shop", &old.name).await.unwrap();
    }
    // Long enough for the last new pod to have its share of a stream of some 100 requests/s.
    std::thread::sleep(Duration::from_secs(2));
    let report = load.finish();
    let total: u64 = report.ok.values().sum();
    eprintln!(
        "rolling: {total} requests answered, by backend {:?}; failures: {:?}",
        report.ok, report.failures
    );
    assert!(report.failures.is_empty(), "{} requests failed: {:#?}", report.failures.len(), report.failures);
    for name in &new_names {
        assert!(report.ok.get(name).is_some_and(|n| *n > 0), "{name} took no traffic: {:?}", report.ok);
    }
    assert!(total >= 100, "too few requests to have tested anything: {total}");
}

/// A timestamped line on the test's stderr, to lay beside the load client's failure times.
fn log(what: &str) {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    eprintln!("{:.3} {what}", now.as_secs_f64());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_recreated_with_a_new_cluster_ip_is_followed() {
    let Some(mesh) = KubeMesh::start_or_skip("kube_pods::recreated", ENROLLED).await else { return };
    let (svc, a, web) = shop(&mesh).await;
    let old_ip = cluster_ip(&svc);
    let c = &mesh.cluster;
    // There is no garbage collector here: the test deletes the slice the Service owned.
    c.delete_service("shop", "orders").await.unwrap();
    c.delete_slice("shop", "orders-1").await.unwrap();
    let new_ip = match old_ip.ip() {
        IpAddr::V4(v4) => {
            let [a0, a1, a2, last] = v4.octets();
            IpAddr::from([a0, a1, a2, if last == 200 { 201 } else { 200 }])
        }
        other => panic!("not an IPv4 ClusterIP: {other}"),
    };
    let svc = c.service("shop", "orders", "orders", service_ports(), Some(new_ip)).await.unwrap();
    c.slice(&svc, "orders-1", slice_ports(), json!([ep(&a, READY)])).await.unwrap();
    let new = cluster_ip(&svc);
    assert_eq!(new.ip(), new_ip);
    wait_for_backend(&web, new, "orders-a", PROPAGATION);
    // The old address is no destination of the mesh any more: the sidecar passes it through,
    // to nowhere (nothing routes 10.96.0.0/24), so no backend answers there.
    let deadline = Instant::now() + PROPAGATION;
    while let Ok(backend) = web.backend_at(old_ip) {
        assert!(Instant::now() < deadline, "{backend} still answers at the old ClusterIP {old_ip}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_only_one_workload_sees_is_pushed_to_that_workload_alone() {
    let Some(kube) = KubeApi::start_or_skip("kube_pods::pushes").await else { return };
    let c = Cluster::new(kube.client().await.expect("client"));
    c.namespace("shop", &["orders", "web"]).await.unwrap();
    c.namespace("front", &["ui"]).await.unwrap();
    // Addresses are data only here: no pod runs behind them.
    let ip = |last: u8| IpAddr::from([10, 1, 0, last]);
    for (ns, pod, sa, last) in
        [("shop", "orders-a", "orders", 5), ("shop", "orders-b", "orders", 6), ("shop", "web-1", "web", 7)]
            .into_iter()
            .chain([("front", "ui-1", "ui", 8)])
    {
        c.running_pod(ns, pod, sa, ip(last)).await.unwrap();
    }
    let orders = c.service("shop", "orders", "orders", service_ports(), None).await.unwrap();
    let one = json!([endpoint(ip(5), "shop", "orders-a", READY)]);
    c.slice(&orders, "orders-1", slice_ports(), one).await.unwrap();
    let control = Control::start_kubernetes(kube.kubeconfig(), &[]);
    let web = control.watch_published("web.shop", WEB, WAIT);
    let ui = control.watch_published("ui.front", UI, WAIT);
    let endpoints = |s: &Value| {
        s["services"].as_array().map_or(0, |l| {
            l.iter()
                .filter(|s| s["name"] == "orders.shop:80")
                .map(|s| s["endpoints"].as_array().map_or(0, Vec::len))
                .sum()
        })
    };
    control.until(&web, WAIT, "orders' endpoint", |s| endpoints(s) == 1);
    let first = ui.next_snapshot(WAIT).expect("ui's first snapshot");
    assert_eq!(endpoints(&first), 0, "ui sees orders: {first:#}");

    // Only `shop` sees `orders`: a second endpoint there.
    let two = json!([endpoint(ip(5), "shop", "orders-a", READY), endpoint(ip(6), "shop", "orders-b", READY)]);
    c.set_endpoints("shop", "orders-1", two).await.unwrap();
    control.until(&web, PROPAGATION, "the second endpoint", |s| endpoints(s) == 2);
    // ui's stream stays open (its keep-alives, one a second, arrive) and carries no snapshot.
    let quiet = |stream: &WatchStream, who: &str| {
        let lines = stream.lines_for(Duration::from_secs(3));
        let keepalives = lines.iter().filter(|l| l.contains("\"keepalive\"")).count();
        assert!(keepalives >= 1, "{who}'s stream went quiet: {lines:?}");
        assert_eq!(keepalives, lines.len(), "{who} was pushed what it does not see: {lines:?}");
    };
    quiet(&ui, "ui");
    // A change no snapshot shows (one more Pod of a ServiceAccount that has Pods) is translated
    // and pushes nothing to anyone.
    let translations = || control.log().matches("cluster translated").count();
    let before = translations();
    c.running_pod("shop", "orders-c", "orders", ip(9)).await.unwrap();
    quiet(&web, "web");
    quiet(&ui, "ui");
    assert!(translations() > before, "the new Pod was never translated:\n{}", control.log());
    // And a change in ui's own namespace does reach it.
    c.service("front", "catalog", "catalog", service_ports(), None).await.unwrap();
    let catalog = |s: &Value| {
        s["services"].as_array().is_some_and(|l| l.iter().any(|s| s["name"] == "catalog.front:80"))
    };
    control.until(&ui, PROPAGATION, "front's new service", catalog);
}
