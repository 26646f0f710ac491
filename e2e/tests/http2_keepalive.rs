//! HTTP/2 keepalive on upstream connections, per service: an upstream that takes a request and
//! then goes silent (a peer gone behind NAT, a half-dead load balancer) never answers the proxy's
//! PING, so its connection is closed after `interval` + `timeout` and the request ends with 502
//! `upstream-reset` long before its route timeout; with `interval: 0s` no PING is sent and only
//! the route timeout ends it.

use std::{io::Read, net::TcpListener};

use pillion_e2e::{Proxy, client::curl_status, process::free_addr};

/// An upstream that accepts connections and reads them, never writing a byte.
fn silent_upstream() -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("address");
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            std::thread::spawn(move || {
                let mut conn = conn;
                let mut buf = [0u8; 4096];
                while matches!(conn.read(&mut buf), Ok(n) if n > 0) {}
            });
        }
    });
    addr
}

#[test]
fn a_peer_that_stops_answering_pings_is_dropped_before_the_route_timeout() {
    let silent = silent_upstream();
    let (alive, quiet) = (free_addr(), free_addr());
    let cfg = format!(
        "admin: {{bind: \"{{admin}}\"}}\ninbound: {{bind: \"{}\"}}\noutbound:\n  listeners:\n    \
         - {{bind: \"{alive}\", service: alive}}\n    - {{bind: \"{quiet}\", service: quiet}}\n\
         services:\n  \
         - {{name: alive, protocol: http2, http2_keepalive: {{interval: 200ms, timeout: 200ms}}, endpoints: [{{addr: \"{silent}\"}}]}}\n  \
         - {{name: quiet, protocol: http2, http2_keepalive: {{interval: 0s}}, endpoints: [{{addr: \"{silent}\"}}]}}\n\
         routes:\n  \
         - {{name: alive, match: {{host: alive}}, backends: [{{service: alive}}], timeout: 60s}}\n  \
         - {{name: quiet, match: {{host: quiet}}, backends: [{{service: quiet}}], timeout: 2s}}\n",
        free_addr()
    );
    let _proxy = Proxy::start(&cfg);
    let (status, head) = curl_status(&["-sS", "-i", &format!("http://{alive}/")]);
    assert_eq!(status, 502, "{head}");
    assert!(head.contains("x-pillion-error: upstream-reset"), "{head}");
    let (status, head) = curl_status(&["-sS", "-i", &format!("http://{quiet}/")]);
    assert_eq!(status, 504, "{head}");
    assert!(head.contains("x-pillion-error: route-timeout"), "{head}");
}
