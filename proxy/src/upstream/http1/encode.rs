//! Writing a request head, and choosing how its body is framed: `content-length` when the body's
//! size is known, chunked otherwise. The framing headers the request came with are not copied:
//! they described the client's hop, and the body we write is what decides this one.

use http::{
    HeaderMap, HeaderValue, Method,
    header::{CONTENT_LENGTH, TRANSFER_ENCODING},
    request::Parts,
};
use http_body::Body as _;

use crate::h1::fields;
use crate::http::body::Body;

/// How the request body goes on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Framing {
    /// Exactly this many bytes still to come (zero: no body).
    Length(u64),
    /// Chunked, ended by a zero-size chunk and an optional trailer section.
    Chunked,
}

/// Appends the request line and headers of `parts` to `out`, with the framing header for
/// `body`; returns that framing.
pub(super) fn head(parts: &Parts, body: &Body, out: &mut Vec<u8>) -> Framing {
    out.extend_from_slice(parts.method.as_str().as_bytes());
    out.push(b' ');
    let target = if parts.method == Method::CONNECT {
        parts.uri.authority().map(|a| a.as_str())
    } else {
        parts.uri.path_and_query().map(|p| p.as_str())
    };
    out.extend_from_slice(target.unwrap_or("/").as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    let mut had_length = false;
    for (name, value) in &parts.headers {
        if name == CONTENT_LENGTH {
            had_length = true;
        } else if name != TRANSFER_ENCODING {
            header(out, name.as_str(), value.as_bytes());
        }
    }
    let framing = match body.size_hint().exact() {
        Some(n) => {
            // An empty body needs no header, unless the client sent one or the method's
            // requests normally carry one (an empty POST without it reads as "length unknown").
            if n > 0 || had_length || expects_body(&parts.method) {
                header(out, "content-length", format_u64(n, &mut [0; 20]));
            }
            Framing::Length(n)
        }
        None => {
            header(out, "transfer-encoding", &chunked_codings(&parts.headers));
            Framing::Chunked
        }
    };
    out.extend_from_slice(b"\r\n");
    framing
}

/// The request's own transfer codings with `chunked` last (added if the client had none).
fn chunked_codings(headers: &HeaderMap) -> Vec<u8> {
    let mut codings: Vec<u8> = Vec::new();
    for v in headers.get_all(TRANSFER_ENCODING).iter().map(HeaderValue::as_bytes) {
        for c in fields::tokens(v) {
            if !c.eq_ignore_ascii_case(b"chunked") {
                codings.extend_from_slice(c);
                codings.extend_from_slice(b", ");
            }
        }
    }
    codings.extend_from_slice(b"chunked");
    codings
}

fn expects_body(m: &Method) -> bool {
    matches!(*m, Method::POST | Method::PUT | Method::PATCH)
}

fn header(out: &mut Vec<u8>, name: &str, value: &[u8]) {
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// Appends a chunk's size line (hex) to `out`.
pub(super) fn chunk_size(out: &mut Vec<u8>, n: usize) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut digits = [0u8; 16];
    let mut i = digits.len();
    let mut n = n;
    loop {
        i -= 1;
        digits[i] = HEX[n & 15];
        n >>= 4;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
    out.extend_from_slice(b"\r\n");
}

/// Appends the last chunk and a trailer section (`trailers` may be empty).
pub(super) fn last_chunk(out: &mut Vec<u8>, trailers: &HeaderMap) {
    out.extend_from_slice(b"0\r\n");
    for (name, value) in trailers {
        header(out, name.as_str(), value.as_bytes());
    }
    out.extend_from_slice(b"\r\n");
}

/// `n` in decimal, written into the end of `buf`.
fn format_u64(mut n: u64, buf: &mut [u8; 20]) -> &[u8] {
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            return &buf[i..];
        }
    }
}

#[cfg(test)]
mod tests {
    use http::Request;

    use super::*;

    fn encode(req: Request<Body>) -> (String, Framing) {
        let (parts, body) = req.into_parts();
        let mut out = Vec::new();
        let framing = head(&parts, &body, &mut out);
        (String::from_utf8(out).unwrap(), framing)
    }

    #[test]
    fn a_get_has_no_framing_header_and_a_known_body_its_length() {
        let (h, f) = encode(Request::get("/a?b").header("host", "x").body(Body::Empty).unwrap());
        assert_eq!((h.as_str(), f), ("GET /a?b HTTP/1.1\r\nhost: x\r\n\r\n", Framing::Length(0)));
        let (h, f) =
            encode(Request::post("/").header("content-length", "99").body(Body::full("hi")).unwrap());
        assert_eq!((h.as_str(), f), ("POST / HTTP/1.1\r\ncontent-length: 2\r\n\r\n", Framing::Length(2)));
        let (h, _) = encode(Request::post("/").body(Body::Empty).unwrap());
        assert_eq!(h, "POST / HTTP/1.1\r\ncontent-length: 0\r\n\r\n");
        let (h, _) = encode(Request::connect("db:5432").body(Body::Empty).unwrap());
        assert!(h.starts_with("CONNECT db:5432 HTTP/1.1\r\n"), "{h}");
    }

    #[test]
    fn chunk_sizes_are_hex_and_the_last_chunk_carries_trailers() {
        let mut out = Vec::new();
        chunk_size(&mut out, 0x1a2f);
        chunk_size(&mut out, 1);
        let mut t = HeaderMap::new();
        t.insert("grpc-status", HeaderValue::from_static("0"));
        last_chunk(&mut out, &t);
        assert_eq!(out, b"1a2f\r\n1\r\n0\r\ngrpc-status: 0\r\n\r\n");
        assert_eq!(format_u64(1_234_567, &mut [0; 20]), b"1234567");
        assert_eq!(format_u64(0, &mut [0; 20]), b"0");
    }

    #[test]
    fn unknown_length_is_chunked_keeping_other_codings() {
        let mut t = HeaderMap::new();
        t.append(TRANSFER_ENCODING, HeaderValue::from_static("gzip, chunked"));
        assert_eq!(chunked_codings(&t), b"gzip, chunked");
        assert_eq!(chunked_codings(&HeaderMap::new()), b"chunked");
    }
}
