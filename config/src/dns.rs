//! Endpoints from DNS: the `resolver` section's schema and typed form, the `host:port` names a
//! service lists under `dns`, and their checks. The proxy resolves them; this only says what was
//! asked for.

use std::{fmt, net::SocketAddr, time::Duration};

use serde::{Deserialize, Serialize};

use crate::duration::HumanDuration;

/// Default floor on a record's TTL: a TTL of 0 must not become a query loop.
pub const DEFAULT_MIN_TTL: Duration = Duration::from_secs(1);
/// Default ceiling on a record's TTL: a change is followed within this even behind long TTLs.
pub const DEFAULT_MAX_TTL: Duration = Duration::from_secs(30);

/// The `resolver` section as written.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Resolver {
    /// `IP:port` of the nameservers to ask; without it, those of `/etc/resolv.conf`.
    #[serde(default)]
    pub nameservers: Vec<String>,
    /// Shortest time an answer is kept before it is asked again.
    #[serde(default)]
    pub min_ttl: Option<HumanDuration>,
    /// Longest time an answer is kept before it is asked again.
    #[serde(default)]
    pub max_ttl: Option<HumanDuration>,
}

/// How names are resolved, defaults filled in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolverConfig {
    /// Nameservers to ask; empty means `/etc/resolv.conf`.
    pub nameservers: Vec<SocketAddr>,
    /// Floor on a record's TTL.
    pub min_ttl: Duration,
    /// Ceiling on a record's TTL.
    pub max_ttl: Duration,
}

impl Default for ResolverConfig {
    fn default() -> Self {
        Self { nameservers: Vec::new(), min_ttl: DEFAULT_MIN_TTL, max_ttl: DEFAULT_MAX_TTL }
    }
}

impl ResolverConfig {
    /// `ttl` clamped into `[min_ttl, max_ttl]`.
    pub fn clamp(&self, ttl: Duration) -> Duration {
        ttl.clamp(self.min_ttl, self.max_ttl)
    }
}

/// One `dns` entry: a host name and the port its addresses serve on.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DnsName {
    /// The name to look up, lowercased.
    pub host: String,
    /// The endpoints' port.
    pub port: u16,
}

impl fmt::Display for DnsName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.host, self.port)
    }
}

/// Parses a `dns` entry, `host:port`; the error says what is wrong with it.
pub fn parse_name(s: &str) -> Result<DnsName, String> {
    let Some((host, port)) = s.rsplit_once(':') else {
        return Err(format!("{s:?} is not host:port (the endpoints' port is needed)"));
    };
    let port = match port.parse::<u16>() {
        Ok(p) if p > 0 => p,
        _ => return Err(format!("{port:?} in {s:?} is not a port (1-65535)")),
    };
    if host.parse::<std::net::IpAddr>().is_ok() || host.starts_with('[') {
        return Err(format!("{s:?} is an address, not a name: list it under `endpoints`"));
    }
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    };
    // One trailing dot marks a fully qualified name; search domains are then not tried.
    let bare = host.strip_suffix('.').unwrap_or(host);
    if bare.is_empty() || bare.len() > 253 || !bare.split('.').all(label_ok) {
        return Err(format!("{host:?} is not a DNS name"));
    }
    Ok(DnsName { host: host.to_ascii_lowercase(), port })
}

/// Checks the `resolver` section; problems come back as `(path, message)`.
pub fn validate(r: Option<&Resolver>) -> Result<ResolverConfig, Vec<(String, String)>> {
    let Some(r) = r else { return Ok(ResolverConfig::default()) };
    let mut problems = Vec::new();
    let mut nameservers = Vec::with_capacity(r.nameservers.len());
    for (i, ns) in r.nameservers.iter().enumerate() {
        match ns.parse::<SocketAddr>() {
            Ok(a) => nameservers.push(a),
            Err(_) => problems.push((
                format!("resolver.nameservers[{i}]"),
                format!("{ns:?} is not an IP:port address (e.g. \"10.96.0.10:53\")"),
            )),
        }
    }
    let min_ttl = r.min_ttl.map_or(DEFAULT_MIN_TTL, |d| d.0);
    let max_ttl = r.max_ttl.map_or(DEFAULT_MAX_TTL.max(min_ttl), |d| d.0);
    if min_ttl.is_zero() {
        problems.push(("resolver.min_ttl".into(), "min_ttl must be more than 0s".into()));
    }
    if max_ttl < min_ttl {
        problems.push((
            "resolver.max_ttl".into(),
            format!("max_ttl ({max_ttl:?}) must not be below min_ttl ({min_ttl:?})"),
        ));
    }
    if problems.is_empty() { Ok(ResolverConfig { nameservers, min_ttl, max_ttl }) } else { Err(problems) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_and_bad_ones_say_why() {
        let n = parse_name("Orders-Headless.shop.svc.cluster.local:8080").unwrap();
        assert_eq!((n.host.as_str(), n.port), ("orders-headless.shop.svc.cluster.local", 8080));
        assert_eq!(parse_name("orders.:80").unwrap().host, "orders.");
        for (bad, says) in [
            ("orders", "not host:port"),
            ("orders:http", "not a port"),
            ("orders:0", "not a port"),
            ("orders:70000", "not a port"),
            ("10.0.0.1:80", "list it under `endpoints`"),
            ("[::1]:80", "list it under `endpoints`"),
            (":80", "not a DNS name"),
            ("a..b:80", "not a DNS name"),
            ("-a.b:80", "not a DNS name"),
            ("a b:80", "not a DNS name"),
        ] {
            let e = parse_name(bad).expect_err(bad);
            assert!(e.contains(says), "{bad}: {e}");
        }
    }

    #[test]
    fn resolver_defaults_and_checks() {
        assert_eq!(validate(None).unwrap(), ResolverConfig::default());
        let d = |s: &str| Some(s.parse::<HumanDuration>().unwrap());
        let ok = Resolver { nameservers: vec!["127.0.0.1:5353".into()], min_ttl: d("2s"), max_ttl: None };
        let c = validate(Some(&ok)).unwrap();
        assert_eq!((c.min_ttl, c.max_ttl), (Duration::from_secs(2), DEFAULT_MAX_TTL));
        assert_eq!(c.clamp(Duration::ZERO), Duration::from_secs(2));
        assert_eq!(c.clamp(Duration::from_secs(3600)), DEFAULT_MAX_TTL);
        let bad = Resolver { nameservers: vec!["dns.local:53".into()], min_ttl: d("5s"), max_ttl: d("1s") };
        let paths: Vec<_> = validate(Some(&bad)).unwrap_err().into_iter().map(|(p, _)| p).collect();
        assert_eq!(paths, ["resolver.nameservers[0]", "resolver.max_ttl"]);
        let zero = Resolver { min_ttl: d("0s"), ..Resolver::default() };
        assert_eq!(validate(Some(&zero)).unwrap_err()[0].0, "resolver.min_ttl");
    }
}
