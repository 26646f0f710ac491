//! Certificates bound to the Kubernetes ServiceAccount, against a real API server: a Pod's
//! projected token (audience `pillion`, bound to the Pod, made with the TokenRequest API) gets its
//! own identity's certificate from `pillion-control --kubernetes`, checked with a TokenReview, and
//! never another's; a token for another audience, an expired one (signed here with the cluster's
//! service-account key, since the API refuses to issue one under 600 s) and one whose Pod is gone
//! are refused and counted. A real `pillion` proxy whose token file is not written yet (as before
//! the kubelet projects it) keeps re-reading it and enrols once it is. With the API server down a
//! new token request is a distinct, retryable refusal and succeeds once it is back, while a
//! proxy with a certificate keeps renewing it (renewal is by certificate, not by token).

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use k8s_openapi::api::{
    authentication::v1::TokenRequest,
    core::v1::{Pod, ServiceAccount},
};
use kube::{Api, Client, api::PostParams};
use pillion_e2e::{
    Proxy,
    control::Control,
    kube::{KubeApi, SA_ISSUER, objects::Cluster},
    pki::certs,
    process::{free_addr, metric_value},
};
use serde_json::json;

/// Generous: the API server and the control plane share two cores with other tests.
const WAIT: Duration = Duration::from_secs(90);
const WEB_ID: &str = "spiffe://cluster.local/ns/shop/sa/web";
const ORDERS_ID: &str = "spiffe://cluster.local/ns/shop/sa/orders";

/// A token of ServiceAccount `shop/sa` for `audience`, bound to Pod `shop/pod`.
async fn pod_token(client: &Client, sa: &str, pod: &str, audience: &str) -> String {
    let (uid, _) = uids(client, pod, sa).await;
    let request: TokenRequest = serde_json::from_value(json!({"spec": {
        "audiences": [audience], "expirationSeconds": 600,
        "boundObjectRef": {"kind": "Pod", "apiVersion": "v1", "name": pod, "uid": uid}}}))
    .expect("a TokenRequest");
    let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), "shop");
    let answer =
        accounts.create_token_request(sa, &PostParams::default(), &request).await.expect("TokenRequest");
    answer.status.and_then(|s| s.token).expect("a token")
}

/// The uids of Pod `shop/pod` and ServiceAccount `shop/sa`.
async fn uids(client: &Client, pod: &str, sa: &str) -> (String, String) {
    let pod = Api::<Pod>::namespaced(client.clone(), "shop").get(pod).await.expect("get the pod");
    let sa =
        Api::<ServiceAccount>::namespaced(client.clone(), "shop").get(sa).await.expect("get the account");
    (pod.metadata.uid.expect("a pod uid"), sa.metadata.uid.expect("an account uid"))
}

/// A bound token of `shop/web` for Pod `web-1` that expired an hour ago, signed as the API
/// server signs (ES256 with its service-account key, `kid` the key's hash).
async fn expired_token(kube: &KubeApi, client: &Client) -> String {
    let (pod_uid, sa_uid) = uids(client, "web-1", "web").await;
    let now = SystemTime::now().duration_since(UNIX_EPOCH).expect("clock").as_secs();
    let sa_pub = kube.certs().sa_pub.display().to_string();
    let der = openssl(&["pkey", "-pubin", "-in", &sa_pub, "-outform", "DER"], None);
    let kid = base64url(&sha256(&der));
    let header = json!({"alg": "ES256", "kid": kid, "typ": "JWT"});
    let claims = json!({
        "iss": SA_ISSUER, "aud": ["pillion"], "sub": "system:serviceaccount:shop:web",
        "iat": now - 7200, "nbf": now - 7200, "exp": now - 3600,
        "kubernetes.io": {"namespace": "shop",
                          "serviceaccount": {"name": "web", "uid": sa_uid},
                          "pod": {"name": "web-1", "uid": pod_uid}}});
    let signed =
        format!("{}.{}", base64url(header.to_string().as_bytes()), base64url(claims.to_string().as_bytes()));
    let key = kube.certs().sa_key.display().to_string();
    let signature = openssl(&["dgst", "-sha256", "-sign", &key], Some(signed.as_bytes()));
    format!("{signed}.{}", base64url(&ecdsa_raw(&signature)))
}

/// Runs `openssl ARGS` with `input` on stdin; its stdout.
fn openssl(args: &[&str], input: Option<&[u8]>) -> Vec<u8> {
    use std::io::Write;
    let mut child = Command::new("openssl")
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("run openssl");
    let mut stdin = child.stdin.take().expect("stdin");
    stdin.write_all(input.unwrap_or_default()).expect("write to openssl");
    drop(stdin);
    let out = child.wait_with_output().expect("openssl output");
    assert!(out.status.success(), "openssl {args:?} failed");
    out.stdout
}

fn sha256(bytes: &[u8]) -> Vec<u8> {
    use sha2::Digest;
    sha2::Sha256::digest(bytes).to_vec()
}

/// An ECDSA P-256 signature from DER (`SEQUENCE { INTEGER r, INTEGER s }`) to JWS's `r || s`.
fn ecdsa_raw(der: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    let mut at = 2; // SEQUENCE tag and (short) length
    for _ in 0..2 {
        assert_eq!(der[at], 0x02, "an INTEGER");
        let len = der[at + 1] as usize;
        let int = &der[at + 2..at + 2 + len];
        let int = &int[int.len().saturating_sub(32)..];
        out.extend(std::iter::repeat_n(0, 32 - int.len()));
        out.extend_from_slice(int);
        at += 2 + len;
    }
    out
}

fn base64url(bytes: &[u8]) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk.iter().enumerate().fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
        for i in 0..=chunk.len() {
            out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
        }
    }
    out
}

/// A CSR for `identity` in a new directory of `control`'s.
fn csr(control: &Control, name: &str, identity: &str) -> PathBuf {
    let dir = control.dir.path().join(name);
    certs(&["csr", "--identity", identity, "--out", dir.to_str().expect("utf-8 path")]);
    dir.join("csr.pem")
}

fn refusals(control: &Control, reason: &str) -> f64 {
    let (code, text) = control.get("/metrics", None);
    assert_eq!(code, 200, "{text}");
    metric_value(&text, "pillion_control_certificate_refusals_total", &[&format!("reason=\"{reason}\"")])
        .unwrap_or_else(|| panic!("no {reason} refusals series:\n{text}"))
}

/// POSTs `csr` for `workload` with `token`: the status and body.
fn request(control: &Control, workload: &str, csr: &Path, token: &str) -> (u16, String) {
    let header = format!("Authorization: Bearer {token}");
    control.post(&format!("/v1/certificates?workload={workload}"), None, csr, &["-H", &header])
}

/// Refused with `code`, counted once under `reason`; the body.
fn refused(control: &Control, reason: &str, code: u16, workload: &str, csr: &Path, token: &str) -> String {
    let before = refusals(control, reason);
    let (got, text) = request(control, workload, csr, token);
    assert_eq!(got, code, "{reason}: {text}");
    assert_eq!(refusals(control, reason), before + 1.0, "{reason} counted once");
    text
}

/// The SPIFFE ID of a signed certificate (the leaf of `pem`).
fn identity_of(control: &Control, name: &str, pem: &str) -> String {
    let file = control.dir.path().join(format!("{name}.pem"));
    std::fs::write(&file, pem).expect("write the certificate");
    let inspected = certs(&["inspect", file.to_str().expect("utf-8 path")]);
    let line = inspected.lines().find_map(|l| l.trim().strip_prefix("identity: ")).expect("an identity");
    line.to_owned()
}

/// A sidecar of `web.shop` whose `control.token_file` is `token_file` (written or not), started
/// without waiting for it to enrol; its certificate directory.
fn web_sidecar(control: &Control, token_file: &Path) -> (Proxy, PathBuf) {
    let certs = tempfile::tempdir().expect("a temporary directory").keep();
    std::fs::copy(control.pki.ca_pem(), certs.join("ca.pem")).expect("copy the CA");
    let cfg = format!(
        r#"
workload: {{name: web.shop, identity: "{WEB_ID}"}}
tls: {{cert: "{d}/cert.pem", key: "{d}/key.pem", trust: "{d}/ca.pem"}}
control: {{address: "https://{addr}", token_file: "{token}"}}
admin: {{bind: "{{admin}}"}}
inbound: {{bind: "{inbound}"}}
"#,
        d = certs.display(),
        addr = control.addr,
        token = token_file.display(),
        inbound = free_addr(),
    );
    (Proxy::launch_enrolling(&cfg), certs)
}

/// Writes `token` to `path` as the kubelet does: a new file renamed over the old.
fn project(path: &Path, token: &str) {
    let tmp = path.with_extension("new");
    std::fs::write(&tmp, token).expect("write the token");
    std::fs::rename(&tmp, path).expect("rename the token into place");
}

/// Waits (up to [`WAIT`]) until `proxy`'s log contains `text` `times` times.
fn until_logged(proxy: &Proxy, text: &str, times: usize) {
    let deadline = std::time::Instant::now() + WAIT;
    while proxy.log().matches(text).count() < times {
        assert!(std::time::Instant::now() < deadline, "never logged {text:?} x{times}:\n{}", proxy.log());
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Namespace `shop` with ServiceAccounts `web` and `orders`, Pods `web-1` and `orders-1`, and a
/// control plane that has published both workloads.
async fn shop(kube: &KubeApi) -> (Client, Control) {
    let client = kube.client().await.expect("client");
    let cluster = Cluster::new(client.clone());
    cluster.namespace("shop", &["web", "orders"]).await.expect("namespace");
    cluster.pod("shop", "web-1", "web").await.expect("pod");
    cluster.pod("shop", "orders-1", "orders").await.expect("pod");
    let control = Control::start_kubernetes(kube.kubeconfig(), &[]);
    control.until_published("web.shop", WAIT);
    control.until_published("orders.shop", WAIT);
    (client, control)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pods_token_gets_its_own_identity_only_and_bad_tokens_are_refused() {
    let Some(kube) = KubeApi::start_or_skip("kube_identity::tokens").await else { return };
    let (client, control) = shop(&kube).await;
    let (web_csr, orders_csr) = (csr(&control, "web", WEB_ID), csr(&control, "orders", ORDERS_ID));
    let web = pod_token(&client, "web", "web-1", "pillion").await;

    // Its own identity, whatever else it asks.
    let (code, pem) = request(&control, "web.shop", &web_csr, &web);
    assert_eq!(code, 200, "{pem}");
    assert_eq!(identity_of(&control, "web-cert", &pem), WEB_ID);
    assert!(control.log().contains("by=\"service-account\""), "{}", control.log());
    let text = refused(&control, "wrong-workload", 403, "orders.shop", &orders_csr, &web);
    assert!(text.contains("web.shop"), "{text}");
    refused(&control, "wrong-workload", 403, "orders.shop", &web_csr, &web);
    refused(&control, "csr-identity", 403, "web.shop", &orders_csr, &web);
    let orders = pod_token(&client, "orders", "orders-1", "pillion").await;
    let (code, pem) = request(&control, "orders.shop", &orders_csr, &orders);
    assert_eq!(code, 200, "{pem}");
    assert_eq!(identity_of(&control, "orders-cert", &pem), ORDERS_ID);

    // Another audience (the API server's own), an expired token, junk.
    let api = pod_token(&client, "web", "web-1", SA_ISSUER).await;
    refused(&control, "bad-token", 403, "web.shop", &web_csr, &api);
    let expired = expired_token(&kube, &client).await;
    let text = refused(&control, "bad-token", 403, "web.shop", &web_csr, &expired);
    assert!(text.contains("expired"), "{text}");
    refused(&control, "bad-token", 403, "web.shop", &web_csr, "not-a-token");

    // The Pod gone: its token, still unexpired, enrols nothing.
    Cluster::new(client.clone()).delete_pod("shop", "web-1").await.expect("delete the pod");
    refused(&control, "bad-token", 403, "web.shop", &web_csr, &web);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_api_server_down_a_token_request_is_retryable_and_succeeds_once_it_is_back() {
    let Some(mut kube) = KubeApi::start_or_skip("kube_identity::apiserver_down").await else { return };
    let (client, mut control) = shop(&kube).await;
    // Short certificates, so that the proxy renews while the API server is down.
    control.set_cert_ttl("9s");
    control.until_published("web.shop", WAIT);
    let web_csr = csr(&control, "web", WEB_ID);
    let web = pod_token(&client, "web", "web-1", "pillion").await;
    let token_dir = tempfile::tempdir().expect("a temporary directory");
    let token_file = token_dir.path().join("token");
    project(&token_file, &web);
    let (proxy, _certs) = web_sidecar(&control, &token_file);
    proxy.wait_ready();

    kube.stop_apiserver();
    let renewed = proxy.log().matches("workload certificate renewed").count();
    until_logged(&proxy, "workload certificate renewed", renewed + 2);
    // And it still serves.
    proxy.wait_ready();
    let text = refused(&control, "token-review-failed", 503, "web.shop", &web_csr, &web);
    assert!(text.contains("could not review"), "{text}");
    kube.start_apiserver().await.expect("API server back");
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let (code, pem) = request(&control, "web.shop", &web_csr, &web);
        if code == 200 {
            assert_eq!(identity_of(&control, "web-cert", &pem), WEB_ID);
            break;
        }
        assert_eq!(code, 503, "only retryable refusals while the client reconnects: {pem}");
        assert!(std::time::Instant::now() < deadline, "never signed after the API server came back: {pem}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proxy_re_reads_its_token_file_until_the_token_is_there() {
    let Some(kube) = KubeApi::start_or_skip("kube_identity::token_file").await else { return };
    let (client, control) = shop(&kube).await;
    let token_dir = tempfile::tempdir().expect("a temporary directory");
    let token_file = token_dir.path().join("token");
    let (proxy, certs_dir) = web_sidecar(&control, &token_file);
    // No file yet: retried (with backoff), not sent without a token and not given up on.
    until_logged(&proxy, "no token in control.token_file", 2);
    project(&token_file, "");
    until_logged(&proxy, "the file is empty", 1);
    let before = refusals(&control, "no-credentials");
    project(&token_file, &pod_token(&client, "web", "web-1", "pillion").await);
    proxy.wait_ready();
    let pem = std::fs::read_to_string(certs_dir.join("cert.pem")).expect("the signed certificate");
    assert_eq!(identity_of(&control, "proxy-cert", &pem), WEB_ID);
    assert_eq!(refusals(&control, "no-credentials"), before, "never asked without a token");
    assert!(control.log().contains("by=\"service-account\""), "{}", control.log());
}
