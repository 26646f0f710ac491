//! Route matching: which route, if any, a request takes. Compiled once from the config; matching
//! allocates nothing.

use http::{HeaderName, HeaderValue, Method, request::Parts};
use regex::Regex;

use crate::{RouteConfig, schema::RouteMatch};

/// A route's conditions, compiled. All present conditions must hold.
#[derive(Debug)]
pub struct RouteMatcher {
    host: Option<HostMatch>,
    path: Option<PathMatch>,
    headers: Vec<(HeaderName, HeaderValue)>,
    method: Option<Method>,
    /// `(name, value)` pairs the query must hold, compared as sent.
    query: Vec<(String, String)>,
}

#[derive(Debug)]
enum HostMatch {
    Exact(String),
    /// `*.example.com` stored as `.example.com`.
    Suffix(String),
}

#[derive(Debug)]
enum PathMatch {
    Exact(String),
    Prefix(String),
    Regex(Regex),
}

impl RouteMatcher {
    /// Compiles a route's `match`, or names the field at fault and why.
    pub fn compile(m: &RouteMatch) -> Result<Self, (&'static str, String)> {
        let host = m.host.as_deref().map(|h| {
            let h = h.to_ascii_lowercase();
            match h.strip_prefix('*') {
                Some(suffix) if suffix.starts_with('.') => Ok(HostMatch::Suffix(suffix.to_owned())),
                Some(_) => Err(("host", format!("wildcard host {h:?} must look like \"*.example.com\""))),
                None => Ok(HostMatch::Exact(h)),
            }
        });
        let host = host.transpose()?;

        let given = [m.path.is_some(), m.path_prefix.is_some(), m.path_regex.is_some()];
        if given.iter().filter(|g| **g).count() > 1 {
            return Err(("path", "use only one of path, path_prefix and path_regex".into()));
        }
        let path = if let Some(p) = &m.path {
            Some(PathMatch::Exact(check_path("path", p)?))
        } else if let Some(p) = &m.path_prefix {
            Some(PathMatch::Prefix(check_path("path_prefix", p)?))
        } else if let Some(r) = &m.path_regex {
            let re = Regex::new(&format!("^(?:{r})$")).map_err(|e| {
                // regex's syntax errors draw a caret over several lines; keep the cause.
                let text = e.to_string();
                let cause = text.lines().last().unwrap_or_default().trim().trim_start_matches("error: ");
                ("path_regex", format!("invalid regular expression {r:?}: {cause}"))
            })?;
            Some(PathMatch::Regex(re))
        } else {
            None
        };

        let mut headers = Vec::with_capacity(m.headers.len());
        for (name, value) in &m.headers {
            let n = HeaderName::try_from(name.as_str())
                .map_err(|_| ("headers", format!("{name:?} is not a valid header name")))?;
            let v = HeaderValue::try_from(value.as_str())
                .map_err(|_| ("headers", format!("the value for {name:?} is not a valid header value")))?;
            headers.push((n, v));
        }
        let method = m
            .method
            .as_deref()
            .map(|s| Method::from_bytes(s.to_ascii_uppercase().as_bytes()))
            .transpose()
            .map_err(|_| ("method", "not a valid HTTP method".to_string()))?;
        let mut query = Vec::with_capacity(m.query.len());
        for (name, value) in &m.query {
            // `&`, `=` and `#` would split or end the pair in a request, so it could never match.
            if name.is_empty() || [name, value].iter().any(|s| s.contains(['&', '=', '#'])) {
                return Err((
                    "query",
                    format!("{name:?}={value:?} is not a query parameter a request can carry"),
                ));
            }
            query.push((name.clone(), value.clone()));
        }
        Ok(Self { host, path, headers, method, query })
    }

    /// Whether a request matches. `host` is the request's host without port, lowercased;
    /// `service` is the logical service the request is addressed to, if known.
    pub fn matches(&self, req: &Parts, host: &str, service: Option<&str>) -> bool {
        if let Some(h) = &self.host {
            let ok = |cand: &str| match h {
                HostMatch::Exact(e) => e == cand,
                HostMatch::Suffix(s) => cand.len() > s.len() && cand.ends_with(s.as_str()),
            };
            if !ok(host) && !service.is_some_and(ok) {
                return false;
            }
        }
        if let Some(m) = &self.method {
            if req.method != m {
                return false;
            }
        }
        if let Some(p) = &self.path {
            let path = req.uri.path();
            let ok = match p {
                PathMatch::Exact(e) => path == e,
                PathMatch::Prefix(pre) => path.starts_with(pre.as_str()),
                PathMatch::Regex(re) => re.is_match(path),
            };
            if !ok {
                return false;
            }
        }
        if !self.query.is_empty() {
            let query = req.uri.query().unwrap_or_default();
            let has = |(n, v): &(String, String)| {
                query
                    .split('&')
                    .any(|pair| pair.split_once('=').unwrap_or((pair, "")) == (n.as_str(), v.as_str()))
            };
            if !self.query.iter().all(has) {
                return false;
            }
        }
        self.headers.iter().all(|(n, v)| req.headers.get_all(n).iter().any(|have| have == v))
    }
}

fn check_path(field: &'static str, p: &str) -> Result<String, (&'static str, String)> {
    if p.starts_with('/') { Ok(p.to_owned()) } else { Err((field, format!("{p:?} must start with '/'"))) }
}

/// The first route that matches, in config order.
pub fn find<'a>(
    routes: &'a [RouteConfig],
    req: &Parts,
    host: &str,
    service: Option<&str>,
) -> Option<&'a RouteConfig> {
    position(routes, req, host, service).map(|i| &routes[i])
}

/// The index of the route [`find`] takes.
pub fn position(routes: &[RouteConfig], req: &Parts, host: &str, service: Option<&str>) -> Option<usize> {
    routes.iter().position(|r| r.matcher.matches(req, host, service))
}

/// Picks a backend service index by weight. `backends` is never empty for a validated route.
pub fn pick_backend(backends: &[(usize, u32)]) -> usize {
    if let [(only, _)] = backends {
        return *only;
    }
    let total: u32 = backends.iter().map(|(_, w)| w).sum();
    let mut n = fastrand::u32(0..total.max(1));
    for &(svc, w) in backends {
        if n < w {
            return svc;
        }
        n -= w;
    }
    backends[0].0
}

/// The request's host: the URI authority (HTTP/2, absolute-form) or the Host header, without
/// port, lowercased only when needed.
pub fn request_host(req: &Parts) -> std::borrow::Cow<'_, str> {
    let raw = req
        .uri
        .authority()
        .map(|a| a.as_str())
        .or_else(|| req.headers.get(http::header::HOST).and_then(|h| h.to_str().ok()))
        .unwrap_or("");
    // A fully qualified name's trailing dot names the same host (as the upstream will read it).
    let host = strip_port(raw);
    let host = host.strip_suffix('.').unwrap_or(host);
    if host.bytes().any(|b| b.is_ascii_uppercase()) {
        std::borrow::Cow::Owned(host.to_ascii_lowercase())
    } else {
        std::borrow::Cow::Borrowed(host)
    }
}

fn strip_port(authority: &str) -> &str {
    if authority.starts_with('[') {
        return authority.split_once(']').map_or(authority, |(h, _)| &h[1..]);
    }
    match authority.rsplit_once(':') {
        Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => authority,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn parts(method: &str, uri: &str, headers: &[(&str, &str)]) -> Parts {
        let mut b = http::Request::builder().method(method).uri(uri);
        for (n, v) in headers {
            b = b.header(*n, *v);
        }
        b.body(()).unwrap().into_parts().0
    }

    fn matcher(f: impl FnOnce(&mut RouteMatch)) -> RouteMatcher {
        let mut m = RouteMatch::default();
        f(&mut m);
        RouteMatcher::compile(&m).unwrap()
    }

    #[test]
    fn query_parameters_match_as_sent() {
        let m = matcher(|m| {
            m.query = BTreeMap::from([("v".into(), "2".into()), ("debug".into(), String::new())])
        });
        assert!(m.matches(&parts("GET", "/a?x=1&v=2&debug", &[]), "h", None));
        assert!(m.matches(&parts("GET", "/a?debug=&v=2", &[]), "h", None));
        assert!(!m.matches(&parts("GET", "/a?v=2", &[]), "h", None));
        assert!(!m.matches(&parts("GET", "/a?v=20&debug", &[]), "h", None));
        assert!(!m.matches(&parts("GET", "/a", &[]), "h", None));
        let mut bad = RouteMatch::default();
        bad.query.insert("a&b".into(), "c".into());
        assert_eq!(RouteMatcher::compile(&bad).map(|_| ()).unwrap_err().0, "query");
    }

    #[test]
    fn host_matches_authority_or_logical_service() {
        let m = matcher(|m| m.host = Some("orders".into()));
        let req = parts("GET", "/", &[("host", "orders:80")]);
        assert!(m.matches(&req, &request_host(&req), None));
        let other = parts("GET", "/", &[("host", "10.0.0.1:80")]);
        assert!(!m.matches(&other, &request_host(&other), None));
        assert!(m.matches(&other, &request_host(&other), Some("orders")));
    }

    #[test]
    fn wildcard_host_needs_a_label() {
        let m = matcher(|m| m.host = Some("*.example.com".into()));
        assert!(m.matches(&parts("GET", "/", &[]), "a.example.com", None));
        assert!(!m.matches(&parts("GET", "/", &[]), "example.com", None));
    }

    #[test]
    fn path_kinds() {
        let exact = matcher(|m| m.path = Some("/a".into()));
        let prefix = matcher(|m| m.path_prefix = Some("/v2".into()));
        let re = matcher(|m| m.path_regex = Some("/users/[0-9]+".into()));
        let r = |p: &str| parts("GET", p, &[]);
        assert!(exact.matches(&r("/a?x=1"), "", None));
        assert!(!exact.matches(&r("/ab"), "", None));
        assert!(prefix.matches(&r("/v2/x"), "", None));
        assert!(!prefix.matches(&r("/v1"), "", None));
        assert!(re.matches(&r("/users/42"), "", None));
        assert!(!re.matches(&r("/users/42/x"), "", None));
    }

    #[test]
    fn headers_and_method() {
        let m = matcher(|m| {
            m.headers = BTreeMap::from([("x-canary".to_string(), "true".to_string())]);
            m.method = Some("post".into());
        });
        assert!(m.matches(&parts("POST", "/", &[("x-canary", "true")]), "", None));
        assert!(!m.matches(&parts("GET", "/", &[("x-canary", "true")]), "", None));
        assert!(!m.matches(&parts("POST", "/", &[("x-canary", "false")]), "", None));
    }

    #[test]
    fn bad_matchers_name_the_field() {
        let bad = |f: fn(&mut RouteMatch)| {
            let mut m = RouteMatch::default();
            f(&mut m);
            RouteMatcher::compile(&m).unwrap_err().0
        };
        assert_eq!(bad(|m| m.path_regex = Some("(".into())), "path_regex");
        assert_eq!(bad(|m| m.path = Some("a".into())), "path");
        assert_eq!(bad(|m| m.host = Some("*foo".into())), "host");
        assert_eq!(bad(|m| m.method = Some("GE T".into())), "method");
    }

    #[test]
    fn weighted_pick_follows_weights() {
        let mut counts = [0u32; 2];
        for _ in 0..10_000 {
            counts[pick_backend(&[(0, 90), (1, 10)])] += 1;
        }
        assert!((8_700..9_300).contains(&counts[0]), "{counts:?}");
    }

    #[test]
    fn host_strips_port_and_case() {
        let req = parts("GET", "/", &[("host", "Orders.Shop:8080")]);
        assert_eq!(request_host(&req), "orders.shop");
        let v6 = parts("GET", "/", &[("host", "[::1]:80")]);
        assert_eq!(request_host(&v6), "::1");
    }
}
