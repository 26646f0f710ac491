//! Reading a client's request head out of the connection's buffer (RFC 9112 sections 2-3), and
//! deciding from it how the request body is framed (section 6.3) and whether the connection can
//! carry another request.
//!
//! Header values and the request target are slices of the one buffer the head was read into,
//! not copies. Anything that would let two parsers disagree on where the body ends, or on where
//! the request is for ([`authority`](super::authority)), is an error that answers 400 and closes
//! the connection: nothing of that request goes upstream.

use std::mem::MaybeUninit;

use bytes::BytesMut;
use http::{
    HeaderValue, Method, Request, Uri, Version,
    header::{EXPECT, HOST},
    request::Parts,
};

use super::{
    authority,
    fields::{Facts, Spans, bare_line_ending, header_name},
    framing::Framing,
};

/// The most header fields a head is parsed with; `Limits::max_headers` may only lower it.
const HEADER_SLOTS: usize = 256;

/// Fields the proxy may add to a request on its way upstream.
const ADDED_FIELDS: usize = 4;

/// What a listener allows in a request head.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Largest head (request line and fields) in bytes.
    pub max_head: usize,
    /// Most header fields.
    pub max_headers: usize,
    /// Longest request line (method, target, version) in bytes.
    pub max_request_line: usize,
}

/// A parsed request head.
#[derive(Debug)]
pub struct Head {
    /// Method, target, version and fields.
    pub parts: Parts,
    /// How the body that follows is delimited (never `Close`; none for CONNECT, whose next bytes
    /// would be tunnel payload).
    pub body: Framing,
    /// The client lets the connection carry another request after this one (never after a
    /// CONNECT: whatever follows it is not a request).
    pub keep_alive: bool,
    /// `Expect: 100-continue`: the client waits for a 100 before it sends the body.
    pub expect_continue: bool,
}

/// Why a request head was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Error {
    /// The head is larger than `Limits::max_head`.
    #[error("request head larger than {0} bytes")]
    TooLarge(usize),
    /// More fields than `Limits::max_headers`.
    #[error("more than {0} header fields")]
    TooManyHeaders(usize),
    /// Not HTTP/1.x syntax.
    #[error("malformed request head: {0}")]
    Parse(httparse::Error),
    /// The request target is not a URI.
    #[error("invalid request target")]
    Target,
    /// The target's form or the `Host` fields say different things about where it is for.
    #[error(transparent)]
    Authority(#[from] authority::Error),
    /// A field name is not a token.
    #[error("invalid header field name")]
    HeaderName,
    /// A field value has bytes a field value may not.
    #[error("invalid header field value")]
    HeaderValue,
    /// A `Content-Length` that is not one decimal number.
    #[error("Content-Length is not one decimal number")]
    ContentLength,
    /// A transfer coding other than chunked alone, or any in an HTTP/1.0 request.
    #[error("Transfer-Encoding is not chunked alone")]
    TransferEncoding,
    /// Both `Content-Length` and `Transfer-Encoding`.
    #[error("both Content-Length and Transfer-Encoding")]
    AmbiguousFraming,
    /// The request line is longer than `Limits::max_request_line`.
    #[error("request line longer than {0} bytes")]
    RequestLineTooLong(usize),
    /// A line ends in LF without CR, or a CR is not followed by LF.
    #[error("line ending other than CRLF")]
    BareLineEnding,
}

/// Parses a request head from the front of `buf`, removing it; `None` until a whole head is
/// buffered. Empty lines before the request line are skipped (RFC 9112 section 2.2): whole
/// CRLFs only, as a lone CR or LF there is a bare line ending like any other.
pub fn head(buf: &mut BytesMut, limits: Limits) -> Result<Option<Head>, Error> {
    let empty = buf.chunks_exact(2).take_while(|pair| *pair == b"\r\n").count();
    let _ = buf.split_to(empty * 2);
    let line = memchr::memchr(b'\n', buf).unwrap_or(buf.len());
    // The line's CR, if any, is not counted.
    if line > limits.max_request_line + 1 {
        return Err(Error::RequestLineTooLong(limits.max_request_line));
    }
    let slots = limits.max_headers.min(HEADER_SLOTS);
    // Where the target and each field sit in `buf`: sliced out once httparse's borrow ends.
    let mut spans = Spans::default();
    let (len, method, target, minor) = {
        // Uninitialised: the parser writes only the fields there are.
        let mut headers = [const { MaybeUninit::uninit() }; HEADER_SLOTS];
        let mut req = httparse::Request::new(&mut []);
        let parsed = httparse::ParserConfig::default().parse_request_with_uninit_headers(
            &mut req,
            buf,
            &mut headers[..slots],
        );
        let len = match parsed {
            Ok(httparse::Status::Complete(len)) if bare_line_ending(&buf[..len]) => {
                return Err(Error::BareLineEnding);
            }
            Ok(httparse::Status::Complete(len)) if len > limits.max_head => {
                return Err(Error::TooLarge(limits.max_head));
            }
            Ok(httparse::Status::Complete(len)) => len,
            _ if bare_line_ending(buf) => return Err(Error::BareLineEnding),
            Ok(httparse::Status::Partial) if buf.len() > limits.max_head => {
                return Err(Error::TooLarge(limits.max_head));
            }
            Ok(httparse::Status::Partial) => return Ok(None),
            Err(httparse::Error::TooManyHeaders) => return Err(Error::TooManyHeaders(slots)),
            Err(e) => return Err(Error::Parse(e)),
        };
        let path = req.path.unwrap_or_default();
        let target = (path.as_ptr() as usize - buf.as_ptr() as usize, path.len());
        let method =
            Method::from_bytes(req.method.unwrap_or_default().as_bytes()).map_err(|_| Error::Target)?;
        spans.fill(buf, req.headers);
        (len, method, target, req.version.unwrap_or(1))
    };
    let raw = buf.split_to(len).freeze();
    let target = raw.slice(target.0..target.0 + target.1);
    // A fragment is never part of a request target (RFC 9112 section 3.2); the URI parser would
    // drop it silently, so that we and the upstream read different targets.
    if memchr::memchr(b'#', &target).is_some() {
        return Err(Error::Target);
    }
    let uri = Uri::from_maybe_shared(target.clone()).map_err(|_| Error::Target)?;
    let version = if minor == 0 { Version::HTTP_10 } else { Version::HTTP_11 };
    authority::check_target(&method, &uri)?;
    let absolute_host = authority::absolute_host(&uri);
    let uri = authority::with_path(uri, &method, &target)?;

    // Room for the fields the proxy adds (request ID, client identity...) without regrowing.
    let mut headers = super::maps::take(spans.as_slice().len() + ADDED_FIELDS);
    let mut facts = Facts::default();
    let (mut hosts, mut hosts_valid, mut expect_continue) = (0u32, true, false);
    for span in spans.as_slice() {
        let name = header_name(span.name(&raw)).ok_or(Error::HeaderName)?;
        let value = HeaderValue::from_maybe_shared(span.value(&raw)).map_err(|_| Error::HeaderValue)?;
        facts.note(&name, value.as_bytes()).map_err(|_| Error::ContentLength)?;
        if name == HOST {
            hosts += 1;
            hosts_valid &= authority::valid(value.as_bytes());
        } else if name == EXPECT {
            expect_continue = value.as_bytes().eq_ignore_ascii_case(b"100-continue");
        }
        headers.append(name, value);
    }
    authority::check_host(version, hosts, hosts_valid)?;
    if let Some(host) = absolute_host {
        headers.insert(HOST, host);
    }
    let connect = method == Method::CONNECT;
    let body = match (facts.te, facts.length) {
        (true, Some(_)) => return Err(Error::AmbiguousFraming),
        _ if connect => Framing::Length(0),
        (true, None) if facts.chunked_alone() && version == Version::HTTP_11 => Framing::Chunked,
        (true, None) => return Err(Error::TransferEncoding),
        (false, n) => Framing::Length(n.unwrap_or(0)),
    };
    let keep_alive = !connect && !facts.close && (version == Version::HTTP_11 || facts.keep_alive);

    let mut parts = Request::new(()).into_parts().0;
    parts.method = method;
    parts.uri = uri;
    parts.version = version;
    parts.headers = headers;
    Ok(Some(Head {
        parts,
        body,
        keep_alive,
        expect_continue: expect_continue && version == Version::HTTP_11,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Limits = Limits { max_head: 1024, max_headers: 8, max_request_line: 512 };

    fn parse(raw: &str) -> Result<Option<Head>, Error> {
        head(&mut BytesMut::from(raw), LIMITS)
    }

    fn ok(raw: &str) -> Head {
        parse(raw).unwrap().unwrap()
    }

    #[test]
    fn the_head_is_removed_and_the_body_left_in_the_buffer() {
        let mut buf = BytesMut::from(
            "\r\nPOST /a?b=1 HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nX-A: 1\r\n\r\nbodyGET",
        );
        let h = head(&mut buf, LIMITS).unwrap().unwrap();
        assert_eq!(&buf[..], b"bodyGET");
        assert_eq!((h.parts.method, h.parts.uri.to_string()), (Method::POST, "/a?b=1".to_owned()));
        assert_eq!(h.parts.headers["x-a"], "1");
        assert_eq!((h.body, h.keep_alive, h.expect_continue), (Framing::Length(4), true, false));
        assert!(parse("GET / HTTP/1.1\r\nHost: x\r\n").unwrap().is_none());
    }

    #[test]
    fn every_target_form_parses_and_an_absolute_one_names_the_host() {
        let absolute = ok("GET http://a.example/p HTTP/1.1\r\nHost: other\r\n\r\n");
        assert_eq!(absolute.parts.uri.host(), Some("a.example"));
        assert_eq!(absolute.parts.headers.get_all(HOST).iter().collect::<Vec<_>>(), ["a.example"]);
        let connect =
            ok("CONNECT a.example:443 HTTP/1.1\r\nHost: a.example:443\r\nContent-Length: 2\r\n\r\n");
        assert_eq!(connect.parts.uri.authority().map(|a| a.as_str()), Some("a.example:443"));
        assert_eq!((connect.body, connect.keep_alive), (Framing::Length(0), false));
        assert_eq!(ok("OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n").parts.uri, "*");
        assert_eq!(ok("GET / HTTP/1.0\r\n\r\n").parts.headers.get(HOST), None);
    }

    #[test]
    fn framing_and_connection_follow_rfc_9112() {
        let chunked = ok("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n");
        assert_eq!(chunked.body, Framing::Chunked);
        assert_eq!(ok("GET / HTTP/1.1\r\nHost: x\r\n\r\n").body, Framing::Length(0));
        assert!(!ok("GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").keep_alive);
        assert!(!ok("GET / HTTP/1.0\r\n\r\n").keep_alive);
        assert!(ok("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n").keep_alive);
        let expect = ok("PUT / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nExpect: 100-continue\r\n\r\n");
        assert!(expect.expect_continue);
    }

    #[test]
    fn smuggling_shapes_and_bad_heads_are_refused() {
        for (raw, want) in [
            (
                "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
                Error::AmbiguousFraming,
            ),
            (
                "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, gzip\r\n\r\n",
                Error::TransferEncoding,
            ),
            (
                "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
                Error::TransferEncoding,
            ),
            ("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", Error::TransferEncoding),
            (
                "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n",
                Error::ContentLength,
            ),
            ("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: +3\r\n\r\n", Error::ContentLength),
            ("GET / HTTP/1.1\r\n\r\n", authority::Error::MissingHost.into()),
            ("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", authority::Error::RepeatedHost.into()),
            ("GET / HTTP/1.0\r\nHost: a\r\nHost: a\r\n\r\n", authority::Error::RepeatedHost.into()),
            ("GET / HTTP/1.1\r\nHost:\r\n\r\n", authority::Error::InvalidHost.into()),
            ("GET / HTTP/1.1\r\nHost: a b\r\n\r\n", authority::Error::InvalidHost.into()),
            ("GET / HTTP/1.1\r\nHost: a, b\r\n\r\n", authority::Error::InvalidHost.into()),
            ("GET a.example:80 HTTP/1.1\r\nHost: a\r\n\r\n", authority::Error::Form.into()),
            ("GET * HTTP/1.1\r\nHost: a\r\n\r\n", authority::Error::Form.into()),
            ("GET /a#b HTTP/1.1\r\nHost: a\r\n\r\n", Error::Target),
            ("GET http://a#/p HTTP/1.1\r\nHost: a\r\n\r\n", Error::Target),
            ("\rGET / HTTP/1.1\r\nHost: x\r\n\r\n", Error::BareLineEnding),
            ("\nGET / HTTP/1.1\r\nHost: x\r\n\r\n", Error::BareLineEnding),
            ("\r\n\nGET / HTTP/1.1\r\nHost: x\r\n\r\n", Error::BareLineEnding),
            ("GET /\x7f HTTP/1.1\r\nHost: x\r\n\r\n", Error::Parse(httparse::Error::Token)),
            ("GET / HTTP/1.1\nHost: x\r\n\r\n", Error::BareLineEnding),
            ("GET / HTTP/1.1\r\nHost: x\n\r\n", Error::BareLineEnding),
            ("GET / HTTP/1.1\r\nHost: x\rX: y\r\n\r\n", Error::BareLineEnding),
            ("GET / HTTP/1.1\r\nHost: x\r\nX: y\nZ", Error::BareLineEnding),
        ] {
            assert_eq!(parse(raw).unwrap_err(), want, "{raw:?}");
        }
        let many = format!("GET / HTTP/1.1\r\nHost: x\r\n{}\r\n", "a: 1\r\n".repeat(8));
        assert_eq!(parse(&many).unwrap_err(), Error::TooManyHeaders(8));
        let big = format!("GET / HTTP/1.1\r\nX: {}\r\n", "a".repeat(2000));
        assert_eq!(parse(&big).unwrap_err(), Error::TooLarge(1024));
        // A long request line is refused before its end arrives.
        let long = format!("GET /{}", "a".repeat(600));
        assert_eq!(parse(&long).unwrap_err(), Error::RequestLineTooLong(512));
        assert!(parse(&format!("GET /{} HTTP/1.1\r\nHost: x\r\n\r\n", "a".repeat(490))).is_ok());
    }
}
