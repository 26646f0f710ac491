//! Field-level pieces of HTTP/1.1 both directions parse alike: header names (the common ones
//! matched first), comma-separated tokens, and `Content-Length` values that must all agree.

use http::{
    HeaderName,
    header::{CONNECTION, CONTENT_LENGTH, CONTENT_TYPE, DATE, HOST, SERVER, TRANSFER_ENCODING, USER_AGENT},
};

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
        _ => HeaderName::from_bytes(raw).ok()?,
    })
}

/// The comma-separated tokens of a header value, trimmed, empty ones skipped.
pub fn tokens(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value.split(|&b| b == b',').map(<[u8]>::trim_ascii).filter(|t| !t.is_empty())
}

/// A `Content-Length` that is not a decimal number, or that disagrees with another.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InvalidLength;

/// The `content-length` values seen in one message: all must be the same number.
#[derive(Debug, Default)]
pub struct Lengths(pub Option<u64>);

impl Lengths {
    /// Adds one `content-length` field value (itself possibly a list, `3, 3`).
    pub fn add(&mut self, value: &[u8]) -> Result<(), InvalidLength> {
        for t in value.split(|&b| b == b',').map(<[u8]>::trim_ascii) {
            let n = parse_decimal(t).ok_or(InvalidLength)?;
            if self.0.is_some_and(|m| m != n) {
                return Err(InvalidLength);
            }
            self.0 = Some(n);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn common_names_match_in_either_case_and_others_parse() {
        assert_eq!(header_name(b"Content-Length"), Some(CONTENT_LENGTH));
        assert_eq!(header_name(b"CONTENT-LENGTH"), Some(CONTENT_LENGTH));
        assert_eq!(header_name(b"x-backend").unwrap(), "x-backend");
        assert_eq!(header_name(b"bad name"), None);
    }

    #[test]
    fn lengths_must_be_digits_and_agree() {
        let mut l = Lengths::default();
        assert_eq!(l.add(b"3, 3"), Ok(()));
        assert_eq!(l.add(b"3"), Ok(()));
        assert_eq!(l.0, Some(3));
        assert_eq!(l.add(b"4"), Err(InvalidLength));
        for bad in [&b"-1"[..], b"+1", b"1 2", b"", b"99999999999999999999"] {
            assert_eq!(Lengths::default().add(bad), Err(InvalidLength), "{bad:?}");
        }
        assert_eq!(tokens(b" gzip ,, chunked ").collect::<Vec<_>>(), [&b"gzip"[..], b"chunked"]);
    }
}
