//! Route status: what the translation decided for each Service parent of a route, and writing
//! it to the route's `status.parents` (only when it changed, so that the watch event a write
//! causes does not cause another). Entries of other controllers (a Gateway implementation, say)
//! are kept: the list is read, ours replaced in it, and written back at the resourceVersion read.

use std::collections::HashMap;

use kube::{
    Api, Client,
    api::{ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams},
};
use serde_json::{Value, json};

/// The controller name this control plane reports under.
pub const CONTROLLER: &str = "pillion.io/mesh";

/// Which Gateway API kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RouteKind {
    /// `HTTPRoute`.
    Http,
    /// `GRPCRoute`.
    Grpc,
}

impl RouteKind {
    /// The kind's name.
    pub fn name(self) -> &'static str {
        match self {
            RouteKind::Http => "HTTPRoute",
            RouteKind::Grpc => "GRPCRoute",
        }
    }

    /// Its API resource (`gateway.networking.k8s.io/v1`).
    pub fn resource(self) -> ApiResource {
        ApiResource::from_gvk(&GroupVersionKind::gvk("gateway.networking.k8s.io", "v1", self.name()))
    }
}

/// Whether a parent took the route: `Accepted` and `ResolvedRefs`, with reason and message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Condition {
    /// `None` when accepted; else (condition type, reason, message).
    pub refused: Option<(&'static str, &'static str, String)>,
}

impl Condition {
    /// Taken.
    pub fn accepted() -> Self {
        Self { refused: None }
    }

    /// Something the proxy cannot do: `Accepted=False`, `UnsupportedValue`.
    pub fn unsupported(message: String) -> Self {
        Self { refused: Some(("Accepted", "UnsupportedValue", message)) }
    }

    /// The parent Service does not exist: `Accepted=False`, `NoMatchingParent`.
    pub fn no_parent(message: String) -> Self {
        Self { refused: Some(("Accepted", "NoMatchingParent", message)) }
    }

    /// A backend reference that cannot be resolved: `ResolvedRefs=False` with `reason`.
    pub fn refs(reason: &'static str, message: String) -> Self {
        Self { refused: Some(("ResolvedRefs", reason, message)) }
    }

    /// The same, with `prefix` before the message (where in the route).
    pub fn at(mut self, prefix: &str) -> Self {
        if let Some((_, _, m)) = &mut self.refused {
            *m = format!("{prefix}{m}");
        }
        self
    }

    /// The `Accepted` and `ResolvedRefs` conditions; `since` gives the previous
    /// `lastTransitionTime` of a condition type whose status is unchanged.
    fn conditions(
        &self,
        generation: Option<i64>,
        now: &str,
        since: &dyn Fn(&str, &str) -> Option<String>,
    ) -> Value {
        let cond = |kind: &str, ok: bool, reason: &str, message: &str| {
            let status = if ok { "True" } else { "False" };
            let mut c = json!({"type": kind, "status": status, "reason": reason, "message": message,
                               "lastTransitionTime": since(kind, status).unwrap_or_else(|| now.to_owned())});
            // The CRD's schema wants an integer here, not null.
            if let Some(g) = generation {
                c["observedGeneration"] = json!(g);
            }
            c
        };
        match &self.refused {
            None => json!([
                cond("Accepted", true, "Accepted", ""),
                cond("ResolvedRefs", true, "ResolvedRefs", "")
            ]),
            // The spec would keep such a route and answer 500 for the unresolved backend's share;
            // the proxy cannot, so the route is left out, and Accepted says so too.
            Some(("ResolvedRefs", reason, m)) => json!([
                cond("Accepted", false, "UnsupportedValue", &format!("not served: {m}")),
                cond("ResolvedRefs", false, reason, m)
            ]),
            Some((_, reason, m)) => {
                json!([cond("Accepted", false, reason, m), cond("ResolvedRefs", true, "ResolvedRefs", "")])
            }
        }
    }
}

/// One parent's outcome.
#[derive(Debug, Clone, PartialEq)]
pub struct ParentStatus {
    /// The parent ref as the route wrote it.
    pub parent_ref: Value,
    /// What became of it.
    pub condition: Condition,
}

/// A route's outcome over its Service parents.
#[derive(Debug, Clone, PartialEq)]
pub struct RouteStatus {
    /// Its kind.
    pub kind: RouteKind,
    /// Its namespace.
    pub namespace: String,
    /// Its name.
    pub name: String,
    /// `metadata.generation`, reported as `observedGeneration`.
    pub generation: Option<i64>,
    /// One entry per Service parent.
    pub parents: Vec<ParentStatus>,
}

/// Why a status could not be written.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// Reading or patching the route failed (a conflict included: it is retried on the next
    /// translation, which the change that caused it brings).
    #[error("{0}")]
    Api(#[from] kube::Error),
}

/// A route: kind, namespace, name.
type RouteKey = (RouteKind, String, String);

/// Writes statuses, remembering what it wrote (the generation and outcome per parent).
pub struct Writer {
    client: Client,
    written: HashMap<RouteKey, (Option<i64>, Vec<ParentStatus>)>,
}

impl Writer {
    /// A writer over `client`.
    pub fn new(client: Client) -> Self {
        Self { client, written: HashMap::new() }
    }

    /// Writes every status that differs from the last one written. A failed write is logged and
    /// tried again on the next translation.
    pub async fn write(&mut self, statuses: &[RouteStatus]) {
        // Routes gone from the cluster need no status; forgetting them keeps the map bounded.
        let current: std::collections::HashSet<(RouteKind, &str, &str)> =
            statuses.iter().map(|s| (s.kind, s.namespace.as_str(), s.name.as_str())).collect();
        self.written.retain(|(kind, ns, name), _| current.contains(&(*kind, ns.as_str(), name.as_str())));
        for s in statuses {
            let key = (s.kind, s.namespace.clone(), s.name.clone());
            let content = (s.generation, s.parents.clone());
            if self.written.get(&key) == Some(&content) {
                continue;
            }
            match self.write_one(s).await {
                Ok(()) => {
                    self.written.insert(key, content);
                }
                Err(e) => {
                    tracing::warn!(kind = s.kind.name(), route = %format!("{}/{}", s.namespace, s.name),
                    error = %e, "cannot write the route's status; retried on the next change")
                }
            }
        }
    }

    async fn write_one(&self, s: &RouteStatus) -> Result<(), WriteError> {
        let api: Api<DynamicObject> =
            Api::namespaced_with(self.client.clone(), &s.namespace, &s.kind.resource());
        let current = api.get_status(&s.name).await?;
        let theirs: Vec<Value> = current.data["status"]["parents"].as_array().cloned().unwrap_or_default();
        let now = k8s_openapi::jiff::Timestamp::now().to_string();
        let mut parents: Vec<Value> =
            theirs.iter().filter(|p| p["controllerName"] != CONTROLLER).cloned().collect();
        for p in &s.parents {
            // A condition whose status did not change keeps the time it last changed.
            let before =
                theirs.iter().find(|t| t["controllerName"] == CONTROLLER && t["parentRef"] == p.parent_ref);
            let since = |kind: &str, status: &str| {
                let list = before?["conditions"].as_array()?;
                let c = list.iter().find(|c| c["type"] == kind && c["status"] == status)?;
                c["lastTransitionTime"].as_str().map(str::to_owned)
            };
            parents.push(json!({"parentRef": p.parent_ref, "controllerName": CONTROLLER,
                                "conditions": p.condition.conditions(s.generation, &now, &since)}));
        }
        // The resourceVersion read: if another writer changed the list since, this one fails
        // (409) rather than dropping that writer's entries.
        let patch = Patch::Merge(json!({"metadata": {"resourceVersion": current.metadata.resource_version},
                                        "status": {"parents": parents}}));
        api.patch_status(&s.name, &PatchParams::default(), &patch).await?;
        Ok(())
    }
}
