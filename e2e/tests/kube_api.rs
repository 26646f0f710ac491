//! The Kubernetes harness is a real API server: objects Pillion will read (Services,
//! EndpointSlices, Gateway API routes) are stored, validated and watched; service-account tokens
//! are issued and reviewed; RBAC refuses who it should; and everything survives an API server
//! restart on the same etcd. Each test starts its own control plane (`pillion_e2e::kube`).

use std::{io::Write, time::Duration};

use futures_util::{StreamExt, TryStreamExt};
use k8s_openapi::{
    api::{
        authentication::v1::{TokenRequest, TokenReview, TokenReviewSpec},
        core::v1::{Namespace, Secret, Service, ServiceAccount},
        discovery::v1::EndpointSlice,
    },
    serde::de::DeserializeOwned,
};
use kube::{
    Api, Client, Config,
    api::{ApiResource, DynamicObject, GroupVersionKind, ListParams, PostParams, WatchEvent, WatchParams},
    config::{AuthInfo, KubeConfigOptions, Kubeconfig},
};
use pillion_e2e::kube::KubeApi;
use serde_json::json;

/// How long a watch gets to deliver an event the test caused.
const WATCH_WAIT: Duration = Duration::from_secs(20);

fn http_route() -> ApiResource {
    ApiResource::from_gvk(&GroupVersionKind::gvk("gateway.networking.k8s.io", "v1", "HTTPRoute"))
}

fn grpc_route() -> ApiResource {
    ApiResource::from_gvk(&GroupVersionKind::gvk("gateway.networking.k8s.io", "v1", "GRPCRoute"))
}

/// A client for the same server and CA as the admin kubeconfig, as someone else (`auth`).
async fn client_as(kube: &KubeApi, auth: AuthInfo) -> Client {
    let kubeconfig = Kubeconfig::read_from(kube.kubeconfig()).expect("kubeconfig");
    let mut config =
        Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default()).await.expect("config");
    config.auth_info = auth;
    Client::try_from(config).expect("client")
}

/// Builds a typed object from JSON, the way manifests read.
fn from_json<K: DeserializeOwned>(value: serde_json::Value) -> K {
    serde_json::from_value(value).expect("a valid object")
}

async fn create_namespace(client: &Client, name: &str) {
    let ns: Namespace = from_json(json!({"metadata": {"name": name}}));
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &ns)
        .await
        .expect("create namespace");
}

fn orders_service() -> Service {
    from_json(json!({
        "metadata": {"name": "orders", "labels": {"app": "orders"}},
        "spec": {"selector": {"app": "orders"}, "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}]}
    }))
}

/// An HTTPRoute as a mesh (GAMMA) writes it: the parent is the Service itself, 90/10 split.
fn orders_route() -> DynamicObject {
    DynamicObject::new("orders-canary", &http_route()).data(json!({
        "spec": {
            "parentRefs": [{"group": "", "kind": "Service", "name": "orders", "port": 8080}],
            "rules": [{
                "matches": [{"path": {"type": "PathPrefix", "value": "/api"}}],
                "backendRefs": [
                    {"name": "orders-v1", "port": 8080, "weight": 90},
                    {"name": "orders-v2", "port": 8080, "weight": 10}
                ]
            }]
        }
    }))
}

#[tokio::test]
async fn endpoint_slice_create_is_seen_by_a_watch_and_the_service_gets_a_cluster_ip() {
    let Some(kube) = KubeApi::start_or_skip("kube_api::endpoint_slice_watch").await else { return };
    let client = kube.client().await.expect("client");
    create_namespace(&client, "shop").await;

    let services: Api<Service> = Api::namespaced(client.clone(), "shop");
    let svc = services.create(&PostParams::default(), &orders_service()).await.expect("create service");
    let cluster_ip = svc.spec.and_then(|s| s.cluster_ip).expect("a ClusterIP is allocated");
    assert!(cluster_ip.starts_with("10.96.0."), "ClusterIP {cluster_ip} is not from the service CIDR");

    // Watch from the list's resourceVersion: exactly what happens after it, nothing before.
    let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), "shop");
    let listed = slices.list(&ListParams::default()).await.expect("list slices");
    assert!(listed.items.is_empty(), "no controller runs, so no slice exists yet: {:?}", listed.items);
    let version = listed.metadata.resource_version.expect("a list resourceVersion");
    let params = WatchParams::default().labels("kubernetes.io/service-name=orders").timeout(30);
    let mut events = slices.watch(&params, &version).await.expect("watch").boxed();

    // The API server refuses loopback endpoint addresses, so this one is from TEST-NET-1
    // (RFC 5737): data only, nothing here ever connects to it.
    let slice: EndpointSlice = from_json(json!({
        "metadata": {"name": "orders-abc12", "labels": {"kubernetes.io/service-name": "orders"}},
        "addressType": "IPv4",
        "endpoints": [{"addresses": ["192.0.2.7"], "conditions": {"ready": true},
                       "targetRef": {"kind": "Pod", "name": "orders-7d9f", "namespace": "shop"}}],
        "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}]
    }));
    slices.create(&PostParams::default(), &slice).await.expect("create endpoint slice");

    let event = tokio::time::timeout(WATCH_WAIT, events.try_next())
        .await
        .expect("a watch event in time")
        .expect("a good watch stream")
        .expect("the stream stays open");
    let WatchEvent::Added(seen) = event else { panic!("expected Added, got {event:?}") };
    assert_eq!(seen.metadata.name.as_deref(), Some("orders-abc12"));
    let endpoints = seen.endpoints.expect("endpoints");
    assert_eq!(endpoints[0].addresses, ["192.0.2.7"]);
    assert_eq!(endpoints[0].conditions.as_ref().and_then(|c| c.ready), Some(true));
    assert_eq!(seen.ports.as_ref().expect("ports")[0].port, Some(8080));
}

#[tokio::test]
async fn gateway_api_routes_are_stored_read_back_and_schema_validated() {
    let Some(kube) = KubeApi::start_or_skip("kube_api::gateway_api_routes").await else { return };
    let client = kube.client().await.expect("client");
    create_namespace(&client, "shop").await;

    let routes: Api<DynamicObject> = Api::namespaced_with(client.clone(), "shop", &http_route());
    routes.create(&PostParams::default(), &orders_route()).await.expect("create HTTPRoute");
    let back = routes.get("orders-canary").await.expect("read HTTPRoute back");
    let spec = &back.data["spec"];
    assert_eq!(spec["parentRefs"][0]["kind"], "Service");
    assert_eq!(spec["rules"][0]["matches"][0]["path"]["value"], "/api");
    let weights: Vec<_> = spec["rules"][0]["backendRefs"]
        .as_array()
        .expect("backendRefs")
        .iter()
        .map(|b| b["weight"].clone())
        .collect();
    assert_eq!(weights, [json!(90), json!(10)]);

    let grpc: Api<DynamicObject> = Api::namespaced_with(client.clone(), "shop", &grpc_route());
    let route = DynamicObject::new("orders-grpc", &grpc_route()).data(json!({"spec": {
        "parentRefs": [{"group": "", "kind": "Service", "name": "orders"}],
        "rules": [{"matches": [{"method": {"service": "shop.Orders", "method": "Get"}}],
                   "backendRefs": [{"name": "orders", "port": 9090}]}]
    }}));
    grpc.create(&PostParams::default(), &route).await.expect("create GRPCRoute");
    let listed = grpc.list(&ListParams::default()).await.expect("list GRPCRoutes");
    assert_eq!(listed.items.len(), 1);
    assert_eq!(listed.items[0].data["spec"]["rules"][0]["matches"][0]["method"]["service"], "shop.Orders");

    // The CRD's schema is enforced, so these are the real CRDs and not a permissive stand-in.
    let mut bad = orders_route();
    bad.metadata.name = Some("bad-path".into());
    bad.data["spec"]["rules"][0]["matches"][0]["path"]["type"] = json!("Glob");
    let err = routes.create(&PostParams::default(), &bad).await.expect_err("an unknown path type is refused");
    let kube::Error::Api(status) = &err else { panic!("expected an API error, got {err}") };
    assert_eq!(status.code, 422, "{status:?}");
    assert!(status.message.contains("Glob"), "{}", status.message);
}

#[tokio::test]
async fn service_account_token_for_audience_pillion_passes_token_review_and_rbac_applies() {
    let Some(kube) = KubeApi::start_or_skip("kube_api::token_review").await else { return };
    let client = kube.client().await.expect("client");
    create_namespace(&client, "shop").await;
    let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), "shop");
    let sa: ServiceAccount = from_json(json!({"metadata": {"name": "orders"}}));
    accounts.create(&PostParams::default(), &sa).await.expect("create service account");

    let request: TokenRequest =
        from_json(json!({"spec": {"audiences": ["pillion"], "expirationSeconds": 3600}}));
    let issued = accounts
        .create_token_request("orders", &PostParams::default(), &request)
        .await
        .expect("TokenRequest");
    let token = issued.status.and_then(|s| s.token).expect("a token");
    assert_eq!(token.split('.').count(), 3, "a JWT");

    let review = |token: String, audiences: &[&str]| TokenReview {
        spec: TokenReviewSpec { token, audiences: Some(audiences.iter().map(|a| a.to_string()).collect()) },
        ..Default::default()
    };
    let reviews: Api<TokenReview> = Api::all(client.clone());
    let reviewed =
        reviews.create(&PostParams::default(), &review(token.clone(), &["pillion"])).await.expect("review");
    let status = reviewed.status.expect("review status");
    assert_eq!(status.authenticated, Some(true), "{status:?}");
    assert_eq!(status.audiences.as_deref(), Some(&["pillion".to_string()][..]));
    let user = status.user.expect("a user");
    assert_eq!(user.username.as_deref(), Some("system:serviceaccount:shop:orders"));
    assert!(user.groups.unwrap_or_default().contains(&"system:serviceaccounts:shop".to_string()));

    // Audiences are checked: a token for pillion is no token for anyone else.
    let other =
        reviews.create(&PostParams::default(), &review(token.clone(), &["vault"])).await.expect("review");
    assert_ne!(other.status.and_then(|s| s.authenticated), Some(true), "a pillion token passed for vault");
    // And signatures are: one changed character of the signature and it is nobody. The first
    // character, since the last one's low bits are base64 padding that a decoder may ignore.
    let signature_at = token.rfind('.').expect("a JWT") + 1;
    let first = token.as_bytes()[signature_at];
    let mut forged = token.clone();
    forged.replace_range(signature_at..=signature_at, if first == b'A' { "B" } else { "A" });
    let forged = reviews.create(&PostParams::default(), &review(forged, &["pillion"])).await.expect("review");
    assert_ne!(forged.status.and_then(|s| s.authenticated), Some(true), "a forged token passed");

    // RBAC is on: the service account, authenticated by a token for the API server's own
    // audience (the issuer), may not list Secrets; the admin may.
    let api_token = accounts
        .create_token_request("orders", &PostParams::default(), &from_json(json!({"spec": {}})))
        .await
        .expect("TokenRequest");
    let bearer = AuthInfo {
        token: Some(api_token.status.and_then(|s| s.token).expect("a token").into()),
        ..Default::default()
    };
    let as_sa = client_as(&kube, bearer).await;
    let secrets: Api<Secret> = Api::namespaced(as_sa, "shop");
    let err =
        secrets.list(&ListParams::default()).await.expect_err("a bare service account may not list secrets");
    let kube::Error::Api(status) = &err else { panic!("expected an API error, got {err}") };
    assert_eq!(status.code, 403, "{status:?}");
    assert!(status.message.contains("system:serviceaccount:shop:orders"), "{}", status.message);
    Api::<Secret>::namespaced(client, "shop").list(&ListParams::default()).await.expect("the admin may");
}

#[tokio::test]
async fn objects_and_tokens_survive_an_api_server_restart_on_the_same_etcd() {
    let Some(mut kube) = KubeApi::start_or_skip("kube_api::restart").await else { return };
    let client = kube.client().await.expect("client");
    create_namespace(&client, "shop").await;
    Api::<Service>::namespaced(client.clone(), "shop")
        .create(&PostParams::default(), &orders_service())
        .await
        .expect("create service");
    Api::<DynamicObject>::namespaced_with(client.clone(), "shop", &http_route())
        .create(&PostParams::default(), &orders_route())
        .await
        .expect("create route");
    let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), "shop");
    accounts
        .create(&PostParams::default(), &from_json(json!({"metadata": {"name": "orders"}})))
        .await
        .expect("create sa");
    let request: TokenRequest = from_json(json!({"spec": {"audiences": ["pillion"]}}));
    let token = accounts
        .create_token_request("orders", &PostParams::default(), &request)
        .await
        .expect("token")
        .status
        .and_then(|s| s.token)
        .expect("a token");

    kube.stop_apiserver();
    let down = Api::<Namespace>::all(client.clone()).get("shop").await;
    assert!(down.is_err(), "the API server answered while stopped: {down:?}");
    let begun = std::time::Instant::now();
    kube.start_apiserver().await.expect("restart");
    let _ = writeln!(std::io::stderr(), "kube: API server back in {:.1}s", begun.elapsed().as_secs_f64());

    // The client made before the restart works after it: same address, same CA.
    let svc = Api::<Service>::namespaced(client.clone(), "shop")
        .get("orders")
        .await
        .expect("service after restart");
    assert_eq!(svc.spec.and_then(|s| s.ports).expect("ports")[0].port, 8080);
    let route = Api::<DynamicObject>::namespaced_with(client.clone(), "shop", &http_route())
        .get("orders-canary")
        .await
        .expect("route after restart");
    assert_eq!(route.data["spec"]["rules"][0]["backendRefs"][1]["weight"], 10);
    // The signing key is the same, so a token issued before still reviews.
    let review = TokenReview {
        spec: TokenReviewSpec { token, audiences: Some(vec!["pillion".into()]) },
        ..Default::default()
    };
    let reviewed =
        Api::<TokenReview>::all(client).create(&PostParams::default(), &review).await.expect("review");
    assert_eq!(reviewed.status.and_then(|s| s.authenticated), Some(true));
}

#[tokio::test]
async fn kubeconfig_names_the_admin_and_anonymous_requests_are_refused() {
    let Some(kube) = KubeApi::start_or_skip("kube_api::kubeconfig").await else { return };
    let client = kube.client().await.expect("client");
    let version = client.apiserver_version().await.expect("version");
    assert_eq!((version.major.as_str(), version.minor.as_str()), ("1", "37"), "{version:?}");

    // The same CA, no client certificate: the API server's anonymous user, whom RBAC refuses.
    let anonymous = client_as(&kube, AuthInfo::default()).await;
    let err = Api::<Namespace>::all(anonymous)
        .list(&ListParams::default())
        .await
        .expect_err("anonymous may not list");
    let kube::Error::Api(status) = &err else { panic!("expected an API error, got {err}") };
    assert_eq!(status.code, 403, "{status:?}");
    assert!(status.message.contains("system:anonymous"), "{}", status.message);
    for path in [kube.kubeconfig(), kube.ca_pem(), kube.admin_cert(), kube.admin_key()] {
        assert!(path.is_file(), "{} is not a file", path.display());
    }
}
