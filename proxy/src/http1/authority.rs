//! Where a request is for (RFC 9112 sections 3.2 and 3.2.2): which request-target form each
//! method may use, what a valid `Host` is, and that an absolute-form target's authority, not the
//! client's `Host`, names the host. The head decoder applies these once, so routing, the
//! forwarded `Host` and the app all see the same authority.

use http::{
    HeaderMap, HeaderValue, Method, Uri, Version,
    header::HOST,
    uri::{PathAndQuery, Scheme},
};

/// Why a request's target or `Host` was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// An authority-form target on a method other than CONNECT, an asterisk on one other than
    /// OPTIONS, or a CONNECT without an authority-form target.
    #[error("request target form not allowed for the method")]
    Form,
    /// An absolute-form target that is not `http`/`https` with a valid host and no userinfo.
    #[error("absolute-form target without an http(s) scheme and a valid host")]
    Absolute,
    /// An HTTP/1.1 request without `Host`.
    #[error("HTTP/1.1 request without a Host field")]
    MissingHost,
    /// More than one `Host` field, in any version.
    #[error("more than one Host field")]
    RepeatedHost,
    /// A `Host` that is not a host name or address with an optional port (empty, a list, spaces).
    #[error("Host is not a host with an optional port")]
    InvalidHost,
}

/// Checks the target's form against the method (RFC 9112 section 3.2).
pub fn check_target(method: &Method, uri: &Uri) -> Result<(), Error> {
    let authority_form = uri.scheme().is_none() && uri.authority().is_some();
    let asterisk = uri.scheme().is_none() && uri.authority().is_none() && uri.path() == "*";
    if *method == Method::CONNECT || authority_form {
        return if *method == Method::CONNECT && authority_form { Ok(()) } else { Err(Error::Form) };
    }
    if asterisk && *method != Method::OPTIONS {
        return Err(Error::Form);
    }
    match (uri.scheme(), uri.authority()) {
        (None, _) => Ok(()),
        (Some(s), Some(a)) if (*s == Scheme::HTTP || *s == Scheme::HTTPS) && valid(a.as_str().as_bytes()) => {
            Ok(())
        }
        _ => Err(Error::Absolute),
    }
}

/// An absolute-form target whose path is empty (`http://a?q`) with the `/` that its origin form
/// must start with (RFC 9112 section 3.2.1), so both upstream versions send a valid path; for
/// OPTIONS with neither path nor query, `*` (section 3.2.4: the request is for the server).
/// `raw` is the target as sent (the URI parser writes `http://a` as `http://a/`). Call it once the
/// target's authority is taken for `Host` ([`absolute_host`]).
pub fn with_path(uri: Uri, method: &Method, raw: &[u8]) -> Result<Uri, Error> {
    let Some(authority) = uri.scheme().and(uri.authority()) else { return Ok(uri) };
    let after = raw.windows(3).position(|w| w == b"://").map_or(0, |i| i + 3) + authority.as_str().len();
    if *method == Method::OPTIONS && after == raw.len() {
        return Ok(Uri::from_static("*"));
    }
    let pq = uri.path_and_query().map_or("", PathAndQuery::as_str);
    if pq.starts_with('/') {
        return Ok(uri);
    }
    let path = PathAndQuery::try_from(format!("/{pq}")).map_err(|_| Error::Absolute)?;
    let mut parts = uri.into_parts();
    parts.path_and_query = Some(path);
    Uri::from_parts(parts).map_err(|_| Error::Absolute)
}

/// Checks the `Host` fields a head had: how many, and whether each was [`valid`].
pub fn check_host(version: Version, hosts: u32, all_valid: bool) -> Result<(), Error> {
    match hosts {
        0 if version == Version::HTTP_11 => Err(Error::MissingHost),
        0 | 1 if all_valid => Ok(()),
        0 | 1 => Err(Error::InvalidHost),
        _ => Err(Error::RepeatedHost),
    }
}

/// The same rules for an HTTP/2 request, whose head the HTTP/1.1 decoder never read: its
/// `:authority` (what routing and forwarding use) must be a valid host, and without one, its
/// `Host` fields are held to [`check_host`].
pub fn check_http2(uri: &Uri, headers: &HeaderMap) -> Result<(), Error> {
    if let Some(a) = uri.authority() {
        return if valid(a.as_str().as_bytes()) { Ok(()) } else { Err(Error::InvalidHost) };
    }
    let hosts = headers.get_all(HOST);
    let all_valid = hosts.iter().all(|h| valid(h.as_bytes()));
    check_host(Version::HTTP_2, hosts.iter().count() as u32, all_valid)
}

/// The `Host` to forward for an absolute-form target: its authority, which a proxy must send in
/// place of the client's (RFC 9112 section 3.2.2). `None` for the other forms.
pub fn absolute_host(uri: &Uri) -> Option<HeaderValue> {
    uri.scheme()?;
    HeaderValue::from_str(uri.authority()?.as_str()).ok()
}

/// Whether `value` is `host [":" port]`: a name of letters, digits, `-`, `.`, `_` and `~`, or a
/// bracketed IPv6 address (no zone), and a port that fits 16 bits (or none after the colon). Stricter than the URI grammar's
/// reg-name (no sub-delims such as `,`, no percent-encoding, no userinfo): those are how two
/// Host values get folded into one, and no DNS name needs them.
pub fn valid(value: &[u8]) -> bool {
    let (host, port) = match value.first() {
        Some(b'[') => match value.iter().position(|&b| b == b']') {
            Some(end) => value.split_at(end + 1),
            None => return false,
        },
        _ => value.split_at(value.iter().position(|&b| b == b':').unwrap_or(value.len())),
    };
    // An empty port is the URI grammar's `*DIGIT`, and means the default.
    let port_ok = match port {
        [] | [b':'] => true,
        [b':', digits @ ..] => {
            digits.iter().all(u8::is_ascii_digit)
                && std::str::from_utf8(digits).is_ok_and(|d| d.parse::<u16>().is_ok())
        }
        _ => false,
    };
    let host_ok = match host {
        [b'[', inner @ .., b']'] => {
            std::str::from_utf8(inner).is_ok_and(|a| a.parse::<std::net::Ipv6Addr>().is_ok())
        }
        _ => {
            !host.is_empty()
                && host.iter().all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'))
        }
    };
    port_ok && host_ok
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(method: Method, t: &str) -> Result<(), Error> {
        check_target(&method, &t.parse().unwrap())
    }

    #[test]
    fn each_method_gets_only_its_target_forms() {
        assert_eq!(target(Method::GET, "/a?b"), Ok(()));
        assert_eq!(target(Method::GET, "http://a.example/p"), Ok(()));
        assert_eq!(target(Method::GET, "HTTPS://a.example:8443"), Ok(()));
        assert_eq!(target(Method::OPTIONS, "*"), Ok(()));
        assert_eq!(target(Method::CONNECT, "a.example:443"), Ok(()));
        assert_eq!(target(Method::GET, "a.example:443"), Err(Error::Form));
        assert_eq!(target(Method::GET, "*"), Err(Error::Form));
        assert_eq!(target(Method::CONNECT, "/"), Err(Error::Form));
        assert_eq!(target(Method::CONNECT, "http://a.example/"), Err(Error::Form));
        assert_eq!(target(Method::GET, "ftp://a.example/f"), Err(Error::Absolute));
        assert_eq!(target(Method::GET, "http://user@a.example/"), Err(Error::Absolute));
        assert_eq!(target(Method::GET, "http://a,b/"), Err(Error::Absolute));
    }

    #[test]
    fn a_host_is_a_name_or_address_and_a_port() {
        for ok in [
            "a.example",
            "a.example:8080",
            "10.0.0.1:80",
            "[::1]",
            "[::1]:443",
            "x_y-z~1",
            "a.",
            "a:",
            "a:0080",
        ] {
            assert!(valid(ok.as_bytes()), "{ok}");
        }
        for bad in [
            "",
            " a",
            "a b",
            "a,b",
            "a:x",
            "a:65536",
            "a:1:2",
            "[::1",
            "[]",
            "[1]",
            "[fe80::1%25e]",
            "u@a",
            "a/b",
            "%61",
            ":80",
        ] {
            assert!(!valid(bad.as_bytes()), "{bad:?}");
        }
    }

    #[test]
    fn one_valid_host_is_needed_on_http11_and_at_most_one_on_http10() {
        assert_eq!(check_host(Version::HTTP_11, 1, true), Ok(()));
        assert_eq!(check_host(Version::HTTP_10, 0, true), Ok(()));
        assert_eq!(check_host(Version::HTTP_11, 0, true), Err(Error::MissingHost));
        assert_eq!(check_host(Version::HTTP_10, 2, true), Err(Error::RepeatedHost));
        assert_eq!(check_host(Version::HTTP_10, 1, false), Err(Error::InvalidHost));
    }

    #[test]
    fn an_absolute_target_gets_a_path() {
        let with = |t: &str, m: &Method| with_path(t.parse().unwrap(), m, t.as_bytes()).unwrap();
        let path = |t: &str| with(t, &Method::GET).path_and_query().map(|p| p.to_string());
        assert_eq!(path("http://a.example?q").as_deref(), Some("/?q"));
        assert_eq!(path("http://a.example").as_deref(), Some("/"));
        assert_eq!(path("http://a.example/p?q").as_deref(), Some("/p?q"));
        assert_eq!(path("/p").as_deref(), Some("/p"));
        assert_eq!(with("http://a.example", &Method::OPTIONS), "*");
        assert_eq!(with("http://a.example/", &Method::OPTIONS).path(), "/");
        assert_eq!(
            with("http://a.example?q", &Method::OPTIONS).path_and_query().map(|p| p.as_str()),
            Some("/?q")
        );
    }

    #[test]
    fn an_http2_request_is_held_to_the_same_host_rules() {
        let two: HeaderMap = [(HOST, HeaderValue::from_static("a")), (HOST, HeaderValue::from_static("b"))]
            .into_iter()
            .collect();
        let origin: Uri = "/p".parse().unwrap();
        assert_eq!(check_http2(&origin, &two), Err(Error::RepeatedHost));
        assert_eq!(check_http2(&origin, &HeaderMap::new()), Ok(()));
        assert_eq!(check_http2(&"http://a.example/p".parse().unwrap(), &two), Ok(()));
        assert_eq!(
            check_http2(&"http://u@a.example/p".parse().unwrap(), &HeaderMap::new()),
            Err(Error::InvalidHost)
        );
    }

    #[test]
    fn an_absolute_target_names_the_host() {
        assert_eq!(absolute_host(&"http://a.example:81/x".parse().unwrap()).unwrap(), "a.example:81");
        assert_eq!(absolute_host(&"/x".parse().unwrap()), None);
    }
}
