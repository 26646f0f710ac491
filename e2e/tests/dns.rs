//! Endpoints from DNS, against a real DNS server (dnsmasq on a loopback port) whose records the
//! tests change: endpoints added and removed by DNS while the ones that stay keep their pools,
//! the resolver away (the last good answer kept), the TTL's floor and ceiling, and the
//! control-plane address given by name. Backends listen on distinct loopback addresses
//! (127.0.0.2, 127.0.0.3, ...) on one port, as a headless Service's pods would.

use std::{
    collections::BTreeSet,
    net::SocketAddr,
    time::{Duration, Instant},
};

use pillion_e2e::{
    Backend, Proxy, client::HttpClient, control::Control, dns::Dnsmasq, free_port, process::free_addr,
};

const NAME: &str = "orders.mesh.test";

/// dnsmasq with `records`, or the test is skipped (CI fails on a skip).
fn dnsmasq(ttl: u32, records: &[(&str, &str)], test: &str) -> Option<Dnsmasq> {
    let d = Dnsmasq::start(ttl, records);
    if d.is_none() {
        pillion_e2e::skip("needs dnsmasq, from dnsmasq-base", test);
    }
    d
}

/// A backend named `name` on `127.0.0.N:port`.
fn backend(name: &str, n: u8, port: u16) -> Backend {
    Backend::start_with(name, SocketAddr::from(([127, 0, 0, n], port)), 0)
}

/// A proxy whose service `orders` has only `dns: [NAME:port]`, asking `dns`; returns it with
/// its explicit listener for `orders`.
fn proxy(dns: &Dnsmasq, port: u16, min_ttl: &str, max_ttl: &str) -> (Proxy, SocketAddr) {
    let (listener, inbound) = (free_addr(), free_addr());
    (Proxy::start(&config(dns, &format!("{NAME}:{port}"), min_ttl, max_ttl, listener, inbound)), listener)
}

/// That proxy's config, with `name` under `dns`.
fn config(
    dns: &Dnsmasq,
    name: &str,
    min_ttl: &str,
    max_ttl: &str,
    listener: SocketAddr,
    inbound: SocketAddr,
) -> String {
    format!(
        r#"
admin: {{bind: "{{admin}}"}}
inbound: {{bind: "{inbound}"}}
outbound:
  listeners: [{{bind: "{listener}", service: orders}}]
services:
  - {{name: orders, lb: round_robin, dns: ["{name}"]}}
resolver: {{nameservers: ["{ns}"], min_ttl: {min_ttl}, max_ttl: {max_ttl}}}
"#,
        ns = dns.addr,
    )
}

/// Which backend answered `path`, and its body.
async fn ask(c: &HttpClient, l: SocketAddr, path: &str) -> Result<(String, String), String> {
    let r = c.get(l, path, Some("orders")).await?;
    if r.status() != 200 {
        return Err(format!("status {}", r.status()));
    }
    let name = r.headers().get("x-backend").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    Ok((name, String::from_utf8_lossy(r.body()).into_owned()))
}

/// The backends that answer `n` requests in a row, every one of which must succeed.
async fn answering(c: &HttpClient, l: SocketAddr, n: usize) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    for _ in 0..n {
        seen.insert(ask(c, l, "/").await.expect("a request failed").0);
    }
    seen
}

/// Waits (bounded) until `n` requests in a row are answered by exactly `want`.
async fn wait_answering(c: &HttpClient, l: SocketAddr, want: &[&str]) {
    let want: BTreeSet<String> = want.iter().map(|s| s.to_string()).collect();
    let start = Instant::now();
    loop {
        let mut seen = BTreeSet::new();
        for _ in 0..12 {
            if let Ok((name, _)) = ask(c, l, "/").await {
                seen.insert(name);
            }
        }
        if seen == want {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "traffic went to {seen:?}, never only to {want:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The proxy's upstream connection to `backend`: the peer address that backend sees.
async fn connection_to(c: &HttpClient, l: SocketAddr, backend: &str) -> String {
    for _ in 0..20 {
        if let Ok((name, peer)) = ask(c, l, "/peer").await
            && name == backend
        {
            return peer;
        }
    }
    panic!("{backend} never answered /peer");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoints_follow_dns_and_the_ones_that_stay_keep_their_pools() {
    let Some(dns) = dnsmasq(1, &[(NAME, "127.0.0.2")], "dns::endpoints_follow_dns") else { return };
    let port = free_port();
    let (_a, _b) = (backend("a", 2, port), backend("b", 3, port));
    let (proxy, l) = proxy(&dns, port, "200ms", "2s");
    let c = HttpClient::http1();
    // Ready means the name has had its first answer: the first request already has an endpoint.
    assert_eq!(ask(&c, l, "/").await.map(|r| r.0), Ok("a".to_owned()), "ready before the first answer");
    wait_answering(&c, l, &["a"]).await;
    let to_a = connection_to(&c, l, "a").await;

    dns.set(&[(NAME, "127.0.0.2"), (NAME, "127.0.0.3")]);
    wait_answering(&c, l, &["a", "b"]).await;
    proxy.wait_metric(
        "pillion_endpoints",
        &["service=\"orders\"", "state=\"healthy\""],
        "two endpoints",
        |v| v == 2.0,
    );
    assert_eq!(connection_to(&c, l, "a").await, to_a, "a's pool was dropped when b was added");
    let to_b = connection_to(&c, l, "b").await;

    dns.set(&[(NAME, "127.0.0.3")]);
    wait_answering(&c, l, &["b"]).await;
    assert_eq!(answering(&c, l, 30).await, BTreeSet::from(["b".to_owned()]), "a still takes traffic");
    assert_eq!(connection_to(&c, l, "b").await, to_b, "b's pool was dropped when a was removed");
    proxy.wait_metric(
        "pillion_endpoints",
        &["service=\"orders\"", "state=\"healthy\""],
        "one endpoint",
        |v| v == 1.0,
    );
    assert!(
        proxy.metric("pillion_dns_resolutions_total", &["service=\"orders\"", "result=\"ok\""]) >= Some(3.0)
    );

    // A definitive answer with no records (NXDOMAIN) empties the service: 503, not stale pods.
    dns.set(&[]);
    let start = Instant::now();
    while c.get(l, "/", Some("orders")).await.map(|r| r.status().as_u16()) != Ok(503) {
        assert!(start.elapsed() < Duration::from_secs(30), "NXDOMAIN never removed the endpoints");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_resolver_down_the_last_good_endpoints_keep_serving() {
    let records = [(NAME, "127.0.0.2"), (NAME, "127.0.0.3")];
    let Some(mut dns) = dnsmasq(1, &records, "dns::with_the_resolver_down") else { return };
    let port = free_port();
    let (_a, _b, _c) = (backend("a", 2, port), backend("b", 3, port), backend("c", 4, port));
    let (proxy, l) = proxy(&dns, port, "200ms", "1s");
    let c = HttpClient::http1();
    wait_answering(&c, l, &["a", "b"]).await;

    dns.kill();
    let failed = ["service=\"orders\"", "result=\"failed\""];
    proxy.wait_metric("pillion_dns_resolutions_total", &failed, "a failed resolution", |v| v >= 1.0);
    let before = proxy.metric("pillion_dns_resolutions_total", &failed).unwrap_or(0.0);
    proxy.wait_metric("pillion_dns_resolutions_total", &failed, "failures go on counting", |v| v > before);
    let both = BTreeSet::from(["a".to_owned(), "b".to_owned()]);
    assert_eq!(answering(&c, l, 30).await, both, "the last good endpoints stopped serving");

    dns.restart(&[(NAME, "127.0.0.4")]);
    wait_answering(&c, l, &["c"]).await;
    assert!(proxy.log().contains("keeping the last good answer"), "the failure was not logged");
    promtool_passes(&proxy.metrics());
}

/// `promtool check metrics` accepts the text (with both results of the DNS family in it).
fn promtool_passes(text: &str) {
    use std::{io::Write, process::Stdio};
    assert!(text.contains("result=\"ok\"") && text.contains("result=\"failed\""), "{text}");
    let mut child = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (package prometheus)");
    child.stdin.take().expect("stdin").write_all(text.as_bytes()).expect("write to promtool");
    let out = child.wait_with_output().expect("promtool");
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "promtool: {said}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_and_aaaa_records_are_both_endpoints() {
    let records = [(NAME, "127.0.0.2"), (NAME, "::1")];
    let Some(dns) = dnsmasq(1, &records, "dns::a_and_aaaa_records_are_both_endpoints") else { return };
    let port = free_port();
    let _v4 = backend("v4", 2, port);
    let _v6 = Backend::start_with("v6", SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, port)), 0);
    let (_proxy, l) = proxy(&dns, port, "200ms", "2s");
    wait_answering(&HttpClient::http1(), l, &["v4", "v6"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_name_with_more_records_than_a_udp_answer_holds_gives_them_all() {
    // 200 A records (3.2 KB of answers): truncated over plain UDP, so EDNS or TCP must carry them.
    let ips: Vec<String> = (0..200).map(|i| format!("127.0.{}.{}", 1 + i / 100, 1 + i % 100)).collect();
    let records: Vec<(&str, &str)> = ips.iter().map(|ip| (NAME, ip.as_str())).collect();
    let Some(dns) = dnsmasq(1, &records, "dns::a_name_with_more_records") else { return };
    let (proxy, _) = proxy(&dns, free_port(), "1s", "2s");
    proxy.wait_metric(
        "pillion_endpoints",
        &["service=\"orders\"", "state=\"healthy\""],
        "200 endpoints",
        |v| v == 200.0,
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_that_lists_another_name_follows_it() {
    let other = "other.mesh.test";
    let records = [(NAME, "127.0.0.2"), (other, "127.0.0.3")];
    let Some(dns) = dnsmasq(1, &records, "dns::a_reload_that_lists_another_name") else { return };
    let port = free_port();
    let (_a, _b) = (backend("a", 2, port), backend("b", 3, port));
    let (l, inbound) = (free_addr(), free_addr());
    let proxy = Proxy::start(&config(&dns, &format!("{NAME}:{port}"), "200ms", "2s", l, inbound));
    let c = HttpClient::http1();
    wait_answering(&c, l, &["a"]).await;
    proxy.write_config(&config(&dns, &format!("{other}:{port}"), "200ms", "2s", l, inbound));
    wait_answering(&c, l, &["b"]).await;
    assert_eq!(
        proxy.metric("pillion_config_updates_total", &["result=\"applied\"", "source=\"file\""]),
        Some(2.0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_ttl_is_capped_at_max_ttl() {
    // An hour's TTL: without the ceiling, the change below would be seen in an hour.
    let Some(dns) = dnsmasq(3600, &[(NAME, "127.0.0.2")], "dns::a_long_ttl_is_capped") else { return };
    let port = free_port();
    let (_a, _b) = (backend("a", 2, port), backend("b", 3, port));
    let (_proxy, l) = proxy(&dns, port, "100ms", "1s");
    let c = HttpClient::http1();
    wait_answering(&c, l, &["a"]).await;
    dns.set(&[(NAME, "127.0.0.3")]);
    wait_answering(&c, l, &["b"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_zero_ttl_is_floored_at_min_ttl() {
    let Some(dns) = dnsmasq(0, &[(NAME, "127.0.0.2")], "dns::a_zero_ttl_is_floored") else { return };
    let port = free_port();
    let _a = backend("a", 2, port);
    let (proxy, l) = proxy(&dns, port, "1s", "10s");
    wait_answering(&HttpClient::http1(), l, &["a"]).await;
    let ok = ["service=\"orders\"", "result=\"ok\""];
    let count = || proxy.metric("pillion_dns_resolutions_total", &ok).unwrap_or(0.0);
    let (n0, t0) = (count(), Instant::now());
    std::thread::sleep(Duration::from_secs(4));
    let (n1, elapsed) = (count(), t0.elapsed());
    // A TTL of 0 asks again after min_ttl (1s), so at most one resolution a second (plus one
    // for the edges of the window); without the floor it would be a query loop.
    let bound = elapsed.as_secs_f64() + 1.0;
    assert!(n1 - n0 <= bound, "{} resolutions in {elapsed:?}: the 1s floor was not kept", n1 - n0);
    assert!(n1 - n0 >= 2.0, "only {} resolutions in {elapsed:?}: a TTL of 0 is re-resolved", n1 - n0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_control_plane_address_and_its_dns_services_resolve_with_the_configured_nameservers() {
    const WEB: &str = "spiffe://cluster.local/ns/shop/sa/web";
    let port = free_port();
    let _a = backend("a", 2, port);
    // The control plane's services may name `dns` too: the sidecar resolves them.
    let mesh = format!("services:\n  - {{name: orders, dns: [\"{NAME}:{port}\"]}}\n");
    let workloads = format!("workloads:\n  - {{name: web, identity: \"{WEB}\"}}\n");
    let control = Control::start(&[("mesh.yaml", &mesh), ("workloads.yaml", &workloads)], &["web"], "1s");
    // A name only this dnsmasq knows: neither /etc/hosts nor resolv.conf's servers have it.
    let host = "pillion-control.mesh.test";
    let records = [(host, "127.0.0.1"), (NAME, "127.0.0.2")];
    let Some(dns) = dnsmasq(1, &records, "dns::the_control_plane_address") else { return };
    let certs = tempfile::tempdir().unwrap();
    std::fs::copy(control.pki.ca_pem(), certs.path().join("ca.pem")).unwrap();
    let listener = free_addr();
    let cfg = format!(
        r#"
workload: {{name: web, identity: "{WEB}"}}
tls: {{cert: "{d}/cert.pem", key: "{d}/key.pem", trust: "{d}/ca.pem"}}
control: {{address: "https://{host}:{control_port}", token_file: "{token}"}}
resolver: {{nameservers: ["{ns}"]}}
admin: {{bind: "{{admin}}"}}
inbound: {{bind: "{inbound}"}}
outbound:
  listeners: [{{bind: "{listener}", service: orders}}]
"#,
        d = certs.path().display(),
        control_port = control.addr.port(),
        token = control.token_file("web").display(),
        ns = dns.addr,
        inbound = free_addr(),
    );
    let _proxy = Proxy::start(&cfg);
    wait_answering(&HttpClient::http1(), listener, &["a"]).await;
    assert!(dns.log().contains(host), "dnsmasq was never asked for {host}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_dns_endpoint_must_prove_the_service_identity() {
    use pillion_e2e::pki::{Pki, tls_section};
    const ORDERS: &str = "spiffe://cluster.local/ns/shop/sa/orders";
    const EVIL: &str = "spiffe://cluster.local/ns/other/sa/evil";
    let records = [(NAME, "127.0.0.2"), (NAME, "127.0.0.3")];
    let Some(dns) = dnsmasq(1, &records, "dns::every_dns_endpoint_must_prove") else { return };
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path(), "mesh");
    let port = free_port();
    // Two sidecars at the name's addresses: one is who the service says, one is not.
    let sidecar = |n: u8, name: &str, identity: &str, app: SocketAddr| {
        let cfg = format!(
            r#"
workload: {{name: {name}, identity: "{identity}"}}
{tls}
admin: {{bind: "{{admin}}"}}
inbound: {{bind: "127.0.0.{n}:{port}", app: "{app}", mtls: strict}}
"#,
            tls = tls_section(&pki.issue(name, identity, &[])),
        );
        Proxy::start(&cfg)
    };
    let (good_app, evil_app) = (Backend::start("orders-app"), Backend::start("evil-app"));
    let _good = sidecar(2, "orders", ORDERS, good_app.addr);
    let evil = sidecar(3, "evil", EVIL, evil_app.addr);
    let listener = free_addr();
    let cfg = format!(
        r#"
workload: {{name: web}}
{tls}
admin: {{bind: "{{admin}}"}}
inbound: {{bind: "{inbound}"}}
outbound:
  listeners: [{{bind: "{listener}", service: orders}}]
services:
  - {{name: orders, lb: round_robin, dns: ["{NAME}:{port}"], identity: "{ORDERS}"}}
resolver: {{nameservers: ["{ns}"], min_ttl: 1s, max_ttl: 2s}}
"#,
        tls = tls_section(&pki.issue("web", "spiffe://cluster.local/ns/shop/sa/web", &[])),
        inbound = free_addr(),
        ns = dns.addr,
    );
    let proxy = Proxy::start(&cfg);
    proxy.wait_metric("pillion_endpoints", &["service=\"orders\""], "both DNS endpoints", |v| v == 2.0);
    let c = HttpClient::http1();
    let mut answered = BTreeSet::new();
    for _ in 0..20 {
        if let Ok((name, _)) = ask(&c, listener, "/").await {
            answered.insert(name);
        }
    }
    assert_eq!(answered, BTreeSet::from(["orders-app".to_owned()]), "only the proven identity is served");
    // The impostor was tried and its handshake refused (it sees the failure on its inbound).
    evil.wait_metric("pillion_tls_handshake_errors_total", &["direction=\"inbound\""], "refused", |v| {
        v >= 1.0
    });
}
