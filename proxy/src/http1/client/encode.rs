//! Writing a request head, and choosing how its body is framed: `content-length` when the body's
//! size is known, chunked otherwise. The framing headers the request came with are not copied:
//! they described the client's hop, and the body we write is what decides this one.

use http::{
    Method,
    header::{CONTENT_LENGTH, TRANSFER_ENCODING},
    request::Parts,
};

use crate::http1::{
    framing::Framing,
    wire::{format_u64, header},
};

/// Appends the request line and headers of `parts` to `out`, with the framing header for
/// `body`; returns that framing (never `Close`: a request body cannot end with the connection).
pub fn head(parts: &Parts, body: &impl http_body::Body, out: &mut Vec<u8>) -> Framing {
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
            // The one coding a request reaching here can have: the server refuses others.
            header(out, "transfer-encoding", b"chunked");
            Framing::Chunked
        }
    };
    out.extend_from_slice(b"\r\n");
    framing
}

fn expects_body(m: &Method) -> bool {
    matches!(*m, Method::POST | Method::PUT | Method::PATCH)
}

#[cfg(test)]
mod tests {
    use http::Request;

    use http_body_util::{Empty, Full};

    use super::*;

    /// A request body that is empty or whole.
    type Body = http_body_util::Either<Empty<bytes::Bytes>, Full<bytes::Bytes>>;

    fn encode(req: Request<Body>) -> (String, Framing) {
        let (parts, body) = req.into_parts();
        let mut out = Vec::new();
        let framing = head(&parts, &body, &mut out);
        (String::from_utf8(out).unwrap(), framing)
    }

    #[test]
    fn a_get_has_no_framing_header_and_a_known_body_its_length() {
        let (h, f) = encode(Request::get("/a?b").header("host", "x").body(Body::Left(Empty::new())).unwrap());
        assert_eq!((h.as_str(), f), ("GET /a?b HTTP/1.1\r\nhost: x\r\n\r\n", Framing::Length(0)));
        let (h, f) = encode(
            Request::post("/").header("content-length", "99").body(Body::Right(Full::from("hi"))).unwrap(),
        );
        assert_eq!((h.as_str(), f), ("POST / HTTP/1.1\r\ncontent-length: 2\r\n\r\n", Framing::Length(2)));
        let (h, _) = encode(Request::post("/").body(Body::Left(Empty::new())).unwrap());
        assert_eq!(h, "POST / HTTP/1.1\r\ncontent-length: 0\r\n\r\n");
        let (h, _) = encode(Request::connect("db:5432").body(Body::Left(Empty::new())).unwrap());
        assert!(h.starts_with("CONNECT db:5432 HTTP/1.1\r\n"), "{h}");
    }

    #[test]
    fn unknown_length_is_chunked_and_the_clients_framing_is_not_copied() {
        let (parts, ()) = Request::post("/")
            .header(TRANSFER_ENCODING, "chunked")
            .header(CONTENT_LENGTH, "3")
            .body(())
            .unwrap()
            .into_parts();
        type Frame = Result<http_body::Frame<bytes::Bytes>, std::io::Error>;
        let streamed = http_body_util::StreamBody::new(futures_util::stream::empty::<Frame>());
        let mut out = Vec::new();
        assert_eq!(head(&parts, &streamed, &mut out), Framing::Chunked);
        assert_eq!(String::from_utf8(out).unwrap(), "POST / HTTP/1.1\r\ntransfer-encoding: chunked\r\n\r\n");
    }
}
