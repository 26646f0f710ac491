//! Schema to typed runtime form: every check that can fail on a config happens here, once.
//!
//! Problems are collected rather than returned at the first one, each with the path of the value at
//! fault (`routes[1].backends[0].service`), so that `yaml` can point at its line and column.

use std::{collections::HashMap, net::SocketAddr, sync::Arc, time::Duration};

use super::{
    Config, EndpointConfig, InboundConfig, ListenerConfig, ListenerLimits, MtlsMode, OutboundConfig,
    OutlierConfig, PortPolicy, RetryOn, RetryPolicy, RouteConfig, ServiceConfig, ServiceLimits, schema,
};
use crate::{keepalive, route::RouteMatcher};

/// One thing wrong with a config, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Path of the offending value, e.g. `routes[0].backends[1].service`.
    pub path: String,
    /// What is wrong, in a sentence a user can act on.
    pub message: String,
}

/// Default time allowed to connect upstream.
const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

struct Checker {
    problems: Vec<Problem>,
}

impl Checker {
    fn report(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.problems.push(Problem { path: path.into(), message: message.into() });
    }

    fn socket_addr(&mut self, path: String, value: &str) -> Option<SocketAddr> {
        match value.parse() {
            Ok(addr) => Some(addr),
            Err(_) => {
                self.report(path, format!("{value:?} is not an IP:port address"));
                None
            }
        }
    }

    fn identity(&mut self, path: String, value: &str) -> Option<pillion_types::SpiffeId> {
        pillion_types::SpiffeId::parse(value).map_err(|e| self.report(path, e.to_string())).ok()
    }
}

/// Checks a parsed file and builds its runtime form.
pub fn validate(file: schema::File) -> Result<Config, Vec<Problem>> {
    let mut c = Checker { problems: Vec::new() };

    if let Some(w) = &file.workload {
        if w.name.is_empty() {
            c.report("workload.name", "workload name must not be empty");
        }
        if let Some(id) = &w.identity {
            c.identity("workload.identity".into(), id);
        }
    }
    let admin_bind = c.socket_addr("admin.bind".into(), &file.admin.bind);

    let services = services(&mut c, &file.services);
    if file.tls.is_none() {
        for (i, s) in file.services.iter().enumerate() {
            if let Some(k) = s.endpoints.iter().position(|e| e.identity.is_some()) {
                c.report(
                    format!("services[{i}].endpoints[{k}].identity"),
                    "an endpoint identity means mTLS, which needs a `tls` section",
                );
            }
            if s.identity.is_some() {
                c.report(
                    format!("services[{i}].identity"),
                    "a service identity means mTLS to its DNS endpoints, which needs a `tls` section",
                );
            }
        }
    }
    let index: HashMap<&str, usize> =
        file.services.iter().enumerate().map(|(i, s)| (s.name.as_str(), i)).collect();
    let service_ref = |c: &mut Checker, path: String, name: &str| -> Option<usize> {
        let found = index.get(name).copied();
        if found.is_none() {
            c.report(path, format!("unknown service {name:?}"));
        }
        found
    };

    let routes = routes(&mut c, &file.routes, &service_ref);

    let inbound = inbound(&mut c, &file);
    let mut listeners = Vec::new();
    for (i, l) in file.outbound.listeners.iter().enumerate() {
        let bind = c.socket_addr(format!("outbound.listeners[{i}].bind"), &l.bind);
        // With a control plane, a listener may name a service that only its snapshot brings.
        let service = match (index.get(l.service.as_str()), &file.control) {
            (Some(&s), _) => Some(s),
            (None, Some(_)) => None,
            (None, None) => service_ref(&mut c, format!("outbound.listeners[{i}].service"), &l.service),
        };
        if let Some(bind) = bind {
            listeners.push(ListenerConfig { bind, service });
        }
    }
    let outbound_bind = c.socket_addr("outbound.bind".into(), &file.outbound.bind);
    let control = file.control.as_ref().and_then(|ctl| {
        if !ctl.address.starts_with("https://") {
            c.report("control.address", "the control plane address must start with https://");
        }
        if file.tls.is_none() {
            c.report(
                "control",
                "the control plane needs a `tls` section: where the workload certificate goes",
            );
        }
        let Some(w) = &file.workload else {
            c.report("control", "the control plane needs `workload` with a name and an identity");
            return None;
        };
        let Some(id) = &w.identity else {
            c.report("workload", "the control plane needs `workload.identity`");
            return None;
        };
        let identity = c.identity("workload.identity".into(), id)?;
        Some(super::ControlConfig {
            address: ctl.address.clone(),
            token_file: ctl.token_file.as_ref().map(Into::into),
            workload: w.name.clone(),
            identity,
        })
    });

    let workload = file.workload.as_ref().map(|w| w.name.as_str());
    let tracing = file.tracing.as_ref().and_then(|t| match crate::trace::validate(t, workload) {
        Ok(t) => Some(t),
        Err(problems) => {
            problems.into_iter().for_each(|(path, message)| c.report(path, message));
            None
        }
    });
    let outbound_limits = listener_limits(&mut c, "outbound.limits", file.outbound.limits.as_ref());
    let resolver = crate::dns::validate(file.resolver.as_ref()).unwrap_or_else(|problems| {
        problems.into_iter().for_each(|(path, message)| c.report(path, message));
        crate::dns::ResolverConfig::default()
    });
    if !c.problems.is_empty() {
        return Err(c.problems);
    }
    // Every `None` above reported a problem, so these hold.
    let (Some(admin_bind), Some(outbound_bind), Some(inbound)) = (admin_bind, outbound_bind, inbound) else {
        unreachable!("a missing address always reports a problem")
    };
    Ok(Config {
        workload: file.workload.clone(),
        tls: file.tls.clone(),
        admin_bind,
        inbound,
        outbound: OutboundConfig { bind: outbound_bind, listeners, limits: outbound_limits },
        services,
        routes,
        control,
        tracing,
        resolver,
        file,
    })
}

fn inbound(c: &mut Checker, file: &schema::File) -> Option<InboundConfig> {
    let i = &file.inbound;
    let bind = c.socket_addr("inbound.bind".into(), &i.bind);
    let app = i.app.as_ref().map(|a| c.socket_addr("inbound.app".into(), a));
    // With certificates, inbound is mTLS unless said otherwise; without, it cannot be.
    let mtls = i.mtls.unwrap_or(if file.tls.is_some() { MtlsMode::Strict } else { MtlsMode::Disabled });
    if mtls != MtlsMode::Disabled && file.tls.is_none() {
        c.report("inbound.mtls", "mtls strict or permissive needs a `tls` section (cert, key, trust)");
    }
    let mut seen = HashMap::new();
    let mut ports = Vec::with_capacity(i.ports.len());
    for (n, p) in i.ports.iter().enumerate() {
        if let Some(first) = seen.insert(p.port, n) {
            c.report(
                format!("inbound.ports[{n}].port"),
                format!("port {} is already listed at inbound.ports[{first}]", p.port),
            );
        }
        let mut allow = Vec::with_capacity(p.allow.len());
        for (k, id) in p.allow.iter().enumerate() {
            match pillion_types::IdentityPattern::parse(id) {
                Ok(pattern) => allow.push(pattern),
                Err(e) => c.report(format!("inbound.ports[{n}].allow[{k}]"), e.to_string()),
            }
        }
        if !allow.is_empty() && mtls == MtlsMode::Disabled {
            c.report(
                format!("inbound.ports[{n}].allow"),
                "an allow list needs client identities, so inbound.mtls cannot be disabled",
            );
        }
        ports.push(PortPolicy { port: p.port, protocol: p.protocol, allow });
    }
    Some(InboundConfig {
        bind: bind?,
        app: app.flatten(),
        mtls,
        ports,
        limits: listener_limits(c, "inbound.limits", i.limits.as_ref()),
    })
}

/// A listener's limits; a zero that would refuse every request or connection is an error.
fn listener_limits(c: &mut Checker, path: &str, l: Option<&schema::ListenerLimits>) -> ListenerLimits {
    if let Some(l) = l {
        for (key, d) in [("header_read_timeout", l.header_read_timeout), ("idle_timeout", l.idle_timeout)] {
            if d.is_some_and(|d| d.0.is_zero()) {
                c.report(format!("{path}.{key}"), format!("{key} must be more than 0s"));
            }
        }
        let counts = [
            ("max_request_line_bytes", l.max_request_line_bytes),
            ("max_headers", l.max_headers),
            ("max_connections", l.max_connections),
            ("max_concurrent_streams", l.max_concurrent_streams.map(|n| n as usize)),
        ];
        for (key, n) in counts {
            if n == Some(0) {
                c.report(format!("{path}.{key}"), format!("{key} must be at least 1"));
            }
        }
    }
    ListenerLimits::from_schema(l)
}

fn services(c: &mut Checker, list: &[schema::Service]) -> Vec<ServiceConfig> {
    let mut seen: HashMap<&str, usize> = HashMap::new();
    let mut out = Vec::with_capacity(list.len());
    for (i, s) in list.iter().enumerate() {
        let at = |field: &str| format!("services[{i}].{field}");
        if s.name.is_empty() {
            c.report(at("name"), "service name must not be empty");
        }
        if let Some(first) = seen.insert(&s.name, i) {
            c.report(at("name"), format!("service {:?} is already defined at services[{first}]", s.name));
        }
        for (k, a) in s.addresses.iter().enumerate() {
            if !is_host_port(a) {
                c.report(at(&format!("addresses[{k}]")), format!("{a:?} is not a host:port address"));
            }
        }
        let mut endpoints = Vec::with_capacity(s.endpoints.len());
        for (k, e) in s.endpoints.iter().enumerate() {
            let addr = c.socket_addr(at(&format!("endpoints[{k}].addr")), &e.addr);
            if e.weight == 0 {
                c.report(at(&format!("endpoints[{k}].weight")), "weight must be at least 1");
            }
            let identity =
                e.identity.as_ref().and_then(|id| c.identity(at(&format!("endpoints[{k}].identity")), id));
            if let Some(addr) = addr {
                endpoints.push(EndpointConfig { addr, identity, weight: e.weight });
            }
        }
        let mut dns = Vec::with_capacity(s.dns.len());
        for (k, name) in s.dns.iter().enumerate() {
            match crate::dns::parse_name(name) {
                Ok(n) => dns.push(n),
                Err(e) => c.report(at(&format!("dns[{k}]")), e),
            }
        }
        let identity = s.identity.as_ref().and_then(|id| c.identity(at("identity"), id));
        if s.identity.is_some() && s.dns.is_empty() {
            c.report(
                at("identity"),
                "`identity` is what `dns` endpoints must prove; this service has no `dns`",
            );
        }
        let outlier = s.outlier.as_ref();
        let max_ejected_percent = outlier.and_then(|o| o.max_ejected_percent).unwrap_or(50);
        if max_ejected_percent > 100 {
            c.report(at("outlier.max_ejected_percent"), "a percentage must be between 0 and 100");
        }
        let http2_keepalive = keepalive::validate(s.http2_keepalive.as_ref()).unwrap_or_else(|message| {
            c.report(at("http2_keepalive.timeout"), message);
            None
        });
        out.push(ServiceConfig {
            name: Arc::from(s.name.as_str()),
            addresses: s.addresses.iter().map(|a| a.to_ascii_lowercase()).collect(),
            protocol: s.protocol,
            lb: s.lb,
            connect_timeout: s.connect_timeout.map_or(DEFAULT_CONNECT_TIMEOUT, |d| d.0),
            http2_keepalive,
            outlier: OutlierConfig {
                consecutive_failures: outlier.and_then(|o| o.consecutive_failures).unwrap_or(5),
                ejection: outlier.and_then(|o| o.ejection).map_or(Duration::from_secs(30), |d| d.0),
                max_ejected_percent,
            },
            limits: ServiceLimits {
                max_connections: s.limits.as_ref().and_then(|l| l.max_connections).unwrap_or(1024),
                max_pending: s.limits.as_ref().and_then(|l| l.max_pending).unwrap_or(1024),
            },
            endpoints,
            dns,
            identity,
        });
    }
    out
}

fn routes(
    c: &mut Checker,
    list: &[schema::Route],
    service_ref: &dyn Fn(&mut Checker, String, &str) -> Option<usize>,
) -> Vec<RouteConfig> {
    let mut seen: HashMap<&str, usize> = HashMap::new();
    let mut out = Vec::with_capacity(list.len());
    for (i, r) in list.iter().enumerate() {
        let at = |field: &str| format!("routes[{i}].{field}");
        if r.name.is_empty() {
            c.report(at("name"), "route name must not be empty");
        }
        if let Some(first) = seen.insert(&r.name, i) {
            c.report(at("name"), format!("route {:?} is already defined at routes[{first}]", r.name));
        }
        let matcher = match RouteMatcher::compile(&r.matches) {
            Ok(m) => Some(m),
            Err((field, message)) => {
                c.report(at(&format!("match.{field}")), message);
                None
            }
        };
        if r.backends.is_empty() {
            c.report(at("backends"), "a route needs at least one backend");
        }
        let mut backends = Vec::with_capacity(r.backends.len());
        for (k, b) in r.backends.iter().enumerate() {
            if b.weight == 0 {
                c.report(at(&format!("backends[{k}].weight")), "weight must be at least 1");
            }
            if let Some(s) = service_ref(c, at(&format!("backends[{k}].service")), &b.service) {
                backends.push((s, b.weight));
            }
        }
        let retry = r.retry.as_ref().and_then(|rt| retry(c, &at("retry"), rt));
        if let Some(matcher) = matcher {
            out.push(RouteConfig {
                name: Arc::from(r.name.as_str()),
                matcher,
                backends,
                timeout: r.timeout.map(|d| d.0),
                retry,
                max_request_bytes: r.max_request_bytes,
            });
        }
    }
    out
}

fn retry(c: &mut Checker, at: &str, r: &schema::Retry) -> Option<RetryPolicy> {
    let mut on = Vec::with_capacity(r.on.len());
    for (k, cond) in r.on.iter().enumerate() {
        match cond.parse::<RetryOn>() {
            Ok(o) => on.push(o),
            Err(e) => c.report(format!("{at}.on[{k}]"), e),
        }
    }
    let budget_percent = r.budget_percent.unwrap_or(20);
    if budget_percent > 100 {
        c.report(format!("{at}.budget_percent"), "a percentage must be between 0 and 100");
    }
    Some(RetryPolicy {
        attempts: r.attempts,
        on,
        per_try_timeout: r.per_try_timeout.map(|d| d.0),
        budget_percent,
    })
}

/// `host:port` with a non-empty host of DNS characters (or an IP) and a numeric port.
fn is_host_port(s: &str) -> bool {
    if s.parse::<SocketAddr>().is_ok() {
        return true;
    }
    let Some((host, port)) = s.rsplit_once(':') else {
        return false;
    };
    !host.is_empty()
        && port.parse::<u16>().is_ok()
        && host.chars().all(|ch| ch.is_ascii_alphanumeric() || ch == '-' || ch == '.')
}
