//! Soak: about forty seconds of mixed HTTP/1.1, HTTP/2, meshed mTLS and TCP traffic while
//! upstreams are killed and restarted, the config is reloaded and a peer's certificate rotates.
//! Idempotent requests must not fail, and afterwards descriptors, tasks and memory must be back
//! near where they were after warm-up. Bounded in time; stops by itself.

use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use pillion_e2e::{
    Backend, Proxy,
    client::HttpClient,
    pki::{Pki, tls_section},
    process::free_addr,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const WEB: &str = "spiffe://cluster.local/ns/shop/sa/web";
const ORDERS: &str = "spiffe://cluster.local/ns/shop/sa/orders";
const CHAOS: Duration = Duration::from_secs(35);

struct Addrs {
    web: [SocketAddr; 3],
    echo: SocketAddr,
    b_inbound: SocketAddr,
    l_http: SocketAddr,
    l_tcp: SocketAddr,
    l_mesh: SocketAddr,
}

fn a_config(a: &Addrs, certs: &std::path::Path, timeout: &str) -> String {
    let [w1, w2, w3] = a.web;
    format!(
        r#"
workload: {{name: web, identity: "{WEB}"}}
{tls}
admin: {{bind: "{{admin}}"}}
inbound: {{bind: "{inbound}"}}
outbound:
  listeners:
    - {{bind: "{http}", service: web}}
    - {{bind: "{tcp}", service: echo}}
    - {{bind: "{mesh}", service: orders}}
services:
  - name: web
    lb: round_robin
    connect_timeout: 500ms
    outlier: {{consecutive_failures: 2, ejection: 2s}}
    endpoints: [{{addr: "{w1}"}}, {{addr: "{w2}"}}, {{addr: "{w3}"}}]
  - {{name: echo, protocol: tcp, endpoints: [{{addr: "{echo}"}}]}}
  - {{name: orders, endpoints: [{{addr: "{b}", identity: "{ORDERS}"}}]}}
routes:
  - name: web
    match: {{path_prefix: /}}
    backends: [{{service: web}}]
    timeout: {timeout}
    retry: {{attempts: 3, on: [connect-failure, reset, "5xx"], budget_percent: 100}}
"#,
        tls = tls_section(certs),
        inbound = free_addr(),
        http = a.l_http,
        tcp = a.l_tcp,
        mesh = a.l_mesh,
        echo = a.echo,
        b = a.b_inbound,
    )
}

/// Runs `one` in a loop until `stop`, counting successes and failures.
fn worker<F, Fut>(
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicU64>,
    failed: Arc<AtomicU64>,
    one: F,
) -> tokio::task::JoinHandle<()>
where
    F: Fn() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = Result<(), String>> + Send,
{
    tokio::spawn(async move {
        while !stop.load(Ordering::Relaxed) {
            match one().await {
                Ok(()) => ok.fetch_add(1, Ordering::Relaxed),
                Err(e) => {
                    eprintln!("soak failure: {e}");
                    failed.fetch_add(1, Ordering::Relaxed)
                }
            };
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn soak_under_chaos_fails_no_idempotent_request_and_leaks_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path(), "mesh");
    let web_addrs = [free_addr(), free_addr(), free_addr()];
    let mut webs: Vec<Backend> =
        web_addrs.iter().enumerate().map(|(i, a)| Backend::start_with(&format!("w{i}"), *a, 0)).collect();
    let orders_app = Backend::start("orders");
    let b_certs = pki.issue("orders", ORDERS, &[]);
    let b_inbound = free_addr();
    let _b = Proxy::start(&format!(
        "{}\nadmin: {{bind: \"{{admin}}\"}}\ninbound: {{bind: \"{b_inbound}\", app: \"{}\", mtls: strict}}\n",
        tls_section(&b_certs),
        orders_app.addr
    ));
    let addrs = Addrs {
        web: web_addrs,
        echo: pillion_e2e::backend::tcp_echo().await,
        b_inbound,
        l_http: free_addr(),
        l_tcp: free_addr(),
        l_mesh: free_addr(),
    };
    let a_certs = pki.issue("web", WEB, &[]);
    let a = Proxy::start(&a_config(&addrs, &a_certs, "5s"));

    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let mut workers = Vec::new();
    for (client, listener) in [
        (HttpClient::http1(), addrs.l_http),
        (HttpClient::http1(), addrs.l_http),
        (HttpClient::http2(), addrs.l_http),
        (HttpClient::http1(), addrs.l_mesh),
    ] {
        workers.push(worker(stop.clone(), ok.clone(), failed.clone(), move || {
            let client = client.clone();
            async move {
                let r = client.get(listener, "/", None).await?;
                if r.status() == 200 { Ok(()) } else { Err(format!("status {} via {listener}", r.status())) }
            }
        }));
    }
    let l_tcp = addrs.l_tcp;
    workers.push(worker(stop.clone(), ok.clone(), failed.clone(), move || async move {
        let mut s = tokio::net::TcpStream::connect(l_tcp).await.map_err(|e| e.to_string())?;
        s.write_all(b"ping through the sidecar\n").await.map_err(|e| e.to_string())?;
        s.shutdown().await.map_err(|e| e.to_string())?;
        let mut back = Vec::new();
        s.read_to_end(&mut back).await.map_err(|e| e.to_string())?;
        if back == b"ping through the sidecar\n" { Ok(()) } else { Err(format!("echo returned {back:?}")) }
    }));

    // Warm-up, then the baseline.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let (fds0, rss0) = a.fds_and_rss();
    let tasks0 = a.metric("pillion_runtime_tasks", &[]).unwrap();

    let start = Instant::now();
    let mut round = 0;
    while start.elapsed() < CHAOS {
        round += 1;
        // Kill one upstream for a second and bring it back on the same address.
        let i = round % webs.len();
        webs[i].kill();
        tokio::time::sleep(Duration::from_millis(800)).await;
        webs[i] = Backend::start_with(&format!("w{i}"), web_addrs[i], 0);
        // Reload the config, alternating a harmless change.
        a.write_config(&a_config(&addrs, &a_certs, if round % 2 == 0 { "5s" } else { "6s" }));
        // Rotate the peer's certificate every other round.
        if round % 2 == 0 {
            let fresh = pki.issue(&format!("orders-{round}"), ORDERS, &[]);
            for f in ["key.pem", "cert.pem"] {
                let tmp = b_certs.join(format!("{f}.tmp"));
                std::fs::copy(fresh.join(f), &tmp).unwrap();
                std::fs::rename(&tmp, b_certs.join(f)).unwrap();
            }
        }
        tokio::time::sleep(Duration::from_millis(1500)).await;
    }
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.await.unwrap();
    }
    // Let closed client connections and finished tasks settle (bounded).
    let deadline = Instant::now() + Duration::from_secs(15);
    let (mut fds1, mut rss1) = a.fds_and_rss();
    let mut tasks1 = a.metric("pillion_runtime_tasks", &[]).unwrap();
    while (fds1 > fds0 + 8 || tasks1 > tasks0 + 8.0) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
        (fds1, rss1) = a.fds_and_rss();
        tasks1 = a.metric("pillion_runtime_tasks", &[]).unwrap();
    }
    let (ok, failed) = (ok.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    eprintln!(
        "soak: {ok} ok, {failed} failed, {round} chaos rounds; fds {fds0} -> {fds1}; tasks {tasks0} -> {tasks1}; rss {rss0} KiB -> {rss1} KiB"
    );
    assert_eq!(failed, 0, "requests failed during the soak");
    assert!(ok > 1_000, "only {ok} requests");
    assert!(fds1 <= fds0 + 8, "descriptors grew: {fds0} -> {fds1}");
    assert!(tasks1 <= tasks0 + 8.0, "tasks grew: {tasks0} -> {tasks1}");
    assert!(rss1 <= rss0 + 8 * 1024, "memory grew: {rss0} KiB -> {rss1} KiB");
}
