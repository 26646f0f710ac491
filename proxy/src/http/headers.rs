//! Header hygiene at the proxy's edges: hop-by-hop headers (RFC 9110 section 7.6.1), request IDs,
//! and headers that only the proxy may set.

use http::{HeaderMap, HeaderName, HeaderValue, header};

use crate::http1::fields;

/// Request ID header, added when the client sent none.
pub static REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
/// The verified client identity, set only by the inbound proxy.
pub static CLIENT_ID: HeaderName = HeaderName::from_static("x-pillion-client-id");
/// Set by an outbound proxy that upgraded an HTTP/1.1 request to HTTP/2 for a meshed hop, so
/// that the inbound proxy speaks HTTP/1.1 to its app again. Trusted only over mTLS.
pub static ORIG_PROTO: HeaderName = HeaderName::from_static("x-pillion-orig-proto");
/// Names the cause of a local reply.
pub static ERROR: HeaderName = HeaderName::from_static("x-pillion-error");
/// A gRPC call's status code.
pub static GRPC_STATUS: HeaderName = HeaderName::from_static("grpc-status");
/// A gRPC call's status message.
pub static GRPC_MESSAGE: HeaderName = HeaderName::from_static("grpc-message");

static KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
static PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");

/// What one pass over a message's headers found: enough to skip the lookups and removals that
/// most messages do not need, each of which would hash a name.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Survey {
    /// A hop-by-hop header is present (`Connection`, `Transfer-Encoding`, `Upgrade`, ...).
    pub hop_by_hop: bool,
    /// An `x-pillion-*` header is present (only the proxy may set those).
    pub ours: bool,
    /// The framing is ambiguous (see [`survey`]).
    pub ambiguous_framing: bool,
    /// The (first) content type is gRPC's ([`super::grpc::is_grpc_type`]).
    pub grpc: bool,
}

/// Surveys a message's headers in one pass. Its framing is ambiguous (RFC 9112 section 6) with
/// Content-Length together with Transfer-Encoding, Content-Length given more than once, or a
/// Transfer-Encoding other than a single final `chunked`: a proxy that forwards such a message
/// invites request smuggling, so it is refused however the parser resolved it.
pub fn survey(headers: &HeaderMap) -> Survey {
    let mut s = Survey::default();
    let (mut lengths, mut encodings, mut chunked, mut typed) = (0u32, 0u32, false, false);
    for (name, value) in headers {
        if name == header::CONTENT_TYPE {
            s.grpc |= !typed && super::grpc::is_grpc_type(value);
            typed = true;
        } else if name == header::CONTENT_LENGTH {
            lengths += 1;
        } else if name == header::TRANSFER_ENCODING {
            encodings += 1;
            // The same reading of the codings as the HTTP/1.1 decoder's (empty list items skipped).
            let mut codings = fields::tokens(value.as_bytes());
            chunked = codings.next().is_some_and(|c| c.eq_ignore_ascii_case(b"chunked"))
                && codings.next().is_none();
            s.hop_by_hop = true;
        } else if is_hop_by_hop(name) {
            s.hop_by_hop = true;
        } else if name.as_str().starts_with("x-pillion-") {
            s.ours = true;
        }
    }
    s.ambiguous_framing = match (lengths, encodings) {
        (0 | 1, 0) => false,
        (0, 1) => !chunked,
        _ => true,
    };
    s
}

fn is_hop_by_hop(n: &HeaderName) -> bool {
    n == header::CONNECTION
        || n == header::TRANSFER_ENCODING
        || n == header::UPGRADE
        || n == header::TE
        || n == KEEP_ALIVE
        || n == PROXY_CONNECTION
        || n == fields::HTTP2_SETTINGS
}

/// Fields `Connection` may not name away: where the request is for, and how long its content
/// is. A client that lists `Host` must not step around host-matched routes with it.
fn end_to_end(n: &HeaderName) -> bool {
    n == header::HOST || n == header::CONTENT_LENGTH
}

/// Removes hop-by-hop headers and any header that `Connection` names (but `Host` and
/// `Content-Length`, which it may not name). With `upgrade`, the
/// `Connection: upgrade` and `Upgrade` pair survives so that the upgrade can be forwarded.
/// `TE: trailers` is end-to-end in practice (gRPC needs it) and is kept. Callers with a
/// [`Survey`] skip it when there is nothing hop-by-hop.
pub fn strip_hop_by_hop(headers: &mut HeaderMap, upgrade: bool) {
    if headers.contains_key(header::CONNECTION) {
        let named: Vec<HeaderName> = headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|n| HeaderName::from_bytes(n.trim().as_bytes()).ok())
            .filter(|n| !(end_to_end(n) || upgrade && n == header::UPGRADE))
            .collect();
        for n in named {
            headers.remove(n);
        }
        if !upgrade {
            headers.remove(header::CONNECTION);
        }
    }
    headers.remove(&KEEP_ALIVE);
    headers.remove(&PROXY_CONNECTION);
    headers.remove(&fields::HTTP2_SETTINGS);
    headers.remove(header::TRANSFER_ENCODING);
    if !upgrade {
        headers.remove(header::UPGRADE);
    }
    let te_trailers = headers.get(header::TE).is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"trailers"));
    if !te_trailers {
        headers.remove(header::TE);
    }
}

/// Adds `x-request-id` when missing and returns it.
pub fn ensure_request_id(headers: &mut HeaderMap) -> &HeaderValue {
    // One lookup whether the client sent one or not.
    headers.entry(&REQUEST_ID).or_insert_with(super::request_id::new)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> HeaderMap {
        pairs
            .iter()
            .map(|(n, v)| (HeaderName::from_bytes(n.as_bytes()).unwrap(), v.parse().unwrap()))
            .collect()
    }

    #[test]
    fn strips_standard_and_named_hop_by_hop_headers() {
        let mut h = map(&[
            ("connection", "close, x-secret"),
            ("x-secret", "1"),
            ("keep-alive", "5"),
            ("transfer-encoding", "chunked"),
            ("te", "gzip"),
            ("upgrade", "websocket"),
            ("x-app", "kept"),
        ]);
        strip_hop_by_hop(&mut h, false);
        assert_eq!(h.len(), 1);
        assert_eq!(h["x-app"], "kept");
    }

    #[test]
    fn connection_cannot_name_host_or_content_length_away() {
        let mut h = map(&[
            ("connection", "Host, content-length, HTTP2-Settings, upgrade"),
            ("host", "a"),
            ("content-length", "0"),
            ("http2-settings", "AAMAAABkAAQAAP__"),
            ("upgrade", "h2c"),
        ]);
        strip_hop_by_hop(&mut h, false);
        assert_eq!(
            (h.len(), h["host"].as_bytes(), h["content-length"].as_bytes()),
            (2, &b"a"[..], &b"0"[..])
        );
    }

    #[test]
    fn keeps_te_trailers_and_upgrade_pairs() {
        let mut h = map(&[("te", "trailers"), ("connection", "Upgrade"), ("upgrade", "websocket")]);
        assert!(crate::http1::fields::is_upgrade(&h));
        strip_hop_by_hop(&mut h, true);
        assert_eq!(h["te"], "trailers");
        assert_eq!(h["upgrade"], "websocket");
        assert_eq!(h["connection"], "Upgrade");
    }

    fn ambiguous_framing(h: &HeaderMap) -> bool {
        survey(h).ambiguous_framing
    }

    #[test]
    fn the_survey_spots_hop_by_hop_and_our_headers() {
        let plain = survey(&map(&[("host", "a"), ("content-length", "3"), ("x-app", "1")]));
        assert_eq!(plain, Survey::default());
        let s = survey(&map(&[("keep-alive", "5"), ("x-pillion-orig-proto", "HTTP/1.1")]));
        assert!(s.hop_by_hop && s.ours && !s.ambiguous_framing);
        assert!(survey(&map(&[("transfer-encoding", "chunked")])).hop_by_hop);
        assert!(survey(&map(&[("content-type", "application/grpc"), ("content-type", "text/plain")])).grpc);
        assert!(!survey(&map(&[("content-type", "text/plain"), ("content-type", "application/grpc")])).grpc);
    }

    #[test]
    fn ambiguous_framing_is_spotted() {
        assert!(!ambiguous_framing(&map(&[("content-length", "4")])));
        assert!(!ambiguous_framing(&map(&[("transfer-encoding", "chunked")])));
        assert!(!ambiguous_framing(&map(&[])));
        assert!(ambiguous_framing(&map(&[("content-length", "4"), ("transfer-encoding", "chunked")])));
        assert!(ambiguous_framing(&map(&[("content-length", "4"), ("content-length", "4")])));
        assert!(ambiguous_framing(&map(&[("transfer-encoding", "gzip, chunked")])));
        assert!(ambiguous_framing(&map(&[
            ("transfer-encoding", "chunked"),
            ("transfer-encoding", "chunked")
        ])));
    }

    #[test]
    fn request_ids_are_kept_or_made() {
        let mut h = map(&[("x-request-id", "abc")]);
        assert_eq!(ensure_request_id(&mut h), "abc");
        let mut h = HeaderMap::new();
        let id = ensure_request_id(&mut h).clone();
        let s = id.to_str().unwrap();
        assert_eq!(s.len(), 36);
        assert_eq!(&s[14..15], "4");
        assert!(matches!(&s[19..20], "8" | "9" | "a" | "b"), "{s}");
        assert_eq!(s.matches('-').count(), 4);
        assert_eq!((&s[8..9], &s[13..14], &s[18..19], &s[23..24]), ("-", "-", "-", "-"));
        assert_ne!(ensure_request_id(&mut HeaderMap::new()), &id);
    }
}
