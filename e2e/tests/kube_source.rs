//! `pillion-control serve --kubernetes` against a real API server: the test writes the objects a
//! kubelet and the EndpointSlice controller would (Pods, Services, EndpointSlices, with their
//! real shapes), and a proxy's watch (`GET /v1/watch/{workload}`) follows them: endpoints added,
//! made not ready, terminating and removed; a workload in another namespace sees a Service only
//! once an annotation names it; the last snapshot keeps serving while the API server is down
//! and changes flow again once it is back; two replicas serve the same snapshot; the directory
//! wins over the cluster.
//!
//! Endpoint addresses are 10.x data only: the API server refuses loopback ones, and nothing here
//! connects to them.

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Namespace;
use kube::{
    Api, Client,
    api::{Patch, PatchParams},
};
use pillion_e2e::{
    control::{Control, WatchStream},
    kube::{
        KubeApi,
        objects::{self, Cluster, NOT_READY, READY, TERMINATING},
    },
};
use serde_json::{Value, json};

/// Generous: a change goes list/watch -> translate -> snapshot in well under a second, but the
/// API server on two shared cores, or a watch resuming after a restart, may take a while.
const WAIT: Duration = Duration::from_secs(90);

/// A namespace with ServiceAccounts and a Pod of each: no controller makes either here.
async fn namespace_with_pods(client: &Client, ns: &str, pods: &[(&str, &str)]) {
    let cluster = Cluster::new(client.clone());
    let mut accounts: Vec<&str> = pods.iter().map(|(_, sa)| *sa).collect();
    accounts.sort();
    accounts.dedup();
    cluster.namespace(ns, &accounts).await.expect("namespace");
    for (name, sa) in pods {
        cluster.pod(ns, name, sa).await.expect("pod");
    }
}

/// Service `orders` (port 80, named `http`, to target port `http`) and its slice `orders-1`.
async fn orders_service(client: &Client, endpoints: Value) {
    let cluster = Cluster::new(client.clone());
    let ports = json!([{"name": "http", "port": 80, "targetPort": "http"}]);
    let svc = cluster.service("shop", "orders", "orders", ports, None).await.expect("service");
    let ports = json!([{"name": "http", "port": 8080, "protocol": "TCP"}]);
    cluster.slice(&svc, "orders-1", ports, endpoints).await.expect("slice");
}

/// An endpoint of Pod `shop/pod` at `ip`, with conditions (ready, serving, terminating).
fn endpoint(ip: &str, pod: &str, conditions: objects::Conditions) -> Value {
    objects::endpoint(ip.parse().expect("an IP"), "shop", pod, conditions)
}

/// Replaces the endpoints of slice `orders-1`.
async fn set_endpoints(client: &Client, endpoints: Value) {
    Cluster::new(client.clone()).set_endpoints("shop", "orders-1", endpoints).await.expect("patch the slice");
}

/// The endpoint addresses of mesh service `name` in a snapshot (`None` if it is not there).
fn endpoints_of(snapshot: &Value, name: &str) -> Option<Vec<String>> {
    let service = snapshot["services"].as_array()?.iter().find(|s| s["name"] == name)?;
    Some(
        service["endpoints"]
            .as_array()?
            .iter()
            .filter_map(|e| e["addr"].as_str().map(str::to_owned))
            .collect(),
    )
}

fn has_endpoints(want: &[&str]) -> impl Fn(&Value) -> bool {
    move |s| endpoints_of(s, "orders.shop:80").is_some_and(|got| got == want)
}

const WEB: &str = "spiffe://cluster.local/ns/shop/sa/web";
const ORDERS: &str = "spiffe://cluster.local/ns/shop/sa/orders";
const UI: &str = "spiffe://cluster.local/ns/front/sa/ui";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoint_slice_changes_reach_the_proxy_and_another_namespace_needs_the_annotation() {
    let Some(kube) = KubeApi::start_or_skip("kube_source::endpoints").await else { return };
    let client = kube.client().await.expect("client");
    let pods = [("orders-a", "orders"), ("orders-b", "orders"), ("orders-c", "orders"), ("web-1", "web")];
    namespace_with_pods(&client, "shop", &pods).await;
    namespace_with_pods(&client, "front", &[("ui-1", "ui")]).await;
    // The second endpoint's Pod does not exist: skipped (and logged), never sent to unverified.
    orders_service(
        &client,
        json!([endpoint("10.1.0.5", "orders-a", READY), endpoint("10.1.0.9", "ghost", READY)]),
    )
    .await;
    let control = Control::start_kubernetes(kube.kubeconfig(), &[]);

    let web = control.watch_published("web.shop", WEB, WAIT);
    let first = control.until(&web, WAIT, "orders' first endpoint", has_endpoints(&["10.1.0.5:8080"]));
    let orders =
        first["services"].as_array().unwrap().iter().find(|s| s["name"] == "orders.shop:80").unwrap();
    assert_eq!(orders["endpoints"][0]["identity"], ORDERS);
    assert_eq!(orders["endpoints"][0]["weight"], 1);
    let addresses: Vec<&str> =
        orders["addresses"].as_array().unwrap().iter().filter_map(Value::as_str).collect();
    assert!(addresses[0].starts_with("10.96.0.") && addresses[0].ends_with(":80"), "{addresses:?}");
    assert_eq!(addresses[1..], ["orders:80", "orders.shop:80", "orders.shop.svc.cluster.local:80"]);
    assert!(control.log().contains("Pod shop/ghost not found"), "{}", control.log());

    // Added, then made not ready, then terminating with a new one ready, then removed.
    let a = |c| endpoint("10.1.0.5", "orders-a", c);
    let b = |c| endpoint("10.1.0.6", "orders-b", c);
    let c = |c| endpoint("10.1.0.7", "orders-c", c);
    set_endpoints(&client, json!([a(READY), b(READY)])).await;
    control.until(&web, WAIT, "a second endpoint", has_endpoints(&["10.1.0.5:8080", "10.1.0.6:8080"]));
    set_endpoints(&client, json!([a(NOT_READY), b(READY)])).await;
    control.until(&web, WAIT, "the not-ready one gone", has_endpoints(&["10.1.0.6:8080"]));
    set_endpoints(&client, json!([a(NOT_READY), b(TERMINATING), c(READY)])).await;
    control.until(&web, WAIT, "the terminating one gone", has_endpoints(&["10.1.0.7:8080"]));
    // With nothing ready, the serving terminating endpoint stands in (as with kube-proxy).
    set_endpoints(&client, json!([b(TERMINATING)])).await;
    control.until(&web, WAIT, "the stand-in", has_endpoints(&["10.1.0.6:8080"]));
    set_endpoints(&client, json!([])).await;
    control.until(&web, WAIT, "no endpoint", has_endpoints(&[]));

    // `ui` in `front` sees nothing of `shop`, until its namespace names the Service.
    let ui = control.watch_published("ui.front", UI, WAIT);
    let first = ui.next_snapshot(WAIT).expect("ui's snapshot");
    assert_eq!(endpoints_of(&first, "orders.shop:80"), None, "{first:#}");
    let annotate = json!({"metadata": {"annotations": {"pillion.io/visible-services": "orders.shop"}}});
    Api::<Namespace>::all(client.clone())
        .patch("front", &PatchParams::default(), &Patch::Merge(annotate))
        .await
        .expect("annotate front");
    control.until(&ui, WAIT, "orders visible to ui", |s| endpoints_of(s, "orders.shop:80").is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_last_snapshot_serves_while_the_api_server_is_down_and_changes_flow_once_it_is_back() {
    let Some(mut kube) = KubeApi::start_or_skip("kube_source::api_down").await else { return };
    let client = kube.client().await.expect("client");
    namespace_with_pods(&client, "shop", &[("orders-a", "orders"), ("orders-b", "orders"), ("web-1", "web")])
        .await;
    orders_service(&client, json!([endpoint("10.1.0.5", "orders-a", READY)])).await;
    let control = Control::start_kubernetes(kube.kubeconfig(), &[]);
    let web = control.watch_published("web.shop", WEB, WAIT);
    let before = control.until(&web, WAIT, "the endpoint", has_endpoints(&["10.1.0.5:8080"]));

    kube.stop_apiserver();
    let deadline = Instant::now() + WAIT;
    while !control.log().contains("watch failed") {
        assert!(Instant::now() < deadline, "the watches never noticed:\n{}", control.log());
        std::thread::sleep(Duration::from_millis(200));
    }
    // A proxy connecting now gets the last good snapshot.
    let late = control.watch_published("web.shop", WEB, WAIT);
    let served = late.next_snapshot(WAIT).expect("a snapshot while the API server is down");
    assert_eq!(served["services"], before["services"]);

    kube.start_apiserver().await.expect("restart the API server");
    set_endpoints(
        &client,
        json!([endpoint("10.1.0.5", "orders-a", READY), endpoint("10.1.0.6", "orders-b", READY)]),
    )
    .await;
    let both = ["10.1.0.5:8080", "10.1.0.6:8080"];
    control.until(&web, WAIT, "the change made after the restart", has_endpoints(&both));
    control.until(&late, WAIT, "the same change on the later stream", has_endpoints(&both));
}

const OVERRIDE: &str = "\
services:
  - name: legacy
    endpoints: [{addr: \"10.2.0.1:80\"}]
routes:
  - name: orders-legacy
    match: {host: orders, path_prefix: /old}
    backends: [{service: legacy}]
";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_serve_the_same_snapshot_with_the_directory_laid_over_the_cluster() {
    let Some(kube) = KubeApi::start_or_skip("kube_source::replicas").await else { return };
    let client = kube.client().await.expect("client");
    namespace_with_pods(&client, "shop", &[("orders-a", "orders"), ("orders-b", "orders"), ("web-1", "web")])
        .await;
    orders_service(&client, json!([endpoint("10.1.0.5", "orders-a", READY)])).await;
    let files = [("override.yaml", OVERRIDE)];
    let replicas = [
        Control::start_kubernetes(kube.kubeconfig(), &files),
        Control::start_kubernetes(kube.kubeconfig(), &files),
    ];
    let streams: Vec<WatchStream> =
        replicas.iter().map(|c| c.watch_published("web.shop", WEB, WAIT)).collect();

    let content =
        |s: &Value| json!({"services": s["services"], "routes": s["routes"], "inbound": s["inbound"]});
    let mut seen = Vec::new();
    for (control, stream) in replicas.iter().zip(&streams) {
        seen.push(content(&control.until(
            stream,
            WAIT,
            "the first endpoint",
            has_endpoints(&["10.1.0.5:8080"]),
        )));
    }
    assert_eq!(seen[0], seen[1], "the replicas differ");
    // The directory's service is visible to the cluster's workload, and its route is served.
    assert_eq!(endpoints_of(&seen[0], "legacy"), Some(vec!["10.2.0.1:80".to_owned()]), "{:#}", seen[0]);
    assert_eq!(seen[0]["routes"][0]["name"], "orders-legacy");

    // The directory wins a name clash: it now defines the cluster's service itself.
    let clash =
        format!("{OVERRIDE}  - name: orders-pinned\n    backends: [{{service: \"orders.shop:80\"}}]\n");
    let clash = clash.replace(
        "services:\n",
        "services:\n  - name: \"orders.shop:80\"\n    endpoints: [{addr: \"10.9.9.9:8080\"}]\n",
    );
    let mut seen = Vec::new();
    for (control, stream) in replicas.iter().zip(&streams) {
        control.write("override.yaml", &clash);
        seen.push(content(&control.until(
            stream,
            WAIT,
            "the directory's orders",
            has_endpoints(&["10.9.9.9:8080"]),
        )));
    }
    assert_eq!(seen[0], seen[1], "the replicas differ");
    set_endpoints(&client, json!([endpoint("10.1.0.6", "orders-b", READY)])).await;
    // Removing the clash hands the service back to the cluster, at its latest state.
    for (control, stream) in replicas.iter().zip(&streams) {
        control.write("override.yaml", OVERRIDE);
        control.until(stream, WAIT, "the cluster's orders again", has_endpoints(&["10.1.0.6:8080"]));
    }
}
