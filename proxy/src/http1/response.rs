//! Writing a response head to a client, and choosing how its body is framed (RFC 9112 section
//! 6): `content-length` when the body's size is known, chunked for an HTTP/1.1 client
//! otherwise, and the connection's end for an HTTP/1.0 one. The framing fields the response
//! came with are not copied, except where they describe a body that is not sent (HEAD, 304).

use http::{
    Method, StatusCode, Version,
    header::{CONNECTION, CONTENT_LENGTH, DATE, TRANSFER_ENCODING},
    response::Parts,
};

use super::{
    framing::Framing,
    wire::{format_u64, header},
};

/// What the response head depends on of the request it answers.
#[derive(Debug, Clone, Copy)]
pub struct Answering<'a> {
    /// The request's method (a HEAD response has no body).
    pub method: &'a Method,
    /// The client's HTTP version.
    pub version: Version,
    /// The connection may carry another request after this response.
    pub keep_alive: bool,
}

/// Appends the status line and fields of `parts` to `out`. `body_len` is the body's exact size
/// when known; `date` is added unless the response has one. Returns the body's framing (`None`:
/// the response has no body on the wire) and whether the connection stays open after it. A 101
/// keeps its `connection` field: the connection is the upgraded protocol's from then on.
pub fn head(
    parts: &Parts,
    body_len: Option<u64>,
    req: Answering<'_>,
    date: &[u8],
    out: &mut Vec<u8>,
) -> (Option<Framing>, bool) {
    let status = parts.status;
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(status.canonical_reason().unwrap_or("").as_bytes());
    out.extend_from_slice(b"\r\n");
    // HEAD and 304 keep the fields that describe the body a GET would have had; 1xx and 204
    // must not have framing fields at all.
    let bodiless = *req.method == Method::HEAD || status == StatusCode::NOT_MODIFIED;
    let no_framing = status.is_informational() || status == StatusCode::NO_CONTENT;
    let switching = status == StatusCode::SWITCHING_PROTOCOLS;
    for (name, value) in &parts.headers {
        let framing_field = name == CONTENT_LENGTH || name == TRANSFER_ENCODING;
        if (name == CONNECTION && !switching) || (framing_field && (!bodiless || no_framing)) {
            continue;
        }
        header(out, name.as_str(), value.as_bytes());
    }
    if !parts.headers.contains_key(DATE) {
        header(out, "date", date);
    }
    let mut keep_alive = req.keep_alive;
    let framing = if bodiless || no_framing {
        None
    } else if let Some(n) = body_len {
        header(out, "content-length", format_u64(n, &mut [0; 20]));
        Some(Framing::Length(n))
    } else if req.version == Version::HTTP_11 {
        header(out, "transfer-encoding", b"chunked");
        Some(Framing::Chunked)
    } else {
        keep_alive = false;
        Some(Framing::Close)
    };
    match (keep_alive, req.version) {
        _ if switching => keep_alive = false,
        (false, _) => header(out, "connection", b"close"),
        (true, Version::HTTP_10) => header(out, "connection", b"keep-alive"),
        (true, _) => {}
    }
    out.extend_from_slice(b"\r\n");
    (framing, keep_alive)
}

#[cfg(test)]
mod tests {
    use http::Response;

    use super::*;

    const DATE_VALUE: &[u8] = b"Thu, 26 Nov 2026 12:00:00 GMT";

    fn encode(
        resp: Response<()>,
        method: Method,
        version: Version,
        body_len: Option<u64>,
    ) -> (String, Option<Framing>, bool) {
        let parts = resp.into_parts().0;
        let req = Answering { method: &method, version, keep_alive: true };
        let mut out = Vec::new();
        let (framing, keep) = head(&parts, body_len, req, DATE_VALUE, &mut out);
        (String::from_utf8(out).unwrap(), framing, keep)
    }

    #[test]
    fn a_known_length_replaces_the_fields_the_upstream_framed_with() {
        let resp =
            Response::builder().header("transfer-encoding", "chunked").header("x-a", "1").body(()).unwrap();
        let (h, f, keep) = encode(resp, Method::GET, Version::HTTP_11, Some(5));
        assert_eq!(
            h,
            "HTTP/1.1 200 OK\r\nx-a: 1\r\ndate: Thu, 26 Nov 2026 12:00:00 GMT\r\ncontent-length: 5\r\n\r\n"
        );
        assert_eq!((f, keep), (Some(Framing::Length(5)), true));
    }

    #[test]
    fn unknown_lengths_are_chunked_for_http11_and_close_delimited_for_http10() {
        let resp = || Response::builder().header("date", "x").body(()).unwrap();
        let (h, f, keep) = encode(resp(), Method::GET, Version::HTTP_11, None);
        assert_eq!(h, "HTTP/1.1 200 OK\r\ndate: x\r\ntransfer-encoding: chunked\r\n\r\n");
        assert_eq!((f, keep), (Some(Framing::Chunked), true));
        let (h, f, keep) = encode(resp(), Method::GET, Version::HTTP_10, None);
        assert_eq!(h, "HTTP/1.1 200 OK\r\ndate: x\r\nconnection: close\r\n\r\n");
        assert_eq!((f, keep), (Some(Framing::Close), false));
        let (h, _, keep) = encode(resp(), Method::GET, Version::HTTP_10, Some(0));
        assert!(h.ends_with("content-length: 0\r\nconnection: keep-alive\r\n\r\n") && keep, "{h}");
    }

    #[test]
    fn head_and_304_keep_their_length_and_204_has_none() {
        let resp = |s: u16| Response::builder().status(s).header("content-length", "42").body(()).unwrap();
        let (h, f, _) = encode(resp(200), Method::HEAD, Version::HTTP_11, Some(0));
        assert!(h.contains("content-length: 42\r\n") && f.is_none(), "{h}");
        let (h, _, _) = encode(resp(304), Method::GET, Version::HTTP_11, Some(0));
        assert!(h.starts_with("HTTP/1.1 304 Not Modified\r\n") && h.contains("content-length: 42"), "{h}");
        let (h, f, _) = encode(resp(204), Method::GET, Version::HTTP_11, Some(0));
        assert!(!h.contains("content-length") && f.is_none(), "{h}");
        let up = Response::builder().status(101).header("connection", "upgrade").body(()).unwrap();
        let (h, f, keep) = encode(up, Method::GET, Version::HTTP_11, None);
        assert!(h.contains("connection: upgrade\r\n") && !h.contains("close"), "{h}");
        assert!(f.is_none() && !keep);
    }
}
