//! The fields of Gateway API `HTTPRoute` and `GRPCRoute` (v1) that the translation reads, as
//! serde types. The API server has already checked them against the CRD schema; anything not
//! named here that changes routing (filters, retries, session persistence) is caught as a raw
//! value so that it can be refused by name rather than silently ignored.

use serde::Deserialize;
use serde_json::Value;

/// A route's `spec`, common to both kinds.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RouteSpec {
    /// What the route attaches to; a mesh route names Services.
    #[serde(default)]
    pub parent_refs: Vec<ParentRef>,
    /// Its rules, in order.
    #[serde(default)]
    pub rules: Vec<Rule>,
    /// Host header conditions: the parent Service already names the destination, and the
    /// route's `host` condition is that; narrowing it further is not supported.
    #[serde(default)]
    pub hostnames: Vec<String>,
}

/// `parentRefs[]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ParentRef {
    /// `""` (core) for a Service; absent means the Gateway API group.
    pub group: Option<String>,
    /// `Service` for a mesh route; absent means `Gateway`.
    pub kind: Option<String>,
    /// Defaults to the route's namespace.
    pub namespace: Option<String>,
    /// The Service's name.
    pub name: String,
    /// One port of the Service; absent means all of them.
    pub port: Option<i32>,
    /// Not meaningful for a Service; refused if set.
    pub section_name: Option<String>,
}

impl ParentRef {
    /// Whether this parent is a Service (the GAMMA mesh profile) rather than a Gateway.
    pub fn is_service(&self) -> bool {
        matches!(self.group.as_deref(), Some("" | "core")) && self.kind.as_deref() == Some("Service")
    }

    /// As written back in `status.parents[].parentRef`: the fields the route set, and no nulls
    /// (which a merge patch would read as deletions, and a later comparison would miss).
    pub fn to_json(&self) -> Value {
        let mut v = serde_json::json!({"name": self.name});
        let fields = [
            ("group", self.group.clone().map(Value::from)),
            ("kind", self.kind.clone().map(Value::from)),
            ("namespace", self.namespace.clone().map(Value::from)),
            ("port", self.port.map(Value::from)),
            ("sectionName", self.section_name.clone().map(Value::from)),
        ];
        for (key, value) in fields {
            if let Some(value) = value {
                v[key] = value;
            }
        }
        v
    }
}

/// `rules[]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Rule {
    /// HTTP or gRPC matches, read by kind (see `matches`); none matches everything.
    #[serde(default)]
    pub matches: Vec<Value>,
    /// Request and response rewriting: none is supported.
    #[serde(default)]
    pub filters: Vec<Value>,
    /// Where matching requests go.
    #[serde(default)]
    pub backend_refs: Vec<BackendRef>,
    /// HTTPRoute only.
    pub timeouts: Option<Timeouts>,
    /// Experimental; not supported.
    pub retry: Option<Value>,
    /// Not supported.
    pub session_persistence: Option<Value>,
}

/// `backendRefs[]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BackendRef {
    /// `""` (core) or absent for a Service.
    pub group: Option<String>,
    /// `Service` or absent.
    pub kind: Option<String>,
    /// The Service.
    pub name: String,
    /// Defaults to the route's namespace.
    pub namespace: Option<String>,
    /// Required for a Service.
    pub port: Option<i32>,
    /// Relative weight, default 1; 0 takes no traffic.
    pub weight: Option<i32>,
    /// Not supported.
    #[serde(default)]
    pub filters: Vec<Value>,
}

/// `rules[].timeouts` (GEP-2257 durations such as `10s`, `1m30s`, `500ms`; `0s` means none).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Timeouts {
    /// Until the response headers, for the whole request.
    pub request: Option<String>,
    /// Per backend request; with no retries, the same request as `request` bounds.
    pub backend_request: Option<String>,
}

/// `HTTPRoute` `rules[].matches[]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HttpMatch {
    /// Path condition; the schema defaults it to `PathPrefix /`.
    pub path: Option<PathMatch>,
    /// Header conditions.
    #[serde(default)]
    pub headers: Vec<HeaderMatch>,
    /// Query conditions (the same shape as a header's).
    #[serde(default)]
    pub query_params: Vec<HeaderMatch>,
    /// Request method.
    pub method: Option<String>,
}

/// `path`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct PathMatch {
    /// `Exact`, `PathPrefix` (default) or `RegularExpression`.
    #[serde(rename = "type")]
    pub kind: Option<String>,
    /// Default `/`.
    pub value: Option<String>,
}

/// `headers[]` and `queryParams[]`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct HeaderMatch {
    /// `Exact` (default) or `RegularExpression` (not supported).
    #[serde(rename = "type")]
    pub kind: Option<String>,
    /// Header name, case-insensitive.
    pub name: String,
    /// The value.
    pub value: String,
}

/// `GRPCRoute` `rules[].matches[]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GrpcMatch {
    /// Service and method.
    pub method: Option<GrpcMethod>,
    /// Header (metadata) conditions.
    #[serde(default)]
    pub headers: Vec<HeaderMatch>,
}

/// `method`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct GrpcMethod {
    /// `Exact` (default) or `RegularExpression` (not supported).
    #[serde(rename = "type")]
    pub kind: Option<String>,
    /// Fully qualified service, e.g. `shop.Orders`.
    pub service: Option<String>,
    /// Method, e.g. `Get`.
    pub method: Option<String>,
}
