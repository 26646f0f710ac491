//! Trace context on the wire: W3C `traceparent` (with `tracestate` passed as it came), and
//! Zipkin's b3, single (`b3`) and multi (`x-b3-*`) header forms, read and written back in the
//! form the request used so that linkerd and Zipkin users keep their traces.

use http::{HeaderMap, HeaderName, HeaderValue};

static TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");
static B3_SINGLE: HeaderName = HeaderName::from_static("b3");
static B3_TRACE_ID: HeaderName = HeaderName::from_static("x-b3-traceid");
static B3_SPAN_ID: HeaderName = HeaderName::from_static("x-b3-spanid");
static B3_PARENT: HeaderName = HeaderName::from_static("x-b3-parentspanid");
static B3_SAMPLED: HeaderName = HeaderName::from_static("x-b3-sampled");
static B3_FLAGS: HeaderName = HeaderName::from_static("x-b3-flags");

/// A 16-byte trace ID.
pub type TraceId = [u8; 16];
/// An 8-byte span ID.
pub type SpanId = [u8; 8];

/// Which headers carried the context, so that it goes on in the same form.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `traceparent`.
    W3c,
    /// `b3: TRACE-SPAN-SAMPLED[-PARENT]`.
    B3Single,
    /// `x-b3-traceid`, `x-b3-spanid`, `x-b3-sampled`.
    B3Multi,
}

/// The caller's place in a trace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Parent {
    /// The trace.
    pub trace: TraceId,
    /// The caller's span.
    pub span: SpanId,
    /// Whether the caller records this trace.
    pub sampled: bool,
    /// How it came.
    pub format: Format,
}

/// Reads the caller's context: `traceparent` first, then b3 single, then b3 multi. A malformed
/// context counts as none (W3C Trace Context section 4.3: restart the trace).
pub fn read(headers: &HeaderMap) -> Option<Parent> {
    if let Some(v) = headers.get(&TRACEPARENT) {
        return traceparent(v.as_bytes());
    }
    if let Some(v) = headers.get(&B3_SINGLE) {
        return b3_single(v.as_bytes());
    }
    let trace = trace_id(headers.get(&B3_TRACE_ID)?.as_bytes())?;
    let span = hex::<8>(headers.get(&B3_SPAN_ID)?.as_bytes())?;
    let debug = headers.get(&B3_FLAGS).is_some_and(|v| v == "1");
    // No decision passed down: b3 leaves it to us, and we record the caller's trace.
    let sampled = debug || headers.get(&B3_SAMPLED).is_none_or(|v| v == "1" || v == "true");
    Some(Parent { trace, span, sampled, format: Format::B3Multi })
}

/// Writes the context a request goes on with: `span` as its parent, in `format` (every b3
/// header of the other form removed, so that the peer reads one context).
pub fn write(headers: &mut HeaderMap, trace: &TraceId, span: &SpanId, sampled: bool, format: Format) {
    let (t, s) = (to_hex(trace), to_hex(span));
    match format {
        Format::W3c => {
            let flags = if sampled { "01" } else { "00" };
            insert(headers, &TRACEPARENT, format!("00-{t}-{s}-{flags}"));
        }
        Format::B3Single => {
            let sampled = if sampled { "1" } else { "0" };
            insert(headers, &B3_SINGLE, format!("{t}-{s}-{sampled}"));
        }
        Format::B3Multi => {
            headers.remove(&B3_PARENT);
            headers.remove(&B3_FLAGS);
            insert(headers, &B3_TRACE_ID, t);
            insert(headers, &B3_SPAN_ID, s);
            headers.insert(B3_SAMPLED.clone(), HeaderValue::from_static(if sampled { "1" } else { "0" }));
        }
    }
}

fn insert(headers: &mut HeaderMap, name: &HeaderName, value: String) {
    // Hex and dashes only: always a valid value.
    if let Ok(v) = HeaderValue::try_from(value) {
        headers.insert(name.clone(), v);
    }
}

fn traceparent(v: &[u8]) -> Option<Parent> {
    // version-trace-parent-flags; a later version may add fields after a dash.
    let version = v.get(..2)?;
    if version == b"ff" || hex::<1>(version).is_none() || v.get(2) != Some(&b'-') {
        return None;
    }
    if (version == b"00" && v.len() != 55) || (v.len() > 55 && v[55] != b'-') || v.len() < 55 {
        return None;
    }
    let trace = hex::<16>(&v[3..35]).filter(|t| t != &[0; 16])?;
    let span = (v[35] == b'-').then(|| hex::<8>(&v[36..52])).flatten().filter(|s| s != &[0; 8])?;
    let flags = (v[52] == b'-').then(|| hex::<1>(&v[53..55])).flatten()?;
    Some(Parent { trace, span, sampled: flags[0] & 1 == 1, format: Format::W3c })
}

fn b3_single(v: &[u8]) -> Option<Parent> {
    let mut parts = v.split(|b| *b == b'-');
    let trace = trace_id(parts.next()?)?;
    let span = hex::<8>(parts.next()?)?;
    let sampled = match parts.next() {
        None => true,
        Some(b"1" | b"d") => true,
        Some(b"0") => false,
        Some(_) => return None,
    };
    Some(Parent { trace, span, sampled, format: Format::B3Single })
}

/// A b3 trace ID: 32 hex digits, or 16 for a 64-bit ID (zero-padded on the left).
fn trace_id(v: &[u8]) -> Option<TraceId> {
    let id = match v.len() {
        32 => hex::<16>(v)?,
        16 => {
            let mut id = [0; 16];
            id[8..].copy_from_slice(&hex::<8>(v)?);
            id
        }
        _ => return None,
    };
    (id != [0; 16]).then_some(id)
}

/// Lowercase hex only, as both specs write it.
fn hex<const N: usize>(v: &[u8]) -> Option<[u8; N]> {
    if v.len() != 2 * N {
        return None;
    }
    let digit = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    };
    let mut out = [0; N];
    for (i, pair) in v.chunks_exact(2).enumerate() {
        out[i] = digit(pair[0])? << 4 | digit(pair[1])?;
    }
    Some(out)
}

/// Lowercase hex of `bytes`.
pub fn to_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[usize::from(b >> 4)] as char);
        s.push(DIGITS[usize::from(b & 15)] as char);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        pairs.iter().map(|(k, v)| (HeaderName::from_static(k), HeaderValue::from_static(v))).collect()
    }

    const TP: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn traceparent_is_read_and_written_back_with_our_span() {
        let p = read(&headers(&[("traceparent", TP)])).expect("valid");
        assert_eq!(to_hex(&p.trace), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!((to_hex(&p.span).as_str(), p.sampled, p.format), ("00f067aa0ba902b7", true, Format::W3c));
        let mut h = HeaderMap::new();
        write(&mut h, &p.trace, &[1, 2, 3, 4, 5, 6, 7, 8], false, Format::W3c);
        assert_eq!(h["traceparent"], "00-4bf92f3577b34da6a3ce929d0e0e4736-0102030405060708-00");
    }

    #[test]
    fn malformed_or_zero_contexts_are_none() {
        for bad in [
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
        ] {
            assert_eq!(read(&headers(&[("traceparent", bad)])), None, "{bad}");
        }
        let later = "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00-what-comes-next";
        assert!(read(&headers(&[("traceparent", later)])).is_some_and(|p| !p.sampled));
    }

    #[test]
    fn b3_single_and_multi_are_read_with_64_bit_ids_padded() {
        let p = read(&headers(&[("b3", "a3ce929d0e0e4736-00f067aa0ba902b7-0")])).expect("valid");
        assert_eq!(to_hex(&p.trace), "0000000000000000a3ce929d0e0e4736");
        assert_eq!((p.sampled, p.format), (false, Format::B3Single));
        let multi = headers(&[
            ("x-b3-traceid", "4bf92f3577b34da6a3ce929d0e0e4736"),
            ("x-b3-spanid", "00f067aa0ba902b7"),
            ("x-b3-sampled", "1"),
        ]);
        let p = read(&multi).expect("valid");
        assert_eq!((p.sampled, p.format), (true, Format::B3Multi));
        let mut h = multi.clone();
        write(&mut h, &p.trace, &[0xab; 8], true, Format::B3Multi);
        assert_eq!(
            (h["x-b3-spanid"].to_str().ok(), h["x-b3-sampled"].to_str().ok()),
            (Some("abababababababab"), Some("1"))
        );
        assert_eq!(read(&headers(&[("b3", "0")])), None, "a bare decision carries no trace");
    }
}
