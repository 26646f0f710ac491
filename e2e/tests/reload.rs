//! Hot reload: config changes under continuous traffic fail no request; a bad file is rejected,
//! counted, logged with its position, and the old config keeps serving.

use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use pillion_e2e::{Backend, Proxy, client::HttpClient, process::free_addr};

fn config(listener: SocketAddr, inbound: SocketAddr, a: SocketAddr, b: SocketAddr, target: &str) -> String {
    format!(
        r#"
admin: {{bind: "{{admin}}"}}
inbound: {{bind: "{inbound}"}}
outbound:
  listeners: [{{bind: "{listener}", service: a}}]
services:
  - {{name: a, endpoints: [{{addr: "{a}"}}]}}
  - {{name: b, endpoints: [{{addr: "{b}"}}]}}
routes:
  - {{name: all, backends: [{{service: {target}}}]}}
"#
    )
}

/// Waits (bounded) until the proxy reports `version`.
fn wait_version(p: &Proxy, version: f64) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while p.metric("pillion_config_version", &[]) != Some(version) {
        assert!(Instant::now() < deadline, "config version never reached {version}; log:\n{}", p.log());
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reloads_under_continuous_traffic_fail_no_request() {
    let (a, b) = (Backend::start("a"), Backend::start("b"));
    let (listener, inbound) = (free_addr(), free_addr());
    let p = Proxy::start(&config(listener, inbound, a.addr, b.addr, "a"));

    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let mut workers = Vec::new();
    for _ in 0..4 {
        let (stop, ok, failed) = (stop.clone(), ok.clone(), failed.clone());
        workers.push(tokio::spawn(async move {
            let c = HttpClient::http1();
            // Bounded: at most 50,000 requests per worker even if `stop` never came.
            for _ in 0..50_000 {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                match c.get(listener, "/", None).await {
                    Ok(r) if r.status() == 200 => ok.fetch_add(1, Ordering::Relaxed),
                    other => {
                        eprintln!("failed: {other:?}");
                        failed.fetch_add(1, Ordering::Relaxed)
                    }
                };
            }
        }));
    }
    for i in 0..10 {
        let target = if i % 2 == 0 { "b" } else { "a" };
        p.write_config(&config(listener, inbound, a.addr, b.addr, target));
        wait_version(&p, f64::from(i + 2));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.await.unwrap();
    }
    assert_eq!(failed.load(Ordering::Relaxed), 0, "requests failed during reloads");
    assert!(ok.load(Ordering::Relaxed) > 100, "traffic kept flowing");
    assert_eq!(p.metric("pillion_config_updates_total", &["result=\"applied\""]), Some(11.0));
    // The last config (i = 9) routes to `a`.
    let r = HttpClient::http1().get(listener, "/", None).await.unwrap();
    assert_eq!(r.headers()["x-backend"], "a");
}

#[tokio::test]
async fn a_bad_reload_keeps_the_last_good_config() {
    let (a, b) = (Backend::start("a"), Backend::start("b"));
    let (listener, inbound) = (free_addr(), free_addr());
    let p = Proxy::start(&config(listener, inbound, a.addr, b.addr, "b"));
    let c = HttpClient::http1();
    assert_eq!(c.get(listener, "/", None).await.unwrap().headers()["x-backend"], "b");

    // A route to a service that does not exist.
    p.write_config(&config(listener, inbound, a.addr, b.addr, "missing"));
    let deadline = Instant::now() + Duration::from_secs(20);
    while p.metric("pillion_config_updates_total", &["result=\"rejected\"", "source=\"file\""]) != Some(1.0) {
        assert!(Instant::now() < deadline, "rejection never counted; log:\n{}", p.log());
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(p.metric("pillion_config_version", &[]), Some(1.0));
    assert_eq!(c.get(listener, "/", None).await.unwrap().headers()["x-backend"], "b");
    // The error points at the bad reference: its line in the file as written, column 38.
    let written = std::fs::read_to_string(p.config_path()).unwrap();
    let line = written.lines().position(|l| l.contains("{service: missing}")).unwrap() + 1;
    let want = format!("config.yaml:{line}:38: routes[0].backends[0].service: unknown service \"missing\"");
    assert!(p.log().contains(&want), "{want} not in:\n{}", p.log());

    // SIGHUP re-reads the file: a fixed file is applied.
    std::fs::write(
        p.config_path(),
        config(listener, inbound, a.addr, b.addr, "a").replace("{admin}", &p.admin.to_string()),
    )
    .unwrap();
    p.signal("HUP");
    wait_version(&p, 2.0);
    assert_eq!(c.get(listener, "/", None).await.unwrap().headers()["x-backend"], "a");
}
