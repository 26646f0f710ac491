//! `/metrics` is valid Prometheus text (promtool agrees) and carries the contract's names.

use std::{io::Write, process::Command};

use pillion_e2e::{Backend, Proxy, client::HttpClient, process::free_addr};

#[tokio::test]
async fn metrics_pass_promtool_and_carry_the_contract_names() {
    let b = Backend::start("app");
    let listener = free_addr();
    let cfg = format!(
        "admin: {{bind: \"{{admin}}\"}}\ninbound: {{bind: \"{}\"}}\noutbound:\n  listeners: [{{bind: \"{listener}\", service: app}}]\nservices:\n  - {{name: app, endpoints: [{{addr: \"{}\"}}]}}\n",
        free_addr(),
        b.addr
    );
    let p = Proxy::start(&cfg);
    let c = HttpClient::http1();
    for path in ["/", "/status?code=503", "/status?code=404"] {
        c.get(listener, path, None).await.unwrap();
    }
    let text = p.metrics();
    for name in [
        "pillion_requests_total",
        "pillion_request_duration_seconds_bucket",
        "pillion_tcp_connections_total",
        "pillion_tcp_connections_open",
        "pillion_tcp_read_bytes_total",
        "pillion_tcp_write_bytes_total",
        "pillion_endpoints",
        "pillion_config_version",
        "pillion_config_updates_total",
    ] {
        assert!(text.lines().any(|l| l.starts_with(name)), "{name} missing from:\n{text}");
    }
    assert_eq!(
        p.metric(
            "pillion_requests_total",
            &["direction=\"outbound\"", "service=\"app\"", "code=\"503\"", "tls=\"false\""]
        ),
        Some(1.0)
    );

    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .output_with_stdin(text.as_bytes());
    assert!(
        promtool.status.success(),
        "promtool: {}{}",
        String::from_utf8_lossy(&promtool.stdout),
        String::from_utf8_lossy(&promtool.stderr)
    );
    promtool.stdout.clear();
}

trait OutputWithStdin {
    fn output_with_stdin(&mut self, input: &[u8]) -> std::process::Output;
}

impl OutputWithStdin for Command {
    fn output_with_stdin(&mut self, input: &[u8]) -> std::process::Output {
        let mut child = self
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("promtool is installed (scripts/setup.sh installs the prometheus package)");
        child.stdin.take().expect("stdin").write_all(input).expect("write to promtool");
        child.wait_with_output().expect("promtool output")
    }
}
