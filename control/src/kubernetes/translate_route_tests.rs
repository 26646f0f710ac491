//! Gateway API routes through the whole translation: matches, backends, order, visibility and
//! the status each route's Service parents get.

use serde_json::{Value, json};

use super::*;
use crate::kubernetes::routes::status::{RouteKind, RouteStatus};

fn route(kind: RouteKind, ns: &str, name: &str, spec: Value) -> Arc<DynamicObject> {
    Arc::new(DynamicObject::new(name, &kind.resource()).within(ns).data(json!({"spec": spec})))
}

fn orders_parent() -> Value {
    json!([{"group": "", "kind": "Service", "name": "orders", "port": 80}])
}

fn http(name: &str, rules: Value) -> Arc<DynamicObject> {
    route(RouteKind::Http, "shop", name, json!({"parentRefs": orders_parent(), "rules": rules}))
}

/// `(condition type, reason, message)` of the route's first parent; `None` when accepted.
fn refused(t: &Translation, name: &str) -> Option<(&'static str, &'static str, String)> {
    let s: &RouteStatus = t.statuses.iter().find(|s| s.name == name).expect("a status");
    s.parents[0].condition.refused.clone()
}

fn route_names(t: &Translation) -> Vec<&str> {
    t.mesh.routes.iter().map(|(r, _)| r.name.as_str()).collect()
}

#[test]
fn a_mesh_route_becomes_one_route_per_match_and_what_cannot_be_honoured_is_refused() {
    let mut objects = fixture();
    objects.http_routes = vec![
        http(
            "split",
            json!([{
            "matches": [{"path": {"type": "PathPrefix", "value": "/v2"}}, {"headers": [{"name": "x-v", "value": "2"}], "queryParams": [{"name": "v", "value": "2"}]}],
            "backendRefs": [{"name": "cart", "port": 8080, "weight": 90}, {"name": "orders", "port": 9000, "weight": 10}],
            "timeouts": {"request": "1m30s", "backendRequest": "20s"}}]),
        ),
        http(
            "rewrite",
            json!([{"filters": [{"type": "URLRewrite"}], "backendRefs": [{"name": "cart", "port": 8080}]}]),
        ),
        http("gone", json!([{"backendRefs": [{"name": "nothing", "port": 1}]}])),
        http("pod", json!([{"backendRefs": [{"group": "", "kind": "Pod", "name": "cart-a", "port": 1}]}])),
        http(
            "query",
            json!([{"matches": [{"queryParams": [{"type": "RegularExpression", "name": "a", "value": "b"}]}],
                    "backendRefs": [{"name": "cart", "port": 8080}]}]),
        ),
        http(
            "regex",
            json!([{"matches": [{"headers": [{"type": "RegularExpression", "name": "x", "value": ".*"}]}],
                    "backendRefs": [{"name": "cart", "port": 8080}]}]),
        ),
        // The proxy's regex syntax refuses this one: the route is refused, not the snapshot.
        http(
            "badregex",
            json!([{"matches": [{"path": {"type": "RegularExpression", "value": "/(a"}}],
                    "backendRefs": [{"name": "cart", "port": 8080}]}]),
        ),
        route(
            RouteKind::Http,
            "shop",
            "hosts",
            json!({"parentRefs": orders_parent(), "hostnames": ["orders.example"],
                   "rules": [{"backendRefs": [{"name": "cart", "port": 8080}]}]}),
        ),
        // A Gateway's route: neither served nor reported on by the mesh.
        route(
            RouteKind::Http,
            "shop",
            "north-south",
            json!({"parentRefs": [{"name": "edge"}], "rules": [{"backendRefs": [{"name": "cart", "port": 8080}]}]}),
        ),
    ];
    objects.grpc_routes = vec![route(
        RouteKind::Grpc,
        "shop",
        "rpc",
        json!({"parentRefs": orders_parent(), "rules": [{
        "matches": [{"method": {"service": "shop.Orders", "method": "Get"}}],
        "backendRefs": [{"name": "cart", "port": 8080}]}]}),
    )];
    let t = translate(&objects, &settings());
    // Exact gRPC path first, then the prefix, then the header-only match.
    assert_eq!(
        route_names(&t),
        [
            "grpcroute:shop/rpc:0:0@orders.shop:80",
            "httproute:shop/split:0:0@orders.shop:80",
            "httproute:shop/split:0:1@orders.shop:80"
        ]
    );
    let rpc = &t.mesh.routes[0].0;
    assert_eq!(rpc.matches.path.as_deref(), Some("/shop.Orders/Get"));
    let split = &t.mesh.routes[1].0;
    assert_eq!(split.matches.host.as_deref(), Some("orders.shop:80"));
    assert_eq!(split.matches.path_regex.as_deref(), Some("/v2(/.*)?"));
    assert_eq!(
        split.backends.iter().map(|b| (b.service.as_str(), b.weight)).collect::<Vec<_>>(),
        [("cart.shop:8080", 90), ("orders.shop:9000", 10)]
    );
    // No retries, so one backend request: the tighter limit applies.
    assert_eq!(split.timeout.map(|d| d.0), Some(std::time::Duration::from_secs(20)));
    assert_eq!(t.mesh.routes[2].0.matches.headers["x-v"], "2");
    assert_eq!(t.mesh.routes[2].0.matches.query["v"], "2");

    assert_eq!(refused(&t, "split"), None);
    assert_eq!(refused(&t, "rpc"), None);
    let unsupported = |name: &str, what: &str| {
        let (kind, reason, message) = refused(&t, name).expect("refused");
        assert_eq!((kind, reason), ("Accepted", "UnsupportedValue"), "{name}");
        assert!(message.contains(what), "{name}: {message}");
    };
    unsupported("rewrite", "filters");
    unsupported("query", "query parameter");
    unsupported("regex", "RegularExpression");
    unsupported("badregex", "path_regex");
    unsupported("hosts", "hostnames");
    assert_eq!(refused(&t, "gone").map(|r| (r.0, r.1)), Some(("ResolvedRefs", "BackendNotFound")));
    assert_eq!(refused(&t, "pod").map(|r| (r.0, r.1)), Some(("ResolvedRefs", "InvalidKind")));
    assert!(t.statuses.iter().all(|s| s.name != "north-south"));
    crate::validate::validate(&t.mesh).expect("valid");

    // `web` in `front` sees orders only by annotation, and then the route's backends with it.
    objects.pods.push(pod("front", "web-2", "web", json!({workloads::VISIBLE_ANNOTATION: "orders.shop"})));
    let t = translate(&objects, &settings());
    assert_eq!(seen(&t, "web.front"), ["cart.shop:8080", "orders.shop:80", "orders.shop:9000"]);
    crate::validate::validate(&t.mesh).expect("valid");
}

#[test]
fn seeing_one_backend_of_a_route_means_seeing_all_of_them() {
    let mut objects = fixture();
    objects.http_routes = vec![http(
        "split",
        json!([{"backendRefs": [{"name": "cart", "port": 8080, "weight": 1}, {"name": "orders", "port": 9000}]}]),
    )];
    // `web` sees cart only; the route (to cart and orders) is in its snapshot, so orders must be.
    objects.pods.push(pod("front", "web-2", "web", json!({workloads::VISIBLE_ANNOTATION: "cart.shop"})));
    let t = translate(&objects, &settings());
    assert_eq!(seen(&t, "web.front"), ["cart.shop:8080", "orders.shop:9000"]);
    crate::validate::validate(&t.mesh).expect("valid");
}

#[test]
fn a_parent_without_a_port_takes_every_port_and_a_missing_parent_is_reported() {
    let mut objects = fixture();
    let rules = json!([{"backendRefs": [{"name": "cart", "port": 8080, "weight": 0}, {"name": "orders", "port": 9000}]}]);
    objects.http_routes = vec![
        route(
            RouteKind::Http,
            "shop",
            "all-ports",
            json!({"parentRefs": [{"group": "", "kind": "Service", "name": "orders"}], "rules": rules}),
        ),
        route(
            RouteKind::Http,
            "shop",
            "orphan",
            json!({"parentRefs": [{"group": "", "kind": "Service", "name": "missing"}], "rules": rules}),
        ),
    ];
    let t = translate(&objects, &settings());
    assert_eq!(
        route_names(&t),
        ["httproute:shop/all-ports:0:0@orders.shop:80", "httproute:shop/all-ports:0:0@orders.shop:9000"]
    );
    // Weight 0 takes no traffic: the backend is left out.
    assert_eq!(t.mesh.routes[0].0.backends.len(), 1);
    assert_eq!(refused(&t, "orphan").map(|r| (r.0, r.1)), Some(("Accepted", "NoMatchingParent")));
    crate::validate::validate(&t.mesh).expect("valid");
}
