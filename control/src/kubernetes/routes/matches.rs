//! One Gateway API match to the proxy's `RouteMatch`, with its precedence; or, for what the proxy
//! cannot do as the spec says, the reason, which becomes the route's `Accepted=False` message.

use std::{cmp::Reverse, time::Duration};

use pillion_config::schema::RouteMatch;
use serde_json::Value;

use super::spec::{GrpcMatch, HeaderMatch, HttpMatch};

/// How specific a match is: lower sorts first, as the Gateway API orders matches across rules
/// and routes (exact path, then the longest prefix, then a method, then the most headers, then
/// the most query parameters).
pub type Precedence = (u8, Reverse<usize>, bool, Reverse<usize>, Reverse<usize>);

/// An `HTTPRoute` match.
pub fn http(raw: &Value) -> Result<(RouteMatch, Precedence), String> {
    let m: HttpMatch = serde_json::from_value(raw.clone()).map_err(|e| format!("unreadable match: {e}"))?;
    let mut out = RouteMatch {
        headers: headers(&m.headers)?,
        method: m.method.clone(),
        query: query(&m.query_params)?,
        ..RouteMatch::default()
    };
    let (kind, value) = m.path.as_ref().map_or((None, None), |p| (p.kind.as_deref(), p.value.as_deref()));
    let value = value.unwrap_or("/");
    let rank = match kind.unwrap_or("PathPrefix") {
        "Exact" => {
            out.path = Some(value.to_owned());
            0
        }
        "PathPrefix" => {
            // The spec's prefix is element-wise: `/v2` matches `/v2` and `/v2/x`, not `/v2x`.
            let trimmed = value.trim_end_matches('/');
            if !trimmed.is_empty() {
                out.path_regex = Some(format!("{}(/.*)?", regex::escape(trimmed)));
            }
            1
        }
        "RegularExpression" => {
            out.path_regex = Some(value.to_owned());
            2
        }
        other => return Err(format!("path match type {other:?} is not supported")),
    };
    let precedence = (
        rank,
        Reverse(value.len()),
        m.method.is_none(),
        Reverse(out.headers.len()),
        Reverse(out.query.len()),
    );
    Ok((out, precedence))
}

/// A `GRPCRoute` match: its service and method become the request path `/SERVICE/METHOD`.
pub fn grpc(raw: &Value) -> Result<(RouteMatch, Precedence), String> {
    let m: GrpcMatch = serde_json::from_value(raw.clone()).map_err(|e| format!("unreadable match: {e}"))?;
    let mut out = RouteMatch { headers: headers(&m.headers)?, ..RouteMatch::default() };
    let mut rank = 3;
    if let Some(method) = &m.method {
        if !matches!(method.kind.as_deref(), None | Some("Exact")) {
            return Err("gRPC method matches of type RegularExpression are not supported".into());
        }
        let esc = |s: &str| regex::escape(s);
        match (method.service.as_deref(), method.method.as_deref()) {
            (Some(s), Some(m)) => {
                out.path = Some(format!("/{s}/{m}"));
                rank = 0;
            }
            (Some(s), None) => {
                out.path_regex = Some(format!("/{}/[^/]+", esc(s)));
                rank = 1;
            }
            (None, Some(m)) => {
                out.path_regex = Some(format!("/[^/]+/{}", esc(m)));
                rank = 2;
            }
            (None, None) => {}
        }
    }
    // gRPC is always POST; the method is not a condition worth adding.
    let len = out.path.as_ref().or(out.path_regex.as_ref()).map_or(0, String::len);
    let headers = out.headers.len();
    Ok((out, (rank, Reverse(len), true, Reverse(headers), Reverse(0))))
}

fn headers(list: &[HeaderMatch]) -> Result<std::collections::BTreeMap<String, String>, String> {
    let mut out = std::collections::BTreeMap::new();
    for h in list {
        if !matches!(h.kind.as_deref(), None | Some("Exact")) {
            return Err(format!("header match {:?} of type RegularExpression is not supported", h.name));
        }
        // Names are case-insensitive; the first of a repeated name wins, as the spec says.
        out.entry(h.name.to_ascii_lowercase()).or_insert_with(|| h.value.clone());
    }
    Ok(out)
}

fn query(list: &[HeaderMatch]) -> Result<std::collections::BTreeMap<String, String>, String> {
    let mut out = std::collections::BTreeMap::new();
    for q in list {
        if !matches!(q.kind.as_deref(), None | Some("Exact")) {
            return Err(format!(
                "query parameter match {:?} of type RegularExpression is not supported",
                q.name
            ));
        }
        // Names are case-sensitive here; again the first of a repeated name wins.
        out.entry(q.name.clone()).or_insert_with(|| q.value.clone());
    }
    Ok(out)
}

/// A GEP-2257 duration (`1h`, `1m30s`, `500ms`); `0s` is `None` (no timeout).
pub fn duration(s: &str) -> Result<Option<Duration>, String> {
    let bad = || format!("timeout {s:?} is not a duration like \"10s\" or \"1m30s\"");
    let mut total = Duration::ZERO;
    let mut rest = s;
    if rest.is_empty() {
        return Err(bad());
    }
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        let n: u64 = rest[..digits].parse().map_err(|_| bad())?;
        rest = &rest[digits..];
        let (unit, len) = if rest.starts_with("ms") {
            (Duration::from_millis(1), 2)
        } else {
            match rest.as_bytes().first() {
                Some(b'h') => (Duration::from_secs(3600), 1),
                Some(b'm') => (Duration::from_secs(60), 1),
                Some(b's') => (Duration::from_secs(1), 1),
                _ => return Err(bad()),
            }
        };
        rest = &rest[len..];
        // Checked, so that no value can panic here, whatever the CRD's pattern lets through.
        let term = unit.checked_mul(u32::try_from(n).map_err(|_| bad())?).ok_or_else(bad)?;
        total = total.checked_add(term).ok_or_else(bad)?;
    }
    Ok((!total.is_zero()).then_some(total))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn http_matches_become_the_proxys_conditions() {
        let (m, p) = http(&json!({"path": {"type": "PathPrefix", "value": "/v2/"}, "method": "GET",
                                  "headers": [{"name": "X-Canary", "value": "yes"}]}))
        .unwrap();
        assert_eq!(m.path_regex.as_deref(), Some("/v2(/.*)?"));
        assert_eq!(m.method.as_deref(), Some("GET"));
        assert_eq!(m.headers["x-canary"], "yes");
        let (exact, q) = http(&json!({"path": {"type": "Exact", "value": "/a"}})).unwrap();
        assert_eq!(exact.path.as_deref(), Some("/a"));
        assert!(q < p, "an exact path comes before a prefix");
        let (all, _) = http(&json!({"path": {"type": "PathPrefix", "value": "/"}})).unwrap();
        assert!(all.path.is_none() && all.path_regex.is_none());
        let (q, _) =
            http(&json!({"queryParams": [{"name": "v", "value": "2"}, {"name": "v", "value": "3"}]}))
                .unwrap();
        assert_eq!(q.query["v"], "2");
        let e = http(&json!({"queryParams": [{"type": "RegularExpression", "name": "a", "value": "b"}]}))
            .unwrap_err();
        assert!(e.contains("query parameter"), "{e}");
    }

    #[test]
    fn grpc_methods_become_paths() {
        let (m, _) = grpc(&json!({"method": {"service": "shop.Orders", "method": "Get"}})).unwrap();
        assert_eq!(m.path.as_deref(), Some("/shop.Orders/Get"));
        let (m, _) = grpc(&json!({"method": {"service": "shop.Orders"}})).unwrap();
        assert_eq!(m.path_regex.as_deref(), Some("/shop\\.Orders/[^/]+"));
    }

    #[test]
    fn gateway_durations() {
        assert_eq!(duration("1m30s"), Ok(Some(Duration::from_secs(90))));
        assert_eq!(duration("500ms"), Ok(Some(Duration::from_millis(500))));
        assert_eq!(duration("0s"), Ok(None));
        assert!(duration("1.5s").is_err() && duration("").is_err() && duration("5").is_err());
        assert!(duration("4294967296h").is_err(), "beyond u32 is refused, not wrapped");
    }
}
