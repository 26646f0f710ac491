//! Gateway API `HTTPRoute` and `GRPCRoute` objects whose parent is a Service (the GAMMA mesh
//! profile) to proxy routes: for each parent Service port, each rule and each of its matches
//! becomes one route whose `host` is that mesh service (so it applies to traffic addressed to
//! it), with the rule's weighted backends and request timeout. Routes are ordered by the spec's
//! precedence (exact path, longest prefix, method, most headers, most query parameters, oldest,
//! then by name).
//!
//! A route is taken whole or not at all: anything the proxy cannot honour as the spec says
//! (filters, regex header or query matches, cross-namespace references, a missing backend) leaves
//! it out, and its status says why (`Accepted` or `ResolvedRefs` False, see [`status`]).

pub mod matches;
pub mod spec;
pub mod status;

use std::sync::Arc;

use kube::api::DynamicObject;
use pillion_config::{duration::HumanDuration, schema};

use self::{
    matches::Precedence,
    spec::{BackendRef, RouteSpec},
    status::{Condition, ParentStatus, RouteKind, RouteStatus},
};
use super::{services::Built as BuiltService, services::service_name, translate::Index};

/// A proxy route, with where it sorts and where it came from.
#[derive(Debug, Clone)]
pub(super) struct Built {
    /// The route; its `host` is its parent mesh service.
    pub route: schema::Route,
    /// Sort key: the match's precedence, then the object's age and name, rule and match index.
    pub order: (Precedence, String, String, usize, usize),
    /// The pseudo-file it is located in, `HTTPRoute NS/NAME`.
    pub origin: String,
}

/// Translates every route of `kind`; returns the routes taken and every Service-parented
/// route's status.
pub(super) fn translate(
    index: &mut Index<'_>,
    kind: RouteKind,
    objects: &[Arc<DynamicObject>],
    services: &[BuiltService],
) -> (Vec<Built>, Vec<RouteStatus>) {
    let mut built = Vec::new();
    let mut statuses = Vec::new();
    for obj in objects {
        let (Some(ns), Some(name)) = (obj.metadata.namespace.as_deref(), obj.metadata.name.as_deref()) else {
            continue;
        };
        let object = format!("{ns}/{name}");
        let spec: RouteSpec = match serde_json::from_value(obj.data["spec"].clone()) {
            Ok(spec) => spec,
            Err(e) => {
                index.skip(kind.name(), object, format!("unreadable spec: {e}"));
                continue;
            }
        };
        let parents: Vec<_> = spec.parent_refs.iter().filter(|p| p.is_service()).collect();
        if parents.is_empty() {
            continue; // A Gateway's route: not the mesh's to serve or to report on.
        }
        let rules = rules(kind, ns, &spec, services);
        let age = obj.metadata.creation_timestamp.as_ref().map(|t| t.0.to_string()).unwrap_or_default();
        let mut status = RouteStatus {
            kind,
            namespace: ns.to_owned(),
            name: name.to_owned(),
            generation: obj.metadata.generation,
            parents: Vec::new(),
        };
        for parent in parents {
            let ports = parent_ports(ns, parent, services);
            let condition = match (&rules, &ports) {
                (_, Err(c)) | (Err(c), _) => c.clone(),
                (Ok(rules), Ok(ports)) => {
                    for port in ports {
                        for (i, rule) in rules.iter().enumerate() {
                            for (j, (m, precedence)) in rule.matches.iter().enumerate() {
                                let mut matches = m.clone();
                                matches.host = Some(port.clone());
                                built.push(Built {
                                    route: schema::Route {
                                        name: format!(
                                            "{}:{object}:{i}:{j}@{port}",
                                            kind.name().to_lowercase()
                                        ),
                                        matches,
                                        backends: rule.backends.clone(),
                                        timeout: rule.timeout.map(HumanDuration),
                                        retry: None,
                                        max_request_bytes: None,
                                    },
                                    order: (*precedence, age.clone(), object.clone(), i, j),
                                    origin: format!("{} {object}", kind.name()),
                                });
                            }
                        }
                    }
                    Condition::accepted()
                }
            };
            status.parents.push(ParentStatus { parent_ref: parent.to_json(), condition });
        }
        statuses.push(status);
    }
    built.sort_by(|a, b| a.order.cmp(&b.order));
    (built, statuses)
}

/// A rule, translated: its matches (at least one), backends and timeout.
struct Rule {
    matches: Vec<(schema::RouteMatch, Precedence)>,
    backends: Vec<schema::Backend>,
    timeout: Option<std::time::Duration>,
}

fn rules(
    kind: RouteKind,
    ns: &str,
    spec: &RouteSpec,
    services: &[BuiltService],
) -> Result<Vec<Rule>, Condition> {
    let unsupported = Condition::unsupported;
    if !spec.hostnames.is_empty() {
        // Ignoring them would send more traffic through the route than its author meant.
        return Err(unsupported("hostnames on a route for a Service are not supported".into()));
    }
    let mut out = Vec::new();
    for (i, rule) in spec.rules.iter().enumerate() {
        let at = |what: &str| format!("rules[{i}]: {what}");
        if !rule.filters.is_empty() {
            return Err(unsupported(at("filters are not supported")));
        }
        if rule.retry.is_some() || rule.session_persistence.is_some() {
            return Err(unsupported(at("retry and sessionPersistence are not supported")));
        }
        let timeouts = rule.timeouts.clone().unwrap_or_default();
        let parse = |d: &Option<String>| {
            d.as_deref()
                .map(matches::duration)
                .transpose()
                .map(Option::flatten)
                .map_err(|e| unsupported(at(&e)))
        };
        // These routes never retry, so a request makes one backend request: the tighter of the
        // two limits is the one that applies to it.
        let timeout = match (parse(&timeouts.request)?, parse(&timeouts.backend_request)?) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let mut backends = Vec::new();
        for (k, b) in rule.backend_refs.iter().enumerate() {
            if let Some(backend) =
                backend(ns, b, services).map_err(|c| c.at(&at(&format!("backendRefs[{k}]: "))))?
            {
                backends.push(backend);
            }
        }
        if backends.is_empty() {
            return Err(unsupported(at(
                "no backend with a weight above 0 (the proxy cannot answer 500 for it)",
            )));
        }
        let mut list = Vec::new();
        for (j, raw) in rule.matches.iter().enumerate() {
            let m = match kind {
                RouteKind::Http => matches::http(raw),
                RouteKind::Grpc => matches::grpc(raw),
            };
            let (m, precedence) = m.map_err(|e| unsupported(at(&format!("matches[{j}]: {e}"))))?;
            // What the proxy would refuse (a regex it cannot compile, a header value it cannot
            // send) must refuse this route, not the whole cluster's snapshot.
            if let Err((field, e)) = pillion_config::route::RouteMatcher::compile(&m) {
                return Err(unsupported(at(&format!("matches[{j}]: {field}: {e}"))));
            }
            list.push((m, precedence));
        }
        if list.is_empty() {
            list.push((
                schema::RouteMatch::default(),
                (1, std::cmp::Reverse(1), true, std::cmp::Reverse(0), std::cmp::Reverse(0)),
            ));
        }
        out.push(Rule { matches: list, backends, timeout });
    }
    Ok(out)
}

/// A backend's mesh service and weight; `None` for weight 0.
fn backend(
    ns: &str,
    b: &BackendRef,
    services: &[BuiltService],
) -> Result<Option<schema::Backend>, Condition> {
    if !matches!(b.group.as_deref(), None | Some("" | "core"))
        || !matches!(b.kind.as_deref(), None | Some("Service"))
    {
        return Err(Condition::refs("InvalidKind", format!("{:?} is not a Service", b.name)));
    }
    if !b.filters.is_empty() {
        return Err(Condition::unsupported("filters are not supported".into()));
    }
    if b.namespace.as_deref().is_some_and(|n| n != ns) {
        return Err(Condition::refs(
            "RefNotPermitted",
            "cross-namespace backendRefs are not supported".into(),
        ));
    }
    let Some(port) = b.port.and_then(|p| u16::try_from(p).ok()) else {
        return Err(Condition::unsupported(format!("backendRef {:?} has no port", b.name)));
    };
    let name = service_name(&b.name, ns, port);
    if !services.iter().any(|s| s.service.name == name) {
        return Err(Condition::refs(
            "BackendNotFound",
            format!("Service {ns}/{} has no port {port}", b.name),
        ));
    }
    let weight = u32::try_from(b.weight.unwrap_or(1)).unwrap_or(0);
    Ok((weight > 0).then_some(schema::Backend { service: name, weight }))
}

/// The mesh services a parent ref names (one port, or every port of the Service).
fn parent_ports(
    ns: &str,
    parent: &spec::ParentRef,
    services: &[BuiltService],
) -> Result<Vec<String>, Condition> {
    if parent.section_name.is_some() {
        return Err(Condition::unsupported("sectionName on a Service parent is not supported".into()));
    }
    if parent.namespace.as_deref().is_some_and(|n| n != ns) {
        return Err(Condition::unsupported(
            "a route for a Service of another namespace is not supported".into(),
        ));
    }
    let ports: Vec<String> = services
        .iter()
        .filter(|s| s.namespace == ns && s.name == parent.name)
        .map(|s| s.service.name.clone())
        .filter(|n| parent.port.is_none_or(|p| n.ends_with(&format!(":{p}"))))
        .collect();
    if ports.is_empty() {
        let port = parent.port.map(|p| format!(" port {p}")).unwrap_or_default();
        return Err(Condition::no_parent(format!("no Service {ns}/{}{port}", parent.name)));
    }
    Ok(ports)
}
