//! Route matching: a route's `match` compiled by `RouteMatcher::compile`, then matched against a
//! request, plus `request_host` on that request. Bad matchers are errors naming a field; nothing
//! panics.
//!
//! The input reads like a route over a request head, so that seeds and crash files are legible:
//!
//! ```text
//! host: orders            <- the match, one `field: value` per line (host, path, path_prefix,
//! path_prefix: /v2           path_regex, method, header NAME=VALUE), and the logical service
//! header: x-canary=true
//! service: orders
//!                         <- an empty line
//! GET /v2/x HTTP/1.1      <- the request head, any bytes (what the http crate refuses is dropped)
//! host: orders:80
//! ```
#![no_main]

use std::collections::BTreeMap;

use http::{HeaderName, HeaderValue, Method, Request, Uri};
use libfuzzer_sys::fuzz_target;
use pillion_config::{
    route::{RouteMatcher, request_host},
    schema::RouteMatch,
};

fuzz_target!(|data: &[u8]| {
    let (spec, head) = match data.windows(2).position(|w| w == b"\n\n") {
        Some(i) => (&data[..i], &data[i + 2..]),
        None => (data, &[][..]),
    };
    let Ok(spec) = std::str::from_utf8(spec) else { return };

    let mut m = RouteMatch { headers: BTreeMap::new(), ..RouteMatch::default() };
    let mut service = None;
    for line in spec.split('\n') {
        let (field, value) = line.split_once(": ").unwrap_or((line, ""));
        let value = value.to_owned();
        match field {
            "host" => m.host = Some(value),
            "path" => m.path = Some(value),
            "path_prefix" => m.path_prefix = Some(value),
            "path_regex" => m.path_regex = Some(value),
            "method" => m.method = Some(value),
            "header" => {
                let (n, v) = value.split_once('=').unwrap_or((&value, ""));
                m.headers.insert(n.to_owned(), v.to_owned());
            }
            "service" => service = Some(value),
            _ => {}
        }
    }
    let matcher = RouteMatcher::compile(&m);

    let mut req = Request::new(());
    let mut lines = head.split(|&b| b == b'\n').map(|l| l.strip_suffix(b"\r").unwrap_or(l));
    if let Some(request_line) = lines.next() {
        let mut words = request_line.split(|&b| b == b' ');
        if let Ok(method) = Method::from_bytes(words.next().unwrap_or_default()) {
            *req.method_mut() = method;
        }
        if let Ok(uri) = Uri::try_from(words.next().unwrap_or_default()) {
            *req.uri_mut() = uri;
        }
    }
    for line in lines {
        let Some(colon) = line.iter().position(|&b| b == b':') else { continue };
        let value = &line[colon + 1..];
        let value = value.strip_prefix(b" ").unwrap_or(value);
        if let (Ok(n), Ok(v)) = (HeaderName::from_bytes(&line[..colon]), HeaderValue::from_bytes(value)) {
            req.headers_mut().append(n, v);
        }
    }
    let (parts, ()) = req.into_parts();
    let host = request_host(&parts);
    if let Ok(matcher) = matcher {
        let _ = matcher.matches(&parts, &host, service.as_deref());
        let _ = matcher.matches(&parts, "", None);
    }
});
