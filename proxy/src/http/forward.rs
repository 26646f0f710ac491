//! Sending a request to the endpoint the balancer chose, over HTTP/1.1 or HTTP/2 as the service
//! wants, whatever the client spoke.

use std::pin::pin;

use http::{
    HeaderValue, Request, Response, Uri, Version, header,
    request::Parts,
    uri::{self, Authority, PathAndQuery, Scheme},
};

use super::reply::LocalError;
use crate::{
    balance::Endpoint,
    body::Body,
    upstream::log::{log_upstream_failure, source_chain},
    upstream::{ConnectError, SendError, UpstreamBody},
};
use pillion_config::Protocol;

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
) -> Result<Response<UpstreamBody>, LocalError> {
    parts.version = version;
    let pool = &endpoint.conn.pool;
    // The sends are awaited pinned, built in place rather than copied in (see `crate::http::deadline`).
    let sent = if version == Version::HTTP_2 {
        parts.uri = Uri::from_parts(absolute_uri(&parts, endpoint)).unwrap_or_else(|_| parts.uri.clone());
        // HTTP/2 carries the authority in `:authority`; a second copy in Host could disagree.
        parts.headers.remove(header::HOST);
        pin!(pool.send_http2(Request::from_parts(parts, body))).await
    } else {
        http1_target(&mut parts, endpoint);
        let resendable = matches!(body, Body::Empty) && super::retry::idempotent(&parts.method);
        pin!(pool.send_http1(Request::from_parts(parts, body), resendable)).await
    };
    sent.map_err(|e| local_error(endpoint, &e))
}

/// The local reply for a failed send.
fn local_error(endpoint: &Endpoint, e: &SendError) -> LocalError {
    match e {
        SendError::Connect(ConnectError::Overloaded(_)) => LocalError::Overloaded,
        SendError::Connect(_) => {
            log_upstream_failure(endpoint.addr, "upstream connect failed", e);
            LocalError::ConnectFailed
        }
        // The client's own body failed (bad chunk, reset mid-upload): its fault, not the upstream's.
        SendError::Http1(h) if h.is_client() => client_body_failed(endpoint, e),
        SendError::Http2(h) if h.is_user() => client_body_failed(endpoint, e),
        SendError::Http2(h) if went_away(h) => {
            tracing::debug!(endpoint = %endpoint.addr, error = %source_chain(e), "upstream went away");
            LocalError::UpstreamClosing
        }
        SendError::Http1(_) | SendError::Http2(_) => {
            log_upstream_failure(endpoint.addr, "upstream request failed", e);
            LocalError::UpstreamReset
        }
    }
}

/// Whether the stream ended with the peer's GOAWAY: it was above the GOAWAY's last stream (never
/// processed), or left open when the connection then closed (h2 gives both the same error).
fn went_away(e: &hyper::Error) -> bool {
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        if let Some(h2) = s.downcast_ref::<h2::Error>() {
            return h2.is_go_away() && h2.is_remote();
        }
        source = s.source();
    }
    false
}

fn client_body_failed(endpoint: &Endpoint, e: &SendError) -> LocalError {
    tracing::debug!(endpoint = %endpoint.addr, error = %source_chain(e), "client request body failed");
    LocalError::BadRequest
}

/// The request's own authority: each endpoint has its own pool, so the authority only names
/// the virtual host, never where to connect.
fn authority(parts: &Parts, endpoint: &Endpoint) -> Option<Authority> {
    parts
        .uri
        .authority()
        .cloned()
        .or_else(|| parts.headers.get(header::HOST).and_then(|h| Authority::try_from(h.as_bytes()).ok()))
        .or_else(|| Authority::try_from(endpoint.addr.to_string()).ok())
}

/// Absolute URI with the request's own authority, as HTTP/2 sends it. Shares the request's
/// bytes where it can rather than copying them.
fn absolute_uri(parts: &Parts, endpoint: &Endpoint) -> uri::Parts {
    let mut p = uri::Parts::default();
    p.scheme = Some(Scheme::HTTP);
    p.authority = authority(parts, endpoint);
    p.path_and_query =
        Some(parts.uri.path_and_query().cloned().unwrap_or_else(|| PathAndQuery::from_static("/")));
    p
}

/// HTTP/1.1 names the virtual host in `Host` and the resource in the request line, the path
/// alone (origin form). The host is the one routing used: the URI's authority (an HTTP/2
/// client's `:authority`; the HTTP/1 server already made `Host` match an absolute-form target),
/// else the client's `Host`, else the endpoint's address.
fn http1_target(parts: &mut Parts, endpoint: &Endpoint) {
    let named = parts.uri.authority().is_some() || !parts.headers.contains_key(header::HOST);
    if named {
        if let Some(host) = authority(parts, endpoint).as_ref().and_then(host_value) {
            parts.headers.insert(header::HOST, host);
        }
    }
    if parts.uri.authority().is_some() || parts.uri.scheme().is_some() {
        parts.uri = parts.uri.path_and_query().cloned().map_or_else(Uri::default, Uri::from);
    }
}

/// The `Host` value for an authority: no userinfo, and no port when it is HTTP's default.
fn host_value(a: &Authority) -> Option<HeaderValue> {
    let host = if a.port_u16() == Some(80) {
        a.host()
    } else {
        a.as_str().rsplit_once('@').map_or(a.as_str(), |(_, h)| h)
    };
    HeaderValue::from_str(host).ok()
}

#[cfg(test)]
mod tests {
    use std::{sync::Arc, time::Duration};

    use http::Request;

    use super::*;
    use crate::upstream::{ConnLimit, EndpointConn};

    fn endpoint() -> Endpoint {
        let addr = "127.0.0.1:8080".parse().unwrap();
        let conn = EndpointConn::plain(addr, Duration::from_secs(1), ConnLimit::new(1));
        Endpoint { addr, weight: 1, conn: Arc::new(conn), stats: Arc::default() }
    }

    /// The request line's target and `Host`, as sent over HTTP/1.1.
    fn http1(req: Request<()>) -> (String, String) {
        let mut parts = req.into_parts().0;
        http1_target(&mut parts, &endpoint());
        let host = parts.headers.get(header::HOST).map(|h| h.to_str().unwrap().to_owned());
        (parts.uri.to_string(), host.unwrap_or_default())
    }

    fn pair(target: &str, host: &str) -> (String, String) {
        (target.to_owned(), host.to_owned())
    }

    #[test]
    fn http1_sends_the_path_and_names_the_host_in_host() {
        // An h2 client's request: the authority is in the URI only.
        assert_eq!(
            http1(Request::get("http://example.com:80/a?b=c").body(()).unwrap()),
            pair("/a?b=c", "example.com")
        );
        assert_eq!(
            http1(Request::get("http://user@example.com:8443").body(()).unwrap()),
            pair("/", "example.com:8443")
        );
    }

    #[test]
    fn http1_names_the_host_routing_used_and_falls_back_to_the_endpoint() {
        // An h2 client's `:authority` wins over a Host field that says otherwise.
        let req = Request::get("http://routed/x").header(header::HOST, "other").body(()).unwrap();
        assert_eq!(http1(req), pair("/x", "routed"));
        let req = Request::get("/x").header(header::HOST, "mine").body(()).unwrap();
        assert_eq!(http1(req), pair("/x", "mine"));
        assert_eq!(http1(Request::get("/x").body(()).unwrap()), pair("/x", "127.0.0.1:8080"));
    }
}
