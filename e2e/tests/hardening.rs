//! Hostile clients: request smuggling shapes never reach the upstream, slowloris clients are cut
//! off while normal traffic flows, and a listener at its connection limit stops accepting.

use std::{
    io::{Read, Write},
    net::{SocketAddr, TcpStream},
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use pillion_e2e::{Backend, Proxy, client::HttpClient, process::free_addr};

/// A raw TCP "upstream" that records how many bytes anyone ever sent it.
fn tripwire() -> (SocketAddr, Arc<AtomicUsize>) {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let seen = Arc::new(AtomicUsize::new(0));
    let counter = seen.clone();
    std::thread::spawn(move || {
        for s in l.incoming().flatten() {
            let counter = counter.clone();
            std::thread::spawn(move || {
                let mut s = s;
                let mut buf = [0u8; 4096];
                while let Ok(n) = s.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    counter.fetch_add(n, Ordering::SeqCst);
                }
            });
        }
    });
    (addr, seen)
}

fn proxy_to(upstream: SocketAddr, limits: &str) -> (Proxy, SocketAddr) {
    let listener = free_addr();
    let cfg = format!(
        "admin: {{bind: \"{{admin}}\"}}\ninbound: {{bind: \"{}\"}}\noutbound:\n  listeners: [{{bind: \"{listener}\", service: app}}]\n  limits: {{{limits}}}\nservices:\n  - {{name: app, protocol: http1, endpoints: [{{addr: \"{upstream}\"}}]}}\n",
        free_addr()
    );
    (Proxy::start(&cfg), listener)
}

fn raw(addr: SocketAddr, bytes: &[u8]) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(bytes).unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out).lines().next().unwrap_or("").to_owned()
}

#[test]
fn smuggling_shapes_are_refused_and_never_forwarded() {
    let (upstream, seen) = tripwire();
    let (_p, l) = proxy_to(upstream, "");
    let shapes: &[(&str, &[u8])] = &[
        ("conflicting content-length", b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nContent-Length: 5\r\n\r\nabcde"),
        ("transfer-encoding not chunked", b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\nabcd"),
        ("chunked not last", b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, gzip\r\n\r\n0\r\n\r\n"),
        ("chunked twice", b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
        ("invalid chunk size", b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n"),
        ("obs-fold", b"GET / HTTP/1.1\r\nHost: x\r\nX-A: a\r\n b\r\n\r\n"),
        ("bare CR", b"GET / HTTP/1.1\r\nHost: x\rX: y\r\n\r\n"),
        ("NUL in a header", b"GET / HTTP/1.1\r\nHost: x\r\nX-A: a\x00b\r\n\r\n"),
        ("space before colon", b"GET / HTTP/1.1\r\nHost: x\r\nX-A : b\r\n\r\n"),
    ];
    for (what, bytes) in shapes {
        let status = raw(l, bytes);
        assert!(status.starts_with("HTTP/1.1 400"), "{what}: {status:?}");
    }
    // The chunk-size case reaches the upstream's socket only as far as a request head could
    // before the body turned out bad; every other shape sends nothing at all.
    assert_eq!(seen.load(Ordering::SeqCst), 0, "bytes reached the upstream");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowloris_clients_are_cut_off_while_normal_requests_succeed() {
    let b = Backend::start("app");
    let (p, l) = proxy_to(b.addr, "header_read_timeout: 1s");
    // 300 clients that send half a request head and then nothing.
    let mut slow = Vec::new();
    for _ in 0..300 {
        let mut s = TcpStream::connect(l).unwrap();
        s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: ").unwrap();
        slow.push(s);
    }
    let c = HttpClient::http1();
    for _ in 0..50 {
        let r = c.get(l, "/", None).await.unwrap();
        assert_eq!(r.status(), 200);
    }
    // Every slow client is disconnected once the header timeout passes (bounded wait).
    let deadline = Instant::now() + Duration::from_secs(30);
    for mut s in slow {
        s.set_read_timeout(Some(
            deadline.saturating_duration_since(Instant::now()).max(Duration::from_millis(1)),
        ))
        .unwrap();
        let mut buf = [0u8; 512];
        match s.read(&mut buf) {
            Ok(_) => {}
            Err(e) => panic!("slow client still connected: {e}"),
        }
    }
    assert_eq!(c.get(l, "/", None).await.unwrap().status(), 200);
    // The 300 are gone; what is left is the test client's own pool.
    let open = p.metric("pillion_tcp_connections_open", &["direction=\"outbound\""]).unwrap();
    assert!(open <= 2.0, "{open} connections still open");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listener_at_max_connections_stops_accepting_and_counts_it() {
    let b = Backend::start("app");
    let (p, l) = proxy_to(b.addr, "max_connections: 5");
    let held: Vec<TcpStream> = (0..5).map(|_| TcpStream::connect(l).unwrap()).collect();
    // The sixth connection completes at the kernel (backlog) but is not served until one closes.
    let waiting = tokio::spawn(async move { HttpClient::http1().get(l, "/", None).await });
    let deadline = Instant::now() + Duration::from_secs(20);
    while p.metric("pillion_listener_connections_refused_total", &["direction=\"outbound\""]).unwrap_or(0.0)
        < 1.0
    {
        assert!(Instant::now() < deadline, "the limit was never reached");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(!waiting.is_finished());
    drop(held);
    let r = waiting.await.unwrap().unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn running_out_of_file_descriptors_backs_off_and_recovers() {
    let b = Backend::start("app");
    let listener = free_addr();
    let cfg = format!(
        "admin: {{bind: \"{{admin}}\"}}\ninbound: {{bind: \"{}\"}}\noutbound:\n  listeners: [{{bind: \"{listener}\", service: app}}]\nservices:\n  - {{name: app, protocol: http1, endpoints: [{{addr: \"{}\"}}]}}\n",
        free_addr(),
        b.addr
    );
    // 64 descriptors: a few dozen go to the runtime, listeners and log; the rest to clients.
    let p = Proxy::spawn_with_nofile(&cfg, &[], Some(64));
    p.wait_ready();
    let hogs: Vec<TcpStream> = (0..100).filter_map(|_| TcpStream::connect(listener).ok()).collect();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !p.log().contains("accept failed; backing off") {
        assert!(Instant::now() < deadline, "the proxy never hit its descriptor limit:\n{}", p.log());
        std::thread::sleep(Duration::from_millis(20));
    }
    // Backing off, not spinning: a handful of log lines, not thousands.
    std::thread::sleep(Duration::from_millis(500));
    let backoffs = p.log().matches("accept failed; backing off").count();
    assert!(backoffs < 200, "{backoffs} accept failures logged in a short while: spinning");
    drop(hogs);
    let c = HttpClient::http1();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match c.get(listener, "/", None).await {
            Ok(r) if r.status() == 200 => break,
            other => assert!(Instant::now() < deadline, "never recovered: {other:?}"),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(pillion_e2e::client::get_status(p.admin, "/live"), Some(200));
}

#[test]
fn bodies_over_a_routes_limit_get_413_declared_or_streamed() {
    let b = Backend::start("app");
    let listener = free_addr();
    let cfg = format!(
        "admin: {{bind: \"{{admin}}\"}}\ninbound: {{bind: \"{}\"}}\noutbound:\n  listeners: [{{bind: \"{listener}\", service: app}}]\n  limits: {{max_requests_per_connection: 3}}\nservices:\n  - {{name: app, protocol: http1, endpoints: [{{addr: \"{}\"}}]}}\nroutes:\n  - {{name: uploads, match: {{path: /upload}}, backends: [{{service: app}}], max_request_bytes: 1000}}\n",
        free_addr(),
        b.addr
    );
    let _p = Proxy::start(&cfg);
    let declared =
        format!("POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 2000\r\n\r\n{}", "a".repeat(2000));
    assert!(raw(listener, declared.as_bytes()).starts_with("HTTP/1.1 413"));
    let chunk = "b".repeat(600);
    let streamed = format!(
        "POST /upload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n258\r\n{chunk}\r\n258\r\n{chunk}\r\n0\r\n\r\n"
    );
    assert!(raw(listener, streamed.as_bytes()).starts_with("HTTP/1.1 413"));
    let small = "POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello";
    assert!(raw(listener, small.as_bytes()).starts_with("HTTP/1.1 200"));
}

#[test]
fn http1_connections_close_after_max_requests() {
    let b = Backend::start("app");
    let listener = free_addr();
    let cfg = format!(
        "admin: {{bind: \"{{admin}}\"}}\ninbound: {{bind: \"{}\"}}\noutbound:\n  listeners: [{{bind: \"{listener}\", service: app}}]\n  limits: {{max_requests_per_connection: 3}}\nservices:\n  - {{name: app, protocol: http1, endpoints: [{{addr: \"{}\"}}]}}\n",
        free_addr(),
        b.addr
    );
    let _p = Proxy::start(&cfg);
    let mut s = TcpStream::connect(listener).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    // Five pipelined requests: three answers, the third with `connection: close`, then EOF.
    s.write_all("GET / HTTP/1.1\r\nHost: x\r\n\r\n".repeat(5).as_bytes()).unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out);
    assert_eq!(text.matches("HTTP/1.1 200").count(), 3, "{text}");
    assert!(text.to_ascii_lowercase().contains("connection: close"), "{text}");
}
