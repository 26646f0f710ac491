//! Routing: host, path (exact, prefix, regex), header and method matches, and weighted splits
//! counted over many requests.

use std::net::SocketAddr;

use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use pillion_e2e::{Backend, Proxy, client::HttpClient, process::free_addr};

struct Mesh {
    _backends: Vec<Backend>,
    proxy: Proxy,
    listener: SocketAddr,
}

fn mesh() -> Mesh {
    let backends: Vec<Backend> = ["a", "b", "c", "d"].iter().map(|n| Backend::start(n)).collect();
    let listener = free_addr();
    let services: String = backends
        .iter()
        .zip(["a", "b", "c", "d"])
        .map(|(b, n)| format!("  - {{name: {n}, lb: round_robin, endpoints: [{{addr: \"{}\"}}]}}\n", b.addr))
        .collect();
    let cfg = format!(
        r#"
admin: {{bind: "{{admin}}"}}
inbound: {{bind: "{inbound}"}}
outbound:
  listeners: [{{bind: "{listener}", service: a}}]
services:
{services}
routes:
  - {{name: canary-header, match: {{headers: {{x-canary: "true"}}}}, backends: [{{service: c}}]}}
  - {{name: api-post, match: {{method: POST, path_prefix: /api}}, backends: [{{service: d}}]}}
  - {{name: admin-host, match: {{host: admin.example.com}}, backends: [{{service: b}}]}}
  - {{name: exact, match: {{path: /exact}}, backends: [{{service: b}}]}}
  - {{name: users, match: {{path_regex: "/users/[0-9]+"}}, backends: [{{service: c}}]}}
  - {{name: split, match: {{path_prefix: /split}}, backends: [{{service: a, weight: 80}}, {{service: b, weight: 20}}]}}
"#,
        inbound = free_addr(),
    );
    Mesh { _backends: backends, proxy: Proxy::start(&cfg), listener }
}

async fn backend_for(client: &HttpClient, req: Request<Full<Bytes>>) -> String {
    let resp = client.send(req).await.expect("request");
    assert_eq!(resp.status(), 200);
    resp.headers()["x-backend"].to_str().unwrap().to_owned()
}

fn get(m: &Mesh, path: &str) -> http::request::Builder {
    Request::get(format!("http://{}{path}", m.listener))
}

#[tokio::test]
async fn requests_take_the_first_matching_route() {
    let m = mesh();
    let c = HttpClient::http1();
    let body = Full::default;
    assert_eq!(
        backend_for(&c, get(&m, "/").body(body()).unwrap()).await,
        "a",
        "no route: listener's service"
    );
    assert_eq!(backend_for(&c, get(&m, "/").header("x-canary", "true").body(body()).unwrap()).await, "c");
    assert_eq!(backend_for(&c, get(&m, "/").header("x-canary", "false").body(body()).unwrap()).await, "a");
    let post = Request::post(format!("http://{}/api/orders", m.listener)).body(body()).unwrap();
    assert_eq!(backend_for(&c, post).await, "d");
    assert_eq!(backend_for(&c, get(&m, "/api/orders").body(body()).unwrap()).await, "a", "GET is not POST");
    assert_eq!(
        backend_for(&c, get(&m, "/").header("host", "Admin.Example.com:8080").body(body()).unwrap()).await,
        "b"
    );
    assert_eq!(backend_for(&c, get(&m, "/exact").body(body()).unwrap()).await, "b");
    assert_eq!(backend_for(&c, get(&m, "/exact/more").body(body()).unwrap()).await, "a");
    assert_eq!(backend_for(&c, get(&m, "/users/42").body(body()).unwrap()).await, "c");
    assert_eq!(backend_for(&c, get(&m, "/users/bob").body(body()).unwrap()).await, "a");
}

#[tokio::test]
async fn weighted_split_holds_over_a_thousand_requests() {
    let m = mesh();
    let c = HttpClient::http1();
    let mut to_a = 0;
    for _ in 0..1000 {
        if backend_for(&c, get(&m, "/split").body(Full::default()).unwrap()).await == "a" {
            to_a += 1;
        }
    }
    // 80/20 by weight; a fair coin would land within 750..850 all but once in ~10^4 runs.
    assert!((750..=850).contains(&to_a), "{to_a} of 1000 went to the 80% backend");
}

#[test]
fn debug_route_explains_the_decision_for_a_request() {
    let m = mesh();
    let (status, body) =
        pillion_e2e::client::get(m.proxy.admin, "/debug/route?listener=0&path=/split/x&method=GET").unwrap();
    assert_eq!(status, 200, "{body}");
    let doc: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(doc["route"]["name"], "split");
    assert!(doc["why"].as_str().unwrap().contains("routes[5]"), "{doc}");
    let backends = doc["backends"].as_array().unwrap();
    assert_eq!(backends.len(), 2);
    assert_eq!(backends[0]["service"], "a");
    assert_eq!(backends[0]["weight"], 80);
    assert_eq!(backends[0]["endpoints"][0]["state"], "healthy");

    let (_, body) = pillion_e2e::client::get(m.proxy.admin, "/debug/route?listener=0&path=/other").unwrap();
    let doc: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert!(doc["route"].is_null());
    assert_eq!(doc["backends"][0]["service"], "a", "{doc}");

    let (status, body) = pillion_e2e::client::get(m.proxy.admin, "/debug/route?colour=red").unwrap();
    assert_eq!(status, 400);
    assert!(body.contains("unknown parameter \"colour\""), "{body}");
}
