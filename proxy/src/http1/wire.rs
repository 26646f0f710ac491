//! Writing HTTP/1.1 on the wire, for both codecs: field lines, chunk-size lines and the last
//! chunk with its trailers.

use http::HeaderMap;

/// Appends one field line.
pub fn header(out: &mut Vec<u8>, name: &str, value: &[u8]) {
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// Appends a chunk's size line (hex).
pub fn chunk_size(out: &mut Vec<u8>, n: usize) {
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
pub fn last_chunk(out: &mut Vec<u8>, trailers: &HeaderMap) {
    out.extend_from_slice(b"0\r\n");
    for (name, value) in trailers {
        header(out, name.as_str(), value.as_bytes());
    }
    out.extend_from_slice(b"\r\n");
}

/// `n` in decimal, written into the end of `buf`.
pub fn format_u64(mut n: u64, buf: &mut [u8; 20]) -> &[u8] {
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
    use http::HeaderValue;

    use super::*;

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
}
