//! HTTP forwarding through one sidecar: HTTP/1.1 and h2c on either side, streaming bodies,
//! trailers, WebSocket, header hygiene.

use std::{io::Write, net::SocketAddr};

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http_body_util::{BodyExt, Full};
use pillion_e2e::{Backend, Proxy, backend, client::curl_status, process::free_addr};
use sha2::{Digest, Sha256};

/// A sidecar with one explicit listener per upstream protocol, all to the same backend.
fn setup() -> (Backend, Proxy, [SocketAddr; 3]) {
    let b = Backend::start("app");
    let ls = [free_addr(), free_addr(), free_addr()];
    let cfg = format!(
        r#"
admin: {{bind: "{{admin}}"}}
inbound: {{bind: "{inbound}", app: "{b}"}}
outbound:
  listeners:
    - {{bind: "{auto}", service: auto}}
    - {{bind: "{h1}", service: h1}}
    - {{bind: "{h2}", service: h2}}
services:
  - {{name: auto, protocol: auto, endpoints: [{{addr: "{b}"}}]}}
  - {{name: h1, protocol: http1, endpoints: [{{addr: "{b}"}}]}}
  - {{name: h2, protocol: http2, endpoints: [{{addr: "{b}"}}]}}
"#,
        inbound = free_addr(),
        b = b.addr,
        auto = ls[0],
        h1 = ls[1],
        h2 = ls[2],
    );
    (b, Proxy::start(&cfg), ls)
}

fn version_seen(listener: SocketAddr, client_flag: &str) -> String {
    let (code, body) = curl_status(&[client_flag, &format!("http://{listener}/headers")]);
    assert_eq!(code, 200, "{body}");
    let heads: Vec<(String, String)> = serde_json::from_str(&body).unwrap();
    heads.into_iter().find(|(k, _)| k == ":version").unwrap().1
}

#[test]
fn http1_and_h2c_clients_reach_http1_and_http2_upstreams_independently() {
    let (_b, _p, [auto, h1, h2]) = setup();
    // `auto` follows the client; `http1` and `http2` pin the upstream protocol.
    assert_eq!(version_seen(auto, "--http1.1"), "HTTP/1.1");
    assert_eq!(version_seen(auto, "--http2-prior-knowledge"), "HTTP/2.0");
    assert_eq!(version_seen(h1, "--http2-prior-knowledge"), "HTTP/1.1");
    assert_eq!(version_seen(h2, "--http1.1"), "HTTP/2.0");
    assert_eq!(version_seen(h2, "--http2-prior-knowledge"), "HTTP/2.0");
}

#[test]
fn inbound_listener_forwards_to_the_app() {
    let b = Backend::start("app");
    let inbound = free_addr();
    let cfg =
        format!("admin: {{bind: \"{{admin}}\"}}\ninbound: {{bind: \"{inbound}\", app: \"{}\"}}\n", b.addr);
    let p = Proxy::start(&cfg);
    let (code, body) = curl_status(&[&format!("http://{inbound}/")]);
    assert_eq!((code, body.as_str()), (200, "backend app\n"));
    assert_eq!(p.metric("pillion_requests_total", &["direction=\"inbound\"", "code=\"200\""]), Some(1.0));
}

#[test]
fn hop_by_hop_headers_are_removed_and_a_request_id_added() {
    let (_b, _p, [auto, ..]) = setup();
    let (code, body) = curl_status(&[
        "--http1.1",
        "-H",
        "Connection: keep-alive, x-hop",
        "-H",
        "x-hop: secret",
        "-H",
        "Keep-Alive: timeout=5",
        "-H",
        "x-app: kept",
        &format!("http://{auto}/headers"),
    ]);
    assert_eq!(code, 200);
    let heads: Vec<(String, String)> = serde_json::from_str(&body).unwrap();
    let has = |n: &str| heads.iter().any(|(k, _)| k == n);
    assert!(!has("x-hop") && !has("keep-alive"), "{heads:?}");
    assert!(has("x-app"));
    let id = heads.iter().find(|(k, _)| k == "x-request-id").map(|(_, v)| v.len());
    assert_eq!(id, Some(36), "a UUID request id is added: {heads:?}");

    let (_, body) = curl_status(&["-H", "x-request-id: mine", &format!("http://{auto}/headers")]);
    assert!(body.contains("\"x-request-id\",\"mine\""), "{body}");
}

fn sha256_hex(data: &[u8]) -> String {
    backend::hex(&Sha256::digest(data))
}

#[test]
fn fifty_megabytes_stream_up_and_down_intact_over_both_protocols() {
    let (_b, p, [_, h1, h2]) = setup();
    const SIZE: usize = 50 * 1024 * 1024;
    let mut data = vec![0u8; SIZE];
    fastrand::fill(&mut data);
    let file = p.path("upload.bin");
    std::fs::File::create(&file).unwrap().write_all(&data).unwrap();
    let expected_up = format!("{} {SIZE}", sha256_hex(&data));
    let expected_down = sha256_hex(&(0..SIZE as u64).map(backend::pattern_byte).collect::<Vec<_>>());

    for (listener, flag) in [(h1, "--http2-prior-knowledge"), (h2, "--http1.1")] {
        let (code, body) =
            curl_status(&[flag, "-T", file.to_str().unwrap(), &format!("http://{listener}/upload")]);
        assert_eq!((code, body.trim()), (200, expected_up.as_str()), "upload via {listener} ({flag})");

        let out = pillion_e2e::client::curl(&[flag, &format!("http://{listener}/download?bytes={SIZE}")]);
        assert_eq!(out.stdout.len(), SIZE);
        assert_eq!(sha256_hex(&out.stdout), expected_down, "download via {listener} ({flag})");
    }
}

#[tokio::test]
async fn trailers_pass_through_over_http2() {
    let (_b, _p, [auto, ..]) = setup();
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .http2_only(true)
        .build_http::<Full<Bytes>>();
    let resp = client.get(format!("http://{auto}/trailers").parse().unwrap()).await.unwrap();
    assert_eq!(resp.status(), 200);
    let collected = resp.into_body().collect().await.unwrap();
    let trailers = collected.trailers().cloned().expect("trailers arrive");
    assert_eq!(trailers["x-checksum"], "abc123");
    assert_eq!(collected.to_bytes(), "with trailers\n");
}

#[tokio::test]
async fn websocket_upgrade_is_tunnelled() {
    let (_b, _p, [auto, ..]) = setup();
    let (mut ws, resp) = tokio_tungstenite::connect_async(format!("ws://{auto}/ws")).await.expect("upgrade");
    assert_eq!(resp.status(), 101);
    for msg in ["hello", "through", "pillion"] {
        ws.send(tokio_tungstenite::tungstenite::Message::text(msg)).await.unwrap();
        let echo = ws.next().await.unwrap().unwrap();
        assert_eq!(echo.into_text().unwrap().as_str(), msg);
    }
    ws.close(None).await.unwrap();
}
