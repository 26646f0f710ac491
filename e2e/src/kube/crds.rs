//! The Gateway API CRDs the harness installs into every API server it starts: the resources a
//! mesh reads routes from (HTTPRoute, GRPCRoute; GAMMA attaches them to Services) and the ones
//! those name or are granted by. Applied with server-side apply, then waited on until Established
//! (served), so a test may create HTTPRoutes the moment it has a [`super::KubeApi`].

use std::time::{Duration, Instant};

use ::kube::{
    Api, Client,
    api::{Patch, PatchParams},
};
use anyhow::{Context, Result, bail};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;

use super::tools::KubeTools;

/// The standard-channel files applied (of those `scripts/kube-tools.sh` copies): the route types,
/// the parents a route may name besides a Service, and the grant for cross-namespace references.
pub const GATEWAY_CRDS: [&str; 5] = [
    "gateway.networking.k8s.io_httproutes.yaml",
    "gateway.networking.k8s.io_grpcroutes.yaml",
    "gateway.networking.k8s.io_gateways.yaml",
    "gateway.networking.k8s.io_gatewayclasses.yaml",
    "gateway.networking.k8s.io_referencegrants.yaml",
];

/// How long the CRDs get to be served after they are applied.
const ESTABLISH_WAIT: Duration = Duration::from_secs(60);

/// Applies [`GATEWAY_CRDS`] and returns once every one is Established.
pub async fn install(client: &Client, tools: &KubeTools) -> Result<()> {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    // Server-side apply, forced: the same call installs them fresh and is a no-op on a restart.
    let params = PatchParams::apply("pillion-e2e").force();
    let mut names = Vec::new();
    for file in GATEWAY_CRDS {
        let path = tools.gateway_crd(file);
        let text = std::fs::read_to_string(&path).with_context(|| format!("read {}", path.display()))?;
        let crd: CustomResourceDefinition =
            serde_yaml::from_str(&text).with_context(|| format!("parse {} as a CRD", path.display()))?;
        let name = crd.metadata.name.clone().with_context(|| format!("{} has no name", path.display()))?;
        api.patch(&name, &params, &Patch::Apply(&crd)).await.with_context(|| format!("apply {name}"))?;
        names.push(name);
    }
    let deadline = Instant::now() + ESTABLISH_WAIT;
    for name in names {
        loop {
            let crd = api.get(&name).await.with_context(|| format!("read CRD {name}"))?;
            if established(&crd) {
                break;
            }
            if Instant::now() > deadline {
                bail!("CRD {name} not Established within {ESTABLISH_WAIT:?}: {:?}", crd.status);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    Ok(())
}

fn established(crd: &CustomResourceDefinition) -> bool {
    let conditions = crd.status.as_ref().and_then(|s| s.conditions.as_ref());
    conditions.is_some_and(|c| c.iter().any(|c| c.type_ == "Established" && c.status == "True"))
}
