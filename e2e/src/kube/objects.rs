//! What a kubelet and the EndpointSlice controller would write, in their real shapes, for tests
//! that play their part against a real API server (no controller runs there): Namespaces and
//! ServiceAccounts, Pods whose status (phase, `podIP`, the Ready condition) goes through the
//! status subresource as the kubelet's does, Services (the API server allocates the ClusterIP),
//! and EndpointSlices labelled with and owned by their Service, with per-endpoint conditions.

use std::net::IpAddr;

use anyhow::{Context, Result};
use k8s_openapi::{
    api::{
        core::v1::{Namespace, Pod, Service, ServiceAccount},
        discovery::v1::EndpointSlice,
    },
    serde::{Serialize, de::DeserializeOwned},
};
use kube::{
    Api, Client,
    api::{DeleteParams, Patch, PatchParams, PostParams},
};
use serde_json::{Value, json};

/// An endpoint's conditions: (ready, serving, terminating).
pub type Conditions = (bool, bool, bool);
/// A ready endpoint: in rotation.
pub const READY: Conditions = (true, true, false);
/// A Pod whose readiness probe fails.
pub const NOT_READY: Conditions = (false, false, false);
/// A Pod being deleted that still serves what it has (what the controller writes first).
pub const TERMINATING: Conditions = (false, true, true);

/// An endpoint of Pod `namespace/pod` at `ip`, as the EndpointSlice controller lists it.
pub fn endpoint(ip: IpAddr, namespace: &str, pod: &str, (ready, serving, terminating): Conditions) -> Value {
    json!({"addresses": [ip.to_string()],
           "targetRef": {"kind": "Pod", "name": pod, "namespace": namespace},
           "conditions": {"ready": ready, "serving": serving, "terminating": terminating}})
}

/// Writes objects through one admin client.
#[derive(Clone)]
pub struct Cluster {
    client: Client,
}

impl Cluster {
    /// Objects written with `client` (see `KubeApi::client`).
    pub fn new(client: Client) -> Self {
        Self { client }
    }

    fn api<K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>>(&self, ns: &str) -> Api<K>
    where
        K::DynamicType: Default,
    {
        Api::namespaced(self.client.clone(), ns)
    }

    /// Namespace `name` with ServiceAccounts `accounts` (no controller makes `default`).
    pub async fn namespace(&self, name: &str, accounts: &[&str]) -> Result<()> {
        create(&Api::<Namespace>::all(self.client.clone()), json!({"metadata": {"name": name}})).await?;
        for sa in accounts {
            create(&self.api::<ServiceAccount>(name), json!({"metadata": {"name": sa}})).await?;
        }
        Ok(())
    }

    /// Pod `name` of ServiceAccount `sa`, labelled `app: SA`, as a Deployment's ReplicaSet would
    /// make it (scheduled to `node-1`, no status yet).
    pub async fn pod(&self, ns: &str, name: &str, sa: &str) -> Result<()> {
        create(
            &self.api::<Pod>(ns),
            json!({"metadata": {"name": name, "labels": {"app": sa}},
                   "spec": {"serviceAccountName": sa, "nodeName": "node-1",
                            "containers": [{"name": "app", "image": "example.com/app:1"}]}}),
        )
        .await
        .map(drop)
    }

    /// [`Cluster::pod`], then its status as the kubelet writes it once the containers run and
    /// are ready: `Running`, `podIP`/`podIPs` `ip`, `Ready=True`.
    pub async fn running_pod(&self, ns: &str, name: &str, sa: &str, ip: IpAddr) -> Result<()> {
        self.pod(ns, name, sa).await?;
        let pods = self.api::<Pod>(ns);
        let ready = |status: &str| json!({"type": "Ready", "status": status});
        let status = json!({"status": {"phase": "Running", "podIP": ip.to_string(),
                                       "podIPs": [{"ip": ip.to_string()}], "hostIP": "10.0.0.1",
                                       "conditions": [ready("True"), {"type": "ContainersReady", "status": "True"}]}});
        pods.patch_status(name, &PatchParams::default(), &Patch::Merge(status))
            .await
            .with_context(|| format!("patch the status of Pod {ns}/{name}"))?;
        Ok(())
    }

    /// Deletes Pod `name` (with no kubelet it goes at once; a grace period would wait for one).
    pub async fn delete_pod(&self, ns: &str, name: &str) -> Result<()> {
        let now = DeleteParams { grace_period_seconds: Some(0), ..DeleteParams::default() };
        self.api::<Pod>(ns).delete(name, &now).await.with_context(|| format!("delete Pod {ns}/{name}"))?;
        Ok(())
    }

    /// Service `name` with `ports` (the Service's `spec.ports`), selecting `app: SELECTOR`, at
    /// `cluster_ip` or one the API server allocates; the object as stored, with its ClusterIP.
    pub async fn service(
        &self,
        ns: &str,
        name: &str,
        selector: &str,
        ports: Value,
        cluster_ip: Option<IpAddr>,
    ) -> Result<Service> {
        let mut spec = json!({"selector": {"app": selector}, "ports": ports});
        if let Some(ip) = cluster_ip {
            spec["clusterIP"] = json!(ip.to_string());
        }
        let spec = json!({"metadata": {"name": name}, "spec": spec});
        create(&self.api::<Service>(ns), spec).await
    }

    /// Deletes Service `name` (its slices stay until deleted: there is no garbage collector).
    pub async fn delete_service(&self, ns: &str, name: &str) -> Result<()> {
        self.api::<Service>(ns)
            .delete(name, &DeleteParams::default())
            .await
            .with_context(|| format!("delete Service {ns}/{name}"))?;
        Ok(())
    }

    /// EndpointSlice `name` of `service` (labelled and owned by it, as the controller makes
    /// them), with the resolved target `ports` and `endpoints`.
    pub async fn slice(&self, service: &Service, name: &str, ports: Value, endpoints: Value) -> Result<()> {
        let ns = service.metadata.namespace.as_deref().unwrap_or_default();
        let svc = service.metadata.name.as_deref().unwrap_or_default();
        let owner = json!({"apiVersion": "v1", "kind": "Service", "name": svc,
                           "uid": service.metadata.uid, "controller": true, "blockOwnerDeletion": true});
        let object = json!({"metadata": {"name": name, "ownerReferences": [owner],
                                          "labels": {"kubernetes.io/service-name": svc,
                                                     "endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io"}},
                            "addressType": "IPv4", "ports": ports, "endpoints": endpoints});
        create::<EndpointSlice>(&self.api(ns), object).await.map(drop)
    }

    /// Replaces the endpoints of slice `name` (a merge patch replaces a list whole).
    pub async fn set_endpoints(&self, ns: &str, name: &str, endpoints: Value) -> Result<()> {
        self.api::<EndpointSlice>(ns)
            .patch(name, &PatchParams::default(), &Patch::Merge(json!({"endpoints": endpoints})))
            .await
            .with_context(|| format!("patch EndpointSlice {ns}/{name}"))?;
        Ok(())
    }

    /// Deletes EndpointSlice `name`.
    pub async fn delete_slice(&self, ns: &str, name: &str) -> Result<()> {
        self.api::<EndpointSlice>(ns)
            .delete(name, &DeleteParams::default())
            .await
            .with_context(|| format!("delete EndpointSlice {ns}/{name}"))?;
        Ok(())
    }
}

/// Creates `value` as a `K`; the object as stored.
pub async fn create<K>(api: &Api<K>, value: Value) -> Result<K>
where
    K: Clone + DeserializeOwned + Serialize + std::fmt::Debug,
{
    let object: K =
        serde_json::from_value(value.clone()).with_context(|| format!("not an object: {value}"))?;
    api.create(&PostParams::default(), &object).await.with_context(|| format!("create {value}"))
}
