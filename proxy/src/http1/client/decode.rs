//! Reading a response head out of the connection's buffer, and deciding from it how the body
//! is framed (RFC 9112 §6.3) and whether the connection can carry another request.
//!
//! Header values are slices of the one buffer the head was read into, not copies. Anything that
//! would let two parsers disagree on where the body ends (both `content-length` and
//! `transfer-encoding`, lengths that differ) is an error: the response never reaches the client
//! and the connection is closed.

use std::mem::MaybeUninit;

use bytes::BytesMut;
use http::{HeaderValue, Method, Response, StatusCode, Version, response::Parts};

use super::Error;
use crate::http1::{
    fields::{Facts, Spans, header_name},
    framing::Framing,
};

/// The largest response head (status line and headers) accepted.
pub const MAX_HEAD: usize = 64 * 1024;
/// The most headers a response head may have.
const MAX_HEADERS: usize = 100;

/// A parsed response head.
#[derive(Debug)]
pub struct Head {
    /// Status, version and fields.
    pub parts: Parts,
    /// How the body that follows is delimited.
    pub framing: Framing,
    /// The upstream lets the connection carry another request after this one.
    pub keep_alive: bool,
}

/// Parses a response head from the front of `buf`, removing it; `None` until a whole head is
/// buffered.
pub fn head(buf: &mut BytesMut, method: &Method) -> Result<Option<Head>, Error> {
    // The common case while waiting for a response: nothing has come yet.
    if buf.is_empty() {
        return Ok(None);
    }
    // Where each header's name and value sit in `buf`: the values are sliced out of it after
    // parsing, once the borrow httparse holds has ended.
    let mut spans = Spans::default();
    let (len, code, minor) = {
        // Uninitialised: the parser writes only the headers there are (no 3 KB memset per head).
        let mut headers = [const { MaybeUninit::uninit() }; MAX_HEADERS];
        let mut resp = httparse::Response::new(&mut []);
        let len = match httparse::ParserConfig::default().parse_response_with_uninit_headers(
            &mut resp,
            buf,
            &mut headers,
        ) {
            Ok(httparse::Status::Complete(len)) => len,
            Ok(httparse::Status::Partial) if buf.len() >= MAX_HEAD => return Err(Error::HeadTooLarge),
            Ok(httparse::Status::Partial) => return Ok(None),
            Err(e) => return Err(Error::Parse(e)),
        };
        spans.fill(buf, resp.headers);
        (len, resp.code.unwrap_or(0), resp.version.unwrap_or(1))
    };
    let raw = buf.split_to(len).freeze();
    let status = StatusCode::from_u16(code).map_err(|_| Error::Status(code))?;
    let version = if minor == 0 { Version::HTTP_10 } else { Version::HTTP_11 };

    let mut headers = crate::http1::maps::take(spans.as_slice().len());
    let mut facts = Facts::default();
    for span in spans.as_slice() {
        let name = header_name(span.name(&raw)).ok_or(Error::HeaderName)?;
        let value = HeaderValue::from_maybe_shared(span.value(&raw)).map_err(|_| Error::HeaderValue)?;
        facts.note(&name, value.as_bytes()).map_err(|_| Error::ContentLength)?;
        headers.append(name, value);
    }
    if facts.te && facts.length.is_some() {
        return Err(Error::AmbiguousFraming);
    }
    let framing = if *method == Method::HEAD
        || status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED
    {
        // No body, whatever the fields say.
        Framing::Length(0)
    } else if facts.te {
        if facts.chunked() { Framing::Chunked } else { Framing::Close }
    } else {
        facts.length.map_or(Framing::Close, Framing::Length)
    };
    let keep_alive = !facts.close
        && (version == Version::HTTP_11 || facts.keep_alive)
        && framing != Framing::Close
        && status != StatusCode::SWITCHING_PROTOCOLS
        // After a 2xx to CONNECT the connection is a tunnel.
        && !(*method == Method::CONNECT && status.is_success());

    let mut parts = Response::new(()).into_parts().0;
    parts.status = status;
    parts.version = version;
    parts.headers = headers;
    Ok(Some(Head { parts, framing, keep_alive }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(raw: &str, method: Method) -> Result<Option<Head>, Error> {
        head(&mut BytesMut::from(raw), &method)
    }

    fn framing(raw: &str) -> (Framing, bool) {
        let h = parse(raw, Method::GET).unwrap().unwrap();
        (h.framing, h.keep_alive)
    }

    #[test]
    fn the_head_is_removed_from_the_buffer_and_its_headers_kept_in_order() {
        let mut buf =
            BytesMut::from("HTTP/1.1 201 Created\r\nA: 1\r\nb: 2\r\na: 3\r\ncontent-length: 4\r\n\r\nbody");
        let h = head(&mut buf, &Method::GET).unwrap().unwrap();
        assert_eq!(&buf[..], b"body");
        assert_eq!(h.parts.status, 201);
        let a: Vec<_> = h.parts.headers.get_all("a").iter().collect();
        assert_eq!(h.parts.headers[http::header::CONTENT_LENGTH], "4");
        assert_eq!(a, ["1", "3"]);
        assert_eq!((h.framing, h.keep_alive), (Framing::Length(4), true));
        assert!(parse("HTTP/1.1 200 OK\r\ncontent-le", Method::GET).unwrap().is_none());
    }

    #[test]
    fn framing_follows_rfc_9112() {
        assert_eq!(
            framing("HTTP/1.1 200 OK\r\ntransfer-encoding: gzip, chunked\r\n\r\n"),
            (Framing::Chunked, true)
        );
        assert_eq!(
            framing("HTTP/1.1 200 OK\r\ntransfer-encoding: chunked, gzip\r\n\r\n"),
            (Framing::Close, false)
        );
        assert_eq!(framing("HTTP/1.1 200 OK\r\n\r\n"), (Framing::Close, false));
        assert_eq!(
            framing("HTTP/1.1 204 No Content\r\ncontent-length: 9\r\n\r\n"),
            (Framing::Length(0), true)
        );
        assert_eq!(
            framing("HTTP/1.1 200 OK\r\ncontent-length: 3, 3\r\nconnection: close\r\n\r\n"),
            (Framing::Length(3), false)
        );
        assert_eq!(framing("HTTP/1.0 200 OK\r\ncontent-length: 3\r\n\r\n"), (Framing::Length(3), false));
        assert_eq!(
            framing("HTTP/1.0 200 OK\r\ncontent-length: 3\r\nconnection: keep-alive\r\n\r\n"),
            (Framing::Length(3), true)
        );
        let h = parse("HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n", Method::HEAD).unwrap().unwrap();
        assert_eq!(h.framing, Framing::Length(0));
    }

    #[test]
    fn ambiguous_or_malformed_heads_are_errors() {
        for raw in [
            "HTTP/1.1 200 OK\r\ncontent-length: 3\r\ntransfer-encoding: chunked\r\n\r\n",
            "HTTP/1.1 200 OK\r\ncontent-length: 3\r\ncontent-length: 4\r\n\r\n",
            "HTTP/1.1 200 OK\r\ncontent-length: -1\r\n\r\n",
            "HTTP/1.1 200 OK\r\ncontent-length: 99999999999999999999\r\n\r\n",
            "HTTP/1.1 200 OK\r\nbad header\r\n\r\n",
            "SSH-2.0-OpenSSH\r\n\r\n",
            "HTTP/1.1 099 Odd\r\n\r\n",
        ] {
            assert!(parse(raw, Method::GET).is_err(), "{raw}");
        }
        let huge = format!("HTTP/1.1 200 OK\r\nx: {}", "a".repeat(MAX_HEAD));
        assert!(matches!(parse(&huge, Method::GET), Err(Error::HeadTooLarge)));
    }
}
