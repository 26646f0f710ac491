//! Decoding a chunked body (a client's request or an upstream's response) from the connection's
//! buffer: size lines, data, and the trailer section. Strict on purpose (CRLF only, hex sizes
//! that fit, extensions exactly as RFC 9112 section 7.1.1 writes them, bounded lines): a body
//! two parsers would read differently is how requests and responses get smuggled. Extensions
//! are checked and dropped, as the body is chunked anew on its way on.

use bytes::{Buf, Bytes, BytesMut};
use http::{HeaderMap, HeaderName, HeaderValue};

/// Why a chunked body could not be decoded.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ChunkError {
    /// The framing does not follow the syntax.
    #[error("invalid chunked body: {0}")]
    Syntax(&'static str),
    /// The trailer section is over [`MAX_TRAILER_SECTION`].
    #[error("trailer section over {MAX_TRAILER_SECTION} bytes")]
    TrailersTooLarge,
    /// A trailer field is malformed.
    #[error("invalid trailer field")]
    Trailer,
    /// A line ends in LF without CR.
    #[error("chunked body line ending other than CRLF")]
    LineEnding,
}

/// The largest trailer section accepted.
const MAX_TRAILER_SECTION: usize = 64 * 1024;

/// The longest chunk-size line (size and extensions) accepted.
const MAX_LINE: usize = 4096;
/// The most trailer fields accepted.
const MAX_TRAILERS: usize = 32;

/// Where the decoder is in the body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Chunked {
    /// Expecting a chunk-size line.
    Size,
    /// Inside a chunk's data, this many bytes left.
    Data(u64),
    /// Expecting the CRLF after a chunk's data.
    DataEnd,
    /// After the last chunk: the trailer section.
    Trailers,
    /// Body complete.
    Done,
}

/// What one step of decoding found.
#[derive(Debug)]
pub enum Step {
    /// Body bytes.
    Data(Bytes),
    /// The trailer section (the body is complete).
    Trailers(HeaderMap),
    /// The body is complete.
    End,
    /// More bytes must be read first.
    More,
}

impl Chunked {
    /// Decodes from the front of `buf`, consuming what it uses.
    pub fn step(&mut self, buf: &mut BytesMut) -> Result<Step, ChunkError> {
        loop {
            match *self {
                Self::Size => {
                    let Some(end) = memchr::memchr(b'\n', buf) else {
                        return if buf.len() > MAX_LINE {
                            Err(ChunkError::Syntax("size line too long"))
                        } else {
                            Ok(Step::More)
                        };
                    };
                    let size = chunk_size(&buf[..end])?;
                    buf.advance(end + 1);
                    *self = if size == 0 { Self::Trailers } else { Self::Data(size) };
                }
                Self::Data(left) => {
                    if buf.is_empty() {
                        return Ok(Step::More);
                    }
                    let n = left.min(buf.len() as u64);
                    *self = if n == left { Self::DataEnd } else { Self::Data(left - n) };
                    return Ok(Step::Data(buf.split_to(n as usize).freeze()));
                }
                Self::DataEnd => {
                    if buf.len() < 2 {
                        return Ok(Step::More);
                    }
                    if buf[..2] != *b"\r\n" {
                        return Err(ChunkError::Syntax("chunk data longer than its size"));
                    }
                    buf.advance(2);
                    *self = Self::Size;
                }
                Self::Trailers => {
                    if buf.starts_with(b"\r\n") {
                        buf.advance(2);
                        *self = Self::Done;
                        return Ok(Step::End);
                    }
                    if buf.len() < 2 {
                        return Ok(Step::More);
                    }
                    let Some(end) = memchr::memmem::find(buf, b"\r\n\r\n") else {
                        return if buf.len() > MAX_TRAILER_SECTION {
                            Err(ChunkError::TrailersTooLarge)
                        } else if super::fields::bare_line_ending(buf) {
                            Err(ChunkError::LineEnding)
                        } else {
                            Ok(Step::More)
                        };
                    };
                    let trailers = trailers(&buf[..end + 4])?;
                    buf.advance(end + 4);
                    *self = Self::Done;
                    return Ok(Step::Trailers(trailers));
                }
                Self::Done => return Ok(Step::End),
            }
        }
    }
}

/// Checks the framing of the start of a chunked body (`bytes` may end anywhere, and may go on
/// past the body's end).
pub fn check(bytes: &[u8]) -> Result<(), ChunkError> {
    let (mut state, mut probe) = (Chunked::Size, BytesMut::from(bytes));
    while let Step::Data(_) = state.step(&mut probe)? {}
    Ok(())
}

/// The size in a chunk-size line (hex, then optional `;extensions`), which ends in CRLF.
fn chunk_size(line: &[u8]) -> Result<u64, ChunkError> {
    let line = line.strip_suffix(b"\r").ok_or(ChunkError::LineEnding)?;
    let digits = line.iter().take_while(|b| b.is_ascii_hexdigit()).count();
    if digits == 0 || digits > 15 {
        return Err(ChunkError::Syntax("invalid chunk size"));
    }
    extensions(&line[digits..]).ok_or(ChunkError::Syntax("invalid chunk extension"))?;
    let hex = |b: u8| match b {
        b'0'..=b'9' => b - b'0',
        b'a'..=b'f' => b - b'a' + 10,
        _ => b - b'A' + 10,
    };
    Ok(line[..digits].iter().fold(0, |n, &b| (n << 4) | u64::from(hex(b))))
}

/// Checks `*( BWS ";" BWS name [ BWS "=" BWS value ] )`, the name a token and the value a token
/// or a quoted string. Whitespace is SP and HTAB only: a CR anywhere in the line, or a quoted
/// string the line ends inside, is refused, where a laxer parser could end the line there.
fn extensions(mut rest: &[u8]) -> Option<()> {
    while !rest.is_empty() {
        let [b';', after @ ..] = ows(rest) else { return None };
        let name = ows(after);
        rest = &name[token(name)?..];
        if let [b'=', after @ ..] = ows(rest) {
            let value = ows(after);
            rest = match value {
                [b'"', quoted @ ..] => after_quoted(quoted)?,
                _ => &value[token(value)?..],
            };
        }
    }
    Some(())
}

/// `s` without its leading SP and HTAB.
fn ows(s: &[u8]) -> &[u8] {
    let n = s.iter().take_while(|&&b| b == b' ' || b == b'\t').count();
    &s[n..]
}

/// The length of the token `s` starts with, if it starts with one.
fn token(s: &[u8]) -> Option<usize> {
    let n = s.iter().take_while(|&&b| is_tchar(b)).count();
    (n > 0).then_some(n)
}

/// What follows a quoted string whose opening quote is already read; `None` if it does not end
/// on this line or holds a byte a quoted string may not (RFC 9110 section 5.6.4).
fn after_quoted(s: &[u8]) -> Option<&[u8]> {
    let text = |b: u8| b == b'\t' || b == b' ' || (0x21..=0x7e).contains(&b) || b >= 0x80;
    let mut i = 0;
    while let Some(&b) = s.get(i) {
        match b {
            b'"' => return Some(&s[i + 1..]),
            b'\\' if s.get(i + 1).is_some_and(|&n| text(n)) => i += 2,
            b'\\' => return None,
            _ if text(b) => i += 1,
            _ => return None,
        }
    }
    None
}

/// A token character (RFC 9110 section 5.6.2).
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// The trailer section (fields then an empty line), copied out of the buffer.
fn trailers(section: &[u8]) -> Result<HeaderMap, ChunkError> {
    if super::fields::bare_line_ending(section) {
        return Err(ChunkError::LineEnding);
    }
    let mut fields = [httparse::EMPTY_HEADER; MAX_TRAILERS];
    let parsed = match httparse::parse_headers(section, &mut fields) {
        Ok(httparse::Status::Complete((_, parsed))) => parsed,
        Ok(httparse::Status::Partial) => return Err(ChunkError::Syntax("incomplete trailers")),
        Err(_) => return Err(ChunkError::Trailer),
    };
    let mut map = HeaderMap::with_capacity(parsed.len());
    for f in parsed {
        let name = HeaderName::from_bytes(f.name.as_bytes()).map_err(|_| ChunkError::Trailer)?;
        map.append(name, HeaderValue::from_bytes(f.value).map_err(|_| ChunkError::Trailer)?);
    }
    Ok(map)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Decodes `wire` fed in pieces of `piece` bytes: the data, and the trailers if any.
    fn decode(wire: &[u8], piece: usize) -> Result<(Vec<u8>, Option<HeaderMap>), ChunkError> {
        let (mut state, mut buf, mut data, mut fed) = (Chunked::Size, BytesMut::new(), Vec::new(), 0);
        loop {
            match state.step(&mut buf)? {
                Step::Data(d) => data.extend_from_slice(&d),
                Step::Trailers(t) => return Ok((data, Some(t))),
                Step::End => return Ok((data, None)),
                Step::More if fed < wire.len() => {
                    let n = piece.min(wire.len() - fed);
                    buf.extend_from_slice(&wire[fed..fed + n]);
                    fed += n;
                }
                Step::More => return Err(ChunkError::Syntax("cut short")),
            }
        }
    }

    #[test]
    fn decodes_whole_or_byte_by_byte() {
        let wire = b"5;ext=1\r\nhello\r\nA\r\n, world!!!\r\n0\r\n\r\n";
        for piece in [1, 3, wire.len()] {
            assert_eq!(decode(wire, piece).unwrap(), (b"hello, world!!!".to_vec(), None), "{piece}");
        }
        let (data, trailers) = decode(b"2\r\nok\r\n0\r\ngrpc-status: 0\r\nx: y\r\n\r\n", 1).unwrap();
        let t = trailers.unwrap();
        assert_eq!((data.as_slice(), t["grpc-status"].as_bytes(), t.len()), (&b"ok"[..], &b"0"[..], 2));
    }

    #[test]
    fn rejects_what_another_parser_could_read_differently() {
        for wire in [
            &b"5\nhello\r\n0\r\n\r\n"[..],
            b"5\r\nhello!\r\n0\r\n\r\n",
            b"-5\r\nhello\r\n0\r\n\r\n",
            b"0x5\r\nhello\r\n0\r\n\r\n",
            b"5 5\r\nhello\r\n0\r\n\r\n",
            b"10000000000000000\r\n",
            b"\r\n",
        ] {
            assert!(decode(wire, 1).is_err(), "{}", String::from_utf8_lossy(wire));
        }
        assert_eq!(decode(b"5\r\nhel", 2), Err(ChunkError::Syntax("cut short")));
        assert_eq!(decode(b"1\na\r\n0\r\n\r\n", 1), Err(ChunkError::LineEnding));
        assert_eq!(decode(b"0\r\nx: 1\n\r\n", 1), Err(ChunkError::LineEnding));
        // The start of a body, checked as it came with its head.
        assert_eq!(check(b"5\r\nhel"), Ok(()));
        assert_eq!(check(b"2\r\nhi\r\n0\r\n\r\nGET / HTTP/1.1\r\n"), Ok(()));
        assert_eq!(check(b"zz\r\nabc"), Err(ChunkError::Syntax("invalid chunk size")));
    }

    #[test]
    fn extensions_follow_the_grammar_exactly() {
        for ok in [&b"5;a"[..], b"5;a=b", b"5 ; a = b ;c", b"5;a=\"x y;\\\"z\"", b"5;a=\"\"", b"5\t;a"] {
            assert_eq!(chunk_size(&[ok, b"\r"].concat()), Ok(5), "{}", String::from_utf8_lossy(ok));
        }
        for bad in [
            &b"5;"[..],
            b"5 ",
            b"5;a ",
            b"5;a=",
            b"5;a=b c",
            b"5;a\rb",
            b"5\r;a",
            b"5;a=\"open",
            b"5;a=\"x\ry\"",
            b"5;a=\"\\\r\"",
            b"5;=b",
            b"5;a=b=c",
            b"5,a",
        ] {
            assert!(chunk_size(&[bad, b"\r"].concat()).is_err(), "{}", String::from_utf8_lossy(bad));
        }
        // A quoted extension cannot run past its line and smuggle a trailer field in.
        assert!(decode(b"0;a=\"\r\ncontent-length: 5\r\n\"\r\n\r\n", 1).is_err());
    }
}
