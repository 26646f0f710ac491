//! The mesh the scale benchmark writes into the API server, with the shapes a kubelet and the
//! EndpointSlice controller would write: `namespaces` namespaces `ns-I` of `services` Services
//! `svc-K` each (port 80 to target port `http`), each Service with one EndpointSlice of
//! `endpoints` ready endpoints, each endpoint a Pod run by the ServiceAccount `svc-K`, so that
//! every Service is also one workload, `svc-K.ns-I`. One more Pod, `wide` in `ns-0`, is annotated
//! to see every namespace: the whole mesh in one workload's view.
//!
//! Endpoint addresses are 10.128.0.0/9 data: nothing connects to them.

use std::net::Ipv4Addr;

use anyhow::{Context, Result};
use futures_util::{TryStreamExt, stream};
use k8s_openapi::{
    api::{
        core::v1::{Namespace, Pod, Service, ServiceAccount},
        discovery::v1::EndpointSlice,
    },
    serde::{Serialize, de::DeserializeOwned},
};
use kube::{
    Api, Client,
    api::{Patch, PatchParams, PostParams},
};
use serde_json::{Value, json};

/// Requests in flight while loading the mesh.
const CONCURRENCY: usize = 32;
/// The annotation that widens a workload's view (pillion-control's `VISIBLE_ANNOTATION`).
const VISIBLE: &str = "pillion.io/visible-services";
/// The ServiceAccount (in `ns-0`) of the one workload whose view is the whole mesh.
const WIDE: &str = "wide";

/// How big the mesh is.
#[derive(Debug, Clone, Copy)]
pub struct Shape {
    /// Namespaces.
    pub namespaces: usize,
    /// Services per namespace.
    pub services: usize,
    /// Endpoints (and Pods) per Service.
    pub endpoints: usize,
}

impl Shape {
    /// Every Service.
    pub fn total_services(&self) -> usize {
        self.namespaces * self.services
    }

    /// The objects [`load`] creates.
    pub fn total_objects(&self) -> usize {
        self.namespaces + self.total_services() * (3 + self.endpoints) + 2
    }

    /// The address of endpoint `e` of Service `k` in namespace `i`, unique in the mesh.
    pub fn endpoint_ip(&self, i: usize, k: usize, e: usize) -> Ipv4Addr {
        let n = ((i * self.services + k) * self.endpoints + e) as u32;
        Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 128, 0, 1)) + n)
    }
}

/// Namespace `i`'s name.
pub fn namespace(i: usize) -> String {
    format!("ns-{i}")
}

/// Service (and ServiceAccount) `k`'s name.
pub fn service(k: usize) -> String {
    format!("svc-{k}")
}

/// The workload name of Service `k`'s Pods in namespace `i`, as its proxies watch it.
pub fn workload(i: usize, k: usize) -> String {
    format!("{}.{}", service(k), namespace(i))
}

/// The SPIFFE ID of workload `svc-K.ns-I`.
pub fn identity(i: usize, k: usize) -> String {
    format!("spiffe://cluster.local/ns/{}/sa/{}", namespace(i), service(k))
}

/// The workload that sees the whole mesh.
pub fn wide_workload() -> String {
    format!("{WIDE}.{}", namespace(0))
}

/// Its SPIFFE ID.
pub fn wide_identity() -> String {
    format!("spiffe://cluster.local/ns/{}/sa/{WIDE}", namespace(0))
}

/// Writes the whole mesh, each kind after the one it refers to.
pub async fn load(client: &Client, shape: Shape) -> Result<()> {
    let namespaces = (0..shape.namespaces).map(|i| json!({"metadata": {"name": namespace(i)}}));
    create_all(|_| Api::<Namespace>::all(client.clone()), namespaces).await?;
    // The admission plugin refuses a Pod whose ServiceAccount does not exist.
    let accounts = every_service(shape)
        .map(|(i, k)| (namespace(i), service(k)))
        .chain([(namespace(0), WIDE.to_owned())])
        .map(|(ns, sa)| json!({"metadata": {"name": sa, "namespace": ns}}));
    create_all(|ns| Api::<ServiceAccount>::namespaced(client.clone(), ns), accounts).await?;
    let pods = every_service(shape).flat_map(|(i, k)| {
        (0..shape.endpoints).map(move |e| {
            json!({"metadata": {"name": format!("{}-{e}", service(k)), "namespace": namespace(i)},
                   "spec": {"serviceAccountName": service(k), "containers": [{"name": "app", "image": "app:1"}]}})
        })
    });
    let all: Vec<String> = (0..shape.namespaces).map(|i| format!("*.{}", namespace(i))).collect();
    let wide = json!({"metadata": {"name": "wide-0", "namespace": namespace(0),
                                   "annotations": {VISIBLE: all.join(",")}},
                      "spec": {"serviceAccountName": WIDE, "containers": [{"name": "app", "image": "app:1"}]}});
    create_all(|ns| Api::<Pod>::namespaced(client.clone(), ns), pods.chain([wide])).await?;
    let services = every_service(shape).map(|(i, k)| {
        json!({"metadata": {"name": service(k), "namespace": namespace(i)},
               "spec": {"selector": {"app": service(k)},
                        "ports": [{"name": "http", "port": 80, "targetPort": "http"}]}})
    });
    create_all(|ns| Api::<Service>::namespaced(client.clone(), ns), services).await?;
    let slices = every_service(shape).map(|(i, k)| {
        let endpoints: Vec<Value> = (0..shape.endpoints).map(|e| endpoint(shape, i, k, e, None)).collect();
        slice(i, k, endpoints)
    });
    create_all(|ns| Api::<EndpointSlice>::namespaced(client.clone(), ns), slices).await
}

/// Gives endpoint 0 of Service `k` in namespace `i` a new address, as a restarted Pod gets.
pub async fn move_endpoint(client: &Client, shape: Shape, i: usize, k: usize, ip: Ipv4Addr) -> Result<()> {
    let endpoints: Vec<Value> =
        (0..shape.endpoints).map(|e| endpoint(shape, i, k, e, (e == 0).then_some(ip))).collect();
    Api::<EndpointSlice>::namespaced(client.clone(), &namespace(i))
        .patch(&slice_name(k), &PatchParams::default(), &Patch::Merge(json!({"endpoints": endpoints})))
        .await
        .with_context(|| format!("patch slice {} in {}", slice_name(k), namespace(i)))?;
    Ok(())
}

fn every_service(shape: Shape) -> impl Iterator<Item = (usize, usize)> {
    (0..shape.namespaces).flat_map(move |i| (0..shape.services).map(move |k| (i, k)))
}

fn slice_name(k: usize) -> String {
    format!("{}-1", service(k))
}

fn slice(i: usize, k: usize, endpoints: Vec<Value>) -> Value {
    json!({"metadata": {"name": slice_name(k), "namespace": namespace(i),
                        "labels": {"kubernetes.io/service-name": service(k)}},
           "addressType": "IPv4",
           "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
           "endpoints": endpoints})
}

fn endpoint(shape: Shape, i: usize, k: usize, e: usize, ip: Option<Ipv4Addr>) -> Value {
    let ip = ip.unwrap_or_else(|| shape.endpoint_ip(i, k, e));
    json!({"addresses": [ip.to_string()],
           "targetRef": {"kind": "Pod", "name": format!("{}-{e}", service(k)), "namespace": namespace(i)},
           "conditions": {"ready": true, "serving": true, "terminating": false}})
}

/// Creates every object, [`CONCURRENCY`] at a time, through `api(namespace)` (the namespace its
/// metadata names, empty for a cluster-scoped kind).
async fn create_all<K>(api: impl Fn(&str) -> Api<K>, objects: impl Iterator<Item = Value>) -> Result<()>
where
    K: Clone + DeserializeOwned + Serialize + std::fmt::Debug,
{
    stream::iter(objects.map(Ok::<_, anyhow::Error>))
        .try_for_each_concurrent(CONCURRENCY, |value| {
            let api = api(value["metadata"]["namespace"].as_str().unwrap_or_default());
            async move {
                let what = format!("create {}/{}", value["metadata"]["namespace"], value["metadata"]["name"]);
                let object: K = serde_json::from_value(value).context("an object of the right shape")?;
                api.create(&PostParams::default(), &object).await.context(what)?;
                Ok(())
            }
        })
        .await
}
