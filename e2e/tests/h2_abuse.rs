//! HTTP/2 abuse against an explicit outbound listener (h2c) whose service speaks HTTP/2 to a
//! normal backend. The attacker is `support/h2_attack.py` (Python's `h2`, `hyperframe` and
//! `hpack`), one connection per run, printing a JSON line of what the proxy sent back.
//!
//! Each test proves that the abuse ends the offending connection (GOAWAY with the expected error
//! code, then close) or, where the protocol says so, just the offending stream; that a normal
//! hyper HTTP/2 client on its own connection gets 200 while the attack runs and after it; that
//! the attacker's connection is released (`pillion_tcp_connections_open` back to 0); and that the
//! proxy process is still alive, with `/ready` and `/metrics` answering and no panic logged.

use std::{net::SocketAddr, path::PathBuf, process::Command, time::Duration};

use pillion_e2e::{
    Backend, Proxy,
    client::{HttpClient, get_status},
    process::free_addr,
};
use serde_json::Value;
use tokio::time::{Instant, sleep};

// HTTP/2 error codes (RFC 9113, section 7).
const PROTOCOL_ERROR: u64 = 0x1;
const FLOW_CONTROL_ERROR: u64 = 0x3;
const COMPRESSION_ERROR: u64 = 0x9;
const ENHANCE_YOUR_CALM: u64 = 0xb;

/// A backend, the proxy, and its h2c listener.
struct Setup {
    _backend: Backend,
    proxy: Proxy,
    listener: SocketAddr,
}

fn setup() -> Setup {
    let backend = Backend::start("app");
    let listener = free_addr();
    let cfg = format!(
        "admin: {{bind: \"{{admin}}\"}}\ninbound: {{bind: \"{}\"}}\noutbound:\n  listeners: [{{bind: \"{listener}\", service: app}}]\nservices:\n  - {{name: app, protocol: http2, endpoints: [{{addr: \"{}\"}}]}}\n",
        free_addr(),
        backend.addr,
    );
    Setup { proxy: Proxy::start(&cfg), _backend: backend, listener }
}

/// What the attacker saw, from its JSON line.
#[derive(Debug)]
struct Seen {
    /// Frames the attacker sent.
    sent: u64,
    /// GOAWAY error code.
    goaway: Option<u64>,
    goaway_debug: String,
    /// The proxy closed (or reset) the connection.
    closed: bool,
    /// RST_STREAM error codes.
    rst: Vec<u64>,
    /// `:status` of every response.
    statuses: Vec<u64>,
}

/// Runs one attack (bounded by the script's own send and read limits) and parses its report.
fn attack(listener: SocketAddr, mode: &str, count: u64) -> Seen {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/support/h2_attack.py");
    let out = Command::new(pillion_e2e::process::python3())
        .arg(script)
        .args([&listener.to_string(), mode, &count.to_string()])
        .output()
        .expect("run python3 (scripts/setup.sh installs python3-h2)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{mode}: attacker failed: {}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_str(stdout.trim())
        .unwrap_or_else(|e| panic!("{mode}: bad attacker output {stdout:?}: {e}"));
    let codes =
        |k: &str| v[k].as_array().map(|a| a.iter().filter_map(Value::as_u64).collect()).unwrap_or_default();
    Seen {
        sent: v["sent"].as_u64().unwrap_or(0),
        goaway: v["goaway"].as_u64(),
        goaway_debug: v["goaway_debug"].as_str().unwrap_or("").to_owned(),
        closed: v["closed"].as_bool().unwrap_or(false),
        rst: codes("rst"),
        statuses: codes("statuses"),
    }
}

/// Runs the attack while a normal HTTP/2 client keeps sending requests on its own connection,
/// checks that every one of them got 200, before, during and after, and that the proxy is
/// healthy and holds no connection once the clients are gone.
async fn under_attack(s: &Setup, mode: &'static str, count: u64) -> Seen {
    let l = s.listener;
    let normal = HttpClient::http2();
    let get = |c: HttpClient| async move {
        let r = c.get(l, "/", None).await.unwrap_or_else(|e| panic!("{mode}: normal client failed: {e}"));
        assert_eq!(r.status(), 200, "{mode}: normal client");
    };
    get(normal.clone()).await;
    let running = tokio::task::spawn_blocking(move || attack(l, mode, count));
    let mut during = 0;
    while !running.is_finished() {
        get(normal.clone()).await;
        during += 1;
        sleep(Duration::from_millis(20)).await;
    }
    let seen = running.await.expect("attack thread");
    // After: the same connection and a brand-new one both still work.
    get(normal.clone()).await;
    get(HttpClient::http2()).await;
    drop(normal);
    eprintln!("{mode}: {seen:?}; {during} normal requests during the attack");

    let p = &s.proxy;
    assert_eq!(get_status(p.admin, "/ready"), Some(200), "{mode}: proxy not ready");
    assert!(p.metrics().contains("pillion_requests_total"), "{mode}: /metrics does not answer");
    // The attacker's connection (and the normal clients') are released, within a bounded wait.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let open = p.metric("pillion_tcp_connections_open", &["direction=\"outbound\""]);
        if open == Some(0.0) {
            break;
        }
        assert!(Instant::now() < deadline, "{mode}: {open:?} client connections still open");
        sleep(Duration::from_millis(50)).await;
    }
    assert!(!p.log().contains("panicked"), "{mode}: the proxy panicked");
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rapid_reset_gets_goaway() {
    let s = setup();
    // CVE-2023-44487: 2000 streams each opened and cancelled at once.
    let seen = under_attack(&s, "rapid_reset", 2000).await;
    assert_eq!(seen.goaway, Some(ENHANCE_YOUR_CALM), "{seen:?}");
    assert_eq!(seen.goaway_debug, "too_many_resets");
    assert!(seen.closed, "{seen:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn continuation_flood_gets_goaway() {
    let s = setup();
    // A header block that never ends: HEADERS without END_HEADERS, then 2000 CONTINUATIONs.
    let seen = under_attack(&s, "continuation", 2000).await;
    assert_eq!(seen.goaway, Some(ENHANCE_YOUR_CALM), "{seen:?}");
    assert_eq!(seen.goaway_debug, "too_many_continuations");
    assert!(seen.closed, "{seen:?}");
}

/// A flood of SETTINGS or PING frames runs out of the connection's control-frame budget long
/// before its million frames are sent: the guard ends the connection with a GOAWAY.
fn assert_flood_cut_off(seen: &Seen, count: u64) {
    assert_eq!(seen.goaway, Some(ENHANCE_YOUR_CALM), "{seen:?}");
    assert_eq!(seen.goaway_debug, "control frame flood", "{seen:?}");
    assert!(seen.sent < count, "{seen:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settings_flood_gets_goaway() {
    let s = setup();
    let seen = under_attack(&s, "settings_flood", 1_000_000).await;
    assert_flood_cut_off(&seen, 1_000_000);
    let rejected = s.proxy.metric("pillion_http_rejected_total", &["reason=\"h2-control-flood\""]);
    assert_eq!(rejected, Some(1.0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ping_flood_gets_goaway() {
    let s = setup();
    let seen = under_attack(&s, "ping_flood", 1_000_000).await;
    assert_flood_cut_off(&seen, 1_000_000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn huge_hpack_tables_are_refused() {
    let s = setup();
    // SETTINGS_HEADER_TABLE_SIZE = 2^32-1 is only a permission for the proxy's encoder: the
    // request after it is answered. A header block resizing the proxy's decoder table to 2^30
    // (it allows 4096) is a connection error.
    let seen = under_attack(&s, "header_table", 0).await;
    assert_eq!(seen.statuses, [200], "{seen:?}");
    assert!(matches!(seen.goaway, Some(PROTOCOL_ERROR | COMPRESSION_ERROR)), "{seen:?}");
    assert!(seen.closed, "{seen:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_header_lists_get_431_or_goaway() {
    let s = setup();
    // ~100 KiB of headers (over the 64 KiB max_header_list_size): that request is refused with
    // 431, the connection lives on.
    let seen = under_attack(&s, "big_headers", 100).await;
    assert_eq!(seen.statuses, [431], "{seen:?}");
    assert_eq!(seen.goaway, None, "{seen:?}");
    // ~2 MiB of headers (1.5 MiB of HPACK in 94 frames): the connection is cut off.
    let seen = under_attack(&s, "big_headers", 2000).await;
    assert_eq!(seen.goaway, Some(ENHANCE_YOUR_CALM), "{seen:?}");
    assert!(seen.statuses.is_empty(), "{seen:?}");
    assert!(seen.closed, "{seen:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn window_overflow_is_a_flow_control_error() {
    let s = setup();
    // A stream's window pushed past 2^31-1: that stream is reset, the next request on the same
    // connection is answered.
    let seen = under_attack(&s, "window_stream", 0).await;
    assert_eq!(seen.rst, [FLOW_CONTROL_ERROR], "{seen:?}");
    assert_eq!(seen.statuses, [200], "{seen:?}");
    assert_eq!(seen.goaway, None, "{seen:?}");
    // The connection's window pushed past 2^31-1: GOAWAY.
    let seen = under_attack(&s, "window_overflow", 0).await;
    assert_eq!(seen.goaway, Some(FLOW_CONTROL_ERROR), "{seen:?}");
    assert!(seen.closed, "{seen:?}");
}

/// Malformed HTTP/2 requests (RFC 9113 section 8.1.1: connection-specific fields, a TE other
/// than "trailers", a body shorter than its content-length) are stream errors: each gets
/// RST_STREAM(PROTOCOL_ERROR), the upstream answers nothing of it, and the next request on the
/// same connection is served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_requests_are_reset_and_never_answered_upstream() {
    let s = setup();
    let answered = |p: &Proxy| p.metric("pillion_requests_total", &["code=\"200\""]).unwrap_or(0.0);
    for mode in ["connection_header", "te_header", "length_mismatch"] {
        let before = answered(&s.proxy);
        let l = s.listener;
        let seen = tokio::task::spawn_blocking(move || attack(l, mode, 0)).await.unwrap();
        assert_eq!(seen.rst, [PROTOCOL_ERROR], "{mode}: {seen:?}");
        assert_eq!(seen.statuses, [200], "{mode}: {seen:?}");
        assert_eq!(answered(&s.proxy), before + 1.0, "{mode}: only the well-formed request was answered");
    }
}
