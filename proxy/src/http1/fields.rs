//! Field-level pieces of HTTP/1.1 both directions parse alike: where the fields sit in the
//! buffer, header names (the common ones matched first, custom ones kept once seen),
//! comma-separated tokens, `Content-Length` values that must all agree, which upgrades are
//! relayed, and which fields a trailer section may carry.

use std::{
    cell::RefCell,
    sync::atomic::{AtomicUsize, Ordering::Relaxed},
};

use http::{
    HeaderMap, HeaderName,
    header::{
        self, CONNECTION, CONTENT_LENGTH, CONTENT_TYPE, DATE, HOST, SERVER, TRANSFER_ENCODING, USER_AGENT,
    },
};
use smallvec::SmallVec;

/// Fields kept on the stack; a head with more spills to the heap.
const INLINE_FIELDS: usize = 32;

/// One field of a parsed head: its name and value as offsets into the head's buffer.
#[derive(Debug, Clone, Copy)]
pub struct Span {
    name: (u32, u32),
    value: (u32, u32),
}

impl Span {
    /// The name's bytes in `raw`, the buffer the head was parsed from.
    pub fn name<'a>(&self, raw: &'a [u8]) -> &'a [u8] {
        &raw[self.name.0 as usize..(self.name.0 + self.name.1) as usize]
    }

    /// The value, sliced out of `raw` without a copy.
    pub fn value(&self, raw: &bytes::Bytes) -> bytes::Bytes {
        raw.slice(self.value.0 as usize..(self.value.0 + self.value.1) as usize)
    }
}

/// Where each field of a parsed head sits in its buffer, so that values can be sliced out once
/// the parser's borrow of the buffer ends. The usual few stay on the stack, in room that is not
/// zeroed first: zeroing room for every field a head may have cost more than parsing them.
#[derive(Debug, Default)]
pub struct Spans(SmallVec<[Span; INLINE_FIELDS]>);

impl Spans {
    /// Notes where `fields`, parsed from `buf`, sit. Filled in place: returned, the spans
    /// were copied on the way out, twice a request.
    pub fn fill(&mut self, buf: &[u8], fields: &[httparse::Header<'_>]) {
        let base = buf.as_ptr() as usize;
        let at = |s: &[u8]| ((s.as_ptr() as usize - base) as u32, s.len() as u32);
        let span = |h: &httparse::Header<'_>| Span { name: at(h.name.as_bytes()), value: at(h.value) };
        self.0.clear();
        self.0.extend(fields.iter().map(span));
    }

    /// The spans, in the order of the fields.
    pub fn as_slice(&self) -> &[Span] {
        &self.0
    }
}

/// Whether `bytes` has a CR not followed by LF, or an LF without its CR. RFC 9112 lets a
/// recipient accept a bare LF; we do not, as a parser behind us that reads it differently is how
/// requests get smuggled. A CR at the very end may still get its LF.
///
/// Put another way: a byte is a CR exactly when the next one is an LF, and the first is no LF.
/// Checked for every pair without an early exit so that the loop vectorizes: a search stopping
/// at each CR and LF cost ~500 instructions on a three-line request head.
pub fn bare_line_ending(bytes: &[u8]) -> bool {
    let mut bare = bytes.first() == Some(&b'\n');
    for (&b, &next) in bytes.iter().zip(bytes.get(1..).unwrap_or_default()) {
        bare |= (b == b'\r') != (next == b'\n');
    }
    bare
}

/// A header name; `None` if it is not a valid token. The names nearly every message carries are
/// matched first: the general parser lowercases into a scratch buffer and searches all the
/// standard names, several times the cost.
pub fn header_name(raw: &[u8]) -> Option<HeaderName> {
    Some(match raw {
        b"content-length" | b"Content-Length" => CONTENT_LENGTH,
        b"content-type" | b"Content-Type" => CONTENT_TYPE,
        b"date" | b"Date" => DATE,
        b"server" | b"Server" => SERVER,
        b"host" | b"Host" => HOST,
        b"user-agent" | b"User-Agent" => USER_AGENT,
        b"connection" | b"Connection" => CONNECTION,
        b"transfer-encoding" | b"Transfer-Encoding" => TRANSFER_ENCODING,
        _ => return kept_name(raw),
    })
}

/// Custom names kept for the life of the process: the ones an application's messages carry
/// (`x-forwarded-for`, `traceparent`...) repeat from message to message. A kept name is static,
/// so handing it out and dropping it cost nothing; parsing one costs an allocation, a free, and
/// as much again to validate and lowercase it.
const KEPT_NAMES: usize = 64;
/// Bytes of names kept, process-wide: a peer that sends ever-new names cannot grow it further
/// (and names kept first stay: later ones are parsed per message, as without the list).
const KEPT_BYTES: usize = 4096;
/// The longest name kept.
const KEPT_NAME_LEN: usize = 64;
static KEPT_TOTAL: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    static KEPT: RefCell<Vec<HeaderName>> = const { RefCell::new(Vec::new()) };
}

/// A name the fast path does not match: a kept one if there is one, else parsed (and kept
/// while there is room).
fn kept_name(raw: &[u8]) -> Option<HeaderName> {
    KEPT.with_borrow_mut(|kept| {
        // The same bytes first (a sender keeps to one spelling), then the same but for case:
        // valid too, and the same name.
        let same = |n: &&HeaderName| n.as_str().as_bytes() == raw;
        let same_but_case = |n: &&HeaderName| n.as_str().as_bytes().eq_ignore_ascii_case(raw);
        if let Some(name) = kept.iter().find(same).or_else(|| kept.iter().find(same_but_case)) {
            return Some(name.clone());
        }
        let name = HeaderName::from_bytes(raw).ok()?;
        let len = name.as_str().len();
        let room = |total: usize| (total + len <= KEPT_BYTES).then_some(total + len);
        let keep = len <= KEPT_NAME_LEN && kept.len() < KEPT_NAMES;
        if keep && KEPT_TOTAL.fetch_update(Relaxed, Relaxed, room).is_ok() {
            // A parsed name is a valid lowercase name, which is all `from_static` asks.
            let name = HeaderName::from_static(Box::leak(name.as_str().into()));
            kept.push(name.clone());
            return Some(name);
        }
        Some(name)
    })
}

/// The comma-separated tokens of a header value, trimmed, empty ones skipped.
pub fn tokens(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value.split(|&b| b == b',').map(<[u8]>::trim_ascii).filter(|t| !t.is_empty())
}

/// A `Content-Length` that is not a decimal number, or that disagrees with another.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InvalidLength;

/// What a head's fields say about its body and its connection, noted as the fields are read.
#[derive(Debug, Default)]
pub struct Facts {
    /// The `content-length` (every one seen agrees).
    pub length: Option<u64>,
    /// A `transfer-encoding` field is present.
    pub te: bool,
    /// Chunked is the last coding of the last `transfer-encoding` field.
    last_chunked: bool,
    /// How many times chunked was named.
    chunked_count: u32,
    /// How many codings were named, chunked among them.
    codings: u32,
    /// `connection: close`.
    pub close: bool,
    /// `connection: keep-alive`.
    pub keep_alive: bool,
}

impl Facts {
    /// Notes one field.
    pub fn note(&mut self, name: &HeaderName, value: &[u8]) -> Result<(), InvalidLength> {
        if *name == CONTENT_LENGTH {
            self.add_length(value)?;
        } else if *name == TRANSFER_ENCODING {
            self.te = true;
            self.last_chunked = false;
            for t in tokens(value) {
                self.last_chunked = t.eq_ignore_ascii_case(b"chunked");
                self.chunked_count += u32::from(self.last_chunked);
                self.codings += 1;
            }
        } else if *name == CONNECTION {
            for t in tokens(value) {
                self.close |= t.eq_ignore_ascii_case(b"close");
                self.keep_alive |= t.eq_ignore_ascii_case(b"keep-alive");
            }
        }
        Ok(())
    }

    /// The body is chunked: chunked is the last coding, and the only chunked one (RFC 9112
    /// section 6.1: applied once, last).
    pub fn chunked(&self) -> bool {
        self.last_chunked && self.chunked_count == 1
    }

    /// Chunked is the only coding: what a request may have. No upstream is asked to decode
    /// codings for us, and nginx (501) and haproxy (422) refuse them too.
    pub fn chunked_alone(&self) -> bool {
        self.chunked() && self.codings == 1
    }

    /// Adds one `content-length` field value (itself possibly a list, `3, 3`).
    fn add_length(&mut self, value: &[u8]) -> Result<(), InvalidLength> {
        for t in value.split(|&b| b == b',').map(<[u8]>::trim_ascii) {
            let n = parse_decimal(t).ok_or(InvalidLength)?;
            if self.length.is_some_and(|m| m != n) {
                return Err(InvalidLength);
            }
            self.length = Some(n);
        }
        Ok(())
    }
}

/// Digits only (no sign, no space), at most 19 of them so that it fits.
fn parse_decimal(s: &[u8]) -> Option<u64> {
    if s.is_empty() || s.len() > 19 || !s.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(s.iter().fold(0, |n, d| n * 10 + u64::from(d - b'0')))
}

/// Whether an HTTP/1.1 request asks to switch to a protocol the proxy relays (e.g. WebSocket).
/// Never `h2c`: relayed, its HTTP/2 would reach the app unparsed, past every check the proxy
/// makes of HTTP/2, so such a request is served as though it had not asked.
pub fn is_upgrade(headers: &HeaderMap) -> bool {
    let names = |name, token: &'static [u8]| {
        headers.get_all(name).iter().any(move |v| tokens(v.as_bytes()).any(|t| t.eq_ignore_ascii_case(token)))
    };
    headers.contains_key(header::UPGRADE) && names(CONNECTION, b"upgrade") && !names(header::UPGRADE, b"h2c")
}

/// An h2c upgrade's settings (RFC 7540 section 3.2.1): hop-by-hop by definition, and that
/// upgrade is never relayed.
pub const HTTP2_SETTINGS: HeaderName = HeaderName::from_static("http2-settings");

/// Fields a trailer section may not carry (RFC 9110 section 6.5.1): they frame, route,
/// authenticate, or modify the request or the response, so they only mean something before the
/// content. Fields not named here are the application's to define, and pass.
static NOT_IN_TRAILERS: [HeaderName; 37] = [
    CONTENT_LENGTH,
    TRANSFER_ENCODING,
    header::TRAILER,
    header::TE,
    HOST,
    CONNECTION,
    header::UPGRADE,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    HTTP2_SETTINGS,
    CONTENT_TYPE,
    header::CONTENT_ENCODING,
    header::CONTENT_RANGE,
    header::RANGE,
    header::EXPECT,
    header::MAX_FORWARDS,
    header::AUTHORIZATION,
    header::PROXY_AUTHORIZATION,
    header::WWW_AUTHENTICATE,
    header::PROXY_AUTHENTICATE,
    header::COOKIE,
    header::SET_COOKIE,
    header::CACHE_CONTROL,
    header::PRAGMA,
    header::EXPIRES,
    header::AGE,
    header::DATE,
    header::LOCATION,
    header::RETRY_AFTER,
    header::VARY,
    header::IF_MATCH,
    header::IF_NONE_MATCH,
    header::IF_MODIFIED_SINCE,
    header::IF_UNMODIFIED_SINCE,
    header::IF_RANGE,
    HeaderName::from_static("authentication-info"),
    HeaderName::from_static("proxy-authentication-info"),
];

/// Whether a trailer field may be forwarded: not one of [`NOT_IN_TRAILERS`], nor one of the
/// proxy's own `x-pillion-*` (a trailer must not pass for a verified client identity).
pub fn allowed_in_trailers(name: &HeaderName) -> bool {
    !name.as_str().starts_with("x-pillion-") && !NOT_IN_TRAILERS.contains(name)
}

/// Drops from a trailer section the fields [`allowed_in_trailers`] refuses. The one rule for
/// trailers both ways, whichever codec read them.
pub fn keep_trailer_fields(trailers: &mut HeaderMap) {
    if trailers.keys().all(allowed_in_trailers) {
        return;
    }
    tracing::debug!("trailer fields not allowed in trailers dropped");
    let mut name = None;
    for (n, value) in std::mem::take(trailers) {
        name = n.or(name);
        if let Some(n) = name.as_ref().filter(|n| allowed_in_trailers(n)) {
            trailers.append(n.clone(), value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn common_names_match_in_either_case_and_others_parse() {
        assert_eq!(header_name(b"Content-Length"), Some(CONTENT_LENGTH));
        assert_eq!(header_name(b"CONTENT-LENGTH"), Some(CONTENT_LENGTH));
        let kept = header_name(b"x-backend").unwrap();
        assert_eq!(kept.as_str(), "x-backend");
        // Kept now: the same static name is handed out again, in any case it is spelled.
        let again = header_name(b"X-Backend").unwrap();
        assert_eq!(again.as_str(), "x-backend");
        assert_eq!(again.as_str().as_ptr(), kept.as_str().as_ptr());
        assert_eq!(header_name(b"x-backend2").unwrap(), "x-backend2");
        assert_eq!(header_name(b"x-backend "), None);
        assert_eq!(header_name(b"bad name"), None);
        for i in 0..KEPT_NAMES * 2 {
            assert_eq!(header_name(format!("x-{i}").as_bytes()).unwrap(), format!("x-{i}").as_str());
        }
    }

    #[test]
    fn lengths_must_be_digits_and_agree_and_chunked_must_be_last() {
        let mut f = Facts::default();
        assert_eq!(f.note(&CONTENT_LENGTH, b"3, 3"), Ok(()));
        assert_eq!(f.note(&CONTENT_LENGTH, b"3"), Ok(()));
        assert_eq!(f.length, Some(3));
        assert_eq!(f.note(&CONTENT_LENGTH, b"4"), Err(InvalidLength));
        for bad in [&b"-1"[..], b"+1", b"1 2", b"", b"99999999999999999999"] {
            assert_eq!(Facts::default().note(&CONTENT_LENGTH, bad), Err(InvalidLength), "{bad:?}");
        }
        assert_eq!(tokens(b" gzip ,, chunked ").collect::<Vec<_>>(), [&b"gzip"[..], b"chunked"]);
        f.note(&TRANSFER_ENCODING, b"chunked, gzip").unwrap();
        assert!(f.te && !f.chunked());
        let mut twice = Facts::default();
        twice.note(&TRANSFER_ENCODING, b"gzip, chunked").unwrap();
        assert!(twice.chunked());
        twice.note(&TRANSFER_ENCODING, b"chunked").unwrap();
        assert!(!twice.chunked());
        f.note(&CONNECTION, b"Keep-Alive, Upgrade").unwrap();
        assert!(f.keep_alive && !f.close);
        let mut alone = Facts::default();
        alone.note(&TRANSFER_ENCODING, b"Chunked").unwrap();
        assert!(alone.chunked_alone() && !twice.chunked_alone());
        let mut gzip = Facts::default();
        gzip.note(&TRANSFER_ENCODING, b"gzip, chunked").unwrap();
        assert!(gzip.chunked() && !gzip.chunked_alone());
    }

    fn map(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        pairs.iter().map(|&(n, v)| (HeaderName::from_static(n), http::HeaderValue::from_static(v))).collect()
    }

    #[test]
    fn upgrades_are_relayed_except_to_h2c() {
        assert!(is_upgrade(&map(&[("connection", "keep-alive, Upgrade"), ("upgrade", "websocket")])));
        assert!(!is_upgrade(&map(&[("upgrade", "websocket")])));
        assert!(!is_upgrade(&map(&[("connection", "upgrade, http2-settings"), ("upgrade", "h2c")])));
        assert!(!is_upgrade(&map(&[("connection", "upgrade"), ("upgrade", "websocket, H2C")])));
    }

    #[test]
    fn trailers_keep_only_fields_allowed_in_trailers() {
        let mut t = map(&[
            ("grpc-status", "0"),
            ("content-length", "5"),
            ("x-checksum", "a"),
            ("x-checksum", "b"),
            ("x-pillion-client-id", "spiffe://forged"),
            ("host", "elsewhere"),
        ]);
        keep_trailer_fields(&mut t);
        assert_eq!(t.len(), 3, "{t:?}");
        assert_eq!(t.get_all("x-checksum").iter().collect::<Vec<_>>(), ["a", "b"]);
        assert_eq!(t["grpc-status"], "0");
    }

    #[test]
    fn line_endings_must_be_crlf() {
        assert!(!bare_line_ending(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"));
        assert!(!bare_line_ending(b"GET / HTTP/1.1\r"), "its LF may be in the next read");
        for bad in [&b"GET / HTTP/1.1\nHost: x\r\n"[..], b"\n", b"Host: x\rX: y\r\n", b"a\r\r\n"] {
            assert!(bare_line_ending(bad), "{bad:?}");
        }
        // Every string of up to 8 bytes over {CR, LF, a}, against the rule read literally.
        let literal = |s: &[u8]| {
            s.iter().enumerate().any(|(i, &b)| match b {
                b'\r' => s.get(i + 1).is_some_and(|&n| n != b'\n'),
                b'\n' => i == 0 || s[i - 1] != b'\r',
                _ => false,
            })
        };
        for len in 0..=8u32 {
            for code in 0..3usize.pow(len) {
                let s: Vec<u8> = (0..len).map(|i| b"\r\na"[code / 3usize.pow(i) % 3]).collect();
                assert_eq!(bare_line_ending(&s), literal(&s), "{s:?}");
            }
        }
    }
}
