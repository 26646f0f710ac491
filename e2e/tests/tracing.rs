//! Distributed tracing through two sidecars into a real Jaeger (OTLP/HTTP in, its query API read
//! back): the app's root span, each sidecar's server span and one client span per try, parented
//! hop by hop, with a retry visible as two client spans; an unsampled parent records nothing;
//! with the collector gone, traffic flows and the dropped spans are counted.

use std::{net::SocketAddr, time::Duration};

use pillion_e2e::{
    Backend, Proxy,
    client::curl_status,
    jaeger::{self, Jaeger},
    pki::{Pki, tls_section},
    process::free_addr,
};
use serde_json::Value;

const WEB: &str = "spiffe://cluster.local/ns/shop/sa/web";
const ORDERS: &str = "spiffe://cluster.local/ns/shop/sa/orders";
const WAIT: Duration = Duration::from_secs(30);

struct Mesh {
    _dir: tempfile::TempDir,
    _app: Backend,
    web: Proxy,
    orders: Proxy,
    listener: SocketAddr,
}

/// app -> web's sidecar -> mTLS -> orders' sidecar -> orders app. Web's service has a second
/// endpoint that refuses connections, so with round robin calls are retried.
fn mesh(jaeger: &Jaeger) -> Mesh {
    let dir = tempfile::tempdir().expect("temp dir");
    let pki = Pki::new(dir.path(), "mesh");
    let (web_certs, orders_certs) = (pki.issue("web", WEB, &[]), pki.issue("orders", ORDERS, &[]));
    let app = Backend::start("orders-app");
    let tracing = format!("tracing: {{otlp: \"{}\", sampling: 0}}", jaeger.otlp_http_endpoint());
    let inbound = free_addr();
    let orders = Proxy::start(&format!(
        "workload: {{name: orders, identity: \"{ORDERS}\"}}\n{tls}\n{tracing}\nadmin: {{bind: \"{{admin}}\"}}\n\
         inbound: {{bind: \"{inbound}\", app: \"{app}\", mtls: strict}}\n",
        tls = tls_section(&orders_certs),
        app = app.addr,
    ));
    let dead = free_addr();
    let listener = free_addr();
    let web = Proxy::start_with_args(
        &format!(
            "workload: {{name: web}}\n{tls}\n{tracing}\nadmin: {{bind: \"{{admin}}\"}}\n\
         inbound: {{bind: \"{}\"}}\noutbound:\n  listeners: [{{bind: \"{listener}\", service: orders}}]\n\
         services:\n  - {{name: orders, lb: round_robin, endpoints: [{{addr: \"{dead}\"}}, \
         {{addr: \"{inbound}\", identity: \"{ORDERS}\"}}]}}\n",
            free_addr(),
            tls = tls_section(&web_certs),
        ),
        &["--access-log"],
    );
    Mesh { _dir: dir, _app: app, web, orders, listener }
}

fn call(addr: SocketAddr, traceparent: &str) -> (u16, String) {
    curl_status(&["-sS", "-H", &format!("traceparent: {traceparent}"), &format!("http://{addr}/headers")])
}

fn tag<'a>(span: &'a Value, key: &str) -> Option<&'a Value> {
    span["tags"].as_array()?.iter().find(|t| t["key"] == key).map(|t| &t["value"])
}

fn parent(span: &Value) -> Option<&str> {
    span["references"].as_array()?.iter().find(|r| r["refType"] == "CHILD_OF")?["spanID"].as_str()
}

/// The spans of `trace` that `service` recorded with this `span.kind`.
fn of<'a>(trace: &'a Value, service: &str, kind: &str) -> Vec<&'a Value> {
    jaeger::spans(trace)
        .iter()
        .filter(|s| {
            jaeger::service_of(trace, s) == Some(service) && tag(s, "span.kind") == Some(&kind.into())
        })
        .collect()
}

#[test]
fn a_call_through_two_sidecars_is_one_trace_parented_hop_by_hop() {
    let Some(jaeger) = Jaeger::start_or_skip("a_call_through_two_sidecars_is_one_trace_parented_hop_by_hop")
    else {
        return;
    };
    let m = mesh(&jaeger);
    let mut retried = 0;
    for i in 0..4u8 {
        let (trace, root) = (format!("4bf92f3577b34da6a3ce929d0e0e47{i:02x}"), "00f067aa0ba902b7");
        assert_eq!(
            jaeger::send_span(&jaeger.otlp_http_endpoint(), "app", &trace, root),
            200,
            "the app's root span"
        );
        let (status, body) = call(m.listener, &format!("00-{trace}-{root}-01"));
        assert_eq!(status, 200, "{body}");
        let seen: Vec<(String, String)> = serde_json::from_str(&body).expect("headers JSON");
        let at_app =
            seen.iter().find(|(k, _)| k == "traceparent").map(|(_, v)| v.clone()).expect("traceparent");

        // root, web server, web client(s), orders server, orders client.
        let t = jaeger.wait_trace(&trace, 5, WAIT);
        let web_server = of(&t, "web", "server");
        let web_clients = of(&t, "web", "client");
        let orders_server = of(&t, "orders", "server");
        let orders_client = of(&t, "orders", "client");
        assert_eq!((web_server.len(), orders_server.len(), orders_client.len()), (1, 1, 1), "{t}");
        assert_eq!(parent(web_server[0]), Some(root), "web's server span is the app's child");
        for c in &web_clients {
            assert_eq!(parent(c), web_server[0]["spanID"].as_str(), "each try is under the server span");
        }
        let ok_try = web_clients.iter().find(|c| tag(c, "http.response.status_code") == Some(&200.into()));
        let ok_try = ok_try.unwrap_or_else(|| panic!("no successful try: {t}"));
        assert_eq!(tag(ok_try, "pillion.peer.identity"), Some(&ORDERS.into()));
        assert_eq!(parent(orders_server[0]), ok_try["spanID"].as_str(), "the next hop's parent is the try");
        assert_eq!(tag(orders_server[0], "pillion.peer.identity"), Some(&WEB.into()));
        assert_eq!(parent(orders_client[0]), orders_server[0]["spanID"].as_str());
        // The app joins the trace under the last sidecar's client span.
        let last = orders_client[0]["spanID"].as_str().expect("span id");
        assert_eq!(at_app, format!("00-{trace}-{last}-01"));
        if web_clients.len() == 2 {
            let failed = web_clients.iter().find(|c| tag(c, "error.type") == Some(&"connect-failed".into()));
            assert!(failed.is_some(), "the first try failed to connect: {t}");
            retried += 1;
        }
    }
    assert!(retried >= 1, "round robin starts calls at the dead endpoint too");
    assert!(m.web.log().contains("4bf92f3577b34da6a3ce929d0e0e4703"), "the access log names the trace");
}

#[test]
fn an_unsampled_parent_records_nothing_and_a_lost_collector_drops_and_counts() {
    let Some(mut jaeger) =
        Jaeger::start_or_skip("an_unsampled_parent_records_nothing_and_a_lost_collector_drops_and_counts")
    else {
        return;
    };
    let m = mesh(&jaeger);
    let unsampled = "0af7651916cd43dd8448eb211c80319c";
    let (status, body) = call(m.listener, &format!("00-{unsampled}-b7ad6b7169203331-00"));
    assert_eq!(status, 200, "{body}");
    assert!(body.contains(&format!("00-{unsampled}-b7ad6b7169203331-00")), "passed on as it came: {body}");
    // Spans leave each proxy in order: once a later sampled call's spans are in, the unsampled
    // call's would be too.
    let sampled = "1af7651916cd43dd8448eb211c80319c";
    assert_eq!(call(m.listener, &format!("00-{sampled}-b7ad6b7169203331-01")).0, 200);
    jaeger.wait_trace(sampled, 4, WAIT);
    assert!(jaeger.trace(unsampled).is_none(), "an unsampled trace was recorded");

    jaeger.stop();
    for i in 0..5u8 {
        let trace = format!("2af7651916cd43dd8448eb211c8031{i:02x}");
        assert_eq!(call(m.listener, &format!("00-{trace}-b7ad6b7169203331-01")).0, 200);
    }
    for p in [&m.web, &m.orders] {
        p.wait_metric("pillion_trace_spans_total", &["result=\"export_failed\""], "spans dropped", |v| {
            v >= 1.0
        });
    }
}
