//! Sending a request to the endpoint the balancer chose, over HTTP/1.1 or HTTP/2 as the service
//! wants, whatever the client spoke.

use http::{
    Request, Response, Uri, Version, header,
    request::Parts,
    uri::{self, Authority, PathAndQuery, Scheme},
};
use hyper::body::Incoming;

use super::{body::Body, reply::LocalError};
use crate::{
    config::Protocol,
    upstream::{ConnectError, Endpoint},
};

/// The HTTP version to speak upstream. Upgrades need HTTP/1.1; meshed hops (proxy to proxy
/// over mTLS) use HTTP/2; otherwise the service's protocol, or the client's for `auto`.
pub fn upstream_version(service: Protocol, client: Version, upgrade: bool, meshed: bool) -> Version {
    match service {
        _ if upgrade => Version::HTTP_11,
        _ if meshed => Version::HTTP_2,
        Protocol::Http2 => Version::HTTP_2,
        Protocol::Http1 => Version::HTTP_11,
        Protocol::Auto | Protocol::Tcp => {
            if client == Version::HTTP_2 {
                Version::HTTP_2
            } else {
                Version::HTTP_11
            }
        }
    }
}

/// Rewrites the request for the upstream and sends it on the endpoint's pool.
pub async fn send(
    endpoint: &Endpoint,
    mut parts: Parts,
    body: Body,
    version: Version,
) -> Result<Response<Incoming>, LocalError> {
    parts.uri = upstream_uri(&parts, endpoint);
    parts.version = version;
    let client = if version == Version::HTTP_2 {
        // HTTP/2 carries the authority in `:authority`; a second copy in Host could disagree.
        parts.headers.remove(header::HOST);
        &endpoint.conn.h2
    } else {
        &endpoint.conn.h1
    };
    client.request(Request::from_parts(parts, body)).await.map_err(|e| {
        let overloaded = std::error::Error::source(&e)
            .and_then(|s| s.downcast_ref::<ConnectError>())
            .is_some_and(|c| matches!(c, ConnectError::Overloaded(_)));
        // The client's own body failed (bad chunk, reset mid-upload): its fault, not the upstream's.
        let client_body = std::error::Error::source(&e)
            .and_then(|s| s.downcast_ref::<hyper::Error>())
            .is_some_and(|h| h.is_user());
        let too_large = chain(&e).any(|c| c.is::<super::body::TooLarge>());
        if too_large {
            LocalError::TooLarge
        } else if overloaded {
            LocalError::Overloaded
        } else if client_body {
            tracing::debug!(endpoint = %endpoint.addr, error = %source_chain(&e), "client request body failed");
            LocalError::BadRequest
        } else if e.is_connect() {
            tracing::debug!(endpoint = %endpoint.addr, error = %source_chain(&e), "upstream connect failed");
            LocalError::ConnectFailed
        } else {
            tracing::debug!(endpoint = %endpoint.addr, error = %source_chain(&e), "upstream request failed");
            LocalError::UpstreamReset
        }
    })
}

/// Absolute URI with the request's own authority: each endpoint has its own pool, so the
/// authority only names the virtual host, never where to connect. Shares the request's bytes
/// where it can rather than copying them.
fn upstream_uri(parts: &Parts, endpoint: &Endpoint) -> Uri {
    let authority = parts
        .uri
        .authority()
        .cloned()
        .or_else(|| parts.headers.get(header::HOST).and_then(|h| Authority::try_from(h.as_bytes()).ok()))
        .or_else(|| Authority::try_from(endpoint.addr.to_string()).ok());
    let mut p = uri::Parts::default();
    p.scheme = Some(Scheme::HTTP);
    p.authority = authority;
    p.path_and_query =
        Some(parts.uri.path_and_query().cloned().unwrap_or_else(|| PathAndQuery::from_static("/")));
    Uri::from_parts(p).unwrap_or_else(|_| parts.uri.clone())
}

/// An error and its causes, outermost first.
fn chain<'a>(
    e: &'a (dyn std::error::Error + 'static),
) -> impl Iterator<Item = &'a (dyn std::error::Error + 'static)> {
    std::iter::successors(Some(e), |e| e.source())
}

/// An error and its causes on one line, for logs.
pub fn source_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}
