//! The translation over plain object fixtures, shaped as the API serves them.

use serde_json::{Value, json};

use super::*;

fn obj<K: serde::de::DeserializeOwned>(v: Value) -> Arc<K> {
    Arc::new(serde_json::from_value(v).expect("a valid object"))
}

fn settings() -> Settings {
    Settings { trust_domain: "td.test".into(), cluster_domain: "cluster.local".into() }
}

fn service(ns: &str, name: &str, ips: &[&str], ports: Value) -> Arc<Service> {
    obj(json!({"metadata": {"namespace": ns, "name": name},
               "spec": {"clusterIP": ips.first(), "clusterIPs": ips, "ports": ports}}))
}

fn pod(ns: &str, name: &str, sa: &str, annotations: Value) -> Arc<Pod> {
    obj(json!({"metadata": {"namespace": ns, "name": name, "annotations": annotations},
               "spec": {"serviceAccountName": sa, "containers": []}}))
}

/// An endpoint: address, pod name, and (ready, serving, terminating).
fn endpoint(addr: &str, pod: &str, (ready, serving, terminating): (bool, bool, bool)) -> Value {
    json!({"addresses": [addr], "targetRef": {"kind": "Pod", "name": pod},
           "conditions": {"ready": ready, "serving": serving, "terminating": terminating}})
}

const READY: (bool, bool, bool) = (true, true, false);
const NOT_READY: (bool, bool, bool) = (false, false, false);
const TERMINATING: (bool, bool, bool) = (false, true, true);

fn slice(
    ns: &str,
    name: &str,
    service: &str,
    family: &str,
    ports: Value,
    endpoints: Vec<Value>,
) -> Arc<EndpointSlice> {
    obj(json!({"metadata": {"namespace": ns, "name": name, "labels": {SERVICE_NAME_LABEL: service}},
               "addressType": family, "ports": ports, "endpoints": endpoints}))
}

fn namespace(name: &str, annotations: Value) -> Arc<Namespace> {
    obj(json!({"metadata": {"name": name, "annotations": annotations}}))
}

/// Two Services in `shop`, one in `billing`, and a caller `web` in `front`.
fn fixture() -> Objects {
    let orders_ports = json!([{"name": "http", "port": 80, "targetPort": "web"},
                              {"name": "admin", "port": 9000, "targetPort": 9001}]);
    Objects {
        services: vec![
            service("shop", "orders", &["10.96.0.10", "fd00::10"], orders_ports),
            service("shop", "cart", &["10.96.0.11"], json!([{"port": 8080}])),
            service("billing", "pay", &["10.96.0.12"], json!([{"port": 443}])),
        ],
        slices: vec![
            slice(
                "shop",
                "orders-v4",
                "orders",
                "IPv4",
                json!([{"name": "admin", "port": 9001}, {"name": "http", "port": 8080}]),
                vec![
                    endpoint("10.1.0.6", "orders-b", READY),
                    endpoint("10.1.0.5", "orders-a", READY),
                    endpoint("10.1.0.7", "orders-c", NOT_READY),
                    endpoint("10.1.0.8", "orders-d", TERMINATING),
                ],
            ),
            slice(
                "shop",
                "orders-v6",
                "orders",
                "IPv6",
                json!([{"name": "http", "port": 8080}]),
                vec![endpoint("fd00:1::5", "orders-a", READY)],
            ),
            slice(
                "shop",
                "cart-1",
                "cart",
                "IPv4",
                json!([{"port": 8081}]),
                vec![endpoint("10.1.1.1", "cart-a", TERMINATING)],
            ),
            slice(
                "billing",
                "pay-1",
                "pay",
                "IPv4",
                json!([{"port": 8443}]),
                vec![endpoint("10.1.2.1", "pay-a", READY)],
            ),
        ],
        pods: vec![
            pod("shop", "orders-a", "orders", json!({})),
            pod("shop", "orders-b", "orders", json!({})),
            pod("shop", "orders-c", "orders", json!({})),
            pod("shop", "orders-d", "orders", json!({})),
            pod("shop", "cart-a", "cart", json!({})),
            pod("billing", "pay-a", "pay", json!({})),
            pod("front", "web-1", "web", json!({})),
        ],
        namespaces: vec![namespace("shop", json!({})), namespace("front", json!({}))],
        ..Objects::default()
    }
}

fn names(t: &Translation) -> Vec<&str> {
    t.mesh.services.iter().map(|(s, _)| s.name.as_str()).collect()
}

fn svc<'a>(t: &'a Translation, name: &str) -> &'a pillion_config::schema::Service {
    &t.mesh.services.iter().find(|(s, _)| s.name == name).unwrap_or_else(|| panic!("no {name}")).0
}

fn addrs(s: &pillion_config::schema::Service) -> Vec<&str> {
    s.endpoints.iter().map(|e| e.addr.as_str()).collect()
}

#[test]
fn one_service_per_port_with_every_cluster_ip_and_the_three_names() {
    let t = translate(&fixture(), &settings());
    assert_eq!(names(&t), ["cart.shop:8080", "orders.shop:80", "orders.shop:9000", "pay.billing:443"]);
    let http = svc(&t, "orders.shop:80");
    assert_eq!(
        http.addresses,
        ["10.96.0.10:80", "[fd00::10]:80", "orders:80", "orders.shop:80", "orders.shop.svc.cluster.local:80"]
    );
    crate::validate::validate(&t.mesh).expect("the proxy's validator accepts the translation");
}

#[test]
fn endpoints_are_the_ready_ones_on_the_target_port_named_by_the_slice() {
    let t = translate(&fixture(), &settings());
    // Ready only (not-ready and terminating left out), sorted, both families, weight 1 each.
    let http = svc(&t, "orders.shop:80");
    assert_eq!(addrs(http), ["10.1.0.5:8080", "10.1.0.6:8080", "[fd00:1::5]:8080"]);
    assert!(http.endpoints.iter().all(|e| e.weight == 1));
    assert_eq!(http.endpoints[0].identity.as_deref(), Some("spiffe://td.test/ns/shop/sa/orders"));
    // The other port resolves through its own name; the IPv6 slice lacks it.
    assert_eq!(addrs(svc(&t, "orders.shop:9000")), ["10.1.0.5:9001", "10.1.0.6:9001"]);
    assert!(
        t.skipped.iter().any(|s| s.object == "shop/orders-v6" && s.reason.contains("\"admin\"")),
        "{:?}",
        t.skipped
    );
}

#[test]
fn serving_terminating_endpoints_stand_in_only_when_nothing_is_ready() {
    let t = translate(&fixture(), &settings());
    assert_eq!(addrs(svc(&t, "cart.shop:8080")), ["10.1.1.1:8081"]);
    let mut objects = fixture();
    objects.slices.push(slice(
        "shop",
        "cart-2",
        "cart",
        "IPv4",
        json!([{"port": 8081}]),
        vec![endpoint("10.1.1.2", "cart-a", READY)],
    ));
    let t = translate(&objects, &settings());
    assert_eq!(addrs(svc(&t, "cart.shop:8080")), ["10.1.1.2:8081"]);
}

#[test]
fn a_ports_app_protocol_pins_the_protocol_and_anything_else_keeps_detection() {
    use pillion_config::schema::Protocol;
    let ports = json!([{"name": "a", "port": 1, "appProtocol": "kubernetes.io/h2c"},
                       {"name": "b", "port": 2, "appProtocol": "http"},
                       {"name": "c", "port": 3, "appProtocol": "grpc"},
                       {"name": "d", "port": 4, "appProtocol": "tcp"},
                       {"name": "e", "port": 5, "appProtocol": "kubernetes.io/ws"},
                       {"name": "f", "port": 6, "appProtocol": "https"},
                       {"name": "g", "port": 7, "appProtocol": "example.com/custom"},
                       {"name": "h", "port": 8}]);
    let objects =
        Objects { services: vec![service("shop", "p", &["10.96.0.20"], ports)], ..Objects::default() };
    let t = translate(&objects, &settings());
    let got: Vec<Protocol> = (1..=8).map(|port| svc(&t, &format!("p.shop:{port}")).protocol).collect();
    use Protocol::{Auto, Http1, Http2, Tcp};
    assert_eq!(got, [Http2, Http1, Http2, Tcp, Http1, Auto, Auto, Auto]);
    assert!(t.skipped.is_empty(), "{:?}", t.skipped);
}

#[test]
fn bad_objects_are_skipped_with_their_name_and_the_rest_still_translates() {
    let mut objects = fixture();
    objects.slices.push(slice(
        "shop",
        "orders-ghost",
        "orders",
        "IPv4",
        json!([{"name": "http", "port": 8080}]),
        vec![endpoint("10.1.0.9", "gone", READY), json!({"addresses": ["not-an-ip"]})],
    ));
    objects.slices.push(slice("shop", "orders-fqdn", "orders", "FQDN", json!([]), vec![]));
    objects.services.push(service("shop", "dns", &["10.96.0.53"], json!([{"port": 53, "protocol": "UDP"}])));
    objects.services.push(obj(json!({"metadata": {"namespace": "shop", "name": "ext"},
                                     "spec": {"type": "ExternalName", "externalName": "example.com"}})));
    objects.services.push(service("shop", "empty", &["10.96.0.54"], json!([{"port": 80}])));
    objects.services.push(service("shop", "weird", &["not-an-ip"], json!([{"port": 80}])));
    let t = translate(&objects, &settings());
    let said: Vec<String> = t.skipped.iter().map(ToString::to_string).collect();
    for want in [
        "EndpointSlice shop/orders-ghost: endpoint [\"10.1.0.9\"]: Pod shop/gone not found",
        "EndpointSlice shop/orders-ghost: endpoint [\"not-an-ip\"] has no IP address",
        "EndpointSlice shop/orders-fqdn: address type FQDN is not an IP family",
        "Service shop/dns: port 53/UDP: the mesh carries TCP only",
        "Service shop/ext: an ExternalName Service has no endpoints to balance",
        "Service shop/weird: clusterIP \"not-an-ip\" is not an IP address",
    ] {
        assert!(said.iter().any(|s| s == want), "missing {want:?} in {said:#?}");
    }
    // A port with no endpoint stays (callers get a 503 that says so); the ghost added nothing.
    assert!(svc(&t, "empty.shop:80").endpoints.is_empty());
    assert_eq!(svc(&t, "weird.shop:80").addresses[0], "weird:80");
    assert_eq!(addrs(svc(&t, "orders.shop:80")).len(), 3);
    crate::validate::validate(&t.mesh).expect("still valid");
}

#[test]
fn the_same_objects_in_any_order_translate_to_the_same_mesh() {
    let a = translate(&fixture(), &settings());
    let mut objects = fixture();
    objects.services.reverse();
    objects.slices.reverse();
    objects.pods.reverse();
    let b = translate(&objects, &settings());
    let json = |t: &Translation| {
        let services: Vec<_> = t.mesh.services.iter().map(|(s, _)| s).collect();
        let workloads: Vec<_> = t.mesh.workloads.values().map(|(w, _)| w).collect();
        serde_json::to_string(&(services, workloads)).unwrap()
    };
    assert_eq!(json(&a), json(&b));
}

fn seen(t: &Translation, workload: &str) -> Vec<String> {
    t.mesh.workloads[workload].0.services.clone().expect("a list")
}

#[test]
fn a_workload_per_service_account_sees_its_namespace_and_what_annotations_name() {
    let t = translate(&fixture(), &settings());
    let names: Vec<&String> = t.mesh.workloads.keys().collect();
    assert_eq!(names, ["cart.shop", "orders.shop", "pay.billing", "web.front"]);
    let (orders, _) = &t.mesh.workloads["orders.shop"];
    assert_eq!(orders.identity, "spiffe://td.test/ns/shop/sa/orders");
    assert_eq!(seen(&t, "orders.shop"), ["cart.shop:8080", "orders.shop:80", "orders.shop:9000"]);
    assert!(seen(&t, "web.front").is_empty());

    // A pod's annotation adds one Service (every port); the namespace's adds a whole namespace.
    let mut objects = fixture();
    objects.pods.push(pod("front", "web-2", "web", json!({workloads::VISIBLE_ANNOTATION: "orders.shop"})));
    let t = translate(&objects, &settings());
    assert_eq!(seen(&t, "web.front"), ["orders.shop:80", "orders.shop:9000"]);
    objects.namespaces[1] = namespace("front", json!({workloads::VISIBLE_ANNOTATION: "*.billing, nope"}));
    let t = translate(&objects, &settings());
    assert_eq!(
        seen(&t, "web.front"),
        ["orders.shop:80", "orders.shop:9000"],
        "a bad annotation adds nothing"
    );
    assert!(
        t.skipped.iter().any(|s| s.kind == "Namespace" && s.reason.contains("\"nope\"")),
        "{:?}",
        t.skipped
    );
    objects.namespaces[1] = namespace("front", json!({workloads::VISIBLE_ANNOTATION: "*.billing"}));
    let t = translate(&objects, &settings());
    assert_eq!(seen(&t, "web.front"), ["orders.shop:80", "orders.shop:9000", "pay.billing:443"]);
    crate::validate::validate(&t.mesh).expect("valid");
}

#[path = "translate_route_tests.rs"]
mod routes;
