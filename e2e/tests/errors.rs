//! Local replies: timeouts, dead upstreams, malformed and oversized requests each get their
//! status and `x-pillion-error`, and never harm other connections.

use std::{
    io::{Read, Write},
    net::{SocketAddr, TcpStream},
    time::Duration,
};

use pillion_e2e::{Backend, Proxy, client::HttpClient, process::free_addr};

fn raw(addr: SocketAddr, bytes: &[u8]) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(bytes).unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

fn setup() -> (Backend, Proxy, SocketAddr, SocketAddr, SocketAddr) {
    let b = Backend::start("app");
    let (ok, dead, empty) = (free_addr(), free_addr(), free_addr());
    let nobody = free_addr();
    let cfg = format!(
        r#"
admin: {{bind: "{{admin}}"}}
inbound: {{bind: "{inbound}"}}
outbound:
  listeners:
    - {{bind: "{ok}", service: app}}
    - {{bind: "{dead}", service: dead}}
    - {{bind: "{empty}", service: empty}}
services:
  - {{name: app, endpoints: [{{addr: "{b}"}}]}}
  - {{name: dead, connect_timeout: 500ms, endpoints: [{{addr: "{nobody}"}}]}}
  - {{name: empty}}
routes:
  - {{name: slow, match: {{path: /delay}}, backends: [{{service: app}}], timeout: 200ms}}
"#,
        inbound = free_addr(),
        b = b.addr,
    );
    let p = Proxy::start(&cfg);
    (b, p, ok, dead, empty)
}

#[tokio::test]
async fn timeouts_and_dead_upstreams_get_local_replies() {
    let (_b, p, ok, dead, empty) = setup();
    let c = HttpClient::http1();
    let r = c.get(ok, "/delay?ms=3000", None).await.unwrap();
    assert_eq!(r.status(), 504);
    assert_eq!(r.headers()["x-pillion-error"], "route-timeout");

    let r = c.get(dead, "/", None).await.unwrap();
    assert_eq!(r.status(), 503);
    assert_eq!(r.headers()["x-pillion-error"], "connect-failed");

    let r = c.get(empty, "/", None).await.unwrap();
    assert_eq!(r.status(), 503);
    assert_eq!(r.headers()["x-pillion-error"], "no-healthy-endpoint");

    assert_eq!(p.metric("pillion_requests_total", &["code=\"504\"", "route=\"slow\""]), Some(1.0));
    assert_eq!(p.metric("pillion_requests_total", &["code=\"503\"", "service=\"dead\""]), Some(1.0));
}

#[tokio::test]
async fn malformed_and_oversized_requests_are_refused_without_harming_others() {
    let (_b, _p, ok, ..) = setup();
    // A keep-alive connection opened before the abuse must keep working after it.
    let c = HttpClient::http1();
    assert_eq!(c.get(ok, "/", None).await.unwrap().status(), 200);

    let bad = [
        &b"GET / HTTP/1.1\r\nHost: x\r\nBad Header Line\r\n\r\n"[..],
        b"GARBAGE\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello",
    ];
    for req in bad {
        let reply = raw(ok, req);
        assert!(reply.starts_with("HTTP/1.1 400"), "{:?} -> {reply:?}", String::from_utf8_lossy(req));
    }
    let huge = format!("GET / HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n", "a".repeat(128 * 1024));
    let reply = raw(ok, huge.as_bytes());
    assert!(reply.starts_with("HTTP/1.1 431"), "{reply:?}");

    assert_eq!(c.get(ok, "/", None).await.unwrap().status(), 200);
}
