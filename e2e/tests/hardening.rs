//! Hostile clients: request smuggling shapes never reach the upstream, slowloris clients get 408
//! while normal traffic flows, idle connections close, and a listener at its connection limit
//! stops accepting.

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

/// A config with one explicit listener (returned) to service `app` at `upstream`, the
/// listener's `limits` (YAML flow mapping body), and `extra` YAML appended.
fn config(upstream: SocketAddr, limits: &str, extra: &str) -> (String, SocketAddr) {
    let listener = free_addr();
    let cfg = format!(
        "admin: {{bind: \"{{admin}}\"}}\ninbound: {{bind: \"{}\"}}\noutbound:\n  listeners: [{{bind: \"{listener}\", service: app}}]\n  limits: {{{limits}}}\nservices:\n  - {{name: app, protocol: http1, endpoints: [{{addr: \"{upstream}\"}}]}}\n{extra}",
        free_addr()
    );
    (cfg, listener)
}

fn proxy_to(upstream: SocketAddr, limits: &str) -> (Proxy, SocketAddr) {
    let (cfg, listener) = config(upstream, limits, "");
    (Proxy::start(&cfg), listener)
}

/// Sends `bytes` and returns all the proxy answered until it closed.
fn exchange(addr: SocketAddr, bytes: &[u8]) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(bytes).unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

/// The status line of the proxy's answer to `bytes`.
fn raw(addr: SocketAddr, bytes: &[u8]) -> String {
    exchange(addr, bytes).lines().next().unwrap_or("").to_owned()
}

#[test]
fn smuggling_shapes_are_refused_and_never_forwarded() {
    let (upstream, seen) = tripwire();
    let (p, l) = proxy_to(upstream, "");
    // Malformed or ambiguous heads: a 400, and nothing of them goes upstream.
    let shapes: &[(&str, &[u8])] = &[
        ("conflicting content-length", b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nContent-Length: 5\r\n\r\nabcde"),
        ("transfer-encoding not chunked", b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\nabcd"),
        ("chunked not last", b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, gzip\r\n\r\n0\r\n\r\n"),
        ("chunked twice", b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
        ("obs-fold", b"GET / HTTP/1.1\r\nHost: x\r\nX-A: a\r\n b\r\n\r\n"),
        ("NUL in a header", b"GET / HTTP/1.1\r\nHost: x\r\nX-A: a\x00b\r\n\r\n"),
        ("space before colon", b"GET / HTTP/1.1\r\nHost: x\r\nX-A : b\r\n\r\n"),
    ];
    for (what, bytes) in shapes {
        let status = raw(l, bytes);
        assert!(status.starts_with("HTTP/1.1 400"), "{what}: {status:?}");
    }
    // Shapes a lenient parser would forgive; the reply names the problem.
    let guarded: &[(&str, &[u8], &str)] = &[
        (
            "CL then TE",
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            "bad-framing",
        ),
        (
            "TE then CL",
            b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n0\r\n\r\n",
            "bad-framing",
        ),
        (
            "invalid chunk size",
            b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n",
            "bad-framing",
        ),
        ("bare LF in the request line", b"GET / HTTP/1.1\nHost: x\r\n\r\n", "bad-line-ending"),
        ("bare LF after a field", b"GET / HTTP/1.1\r\nHost: x\n\r\n", "bad-line-ending"),
        (
            "bare LF in a chunk line",
            b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n1\na\r\n0\r\n\r\n",
            "bad-line-ending",
        ),
        ("bare CR", b"GET / HTTP/1.1\r\nHost: x\rX: y\r\n\r\n", "bad-line-ending"),
    ];
    for (what, bytes, code) in guarded {
        let reply = exchange(l, bytes);
        assert!(reply.starts_with("HTTP/1.1 400"), "{what}: {reply:?}");
        assert!(reply.contains(&format!("x-pillion-error: {code}")), "{what}: {reply:?}");
    }
    let long = format!("GET /{} HTTP/1.1\r\nHost: x\r\n\r\n", "a".repeat(20_000));
    let reply = exchange(l, long.as_bytes());
    assert!(reply.starts_with("HTTP/1.1 414"), "{reply:?}");
    assert!(reply.contains("x-pillion-error: request-line-too-long"), "{reply:?}");
    assert_eq!(seen.load(Ordering::SeqCst), 0, "bytes reached the upstream");
    // Conflicting lengths, gzip alone, a coding after chunked, chunked twice, and the three above.
    let rejected = p.metric("pillion_http_rejected_total", &["reason=\"bad-framing\""]);
    assert_eq!(rejected, Some(7.0));
}

#[test]
fn long_but_allowed_request_lines_and_pipelined_requests_are_served() {
    let b = Backend::start("app");
    let (_p, l) = proxy_to(b.addr, "max_request_line_bytes: 32768");
    let long = format!("GET /{} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", "a".repeat(20_000));
    assert_eq!(raw(l, long.as_bytes()), "HTTP/1.1 200 OK");
    // A chunked body, a Content-Length body and a GET, in one write.
    let pipelined = b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\n\
        POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi\
        GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    let reply = exchange(l, pipelined);
    assert_eq!(reply.matches("HTTP/1.1 200").count(), 3, "{reply}");
    // A smuggling shape pipelined behind a clean request: the clean one is served, the other
    // refused, and the connection closes.
    let smuggled = b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi\
        POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n0\r\n\r\n";
    let reply = exchange(l, smuggled);
    let refused = reply.find("HTTP/1.1 400").unwrap_or_else(|| panic!("{reply}"));
    assert!(reply[..refused].starts_with("HTTP/1.1 200"), "{reply}");
    assert!(reply[refused..].contains("x-pillion-error: bad-framing"), "{reply}");
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
        let mut reply = Vec::new();
        if let Err(e) = s.read_to_end(&mut reply) {
            panic!("slow client still connected: {e}");
        }
        let reply = String::from_utf8_lossy(&reply);
        assert!(reply.starts_with("HTTP/1.1 408"), "{reply:?}");
    }
    assert_eq!(c.get(l, "/", None).await.unwrap().status(), 200);
    // The 300 are gone; what is left is the test client's own pool.
    p.wait_metric(
        "pillion_tcp_connections_open",
        &["direction=\"outbound\""],
        "slow clients released",
        |open| open <= 2.0,
    );
}

/// Reads one response with a Content-Length body from a keep-alive connection.
fn read_response(s: &mut TcpStream) -> String {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        assert_eq!(s.read(&mut byte).unwrap(), 1, "closed mid-response: {}", String::from_utf8_lossy(&head));
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    let len: usize = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().parse().unwrap())
        })
        .unwrap_or(0);
    let mut body = vec![0u8; len];
    s.read_exact(&mut body).unwrap();
    head
}

#[test]
fn idle_connections_are_closed_and_busy_ones_kept() {
    let b = Backend::start("app");
    let (p, l) = proxy_to(b.addr, "idle_timeout: 2s");
    let request = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";
    let mut idle = TcpStream::connect(l).unwrap();
    idle.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    idle.write_all(request).unwrap();
    assert!(read_response(&mut idle).starts_with("HTTP/1.1 200"));
    // A connection that keeps talking outlives several idle timeouts.
    let mut busy = TcpStream::connect(l).unwrap();
    busy.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    for _ in 0..12 {
        busy.write_all(request).unwrap();
        assert!(read_response(&mut busy).starts_with("HTTP/1.1 200"));
        std::thread::sleep(Duration::from_millis(500));
    }
    // The idle one was closed without a reply (bounded by the read timeout above).
    let mut rest = Vec::new();
    idle.read_to_end(&mut rest).expect("idle connection still open");
    assert!(rest.is_empty(), "{}", String::from_utf8_lossy(&rest));
    assert_eq!(p.metric("pillion_http_rejected_total", &[]), None, "an idle close is not a rejection");
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
    let (cfg, listener) = config(b.addr, "", "");
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
    let routes = "routes:\n  - {name: uploads, match: {path: /upload}, backends: [{service: app}], max_request_bytes: 1000}\n";
    let (cfg, listener) = config(b.addr, "max_requests_per_connection: 3", routes);
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
    let (_p, listener) = proxy_to(b.addr, "max_requests_per_connection: 3");
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
