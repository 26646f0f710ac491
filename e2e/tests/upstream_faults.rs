//! Hostile upstreams: a tiny raw TCP server behind a `protocol: http1` service answers `/ok`
//! properly and every other path with one fault. Each fault must end only that request, with a
//! local reply (502 `upstream-reset`, 504 `route-timeout`) or a response cut short (never one
//! that looks complete), and leave the proxy healthy: the next request to the same upstream
//! (`/ok`, through the endpoint's pool) and to a good backend both succeed. Also: a client that
//! disconnects mid-upload gets its upstream request cancelled and its connection released.
//!
//! The client side is raw HTTP/1.1 on a socket, so a truncated body is seen as exactly that.

use std::{
    io::{Read, Write},
    net::{SocketAddr, TcpStream},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::Duration,
};

use pillion_e2e::{Backend, Proxy, process::free_addr};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream as AsyncStream},
    time::{Instant, sleep},
};

/// What the hostile upstream does with any request but `/ok`.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Fault {
    /// Headers and 1000 of 100000 declared body bytes, then RST (SO_LINGER 0).
    ResetMidBody,
    /// Bytes that are not HTTP.
    Garbage,
    /// `Content-Length: 5`, then a whole second response: one the proxy must never deliver.
    LongerThanDeclared,
    /// Reads the request and never answers.
    Stall,
    /// Headers declaring 100 body bytes, then FIN.
    CloseAfterHeaders,
    /// Reads a request body slowly (16 KiB every 10 ms).
    SlowReader,
    /// Both `Content-Length` and `Transfer-Encoding: chunked` (a response-splitting shape).
    LengthAndChunked,
}

/// What the hostile upstream saw.
#[derive(Default)]
struct Seen {
    /// Connections the proxy closed (EOF or reset seen while reading).
    closed: AtomicUsize,
    /// A chunked upload arrived complete (its last chunk seen).
    upload_completed: AtomicBool,
}

async fn hostile(fault: Fault) -> (SocketAddr, Arc<Seen>) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let seen = Arc::new(Seen::default());
    let state = seen.clone();
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            tokio::spawn(serve_conn(s, fault, state.clone()));
        }
    });
    (addr, seen)
}

async fn serve_conn(mut s: AsyncStream, fault: Fault, seen: Arc<Seen>) {
    let mut buf = Vec::new();
    loop {
        // One request head.
        let end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            let mut chunk = [0u8; 4096];
            match s.read(&mut chunk).await {
                Ok(0) | Err(_) => {
                    seen.closed.fetch_add(1, Ordering::SeqCst);
                    return;
                }
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        };
        let head = String::from_utf8_lossy(&buf[..end]).into_owned();
        buf.drain(..end);
        if head.split(' ').nth(1) == Some("/ok") {
            let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok").await;
            continue;
        }
        let reply: Vec<u8> = match fault {
            Fault::ResetMidBody => {
                [&b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n"[..], &[b'x'; 1000]].concat()
            }
            Fault::Garbage => b"\x16\x03\x01\x02\x00 this is not HTTP at all\r\n\r\n".to_vec(),
            Fault::LongerThanDeclared => {
                b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhelloHTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\nSMUGGLED"
                    .to_vec()
            }
            Fault::CloseAfterHeaders => b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n".to_vec(),
            Fault::LengthAndChunked => b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n\
                5\r\nhello\r\n0\r\n\r\n"
                .to_vec(),
            Fault::Stall | Fault::SlowReader => Vec::new(),
        };
        let _ = s.write_all(&reply).await;
        match fault {
            Fault::ResetMidBody => {
                let _ = s.set_zero_linger();
                return;
            }
            Fault::CloseAfterHeaders => return,
            _ => {}
        }
        // Never answer again on this connection; count it when the proxy closes it.
        let mut tail = std::mem::take(&mut buf);
        let mut chunk = vec![0u8; 16 * 1024];
        loop {
            match s.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => tail.extend_from_slice(&chunk[..n]),
            }
            if tail.ends_with(b"\r\n0\r\n\r\n") {
                seen.upload_completed.store(true, Ordering::SeqCst);
            }
            let keep = tail.len().saturating_sub(16);
            tail.drain(..keep);
            if fault == Fault::SlowReader {
                sleep(Duration::from_millis(10)).await;
            }
        }
        seen.closed.fetch_add(1, Ordering::SeqCst);
        return;
    }
}

/// The proxy with two explicit listeners: `bad` (the hostile upstream) and `good` (a backend).
struct Setup {
    proxy: Proxy,
    bad: SocketAddr,
    good: SocketAddr,
    seen: Arc<Seen>,
    _backend: Backend,
}

async fn setup(fault: Fault, route_timeout: Option<&str>) -> Setup {
    let (upstream, seen) = hostile(fault).await;
    let backend = Backend::start("good");
    let (bad, good) = (free_addr(), free_addr());
    let routes = route_timeout.map_or(String::new(), |t| {
        format!("routes:\n  - {{name: capped, match: {{host: bad}}, backends: [{{service: bad}}], timeout: {t}}}\n")
    });
    let cfg = format!(
        "admin: {{bind: \"{{admin}}\"}}\ninbound: {{bind: \"{}\"}}\noutbound:\n  listeners:\n    - {{bind: \"{bad}\", service: bad}}\n    - {{bind: \"{good}\", service: good}}\nservices:\n  - {{name: bad, protocol: http1, endpoints: [{{addr: \"{upstream}\"}}]}}\n  - {{name: good, protocol: http1, endpoints: [{{addr: \"{}\"}}]}}\n{routes}",
        free_addr(),
        backend.addr,
    );
    Setup { proxy: Proxy::start(&cfg), bad, good, seen, _backend: backend }
}

/// A response as the client saw it.
#[derive(Debug)]
struct Reply {
    /// 0 when the connection closed before any response byte.
    status: u16,
    head: String,
    body: Vec<u8>,
    /// The whole declared body arrived.
    complete: bool,
    /// The proxy closed the connection (EOF or reset, not a read timeout).
    closed: bool,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }
}

/// One keep-alive GET on a fresh connection, read until the declared body is complete or the
/// proxy closes the connection (bounded: a proxy that does neither fails the test).
fn exchange(addr: SocketAddr, path: &str) -> Reply {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: test\r\n\r\n").unwrap();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).into_owned();
            let status = head.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
            let mut r = Reply { status, head, body: buf[end + 4..].to_vec(), complete: false, closed: false };
            let len: Option<usize> = r.header("content-length").and_then(|v| v.parse().ok());
            let chunked = r.header("transfer-encoding").is_some_and(|v| v.contains("chunked"));
            r.complete = match len {
                Some(n) => r.body.len() >= n,
                None => chunked && r.body.ends_with(b"0\r\n\r\n"),
            };
            if r.complete {
                return r;
            }
        }
        let closed = match s.read(&mut chunk) {
            Ok(0) => true,
            Ok(n) => {
                buf.extend_from_slice(&chunk[..n]);
                continue;
            }
            Err(e) => !matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut),
        };
        assert!(closed, "{path}: the proxy neither finished the response nor closed: {buf:?}");
        let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
            // Closed before a whole head: an HTTP/1.1 client's "empty reply", i.e. a reset.
            assert!(buf.is_empty(), "{path}: closed inside the response head: {buf:?}");
            return Reply { status: 0, head: String::new(), body: Vec::new(), complete: false, closed };
        };
        let head = String::from_utf8_lossy(&buf[..end]).into_owned();
        let status = head.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
        return Reply { status, head, body: buf[end + 4..].to_vec(), complete: false, closed };
    }
}

/// The request after a fault: the same upstream's `/ok` and the good backend both answer,
/// the proxy has not panicked.
fn assert_healthy(s: &Setup, what: &str) {
    for _ in 0..3 {
        let r = exchange(s.bad, "/ok");
        assert_eq!(
            (r.status, r.body.as_slice(), r.complete),
            (200, &b"ok"[..], true),
            "{what}: /ok after: {r:?}"
        );
    }
    let r = exchange(s.good, "/");
    assert_eq!((r.status, r.complete), (200, true), "{what}: good backend after: {r:?}");
    assert_eq!(r.body, b"backend good\n");
    assert!(!s.proxy.log().contains("panicked"), "{what}: the proxy panicked");
}

/// A response cut short: the head (or nothing at all, an "empty reply") and less body than it
/// declared, then the connection closed, so no client can take it for a whole response.
fn assert_cut_short(r: &Reply, declared: usize) {
    assert!(matches!(r.status, 0 | 200), "{r:?}");
    assert!(!r.complete && r.closed && r.body.len() < declared, "{r:?}");
}

fn assert_local_reply(r: &Reply, status: u16, code: &str) {
    assert_eq!(r.status, status, "{r:?}");
    assert_eq!(r.header("x-pillion-error"), Some(code), "{r:?}");
    assert!(r.complete, "{r:?}");
}

/// Waits (bounded) until `cond` holds.
async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !cond() {
        assert!(Instant::now() < deadline, "{what}: not within 30s");
        sleep(Duration::from_millis(50)).await;
    }
}

fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> tokio::task::JoinHandle<T> {
    tokio::task::spawn_blocking(f)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_reset_mid_response() {
    let s = setup(Fault::ResetMidBody, None).await;
    let bad = s.bad;
    let r = blocking(move || exchange(bad, "/fault")).await.unwrap();
    // The reset may overtake the response head (then 502), or not (then the response is cut).
    match r.status {
        502 => assert_local_reply(&r, 502, "upstream-reset"),
        _ => assert_cut_short(&r, 100_000),
    }
    blocking(move || assert_healthy(&s, "reset mid-response")).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_garbage_ends_the_request_and_its_connection() {
    let s = setup(Fault::Garbage, None).await;
    let bad = s.bad;
    let r = blocking(move || exchange(bad, "/fault")).await.unwrap();
    // A whole local reply (which one: see the ignored test below).
    assert!(r.complete && r.header("x-pillion-error").is_some(), "{r:?}");
    // The garbage connection is not kept: the proxy closes it.
    let seen = s.seen.clone();
    eventually("garbage connection closed", || seen.closed.load(Ordering::SeqCst) >= 1).await;
    blocking(move || assert_healthy(&s, "garbage")).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_garbage_gets_502() {
    let s = setup(Fault::Garbage, None).await;
    let bad = s.bad;
    let r = blocking(move || exchange(bad, "/fault")).await.unwrap();
    assert_local_reply(&r, 502, "upstream-reset");
    // Counted as a 502 of the service.
    let n = s.proxy.metric("pillion_requests_total", &["code=\"502\"", "service=\"bad\""]);
    assert_eq!(n, Some(1.0));
    // And logged as a warning naming the endpoint.
    let log = s.proxy.log();
    let line = log.lines().find(|l| l.contains("upstream request failed")).unwrap_or_default();
    assert!(line.contains("WARN") && line.contains("endpoint="), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_body_longer_than_declared_is_cut_and_never_reused() {
    let s = setup(Fault::LongerThanDeclared, None).await;
    let bad = s.bad;
    let r = blocking(move || exchange(bad, "/fault")).await.unwrap();
    assert_eq!((r.status, r.body.as_slice(), r.complete), (200, &b"hello"[..], true), "{r:?}");
    // The bytes after the declared body are never taken as the next request's response:
    // `assert_healthy` gets `ok` three times, never `SMUGGLED`.
    blocking(move || assert_healthy(&s, "longer than declared")).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_response_with_length_and_chunked_gets_502() {
    let s = setup(Fault::LengthAndChunked, None).await;
    let bad = s.bad;
    let r = blocking(move || exchange(bad, "/fault")).await.unwrap();
    assert_local_reply(&r, 502, "upstream-reset");
    blocking(move || assert_healthy(&s, "length and chunked")).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_upstream_gets_504_and_its_connection_closed() {
    let s = setup(Fault::Stall, Some("500ms")).await;
    let bad = s.bad;
    let r = blocking(move || exchange(bad, "/fault")).await.unwrap();
    assert_local_reply(&r, 504, "route-timeout");
    let seen = s.seen.clone();
    eventually("stalled connection closed", || seen.closed.load(Ordering::SeqCst) >= 1).await;
    blocking(move || assert_healthy(&s, "stall")).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_closing_after_headers_cuts_the_body() {
    let s = setup(Fault::CloseAfterHeaders, None).await;
    let bad = s.bad;
    let r = blocking(move || exchange(bad, "/fault")).await.unwrap();
    // The proxy got a 200 head, but its body failed before the first byte: hyper drops the
    // buffered head with the connection, so the client gets an empty reply, or the head alone.
    assert_cut_short(&r, 100);
    assert!(r.body.is_empty(), "{r:?}");
    blocking(move || assert_healthy(&s, "close after headers")).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_disconnect_mid_upload_cancels_the_upstream_request() {
    let s = setup(Fault::SlowReader, None).await;
    let bad = s.bad;
    // A chunked upload of up to 4 MiB, never finished: the client stops when its writes block
    // (the upstream reads slowly) or after 4 MiB, and goes away.
    blocking(move || {
        let mut c = TcpStream::connect(bad).unwrap();
        c.set_write_timeout(Some(Duration::from_secs(1))).unwrap();
        c.write_all(b"POST /upload HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: chunked\r\n\r\n").unwrap();
        let chunk =
            [format!("{:x}\r\n", 64 * 1024).into_bytes(), vec![b'u'; 64 * 1024], b"\r\n".to_vec()].concat();
        for _ in 0..64 {
            if c.write_all(&chunk).is_err() {
                break;
            }
        }
    })
    .await
    .unwrap();
    let seen = s.seen.clone();
    eventually("upstream connection closed", || seen.closed.load(Ordering::SeqCst) >= 1).await;
    assert!(
        !s.seen.upload_completed.load(Ordering::SeqCst),
        "the cut upload reached the upstream as complete"
    );
    let p = &s.proxy;
    eventually("client connection released", || {
        p.metric("pillion_tcp_connections_open", &["direction=\"outbound\""]) == Some(0.0)
    })
    .await;
    blocking(move || assert_healthy(&s, "client disconnect")).await.unwrap();
}
