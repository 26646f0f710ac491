//! gRPC through the proxy with real grpcio peers (Debian's python3-grpcio, raw-bytes messages):
//! unary and streaming calls are proxied, and the proxy's own replies reach a grpcio client as
//! the gRPC status they mean (a route timeout as DEADLINE_EXCEEDED, not UNAVAILABLE), with the
//! cause as the status message. The final status, from trailers or a trailers-only reply, is
//! what metrics count, what `retry.on` gRPC codes judge (only before a message was forwarded),
//! and what outlier ejection counts (UNAVAILABLE and INTERNAL, never NOT_FOUND).

use std::{
    io::{BufRead, BufReader},
    net::SocketAddr,
    path::PathBuf,
    process::{Child, Command, Stdio},
};

use pillion_e2e::{
    Proxy,
    process::{free_addr, free_port},
};

fn peer_script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/support/grpc_peer.py")
}

/// The grpcio echo server, killed when dropped.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn serve() -> (Server, SocketAddr) {
    serve_as("echo", false)
}

/// A server whose `Who` answers `name`, or fails with UNAVAILABLE when `down`.
fn serve_as(name: &str, down: bool) -> (Server, SocketAddr) {
    let port = free_port();
    let mut child = Command::new(pillion_e2e::process::python3())
        .arg(peer_script())
        .args(["serve", &port.to_string(), name])
        .args(down.then_some("down"))
        .stdout(Stdio::piped())
        .spawn()
        .expect("run python3 (scripts/setup.sh installs python3-grpcio)");
    let mut line = String::new();
    let stdout = child.stdout.take().expect("server stdout");
    BufReader::new(stdout).read_line(&mut line).expect("read the server's first line");
    assert_eq!(line.trim(), "ready", "the grpcio server did not start");
    (Server(child), SocketAddr::from(([127, 0, 0, 1], port)))
}

/// One call through `addr`: "CODE details" as the grpcio client saw it.
fn call(addr: SocketAddr, method: &str) -> String {
    let out = Command::new(pillion_e2e::process::python3())
        .arg(peer_script())
        .args(["call", &addr.to_string(), method])
        .output()
        .expect("run the grpcio client");
    assert!(out.status.success(), "client failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

#[test]
fn grpc_calls_pass_and_local_replies_are_grpc_statuses() {
    let (_server, upstream) = serve();
    // An upstream that accepts and never answers: only the proxy can end a call to it. It says
    // when a connection arrives.
    let hole = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let hole_addr = hole.local_addr().expect("address");
    let (accepted_tx, accepted) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for conn in hole.incoming().flatten() {
            held.push(conn);
            let _ = accepted_tx.send(());
        }
    });
    let (echo, empty, silent, small) = (free_addr(), free_addr(), free_addr(), free_addr());
    let cfg = format!(
        "admin: {{bind: \"{{admin}}\"}}\ninbound: {{bind: \"{}\"}}\noutbound:\n  listeners:\n    \
         - {{bind: \"{echo}\", service: echo}}\n    - {{bind: \"{empty}\", service: empty}}\n    \
         - {{bind: \"{silent}\", service: hole}}\n    - {{bind: \"{small}\", service: small}}\n\
         services:\n  - {{name: echo, protocol: http2, endpoints: [{{addr: \"{upstream}\"}}]}}\n  \
         - {{name: small, protocol: http2, endpoints: [{{addr: \"{upstream}\"}}]}}\n  \
         - {{name: empty, protocol: http2, endpoints: []}}\n  \
         - {{name: hole, protocol: http2, limits: {{max_pending: 1}}, endpoints: [{{addr: \"{hole_addr}\"}}]}}\n\
         routes:\n  - {{name: slow, match: {{path: /pillion.Echo/Slow}}, backends: [{{service: echo}}], timeout: 200ms}}\n  \
         - {{name: small, match: {{host: small}}, backends: [{{service: small}}], max_request_bytes: 4}}\n  \
         - {{name: held, match: {{host: hole}}, backends: [{{service: hole}}], timeout: 2s}}\n",
        free_addr()
    );
    let proxy = Proxy::start(&cfg);
    assert_eq!(call(echo, "Unary"), "OK hello");
    assert_eq!(call(echo, "Stream"), "OK abc");
    // The proxy's own replies, decoded by grpcio.
    assert_eq!(call(echo, "Slow"), "DEADLINE_EXCEEDED route-timeout");
    assert_eq!(call(empty, "Unary"), "UNAVAILABLE no-healthy-endpoint");
    // A method the server implements: it reads the whole message before it answers, so the
    // proxy's limit is what ends the call.
    assert_eq!(call(small, "Unary"), "RESOURCE_EXHAUSTED request-too-large");
    // One call waits on the silent upstream until its route timeout; the service, at
    // max_pending 1, takes no second one meanwhile.
    let waiting = std::thread::spawn(move || call(silent, "Unary"));
    accepted.recv_timeout(std::time::Duration::from_secs(30)).expect("the first call reached the upstream");
    assert_eq!(call(silent, "Unary"), "RESOURCE_EXHAUSTED overloaded");
    assert_eq!(waiting.join().expect("the waiting call"), "DEADLINE_EXCEEDED route-timeout");
    // An unknown method is the server's own UNIMPLEMENTED, passed through.
    assert_eq!(call(echo, "Nope"), "UNIMPLEMENTED Method not found!");
    // A client's own `grpc-timeout` caps the call at the proxy (curl keeps no deadline of its
    // own, and this upstream never answers, so the answer is the proxy's).
    let message = tempfile::NamedTempFile::new().expect("temp file");
    std::fs::write(message.path(), b"\0\0\0\0\x02hi").expect("write the message");
    let out = Command::new("curl")
        .args([
            "-sS",
            "-i",
            "--http2-prior-knowledge",
            "-H",
            "content-type: application/grpc",
            "-H",
            "te: trailers",
        ])
        .args(["-H", "grpc-timeout: 200m", "--data-binary"])
        .arg(format!("@{}", message.path().display()))
        .arg(format!("http://{silent}/pillion.Echo/Unary"))
        .output()
        .expect("run curl");
    let answer = String::from_utf8_lossy(&out.stdout);
    assert!(
        answer.contains("grpc-status: 4\r\n") && answer.contains("grpc-message: route-timeout"),
        "{answer}"
    );
    let timeouts = proxy.metric("pillion_requests_total", &["service=\"echo\"", "route=\"slow\""]);
    assert_eq!(timeouts, Some(1.0));
}

#[test]
fn the_final_grpc_status_is_counted_retried_on_and_ejected_on() {
    let (_echo, echo) = serve();
    let (_down, down) = serve_as("down", true);
    let (_up, up) = serve_as("up", false);
    let (_a, a) = serve_as("a", false);
    let (_b, b) = serve_as("b", false);
    let [echo_l, pair_l, streams_l, flaky_l, found_l] = [(); 5].map(|_| free_addr());
    let outlier = "outlier: {consecutive_failures: 2, ejection: 60s, max_ejected_percent: 50}";
    let cfg = format!(
        "admin: {{bind: \"{{admin}}\"}}\ninbound: {{bind: \"{}\"}}\noutbound:\n  listeners:\n    \
         - {{bind: \"{echo_l}\", service: echo}}\n    - {{bind: \"{pair_l}\", service: pair}}\n    \
         - {{bind: \"{streams_l}\", service: streams}}\n    - {{bind: \"{flaky_l}\", service: flaky}}\n    \
         - {{bind: \"{found_l}\", service: found}}\n\
         services:\n  - {{name: echo, protocol: http2, endpoints: [{{addr: \"{echo}\"}}]}}\n  \
         - {{name: pair, protocol: http2, lb: round_robin, endpoints: [{{addr: \"{down}\"}}, {{addr: \"{up}\"}}]}}\n  \
         - {{name: streams, protocol: http2, endpoints: [{{addr: \"{a}\"}}, {{addr: \"{b}\"}}]}}\n  \
         - {{name: flaky, protocol: http2, lb: round_robin, {outlier}, endpoints: [{{addr: \"{down}\"}}, {{addr: \"{up}\"}}]}}\n  \
         - {{name: found, protocol: http2, lb: round_robin, {outlier}, endpoints: [{{addr: \"{echo}\"}}, {{addr: \"{a}\"}}]}}\n\
         routes:\n  - {{name: pair, match: {{host: pair}}, backends: [{{service: pair}}], retry: {{attempts: 1, on: [unavailable]}}}}\n  \
         - {{name: streams, match: {{host: streams}}, backends: [{{service: streams}}], retry: {{attempts: 1, on: [unavailable]}}}}\n",
        free_addr()
    );
    let proxy = Proxy::start(&cfg);
    let counted = |service: &str, status: &str, want: f64| {
        let labels = [&format!("service=\"{service}\"") as &str, &format!("grpc_status=\"{status}\"")];
        proxy.wait_metric("pillion_requests_total", &labels, "calls by final status", |v| v == want);
    };

    // Trailers-only replies and statuses after a message are both counted by their code.
    assert_eq!(call(echo_l, "Unary"), "OK hello");
    assert_eq!(call(echo_l, "NotFound"), "NOT_FOUND not_found");
    assert_eq!(call(echo_l, "Unavailable"), "UNAVAILABLE unavailable");
    counted("echo", "0", 1.0);
    counted("echo", "5", 1.0);
    counted("echo", "14", 1.0);

    // UNAVAILABLE from one endpoint is retried on the other: round robin starts half the calls at
    // the down one, and every call ends OK.
    for _ in 0..4 {
        assert_eq!(call(pair_l, "Who"), "OK up");
    }
    assert!(call(down, "Calls").strip_prefix("OK ").and_then(|n| n.parse::<u32>().ok()) >= Some(1));
    let retries = proxy.metric("pillion_retries_total", &["service=\"pair\""]);
    assert!(retries >= Some(1.0), "retries: {retries:?}");
    counted("pair", "0", 4.0);

    // A stream that sent a message is never retried: its UNAVAILABLE reaches the client after the
    // message, and only one endpoint saw the call.
    let failed = call(streams_l, "StreamFail");
    assert!(
        failed == "UNAVAILABLE after a message a" || failed == "UNAVAILABLE after a message b",
        "{failed}"
    );
    let calls = |addr| call(addr, "Calls").strip_prefix("OK ").and_then(|n| n.parse::<u32>().ok());
    assert_eq!(calls(a).zip(calls(b)).map(|(x, y)| x + y), Some(1));
    assert_eq!(proxy.metric("pillion_retries_total", &["service=\"streams\""]).unwrap_or(0.0), 0.0);
    counted("streams", "14", 1.0);

    // UNAVAILABLE ejects the endpoint that sends it; NOT_FOUND is the server's answer, not a fault.
    let ejected = ["service=\"flaky\"", "state=\"ejected\""];
    let mut answers = Vec::new();
    while proxy.metric("pillion_endpoints", &ejected) != Some(1.0) {
        assert!(answers.len() < 40, "the down endpoint was never ejected: {answers:?}");
        answers.push(call(flaky_l, "Who"));
    }
    assert!(answers.contains(&"UNAVAILABLE down is down".to_owned()), "{answers:?}");
    for _ in 0..3 {
        assert_eq!(call(flaky_l, "Who"), "OK up");
    }
    for _ in 0..8 {
        assert_eq!(call(found_l, "NotFound"), "NOT_FOUND not_found");
    }
    let ejected = ["service=\"found\"", "state=\"ejected\""];
    assert_eq!(proxy.metric("pillion_endpoints", &ejected), Some(0.0));
}

#[test]
fn a_caller_outside_the_allow_list_reads_permission_denied() {
    const ORDERS: &str = "spiffe://cluster.local/ns/shop/sa/orders";
    let (_server, app) = serve();
    let dir = tempfile::tempdir().expect("temp dir");
    let pki = pillion_e2e::pki::Pki::new(dir.path(), "mesh");
    let orders = pki.issue("orders", ORDERS, &[]);
    let evil = pki.issue("evil", "spiffe://cluster.local/ns/other/sa/evil", &[]);
    let inbound = free_addr();
    let _b = Proxy::start(&format!(
        "workload: {{name: orders, identity: \"{ORDERS}\"}}\n{}\nadmin: {{bind: \"{{admin}}\"}}\n\
         inbound:\n  bind: \"{inbound}\"\n  app: \"{app}\"\n  mtls: strict\n  \
         ports: [{{port: {}, protocol: http2, allow: [\"spiffe://cluster.local/ns/shop/*\"]}}]\n",
        pillion_e2e::pki::tls_section(&orders),
        app.port(),
    ));
    let listener = free_addr();
    let _a = Proxy::start(&format!(
        "workload: {{name: evil}}\n{}\nadmin: {{bind: \"{{admin}}\"}}\ninbound: {{bind: \"{}\"}}\n\
         outbound:\n  listeners: [{{bind: \"{listener}\", service: orders}}]\n\
         services:\n  - {{name: orders, protocol: http2, endpoints: [{{addr: \"{inbound}\", identity: \"{ORDERS}\"}}]}}\n",
        pillion_e2e::pki::tls_section(&evil),
        free_addr(),
    ));
    assert_eq!(call(listener, "Unary"), "PERMISSION_DENIED unauthorized");
}
