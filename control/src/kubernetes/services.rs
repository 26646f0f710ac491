//! One Service to mesh services, one per TCP port: its ClusterIPs (every family) and its short,
//! namespaced and FQDN names as addresses, its endpoints from the EndpointSlices that name it,
//! each with the identity of the Pod behind it, and the protocol its port's `appProtocol` names.
//!
//! In rotation are endpoints that are ready and not terminating; when a port has none of those,
//! its serving terminating endpoints stand in (as kube-proxy does), so that a rollout's last old
//! pods still answer rather than every request failing. Every endpoint weighs the same.

use std::{
    collections::BTreeMap,
    net::{IpAddr, SocketAddr},
};

use k8s_openapi::api::{
    core::v1::{Service, ServicePort},
    discovery::v1::{Endpoint, EndpointSlice},
};
use pillion_config::schema;

use super::translate::{Index, key};

/// A mesh service built from one port of a Service, with what visibility needs to know.
#[derive(Debug, Clone)]
pub(super) struct Built {
    /// The mesh service, named `NAME.NS:PORT`.
    pub service: schema::Service,
    /// The Service's namespace.
    pub namespace: String,
    /// The Service's name.
    pub name: String,
    /// The pseudo-file it is located in, `Service NS/NAME`.
    pub origin: String,
}

/// The mesh service name of `port` of Service `name` in `namespace`.
pub fn service_name(name: &str, namespace: &str, port: u16) -> String {
    format!("{name}.{namespace}:{port}")
}

/// The mesh services of `svc`, one per port it can serve; what it cannot is skipped and noted.
pub(super) fn translate(index: &mut Index<'_>, svc: &Service) -> Vec<Built> {
    let object = key(&svc.metadata);
    let (Some(namespace), Some(name)) = (svc.metadata.namespace.as_deref(), svc.metadata.name.as_deref())
    else {
        return Vec::new();
    };
    let Some(spec) = &svc.spec else {
        index.skip("Service", object, "no spec");
        return Vec::new();
    };
    if spec.type_.as_deref() == Some("ExternalName") {
        index.skip("Service", object, "an ExternalName Service has no endpoints to balance");
        return Vec::new();
    }
    let cluster_ips = cluster_ips(index, &object, spec.cluster_ips.as_deref(), spec.cluster_ip.as_deref());
    let slices = index.slices.get(&(namespace, name)).cloned().unwrap_or_default();
    let domain = index.settings.cluster_domain.clone();
    let mut out = Vec::new();
    for port in spec.ports.iter().flatten() {
        let Some(number) = u16::try_from(port.port).ok().filter(|p| *p > 0) else {
            index.skip("Service", object.clone(), format!("port {} is out of range", port.port));
            continue;
        };
        let protocol = port.protocol.as_deref().unwrap_or("TCP");
        if protocol != "TCP" {
            index.skip(
                "Service",
                object.clone(),
                format!("port {number}/{protocol}: the mesh carries TCP only"),
            );
            continue;
        }
        let mut addresses: Vec<String> =
            cluster_ips.iter().map(|ip| SocketAddr::new(*ip, number).to_string()).collect();
        for host in
            [name.to_owned(), format!("{name}.{namespace}"), format!("{name}.{namespace}.svc.{domain}")]
        {
            addresses.push(format!("{host}:{number}"));
        }
        let endpoints = endpoints(index, port, &slices);
        if endpoints.is_empty() {
            // Kept, with no endpoint: a caller gets the proxy's 503 naming the cause rather
            // than its traffic silently leaving the mesh.
            tracing::debug!(service = %object, port = number, "no endpoint in rotation");
        }
        out.push(Built {
            service: schema::Service {
                name: service_name(name, namespace, number),
                addresses,
                protocol: app_protocol(port.app_protocol.as_deref()),
                lb: schema::LbPolicy::default(),
                connect_timeout: None,
                http2_keepalive: None,
                outlier: None,
                limits: None,
                endpoints,
                dns: Vec::new(),
                identity: None,
            },
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            origin: format!("Service {object}"),
        });
    }
    out
}

/// The proxy's protocol for a port's `appProtocol`. Anything else, including TLS the app speaks
/// itself and other implementations' names, keeps `auto` (follow the client's bytes): a wrong pin
/// would break a port that detection serves.
pub fn app_protocol(app_protocol: Option<&str>) -> schema::Protocol {
    match app_protocol {
        // `kubernetes.io/ws` is WebSocket, which goes upstream over HTTP/1.1.
        Some("http" | "kubernetes.io/ws") => schema::Protocol::Http1,
        Some("http2" | "kubernetes.io/h2c" | "grpc") => schema::Protocol::Http2,
        Some("tcp") => schema::Protocol::Tcp,
        _ => schema::Protocol::Auto,
    }
}

fn cluster_ips(index: &mut Index<'_>, object: &str, ips: Option<&[String]>, ip: Option<&str>) -> Vec<IpAddr> {
    // `clusterIPs` holds every family (the first is `clusterIP`); older objects may lack it.
    let listed: Vec<&str> = match ips {
        Some(list) if !list.is_empty() => list.iter().map(String::as_str).collect(),
        _ => ip.into_iter().collect(),
    };
    let mut out = Vec::new();
    for raw in listed {
        // Headless Services say "None": reached by pod addresses only, which are endpoints.
        if raw.is_empty() || raw == "None" {
            continue;
        }
        match raw.parse() {
            Ok(ip) => out.push(ip),
            Err(_) => {
                index.skip("Service", object.to_owned(), format!("clusterIP {raw:?} is not an IP address"))
            }
        }
    }
    out
}

/// Whether an endpoint takes new requests, or only stands in when nothing else does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Rotation {
    In,
    StandIn,
    Out,
}

fn rotation(e: &Endpoint) -> Rotation {
    // The API's defaults for absent conditions: ready and serving true, terminating false.
    let c = e.conditions.as_ref();
    let ready = c.and_then(|c| c.ready).unwrap_or(true);
    let serving = c.and_then(|c| c.serving).unwrap_or(ready);
    let terminating = c.and_then(|c| c.terminating).unwrap_or(false);
    match (ready && !terminating, serving && terminating) {
        (true, _) => Rotation::In,
        (false, true) => Rotation::StandIn,
        (false, false) => Rotation::Out,
    }
}

fn endpoints(index: &mut Index<'_>, port: &ServicePort, slices: &[&EndpointSlice]) -> Vec<schema::Endpoint> {
    // By address: a pod listed twice (slices overlap while the controller moves it) counts once.
    let mut in_rotation: BTreeMap<String, schema::Endpoint> = BTreeMap::new();
    let mut stand_in: BTreeMap<String, schema::Endpoint> = BTreeMap::new();
    let wanted = port.name.as_deref().unwrap_or("");
    for slice in slices {
        let object = key(&slice.metadata);
        if !matches!(slice.address_type.as_str(), "IPv4" | "IPv6") {
            index.skip(
                "EndpointSlice",
                object,
                format!("address type {} is not an IP family", slice.address_type),
            );
            continue;
        }
        // The slice's port of the Service port's name is the target port, resolved.
        let target = slice.ports.iter().flatten().find(|p| p.name.as_deref().unwrap_or("") == wanted);
        let Some(target) = target.and_then(|p| p.port).and_then(|p| u16::try_from(p).ok()).filter(|p| *p > 0)
        else {
            index.skip(
                "EndpointSlice",
                object,
                format!("no port named {wanted:?} (the Service port's target)"),
            );
            continue;
        };
        for e in slice.endpoints.iter().flatten() {
            let r = rotation(e);
            if r == Rotation::Out {
                continue;
            }
            let Some(ip) = e.addresses.first().and_then(|a| a.parse::<IpAddr>().ok()) else {
                index.skip(
                    "EndpointSlice",
                    object.clone(),
                    format!("endpoint {:?} has no IP address", e.addresses),
                );
                continue;
            };
            let addr = SocketAddr::new(ip, target).to_string();
            let Some(identity) = identity(index, slice, e) else {
                // Without the pod there is no identity to verify: never send to it in the clear.
                continue;
            };
            let endpoint = schema::Endpoint { addr: addr.clone(), identity: Some(identity), weight: 1 };
            let set = if r == Rotation::In { &mut in_rotation } else { &mut stand_in };
            set.insert(addr, endpoint);
        }
    }
    let best = if in_rotation.is_empty() { stand_in } else { in_rotation };
    best.into_values().collect()
}

/// `spiffe://TD/ns/NS/sa/SA` of the Pod behind an endpoint, or `None` (noted) without one.
fn identity(index: &mut Index<'_>, slice: &EndpointSlice, e: &Endpoint) -> Option<String> {
    let object = key(&slice.metadata);
    let slice_ns = slice.metadata.namespace.as_deref().unwrap_or("");
    let target = e.target_ref.as_ref().filter(|t| t.kind.as_deref() == Some("Pod"));
    let Some(pod_name) = target.and_then(|t| t.name.as_deref()) else {
        index.skip("EndpointSlice", object, format!("endpoint {:?} names no Pod", e.addresses));
        return None;
    };
    let ns = target.and_then(|t| t.namespace.as_deref()).unwrap_or(slice_ns);
    let Some(pod) = index.pods.get(&(ns, pod_name)) else {
        index.skip(
            "EndpointSlice",
            object,
            format!("endpoint {:?}: Pod {ns}/{pod_name} not found", e.addresses),
        );
        return None;
    };
    let sa = super::workloads::service_account(pod);
    Some(super::workloads::identity(&index.settings.trust_domain, ns, sa))
}
