//! Balancing and resilience against real upstream processes: spread by weight, latency-aware
//! peak-EWMA, killed and sick endpoints, the retry budget in a full outage, and limits.

use std::{collections::HashMap, net::SocketAddr, sync::Arc};

use pillion_e2e::{Backend, Proxy, client::HttpClient, process::free_addr};

/// A sidecar with one listener to service `svc` over `backends` (with per-endpoint weights),
/// plus any extra service keys and route lines.
fn sidecar(backends: &[(&Backend, u32)], service_extra: &str, routes: &str) -> (Proxy, SocketAddr) {
    let listener = free_addr();
    let endpoints: Vec<String> =
        backends.iter().map(|(b, w)| format!("{{addr: \"{}\", weight: {w}}}", b.addr)).collect();
    let cfg = format!(
        r#"
admin: {{bind: "{{admin}}"}}
inbound: {{bind: "{inbound}"}}
outbound:
  listeners: [{{bind: "{listener}", service: svc}}]
services:
  - {{name: svc, endpoints: [{endpoints}] {service_extra}}}
routes:
{routes}
"#,
        inbound = free_addr(),
        endpoints = endpoints.join(", "),
    );
    (Proxy::start(&cfg), listener)
}

/// Sends `n` GETs from `workers` concurrent clients; counts by (status, x-backend).
async fn load(listener: SocketAddr, n: usize, workers: usize, path: &str) -> HashMap<(u16, String), usize> {
    let mut tasks = Vec::new();
    for w in 0..workers {
        let path = path.to_owned();
        let count = n / workers + usize::from(w < n % workers);
        tasks.push(tokio::spawn(async move {
            let c = HttpClient::http1();
            let mut seen: HashMap<(u16, String), usize> = HashMap::new();
            for _ in 0..count {
                let key = match c.get(listener, &path, None).await {
                    Ok(r) => (
                        r.status().as_u16(),
                        r.headers().get("x-backend").and_then(|v| v.to_str().ok()).unwrap_or("-").to_owned(),
                    ),
                    Err(e) => (0, e),
                };
                *seen.entry(key).or_default() += 1;
            }
            seen
        }));
    }
    let mut all = HashMap::new();
    for t in tasks {
        for (k, v) in t.await.unwrap() {
            *all.entry(k).or_default() += v;
        }
    }
    all
}

fn count(seen: &HashMap<(u16, String), usize>, status: u16, backend: &str) -> usize {
    seen.get(&(status, backend.to_owned())).copied().unwrap_or(0)
}

fn wait_metric(p: &Proxy, name: &str, labels: &[&str], want: f64) {
    p.wait_metric(name, labels, &format!("want {want}"), |v| v == want);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_robin_and_random_spread_by_weight_within_five_percent() {
    let (a, b, c) = (Backend::start("a"), Backend::start("b"), Backend::start("c"));
    let (_p, rr) = sidecar(&[(&a, 1), (&b, 1), (&c, 2)], ", lb: round_robin", "");
    let seen = load(rr, 1000, 4, "/").await;
    for (name, want) in [("a", 250.0), ("b", 250.0), ("c", 500.0)] {
        let got = count(&seen, 200, name) as f64;
        assert!((got - want).abs() <= 1000.0 * 0.05, "round_robin {name}: {got} (want {want}): {seen:?}");
    }
    let (_p2, random) = sidecar(&[(&a, 1), (&b, 3)], ", lb: random", "");
    let seen = load(random, 1000, 4, "/").await;
    let got_b = count(&seen, 200, "b") as f64;
    assert!((got_b - 750.0).abs() <= 50.0, "random b: {got_b}: {seen:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peak_ewma_sends_far_fewer_requests_to_a_slow_endpoint() {
    let (a, b) = (Backend::start("fast-a"), Backend::start("fast-b"));
    let slow = Backend::start_with("slow", free_addr(), 50);
    let (_p, l) = sidecar(&[(&a, 1), (&b, 1), (&slow, 1)], ", lb: peak_ewma", "");
    let seen = load(l, 600, 4, "/").await;
    let (fa, fb, s) = (count(&seen, 200, "fast-a"), count(&seen, 200, "fast-b"), count(&seen, 200, "slow"));
    assert_eq!(fa + fb + s, 600, "{seen:?}");
    assert!(s * 3 <= fa.min(fb), "slow got {s}, fast peers {fa} and {fb}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_endpoint_costs_no_failed_gets() {
    let (a, b) = (Backend::start("a"), Backend::start("b"));
    let mut doomed = Backend::start("doomed");
    let route = "  - {name: r, backends: [{service: svc}], retry: {attempts: 2, on: [connect-failure, reset, \"503\"]}}";
    let (p, l) = sidecar(
        &[(&a, 1), (&b, 1), (&doomed, 1)],
        ", lb: round_robin, outlier: {consecutive_failures: 3, ejection: 30s}",
        route,
    );
    let warm = load(l, 60, 2, "/").await;
    assert_eq!(count(&warm, 200, "doomed"), 20, "{warm:?}");
    doomed.kill();
    let after = load(l, 300, 3, "/").await;
    let ok: usize = after.iter().filter(|((s, _), _)| *s == 200).map(|(_, n)| n).sum();
    assert_eq!(ok, 300, "every GET succeeds: {after:?}");
    assert_eq!(count(&after, 200, "doomed"), 0);
    wait_metric(&p, "pillion_endpoints", &["service=\"svc\"", "state=\"ejected\""], 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endpoint_answering_503_is_ejected_and_comes_back_after_the_ejection_time() {
    let (a, b) = (Backend::start("a"), Backend::start("b"));
    let sick = Backend::failing("sick", 503);
    let (p, l) = sidecar(
        &[(&a, 1), (&b, 1), (&sick, 1)],
        ", lb: round_robin, outlier: {consecutive_failures: 3, ejection: 2s, max_ejected_percent: 50}",
        "",
    );
    // Round robin: the sick endpoint gets every third request until its third 503.
    let first = load(l, 30, 1, "/").await;
    assert_eq!(count(&first, 503, "sick"), 3, "{first:?}");
    wait_metric(&p, "pillion_endpoints", &["state=\"ejected\""], 1.0);
    let during = load(l, 30, 1, "/").await;
    assert_eq!(
        count(&during, 200, "a") + count(&during, 200, "b"),
        30,
        "ejected endpoint got traffic: {during:?}"
    );
    // The ejection ends by time; then the endpoint is tried again (and, still sick, ejected
    // again for longer).
    wait_metric(&p, "pillion_endpoints", &["state=\"ejected\""], 0.0);
    let back = load(l, 30, 1, "/").await;
    assert!(count(&back, 503, "sick") >= 1, "never tried again: {back:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_retry_budget_caps_retries_in_a_full_outage() {
    let (x, y) = (Backend::failing("x", 503), Backend::failing("y", 503));
    let route =
        "  - {name: r, backends: [{service: svc}], retry: {attempts: 3, on: [\"503\"], budget_percent: 20}}";
    let (p, l) = sidecar(&[(&x, 1), (&y, 1)], ", outlier: {consecutive_failures: 0}", route);
    let seen = load(l, 300, 3, "/").await;
    let failed: usize = seen.iter().filter(|((s, _), _)| *s == 503).map(|(_, n)| n).sum();
    assert_eq!(failed, 300, "{seen:?}");
    let retries = p.metric("pillion_retries_total", &["service=\"svc\""]).unwrap_or(0.0);
    // Without a budget this would be 900 (3 per request); 20% of 300 plus a floor of 10.
    assert!(retries > 0.0 && retries <= 70.0, "retries: {retries}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_over_max_pending_get_a_fast_503_while_the_rest_succeed() {
    let slow = Backend::start_with("slow", free_addr(), 300);
    let (p, l) = sidecar(&[(&slow, 1)], ", limits: {max_pending: 3}", "");
    let start = Arc::new(tokio::sync::Barrier::new(12));
    let mut tasks = Vec::new();
    for _ in 0..12 {
        let start = start.clone();
        tasks.push(tokio::spawn(async move {
            let c = HttpClient::http1();
            start.wait().await;
            let r = c.get(l, "/", None).await.unwrap();
            (r.status().as_u16(), r.headers().get("x-pillion-error").map(|v| v.to_str().unwrap().to_owned()))
        }));
    }
    let mut ok = 0;
    let mut overloaded = 0;
    for t in tasks {
        match t.await.unwrap() {
            (200, None) => ok += 1,
            (503, Some(e)) if e == "overloaded" => overloaded += 1,
            other => panic!("unexpected answer {other:?}"),
        }
    }
    assert!(ok >= 3, "{ok} succeeded");
    assert!(overloaded >= 1, "none refused");
    assert_eq!(p.metric("pillion_overloaded_total", &["service=\"svc\""]), Some(overloaded as f64));
}
