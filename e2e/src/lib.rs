//! Pillion's end-to-end harness: starts the real binaries (`pillion`, the test backend) on free
//! loopback ports, drives them with real clients (curl, hyper, WebSocket), and cleans up.
//! Also home to the quickstart demo, the benchmark driver, and a real Kubernetes API server for
//! tests of Pillion's Kubernetes side ([`kube`]), a real Jaeger for tests of its traces ([`jaeger`]),
//! and a real DNS server (dnsmasq, [`dns`]) for DNS endpoints.

pub mod backend;
pub mod client;
pub mod control;
pub mod dns;
pub mod jaeger;
pub mod kube;
pub mod netns;
pub mod pki;
pub mod process;
pub mod procstat;
pub mod recorder;
pub mod scale;

pub use process::{Backend, Proxy, free_port, workspace_bin};

/// Says loudly that a test did not run (`why`: "needs root", "needs packages"), and records it in
/// `$PILLION_SKIPPED_FILE`, which CI fails on.
pub fn skip(why: &str, test: &str) {
    use std::io::Write;
    // Straight to the stream, not `eprintln!`, which the test harness captures and hides.
    let _ = writeln!(std::io::stderr(), "SKIPPED ({why}): {test}");
    if let Some(path) = std::env::var_os("PILLION_SKIPPED_FILE") {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .unwrap_or_else(|e| panic!("cannot open PILLION_SKIPPED_FILE: {e}"));
        writeln!(f, "{test}").expect("cannot write PILLION_SKIPPED_FILE");
    }
}
