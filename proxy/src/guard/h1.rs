//! HTTP/1.1 request framing as the guard sees it, byte by byte as it arrives: where each request
//! head starts and ends, how long its body is (Content-Length, or chunk by chunk), and the
//! shapes RFC 9112 lets a recipient accept but a proxy should refuse. hyper parses every request
//! again; this only finds what hyper forgives: Content-Length next to Transfer-Encoding (hyper
//! drops the length and forwards), bare LF line endings, and request lines over the limit.
//!
//! Bodies are skipped by their length rather than looked at, so a pipelined request after a
//! body is checked as strictly as the first one.

use super::Rejection;

/// Bytes of each line kept to classify it: enough for any field name we look for and any sane
/// Content-Length value.
const PREFIX: usize = 64;
/// Longest chunk-size line (size and extensions).
const MAX_CHUNK_LINE: usize = 4096;
/// The request line of the HTTP/2 connection preface.
const H2_PREFACE_LINE: &[u8] = b"PRI * HTTP/2.0";

/// What the scanner expects next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Between requests; empty lines are skipped (RFC 9112 section 2.2).
    Idle,
    /// In the request line.
    RequestLine,
    /// In the header section.
    Fields,
    /// Content-Length body bytes left.
    Body(u64),
    /// In a chunk-size line.
    ChunkSize,
    /// Chunk data bytes left.
    ChunkData(u64),
    /// The CRLF after chunk data.
    ChunkEnd,
    /// In the trailer section after the last chunk.
    Trailers,
}

/// Where the scan leaves the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Still HTTP/1.1.
    Http1,
    /// The connection is switching protocols after the request head (Upgrade or CONNECT): bytes
    /// from this offset on are not HTTP/1.1.
    Opaque(usize),
    /// The HTTP/2 preface's request line ended at this offset: HTTP/2 frames follow the rest
    /// of the preface.
    Http2(usize),
}

/// The framing state of one client connection's requests.
#[derive(Debug)]
pub struct Requests {
    state: State,
    max_request_line: usize,
    /// The first bytes of the current line, and its full length so far.
    line: [u8; PREFIX],
    line_len: usize,
    /// The last byte seen was a CR (its LF may come in the next read).
    cr: bool,
    /// What the current head has said about its body.
    head: Head,
}

/// What a request head's fields say about what follows it.
#[derive(Debug, Default)]
struct Head {
    content_length: Option<u64>,
    chunked: bool,
    switching: bool,
}

impl Requests {
    /// A scanner refusing request lines longer than `max_request_line` bytes.
    pub fn new(max_request_line: usize) -> Self {
        Self {
            state: State::Idle,
            max_request_line,
            line: [0; PREFIX],
            line_len: 0,
            cr: false,
            head: Head::default(),
        }
    }

    /// Whether a request head has started and not yet ended (the header timeout runs).
    pub fn in_head(&self) -> bool {
        matches!(self.state, State::RequestLine | State::Fields)
    }

    /// Takes the next bytes from the client.
    pub fn feed(&mut self, bytes: &[u8]) -> Result<Next, Rejection> {
        let mut i = 0;
        while i < bytes.len() {
            match self.state {
                State::Body(left) | State::ChunkData(left) => {
                    let n = left.min((bytes.len() - i) as u64);
                    i += n as usize;
                    let left = left - n;
                    self.state = match self.state {
                        State::Body(_) if left == 0 => State::Idle,
                        State::Body(_) => State::Body(left),
                        _ if left == 0 => State::ChunkEnd,
                        _ => State::ChunkData(left),
                    };
                }
                State::Idle => {
                    // Stray CRLFs before a request are allowed; anything else starts one.
                    match bytes[i] {
                        b'\r' | b'\n' => i += 1,
                        _ => self.state = State::RequestLine,
                    }
                }
                _ => {
                    let Some(end) = self.take_line(bytes, &mut i)? else { break };
                    if let Some(next) = self.end_line(end)? {
                        return Ok(match next {
                            Next::Opaque(_) => Next::Opaque(i),
                            Next::Http2(_) => Next::Http2(i),
                            Next::Http1 => Next::Http1,
                        });
                    }
                }
            }
        }
        Ok(Next::Http1)
    }

    /// Consumes bytes of the current line. At its LF, returns the line's length (without CRLF);
    /// `None` when the bytes ran out first.
    fn take_line(&mut self, bytes: &[u8], i: &mut usize) -> Result<Option<usize>, Rejection> {
        let rest = &bytes[*i..];
        let stop = memchr::memchr2(b'\n', b'\r', rest);
        if self.cr && rest[0] != b'\n' {
            return Err(Rejection::BareCr);
        }
        let content = &rest[..stop.unwrap_or(rest.len())];
        if !content.is_empty() {
            self.cr = false;
        }
        if self.line_len < PREFIX {
            let n = content.len().min(PREFIX - self.line_len);
            self.line[self.line_len..self.line_len + n].copy_from_slice(&content[..n]);
        }
        self.line_len += content.len();
        *i += content.len();
        self.check_length()?;
        let Some(at) = stop else { return Ok(None) };
        *i += 1;
        if rest[at] == b'\r' {
            if self.cr {
                return Err(Rejection::BareCr);
            }
            self.cr = true;
            // The LF may be the next byte here or the first of the next read.
            return match rest.get(at + 1) {
                None => Ok(None),
                Some(b'\n') => {
                    *i += 1;
                    self.cr = false;
                    Ok(Some(std::mem::take(&mut self.line_len)))
                }
                Some(_) => Err(Rejection::BareCr),
            };
        }
        if !self.cr {
            return Err(Rejection::BareLf);
        }
        self.cr = false;
        Ok(Some(std::mem::take(&mut self.line_len)))
    }

    fn check_length(&self) -> Result<(), Rejection> {
        match self.state {
            State::RequestLine if self.line_len > self.max_request_line => Err(Rejection::RequestLineTooLong),
            State::ChunkSize | State::ChunkEnd if self.line_len > MAX_CHUNK_LINE => Err(Rejection::BadChunk),
            _ => Ok(()),
        }
    }

    /// Acts on a complete line of `len` bytes, whose first bytes are in `self.line`.
    fn end_line(&mut self, len: usize) -> Result<Option<Next>, Rejection> {
        let line = &self.line[..len.min(PREFIX)];
        match self.state {
            State::RequestLine => {
                if line == H2_PREFACE_LINE {
                    return Ok(Some(Next::Http2(0)));
                }
                self.head.switching = line.starts_with(b"CONNECT ");
                self.state = State::Fields;
            }
            State::Fields if len == 0 => return Ok(self.end_head()),
            State::Fields => self.head.field(line, len)?,
            State::ChunkSize => {
                let size = chunk_size(line)?;
                self.state = if size == 0 { State::Trailers } else { State::ChunkData(size) };
            }
            State::ChunkEnd if len == 0 => self.state = State::ChunkSize,
            State::ChunkEnd => return Err(Rejection::BadChunk),
            State::Trailers if len == 0 => self.state = State::Idle,
            _ => {}
        }
        Ok(None)
    }

    /// The empty line after the fields: what follows is the body, the next request, or
    /// another protocol.
    fn end_head(&mut self) -> Option<Next> {
        let Head { content_length, chunked, switching } = std::mem::take(&mut self.head);
        if switching {
            return Some(Next::Opaque(0));
        }
        self.state = match (chunked, content_length) {
            (true, _) => State::ChunkSize,
            (false, Some(n)) if n > 0 => State::Body(n),
            _ => State::Idle,
        };
        None
    }
}

impl Head {
    /// Notes what a header field of `len` bytes (its first bytes in `line`) says about framing.
    fn field(&mut self, line: &[u8], len: usize) -> Result<(), Rejection> {
        let Some(colon) = line.iter().position(|&b| b == b':') else { return Ok(()) };
        let (name, value) = (&line[..colon], line[colon + 1..].trim_ascii());
        if name.eq_ignore_ascii_case(b"content-length") {
            if len > PREFIX {
                return Err(Rejection::BadContentLength);
            }
            let n = parse_decimal(value).ok_or(Rejection::BadContentLength)?;
            if self.content_length.is_some_and(|m| m != n) {
                return Err(Rejection::BadContentLength);
            }
            self.content_length = Some(n);
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            // hyper refuses any coding but a final chunked; whatever it accepts is chunked.
            self.chunked = true;
        } else if name.eq_ignore_ascii_case(b"upgrade") {
            self.switching = true;
        }
        if self.chunked && self.content_length.is_some() {
            return Err(Rejection::LengthAndChunked);
        }
        Ok(())
    }
}

fn parse_decimal(v: &[u8]) -> Option<u64> {
    if v.is_empty() {
        return None;
    }
    v.iter().try_fold(0u64, |n, &b| {
        if b.is_ascii_digit() { n.checked_mul(10)?.checked_add(u64::from(b - b'0')) } else { None }
    })
}

/// The size in a chunk-size line: hex digits, then optional whitespace and extensions.
fn chunk_size(line: &[u8]) -> Result<u64, Rejection> {
    let digits = line.iter().take_while(|b| b.is_ascii_hexdigit()).count();
    if digits == 0 || digits > 15 {
        return Err(Rejection::BadChunk);
    }
    match line.get(digits) {
        None | Some(b';' | b' ' | b'\t') => {}
        Some(_) => return Err(Rejection::BadChunk),
    }
    let hex = std::str::from_utf8(&line[..digits]).map_err(|_| Rejection::BadChunk)?;
    u64::from_str_radix(hex, 16).map_err(|_| Rejection::BadChunk)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scan(bytes: &[u8]) -> Result<Next, Rejection> {
        Requests::new(8192).feed(bytes)
    }

    /// Feeds one byte at a time: every state must survive any split.
    fn scan_bytewise(bytes: &[u8]) -> Result<(Requests, Next), Rejection> {
        let mut r = Requests::new(8192);
        let mut next = Next::Http1;
        for (i, b) in bytes.iter().enumerate() {
            next = match r.feed(std::slice::from_ref(b))? {
                Next::Http1 => Next::Http1,
                Next::Opaque(_) => Next::Opaque(i + 1),
                Next::Http2(_) => Next::Http2(i + 1),
            };
            if next != Next::Http1 {
                break;
            }
        }
        Ok((r, next))
    }

    #[test]
    fn ordinary_requests_pass_whole_or_split() {
        let reqs: &[&[u8]] = &[
            b"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
            b"\r\nPOST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nab\ncdGET / HTTP/1.1\r\n\r\n",
            b"POST / HTTP/1.1\r\ntransfer-encoding: chunked\r\n\r\n3;x=y\r\na\nb\r\n0\r\nT: v\r\n\r\nGET / HTTP/1.1\r\n\r\n",
        ];
        for r in reqs {
            assert_eq!(scan(r), Ok(Next::Http1), "{}", String::from_utf8_lossy(r));
            let (s, next) = scan_bytewise(r).unwrap();
            assert_eq!(next, Next::Http1);
            assert_eq!(s.state, State::Idle);
        }
    }

    #[test]
    fn a_body_that_looks_like_a_bad_request_is_skipped() {
        let body = b"GET / HTTP/1.1\nContent-Length: 1\nTransfer-Encoding: chunked\n\n";
        let mut req = format!("POST / HTTP/1.1\r\nContent-Length: {}\r\n\r\n", body.len()).into_bytes();
        req.extend_from_slice(body);
        assert_eq!(scan_bytewise(&req).unwrap().0.state, State::Idle);
    }

    #[test]
    fn smuggling_shapes_are_refused_in_either_order() {
        let cases: &[(&[u8], Rejection)] = &[
            (
                b"POST / HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
                Rejection::LengthAndChunked,
            ),
            (
                b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\ncontent-length: 3\r\n\r\n",
                Rejection::LengthAndChunked,
            ),
            (b"GET / HTTP/1.1\nHost: a\r\n\r\n", Rejection::BareLf),
            (b"GET / HTTP/1.1\r\nHost: a\n\r\n", Rejection::BareLf),
            (b"GET / HTTP/1.1\r\nHost: a\rb\r\n\r\n", Rejection::BareCr),
            (
                b"POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
                Rejection::BadContentLength,
            ),
            (b"POST / HTTP/1.1\r\nContent-Length: +1\r\n\r\n", Rejection::BadContentLength),
            (b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", Rejection::BadChunk),
            (b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nab\r\n", Rejection::BadChunk),
            (b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n1\nab\r\n", Rejection::BareLf),
            (
                b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nfffffffffffffffff\r\n",
                Rejection::BadChunk,
            ),
        ];
        for (req, why) in cases {
            assert_eq!(scan(req), Err(*why), "{}", String::from_utf8_lossy(req));
            assert_eq!(scan_bytewise(req).err(), Some(*why), "split: {}", String::from_utf8_lossy(req));
        }
    }

    #[test]
    fn a_pipelined_request_after_a_chunked_body_is_checked_too() {
        let req = b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\n\
            POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n";
        assert_eq!(scan(req), Err(Rejection::LengthAndChunked));
    }

    #[test]
    fn long_request_lines_are_refused_before_their_end() {
        let mut r = Requests::new(32);
        assert!(r.feed(b"GET /0123456789012345678").is_ok());
        assert!(r.in_head());
        assert_eq!(r.feed(b"9012345678901234"), Err(Rejection::RequestLineTooLong));
        // Long header lines are hyper's to limit (431), not a request-line matter.
        let mut r = Requests::new(32);
        let long = format!("GET / HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(100));
        assert_eq!(r.feed(long.as_bytes()), Ok(Next::Http1));
    }

    #[test]
    fn protocol_switches_hand_over_the_rest() {
        let ws = b"GET /ws HTTP/1.1\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n\x81\x05hello";
        assert_eq!(scan(ws), Ok(Next::Opaque(ws.len() - 7)));
        let connect = b"CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\n\r\n\x16\x03\x01";
        assert_eq!(scan(connect), Ok(Next::Opaque(connect.len() - 3)));
        let h2 = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00";
        assert_eq!(scan(h2), Ok(Next::Http2(16)));
        assert_eq!(scan_bytewise(h2).unwrap().1, Next::Http2(16));
    }

    #[test]
    fn the_head_timer_runs_only_inside_a_head() {
        let mut r = Requests::new(8192);
        assert!(!r.in_head());
        r.feed(b"GET / HT").unwrap();
        assert!(r.in_head());
        r.feed(b"TP/1.1\r\nContent-Length: 2\r\n\r\n").unwrap();
        assert!(!r.in_head());
        r.feed(b"ab").unwrap();
        assert!(!r.in_head());
    }
}
