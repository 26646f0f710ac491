//! The install manifests in `deploy/kubernetes/`: every file passes `kubernetes-validate
//! --strict`, and the control plane's RBAC is exactly enough: applied to a real API server,
//! `pillion-control serve --kubernetes` running as its ServiceAccount (a token, no admin) lists
//! and watches everything it needs, writes a route's status and reviews a Pod's ServiceAccount
//! token for its certificate, and the ClusterRole grants nothing else.

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

use k8s_openapi::{
    api::{
        authentication::v1::TokenRequest,
        core::v1::{Namespace, Pod, Service, ServiceAccount},
        rbac::v1::{ClusterRole, ClusterRoleBinding},
    },
    serde::{Deserialize, Serialize, de::DeserializeOwned},
};
use kube::{
    Api,
    api::{ApiResource, DynamicObject, GroupVersionKind, PostParams},
};
use pillion_e2e::{control::Control, kube::KubeApi, process::find_venv_program};
use serde_json::{Value, json};

fn deploy_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/kubernetes")
}

/// `kubernetes-validate` on `PATH`, or where `scripts/setup.sh` puts it.
fn kubernetes_validate() -> Option<PathBuf> {
    find_venv_program("kubernetes-validate", "kubernetes-validate")
}

/// Every document of `deploy/kubernetes/control.yaml`, as JSON.
fn control_manifest() -> Vec<Value> {
    let text = std::fs::read_to_string(deploy_dir().join("control.yaml")).expect("read control.yaml");
    serde_yaml::Deserializer::from_str(&text)
        .map(|doc| Value::deserialize(doc).expect("each document is YAML"))
        .collect()
}

fn of_kind(docs: &[Value], kind: &str) -> Value {
    docs.iter().find(|d| d["kind"] == kind).cloned().unwrap_or_else(|| panic!("no {kind} in control.yaml"))
}

#[test]
fn every_manifest_passes_kubernetes_validate_strict() {
    let Some(validate) = kubernetes_validate() else {
        pillion_e2e::skip(
            "needs kubernetes-validate",
            "deploy::kubernetes_validate (scripts/setup.sh installs it)",
        );
        return;
    };
    let mut files: Vec<PathBuf> = std::fs::read_dir(deploy_dir())
        .expect("deploy/kubernetes")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    assert!(files.iter().any(|f| f.ends_with("control.yaml")), "{files:?}");
    let out = Command::new(&validate).arg("--strict").args(&files).output().expect("run kubernetes-validate");
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "kubernetes-validate --strict failed:\n{said}");
    assert!(!said.contains("WARN") && !said.contains("ERROR"), "{said}");
}

#[test]
fn the_control_plane_cluster_role_grants_its_watches_route_status_and_token_reviews_only() {
    let docs = control_manifest();
    let role = of_kind(&docs, "ClusterRole");
    let mut grants: Vec<String> = Vec::new();
    for rule in role["rules"].as_array().expect("rules") {
        let verbs: Vec<&str> = rule["verbs"].as_array().unwrap().iter().filter_map(Value::as_str).collect();
        for group in rule["apiGroups"].as_array().unwrap() {
            for resource in rule["resources"].as_array().unwrap() {
                grants.push(format!(
                    "{}/{} {}",
                    group.as_str().unwrap(),
                    resource.as_str().unwrap(),
                    verbs.join(",")
                ));
            }
        }
    }
    grants.sort();
    assert_eq!(
        grants,
        [
            "/namespaces list,watch",
            "/pods get",
            "/pods list,watch",
            "/services list,watch",
            "authentication.k8s.io/tokenreviews create",
            "discovery.k8s.io/endpointslices list,watch",
            "gateway.networking.k8s.io/grpcroutes list,watch",
            "gateway.networking.k8s.io/grpcroutes/status get,patch",
            "gateway.networking.k8s.io/httproutes list,watch",
            "gateway.networking.k8s.io/httproutes/status get,patch",
        ]
    );
    let deployment = of_kind(&docs, "Deployment");
    assert_eq!(deployment["spec"]["replicas"], 2);
    assert_eq!(deployment["spec"]["template"]["spec"]["serviceAccountName"], "pillion-control");
}

async fn create<K>(api: Api<K>, value: Value)
where
    K: Clone + DeserializeOwned + Serialize + std::fmt::Debug,
{
    let object: K = serde_json::from_value(value).expect("a valid object");
    api.create(&PostParams::default(), &object).await.unwrap_or_else(|e| panic!("create {object:?}: {e}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_control_plane_runs_on_its_own_rbac_and_nothing_more() {
    let Some(kube) = KubeApi::start_or_skip("deploy::rbac").await else { return };
    let client = kube.client().await.expect("client");
    let docs = control_manifest();
    create(Api::<Namespace>::all(client.clone()), of_kind(&docs, "Namespace")).await;
    let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), "pillion-system");
    create(accounts.clone(), of_kind(&docs, "ServiceAccount")).await;
    create(Api::<ClusterRole>::all(client.clone()), of_kind(&docs, "ClusterRole")).await;
    create(Api::<ClusterRoleBinding>::all(client.clone()), of_kind(&docs, "ClusterRoleBinding")).await;

    // Something to see: a Service and a Pod in `shop`.
    create(Api::<Namespace>::all(client.clone()), json!({"metadata": {"name": "shop"}})).await;
    create(Api::<ServiceAccount>::namespaced(client.clone(), "shop"), json!({"metadata": {"name": "web"}}))
        .await;
    create(
        Api::<Pod>::namespaced(client.clone(), "shop"),
        json!({"metadata": {"name": "web-1"}, "spec": {"serviceAccountName": "web",
               "containers": [{"name": "app", "image": "example.com/app:1"}]}}),
    )
    .await;
    create(
        Api::<Service>::namespaced(client.clone(), "shop"),
        json!({"metadata": {"name": "web"}, "spec": {"ports": [{"port": 80}]}}),
    )
    .await;
    // And a mesh route, whose status it must be allowed to read and write.
    let routes: Api<DynamicObject> = Api::namespaced_with(client.clone(), "shop", &http_route_resource());
    let route = json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
        "metadata": {"name": "web"},
        "spec": {"parentRefs": [{"group": "", "kind": "Service", "name": "web", "port": 80}],
                 "rules": [{"backendRefs": [{"name": "web", "port": 80}]}]}});
    create(routes.clone(), route).await;

    // Its kubeconfig: the API server's CA and a token of its ServiceAccount, as in a Pod.
    let request: TokenRequest = serde_json::from_value(json!({"spec": {"expirationSeconds": 3600}})).unwrap();
    let token = accounts
        .create_token_request("pillion-control", &PostParams::default(), &request)
        .await
        .expect("TokenRequest")
        .status
        .and_then(|s| s.token)
        .expect("a token");
    let kubeconfig = kube.dir().join("pillion-control.kubeconfig");
    let text = json!({
        "apiVersion": "v1", "kind": "Config", "current-context": "c",
        "clusters": [{"name": "k", "cluster": {"server": kube.server_url(),
                      "certificate-authority": kube.ca_pem()}}],
        "users": [{"name": "pillion-control", "user": {"token": token}}],
        "contexts": [{"name": "c", "context": {"cluster": "k", "user": "pillion-control"}}],
    });
    std::fs::write(&kubeconfig, serde_json::to_string(&text).unwrap()).expect("write kubeconfig");

    let control = Control::start_kubernetes(&kubeconfig, &[]);
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let status = control.status();
        let found =
            status["proxies"].as_array().is_some_and(|l| l.iter().any(|p| p["workload"] == "web.shop"));
        if found {
            break;
        }
        assert!(Instant::now() < deadline, "web.shop never published:\n{}", control.log());
        std::thread::sleep(Duration::from_millis(100));
    }
    loop {
        let route = routes.get_status("web").await.expect("read the route");
        let accepted = route.data["status"]["parents"][0]["conditions"]
            .as_array()
            .is_some_and(|c| c.iter().any(|c| c["type"] == "Accepted" && c["status"] == "True"));
        if accepted {
            break;
        }
        assert!(Instant::now() < deadline, "the route's status was never written:\n{}", control.log());
        std::thread::sleep(Duration::from_millis(100));
    }
    let log = control.log();
    assert!(!log.contains("watch failed"), "a watch was refused:\n{log}");
    assert!(!log.contains("cannot write"), "a status write was refused:\n{log}");

    // A certificate for web-1's ServiceAccount token: a TokenReview, then a get of its Pod.
    let pod_uid =
        Api::<Pod>::namespaced(client.clone(), "shop").get("web-1").await.expect("pod").metadata.uid;
    let request: TokenRequest = serde_json::from_value(json!({"spec": {"audiences": ["pillion"],
        "expirationSeconds": 600, "boundObjectRef": {"kind": "Pod", "apiVersion": "v1", "name": "web-1", "uid": pod_uid}}}))
    .unwrap();
    let web_accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), "shop");
    let answer = web_accounts.create_token_request("web", &PostParams::default(), &request).await;
    let web_token = answer.expect("TokenRequest").status.and_then(|s| s.token).expect("a token");
    let csr_dir = control.dir.path().join("web-csr");
    pillion_e2e::pki::certs(&[
        "csr",
        "--identity",
        "spiffe://cluster.local/ns/shop/sa/web",
        "--out",
        csr_dir.to_str().unwrap(),
    ]);
    let header = format!("Authorization: Bearer {web_token}");
    let (code, pem) =
        control.post("/v1/certificates?workload=web.shop", None, &csr_dir.join("csr.pem"), &["-H", &header]);
    assert_eq!(code, 200, "{pem}\n{}", control.log());
}

fn http_route_resource() -> ApiResource {
    ApiResource::from_gvk(&GroupVersionKind::gvk("gateway.networking.k8s.io", "v1", "HTTPRoute"))
}
