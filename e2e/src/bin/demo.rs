//! The quickstart: two demo upstreams and a Pillion sidecar on loopback, some traffic through it,
//! then it keeps running (or stops after `--seconds`) so you can curl and scrape it.

use std::{collections::BTreeMap, net::SocketAddr, time::Duration};

use clap::Parser;
use pillion_e2e::{Backend, Proxy, client::HttpClient};

/// Run a local Pillion mesh on loopback. No root needed.
#[derive(Parser)]
struct Args {
    /// Port of the sidecar's explicit listener the "app" calls.
    #[arg(long, default_value_t = 9001)]
    port: u16,
    /// Stop after this many seconds (0: run until Ctrl-C).
    #[arg(long, default_value_t = 0)]
    seconds: u64,
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let v1 = Backend::start("orders-v1");
    let v2 = Backend::start("orders-v2");
    let listener = SocketAddr::from(([127, 0, 0, 1], args.port));
    let inbound = pillion_e2e::process::free_addr();
    let config = format!(
        r#"# Pillion quickstart config: edit and save, the sidecar reloads it.
workload: {{name: quickstart}}
admin: {{bind: "{{admin}}"}}
inbound: {{bind: "{inbound}", app: "{v1}"}}
outbound:
  listeners:
    - {{bind: "{listener}", service: orders}}
services:
  - name: orders
    lb: peak_ewma
    endpoints: [{{addr: "{v1}"}}]
  - name: orders-v2
    endpoints: [{{addr: "{v2}"}}]
routes:
  - name: canary
    match: {{path_prefix: /}}
    backends: [{{service: orders, weight: 80}}, {{service: orders-v2, weight: 20}}]
    timeout: 5s
"#,
        v1 = v1.addr,
        v2 = v2.addr,
    );
    let proxy = Proxy::start_with_args(&config, &["--access-log"]);

    let client = HttpClient::http1();
    let mut seen: BTreeMap<String, u32> = BTreeMap::new();
    for _ in 0..100 {
        match client.get(listener, "/", Some("orders")).await {
            Ok(r) => {
                let who = r.headers().get("x-backend").and_then(|v| v.to_str().ok()).unwrap_or("?");
                *seen.entry(format!("{} {who}", r.status().as_u16())).or_default() += 1;
            }
            Err(e) => *seen.entry(format!("error {e}")).or_default() += 1,
        }
    }

    println!("Pillion quickstart is running.\n");
    println!("  100 requests through the sidecar (80/20 canary split):");
    for (k, n) in &seen {
        println!("    {n:>4}  {k}");
    }
    println!();
    println!("  app -> sidecar:   curl -v http://{listener}/headers");
    println!("  h2c:              curl --http2-prior-knowledge http://{listener}/");
    println!("  metrics:          curl http://{}/metrics", proxy.admin);
    println!("  running config:   curl http://{}/config", proxy.admin);
    println!("  config file:      {}  (edit it: the sidecar hot-reloads)", proxy.config_path().display());
    println!("  proxy log:        {}", proxy.path("pillion.log").display());
    println!();
    if args.seconds > 0 {
        tokio::time::sleep(Duration::from_secs(args.seconds)).await;
    } else {
        println!("Ctrl-C to stop.");
        let _ = tokio::signal::ctrl_c().await;
    }
    drop(proxy);
    drop((v1, v2));
}
