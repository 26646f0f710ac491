//! Gateway API routes (the GAMMA mesh profile: `parentRefs` naming a Service) through
//! `pillion-control serve --kubernetes` against a real API server with the published CRDs: an
//! HTTPRoute's weights reach a proxy's snapshot, a change to them shifts the split there and
//! deleting it takes it out; a GRPCRoute's method becomes a path; what Pillion cannot honour is
//! reported on the route's `status.parents` (read back from the API server) and left out of the
//! snapshot, and other controllers' entries there are kept. One test sends traffic through a
//! real sidecar: the directory lays loopback backends over the two Services (the API server
//! refuses loopback endpoints), and the cluster's route splits between them.
//!
//! Endpoint addresses are 10.x data only: nothing here connects to them.

use std::time::{Duration, Instant};

use k8s_openapi::{
    api::{
        core::v1::{Namespace, Pod, Service, ServiceAccount},
        discovery::v1::EndpointSlice,
    },
    serde::{Deserialize, Serialize, de::DeserializeOwned},
};
use kube::{
    Api, Client,
    api::{ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams, PostParams},
};
use pillion_e2e::{Backend, Proxy, client::HttpClient, control::Control, kube::KubeApi, process::free_addr};
use serde_json::{Value, json};

/// Generous: the API server and the control plane share two cores with builds.
const WAIT: Duration = Duration::from_secs(90);
const WEB: &str = "spiffe://cluster.local/ns/shop/sa/web";
const CONTROLLER: &str = "pillion.io/mesh";

async fn create<K>(api: &Api<K>, value: Value)
where
    K: Clone + DeserializeOwned + Serialize + std::fmt::Debug,
{
    let object: K = serde_json::from_value(value).expect("a valid object");
    api.create(&PostParams::default(), &object).await.unwrap_or_else(|e| panic!("create {object:?}: {e}"));
}

/// Namespace `shop`: Pods of `orders` and `web`, Services `orders` and `orders-v2` (port 80),
/// each with a slice of one ready endpoint.
async fn shop(client: &Client) {
    create(&Api::<Namespace>::all(client.clone()), json!({"metadata": {"name": "shop"}})).await;
    let accounts = Api::<ServiceAccount>::namespaced(client.clone(), "shop");
    let pods = Api::<Pod>::namespaced(client.clone(), "shop");
    for sa in ["orders", "web"] {
        create(&accounts, json!({"metadata": {"name": sa}})).await;
    }
    for (pod, sa) in [("orders-a", "orders"), ("orders-v2-a", "orders"), ("web-1", "web")] {
        create(
            &pods,
            json!({"metadata": {"name": pod}, "spec": {"serviceAccountName": sa,
                   "containers": [{"name": "app", "image": "example.com/app:1"}]}}),
        )
        .await;
    }
    for (service, pod, ip) in [("orders", "orders-a", "10.1.0.5"), ("orders-v2", "orders-v2-a", "10.1.0.6")] {
        create(
            &Api::<Service>::namespaced(client.clone(), "shop"),
            json!({"metadata": {"name": service},
                   "spec": {"ports": [{"name": "http", "port": 80, "targetPort": "http"}]}}),
        )
        .await;
        create(
            &Api::<EndpointSlice>::namespaced(client.clone(), "shop"),
            json!({"metadata": {"name": format!("{service}-1"), "labels": {"kubernetes.io/service-name": service}},
                   "addressType": "IPv4", "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
                   "endpoints": [{"addresses": [ip], "targetRef": {"kind": "Pod", "name": pod, "namespace": "shop"},
                                  "conditions": {"ready": true, "serving": true, "terminating": false}}]}),
        )
        .await;
    }
}

fn routes_api(client: &Client, kind: &str) -> Api<DynamicObject> {
    let resource = ApiResource::from_gvk(&GroupVersionKind::gvk("gateway.networking.k8s.io", "v1", kind));
    Api::namespaced_with(client.clone(), "shop", &resource)
}

/// A route of `kind` attached to Service `orders` port 80.
fn mesh_route(kind: &str, name: &str, rules: Value) -> Value {
    json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": kind, "metadata": {"name": name},
           "spec": {"parentRefs": [{"group": "", "kind": "Service", "name": "orders", "port": 80}],
                    "rules": rules}})
}

fn route<'a>(snapshot: &'a Value, name: &str) -> Option<&'a Value> {
    snapshot["routes"].as_array()?.iter().find(|r| r["name"] == name)
}

/// `(service, weight)` of a snapshot route's backends.
fn split(snapshot: &Value, name: &str) -> Option<Vec<(String, u64)>> {
    let backends = route(snapshot, name)?["backends"].as_array()?;
    Some(
        backends
            .iter()
            .map(|b| (b["service"].as_str().unwrap_or("").to_owned(), b["weight"].as_u64().unwrap_or(0)))
            .collect(),
    )
}

fn weights(a: u64, b: u64) -> Vec<(String, u64)> {
    vec![("orders.shop:80".to_owned(), a), ("orders-v2.shop:80".to_owned(), b)]
}

/// Pillion's condition `kind` on the route's first Service parent, once it has one with
/// `observedGeneration >= generation`, read from the API server.
async fn condition(
    control: &Control,
    api: &Api<DynamicObject>,
    name: &str,
    kind: &str,
    generation: i64,
) -> Value {
    let deadline = Instant::now() + WAIT;
    loop {
        let object = api.get_status(name).await.expect("read the route");
        let ours = object.data["status"]["parents"]
            .as_array()
            .and_then(|l| l.iter().find(|p| p["controllerName"] == CONTROLLER).cloned());
        let found = ours
            .as_ref()
            .and_then(|p| p["conditions"].as_array()?.iter().find(|c| c["type"] == kind).cloned());
        if let Some(c) = found.filter(|c| c["observedGeneration"].as_i64().is_some_and(|g| g >= generation)) {
            return c;
        }
        assert!(
            Instant::now() < deadline,
            "route {name} has no {kind} condition: {:#}\n{}",
            object.data,
            control.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_httproute_weight_change_shifts_the_split_in_the_proxys_snapshot() {
    let Some(kube) = KubeApi::start_or_skip("kube_routes::weights").await else { return };
    let client = kube.client().await.expect("client");
    shop(&client).await;
    let http = routes_api(&client, "HTTPRoute");
    let canary = |old: u64, new: u64| {
        json!([{"matches": [{"path": {"type": "PathPrefix", "value": "/api"}, "method": "GET",
                             "queryParams": [{"name": "v", "value": "2"}]}],
                "backendRefs": [{"name": "orders", "port": 80, "weight": old},
                                {"name": "orders-v2", "port": 80, "weight": new}],
                "timeouts": {"request": "5s"}}])
    };
    create(&http, mesh_route("HTTPRoute", "canary", canary(90, 10))).await;
    let grpc = routes_api(&client, "GRPCRoute");
    let rpc = json!([{"matches": [{"method": {"service": "shop.Orders", "method": "Get"}}],
                      "backendRefs": [{"name": "orders-v2", "port": 80}]}]);
    create(&grpc, mesh_route("GRPCRoute", "rpc", rpc)).await;

    let control = Control::start_kubernetes(kube.kubeconfig(), &[]);
    let web = control.watch_published("web.shop", WEB, WAIT);
    let name = "httproute:shop/canary:0:0@orders.shop:80";
    let first = control.until(&web, WAIT, "the 90/10 split", |s| split(s, name) == Some(weights(90, 10)));
    let r = route(&first, name).expect("the route");
    assert_eq!(r["match"]["host"], "orders.shop:80", "{r:#}");
    assert_eq!(r["match"]["path_regex"], "/api(/.*)?", "{r:#}");
    assert_eq!(r["match"]["method"], "GET", "{r:#}");
    assert_eq!(r["match"]["query"], json!({"v": "2"}), "{r:#}");
    assert!(!r["timeout"].is_null(), "{r:#}");
    let rpc = route(&first, "grpcroute:shop/rpc:0:0@orders.shop:80").expect("the gRPC route");
    assert_eq!(rpc["match"]["path"], "/shop.Orders/Get", "{rpc:#}");
    // The exact gRPC path sorts before the prefix.
    assert_eq!(first["routes"][0]["name"], "grpcroute:shop/rpc:0:0@orders.shop:80", "{first:#}");
    let accepted = condition(&control, &http, "canary", "Accepted", 1).await;
    assert_eq!(accepted["status"], "True", "{accepted:#}");
    assert_eq!(condition(&control, &grpc, "rpc", "Accepted", 1).await["status"], "True");

    let patch = Patch::Merge(json!({"spec": {"rules": canary(20, 80)}}));
    http.patch("canary", &PatchParams::default(), &patch).await.expect("patch the weights");
    control.until(&web, WAIT, "the 20/80 split", |s| split(s, name) == Some(weights(20, 80)));
    let accepted = condition(&control, &http, "canary", "Accepted", 2).await;
    assert_eq!(accepted["status"], "True", "{accepted:#}");

    // Deleted, it is gone from the snapshot; the gRPC route stays.
    http.delete("canary", &Default::default()).await.expect("delete the route");
    let after = control.until(&web, WAIT, "the route gone", |s| route(s, name).is_none());
    assert!(route(&after, "grpcroute:shop/rpc:0:0@orders.shop:80").is_some(), "{after:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_pillion_cannot_honour_is_accepted_false_with_a_reason_on_the_api_server() {
    let Some(kube) = KubeApi::start_or_skip("kube_routes::refused").await else { return };
    let client = kube.client().await.expect("client");
    shop(&client).await;
    let http = routes_api(&client, "HTTPRoute");
    let mirror = json!([{"filters": [{"type": "RequestMirror",
                                      "requestMirror": {"backendRef": {"name": "orders-v2", "port": 80}}}],
                         "backendRefs": [{"name": "orders", "port": 80}]}]);
    create(&http, mesh_route("HTTPRoute", "mirror", mirror)).await;
    let missing = json!([{"backendRefs": [{"name": "nowhere", "port": 80}]}]);
    create(&http, mesh_route("HTTPRoute", "missing", missing)).await;
    // Another controller's entry on the route's status, which Pillion's write must keep.
    let theirs = json!({"parentRef": {"name": "edge"}, "controllerName": "example.com/gateway",
        "conditions": [{"type": "Accepted", "status": "True", "reason": "Accepted", "message": "",
                        "lastTransitionTime": "2026-01-01T00:00:00Z", "observedGeneration": 1}]});
    let patch = Patch::Merge(json!({"status": {"parents": [theirs]}}));
    http.patch_status("mirror", &PatchParams::default(), &patch).await.expect("their status");

    let control = Control::start_kubernetes(kube.kubeconfig(), &[]);
    let accepted = condition(&control, &http, "mirror", "Accepted", 1).await;
    assert_eq!((&accepted["status"], &accepted["reason"]), (&json!("False"), &json!("UnsupportedValue")));
    assert!(accepted["message"].as_str().is_some_and(|m| m.contains("filters")), "{accepted:#}");
    let object = http.get_status("mirror").await.expect("read mirror");
    let controllers: Vec<&str> = object.data["status"]["parents"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p["controllerName"].as_str())
        .collect();
    assert_eq!(controllers, ["example.com/gateway", CONTROLLER]);
    let refs = condition(&control, &http, "missing", "ResolvedRefs", 1).await;
    assert_eq!((&refs["status"], &refs["reason"]), (&json!("False"), &json!("BackendNotFound")));
    let accepted = condition(&control, &http, "missing", "Accepted", 1).await;
    assert_eq!(accepted["status"], "False", "left out, so not accepted: {accepted:#}");

    // Neither is served; once the filter is gone, the route is accepted and served.
    let web = control.watch_published("web.shop", WEB, WAIT);
    let snapshot = web.next_snapshot(WAIT).expect("a snapshot");
    assert_eq!(snapshot["routes"], json!([]), "{snapshot:#}");
    let fixed =
        Patch::Merge(json!({"spec": {"rules": [{"backendRefs": [{"name": "orders-v2", "port": 80}]}]}}));
    http.patch("mirror", &PatchParams::default(), &fixed).await.expect("drop the filter");
    let name = "httproute:shop/mirror:0:0@orders.shop:80";
    control.until(&web, WAIT, "the fixed route", |s| route(s, name).is_some());
    let accepted = condition(&control, &http, "mirror", "Accepted", 2).await;
    assert_eq!(accepted["status"], "True", "{accepted:#}");
}

/// A sidecar of `web.shop` enrolled with `control`, with a listener for `orders.shop:80`.
fn web_sidecar(control: &Control) -> (Proxy, std::net::SocketAddr) {
    let certs = tempfile::tempdir().expect("a temporary directory").keep();
    std::fs::copy(control.pki.ca_pem(), certs.join("ca.pem")).expect("copy the CA");
    let listener = free_addr();
    let cfg = format!(
        r#"
workload: {{name: web.shop, identity: "{WEB}"}}
tls: {{cert: "{d}/cert.pem", key: "{d}/key.pem", trust: "{d}/ca.pem"}}
control: {{address: "https://{addr}", token_file: "{token}"}}
admin: {{bind: "{{admin}}"}}
inbound: {{bind: "{inbound}"}}
outbound:
  listeners: [{{bind: "{listener}", service: "orders.shop:80"}}]
"#,
        d = certs.display(),
        addr = control.addr,
        token = control.token_file("web.shop").display(),
        inbound = free_addr(),
    );
    let proxy = Proxy::spawn(&cfg, &[]);
    proxy.wait_ready();
    (proxy, listener)
}

/// How many of `n` requests through `listener` each backend answered (`x-backend`).
async fn tally(listener: std::net::SocketAddr, n: usize) -> (usize, usize) {
    let client = HttpClient::http1();
    let (mut a, mut b) = (0, 0);
    for _ in 0..n {
        let r = client.get(listener, "/", Some("orders")).await.expect("a response");
        assert_eq!(r.status(), 200);
        match r.headers().get("x-backend").and_then(|v| v.to_str().ok()) {
            Some("a") => a += 1,
            Some("b") => b += 1,
            other => panic!("answered by {other:?}"),
        }
    }
    (a, b)
}

/// Tallies batches of `n` until one satisfies `done`, for at most [`WAIT`].
async fn until_split(
    proxy: &Proxy,
    listener: std::net::SocketAddr,
    n: usize,
    what: &str,
    done: impl Fn((usize, usize)) -> bool,
) -> (usize, usize) {
    let deadline = Instant::now() + WAIT;
    loop {
        let t = tally(listener, n).await;
        if done(t) {
            return t;
        }
        assert!(Instant::now() < deadline, "traffic never {what}; last {t:?}\n{}", proxy.log());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_httproute_weight_change_shifts_a_sidecars_traffic() {
    let Some(kube) = KubeApi::start_or_skip("kube_routes::traffic").await else { return };
    let client = kube.client().await.expect("client");
    shop(&client).await;
    let (a, b) = (Backend::start("a"), Backend::start("b"));
    let overlay = format!(
        "services:\n  - {{name: \"orders.shop:80\", endpoints: [{{addr: \"{}\"}}]}}\n  - {{name: \"orders-v2.shop:80\", endpoints: [{{addr: \"{}\"}}]}}\n",
        a.addr, b.addr
    );
    let http = routes_api(&client, "HTTPRoute");
    let split = |old: u64, new: u64| {
        json!([{"backendRefs": [{"name": "orders", "port": 80, "weight": old},
                                {"name": "orders-v2", "port": 80, "weight": new}]}])
    };
    // Weight 0 takes no traffic: all of it goes to orders.
    create(&http, mesh_route("HTTPRoute", "split", split(1, 0))).await;
    let control = Control::start_kubernetes(kube.kubeconfig(), &[("backends.yaml", &overlay)]);
    assert_eq!(condition(&control, &http, "split", "Accepted", 1).await["status"], "True");
    let (proxy, listener) = web_sidecar(&control);
    until_split(&proxy, listener, 20, "went all to orders", |t| t == (20, 0)).await;

    let patch = |rules: Value| Patch::Merge(json!({"spec": {"rules": rules}}));
    http.patch("split", &PatchParams::default(), &patch(split(1, 1))).await.expect("50/50");
    // 200 requests at 50/50: fewer than 60 on either side is a 1-in-10^9 event.
    let (to_a, to_b) = until_split(&proxy, listener, 200, "split 50/50", |(a, b)| a >= 60 && b >= 60).await;
    eprintln!("50/50 split: {to_a} to orders, {to_b} to orders-v2");
    http.patch("split", &PatchParams::default(), &patch(split(0, 1))).await.expect("all to v2");
    until_split(&proxy, listener, 20, "went all to orders-v2", |t| t == (0, 20)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_example_routes_in_deploy_are_accepted_and_served() {
    let Some(kube) = KubeApi::start_or_skip("kube_routes::examples").await else { return };
    let client = kube.client().await.expect("client");
    shop(&client).await;
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/kubernetes/examples/routes.yaml");
    let text = std::fs::read_to_string(path).expect("read the example routes");
    let mut names = Vec::new();
    for doc in serde_yaml::Deserializer::from_str(&text) {
        let route: Value = serde_yaml::Value::deserialize(doc)
            .ok()
            .and_then(|v| serde_json::to_value(v).ok())
            .expect("a YAML document");
        let (kind, name) = (route["kind"].as_str().expect("kind"), route["metadata"]["name"].as_str().expect("name"));
        names.push((kind.to_owned(), name.to_owned()));
        create(&routes_api(&client, kind), route.clone()).await;
    }
    assert_eq!(names.len(), 2, "{names:?}");

    let control = Control::start_kubernetes(kube.kubeconfig(), &[]);
    let web = control.watch_published("web.shop", WEB, WAIT);
    let canary = "httproute:shop/orders-canary:1:0@orders.shop:80";
    let served = control.until(&web, WAIT, "the example routes", |s| {
        route(s, canary).is_some() && route(s, "grpcroute:shop/orders-rpc:0:0@orders.shop:80").is_some()
    });
    assert_eq!(split(&served, canary), Some(weights(90, 10)), "{served:#}");
    let header = route(&served, "httproute:shop/orders-canary:0:0@orders.shop:80").expect("the header rule");
    assert_eq!(header["match"]["headers"], json!({"x-canary": "true"}), "{header:#}");
    for (kind, name) in &names {
        let accepted = condition(&control, &routes_api(&client, kind), name, "Accepted", 1).await;
        assert_eq!(accepted["status"], "True", "{kind} {name}: {accepted:#}");
    }
}
