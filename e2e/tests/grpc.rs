//! gRPC through the proxy with real grpcio peers (Debian's python3-grpcio, raw-bytes messages):
//! unary and streaming calls are proxied, and the proxy's own replies reach a grpcio client as
//! the gRPC status they mean (a route timeout as DEADLINE_EXCEEDED, not UNAVAILABLE), with the
//! cause as the status message.

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
    let port = free_port();
    let mut child = Command::new(pillion_e2e::process::python3())
        .arg(peer_script())
        .args(["serve", &port.to_string()])
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
    // An upstream that accepts and never answers: only the proxy can end a call to it.
    let hole = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let hole_addr = hole.local_addr().expect("address");
    std::thread::spawn(move || {
        let held: Vec<_> = hole.incoming().flatten().collect();
        drop(held);
    });
    let (echo, empty, silent) = (free_addr(), free_addr(), free_addr());
    let cfg = format!(
        "admin: {{bind: \"{{admin}}\"}}\ninbound: {{bind: \"{}\"}}\noutbound:\n  listeners:\n    \
         - {{bind: \"{echo}\", service: echo}}\n    - {{bind: \"{empty}\", service: empty}}\n    \
         - {{bind: \"{silent}\", service: hole}}\n\
         services:\n  - {{name: echo, protocol: http2, endpoints: [{{addr: \"{upstream}\"}}]}}\n  \
         - {{name: empty, protocol: http2, endpoints: []}}\n  \
         - {{name: hole, protocol: http2, endpoints: [{{addr: \"{hole_addr}\"}}]}}\n\
         routes:\n  - {{name: slow, match: {{path: /pillion.Echo/Slow}}, backends: [{{service: echo}}], timeout: 200ms}}\n",
        free_addr()
    );
    let proxy = Proxy::start(&cfg);
    assert_eq!(call(echo, "Unary"), "OK hello");
    assert_eq!(call(echo, "Stream"), "OK abc");
    // The proxy's own replies, decoded by grpcio.
    assert_eq!(call(echo, "Slow"), "DEADLINE_EXCEEDED route-timeout");
    assert_eq!(call(empty, "Unary"), "UNAVAILABLE no-healthy-endpoint");
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
        .args(["-H", "grpc-timeout: 300m", "--data-binary"])
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
