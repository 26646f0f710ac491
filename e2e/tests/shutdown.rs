//! Graceful shutdown: SIGTERM turns `/ready` to 503, lets in-flight requests finish, exits 0.

use std::time::{Duration, Instant};

use pillion_e2e::{
    Backend, Proxy,
    client::{HttpClient, get_status},
    process::free_addr,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_an_in_flight_slow_request_then_exits_zero() {
    let b = Backend::start("app");
    let listener = free_addr();
    let cfg = format!(
        "admin: {{bind: \"{{admin}}\"}}\ninbound: {{bind: \"{}\"}}\noutbound:\n  listeners: [{{bind: \"{listener}\", service: app}}]\nservices:\n  - {{name: app, endpoints: [{{addr: \"{}\"}}]}}\n",
        free_addr(),
        b.addr
    );
    let mut p = Proxy::start(&cfg);
    let slow = tokio::spawn(async move { HttpClient::http1().get(listener, "/delay?ms=2000", None).await });

    // Wait (bounded) until the request is in flight at the backend.
    let deadline = Instant::now() + Duration::from_secs(20);
    while p.metric("pillion_tcp_connections_open", &["direction=\"outbound\""]) != Some(1.0) {
        assert!(Instant::now() < deadline, "request never arrived");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    p.signal("TERM");
    let deadline = Instant::now() + Duration::from_secs(20);
    while get_status(p.admin, "/ready") != Some(503) {
        assert!(Instant::now() < deadline, "/ready never turned 503 while draining");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let resp = slow.await.unwrap().expect("the in-flight request completes");
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.body().as_ref(), b"backend app delayed\n");
    let status = p.wait_exit(Duration::from_secs(30));
    assert!(status.success(), "{status}");
    assert!(p.log().contains("drained"), "{}", p.log());
}
