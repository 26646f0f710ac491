//! gRPC's part in a request's life: knowing a gRPC request, its `grpc-timeout` (the gRPC over
//! HTTP/2 spec), which caps the route's timeout and each try's, and goes upstream rewritten with
//! the time that is left, and reading the call's status from a response head.

use std::time::Duration;

use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use pillion_config::GrpcCode;

use super::headers::GRPC_STATUS;

/// The deadline a gRPC client sets for its call.
pub static GRPC_TIMEOUT: HeaderName = HeaderName::from_static("grpc-timeout");

/// Whether a content type is gRPC's: `application/grpc`, alone or with a `+format` or
/// parameters. [`headers::survey`](super::headers::survey) asks it of a request's first
/// `content-type` as it passes every field anyway.
pub fn is_grpc_type(value: &HeaderValue) -> bool {
    let (v, grpc) = (value.as_bytes(), b"application/grpc");
    v.len() >= grpc.len()
        && v[..grpc.len()].eq_ignore_ascii_case(grpc)
        && matches!(v.get(grpc.len()), None | Some(b'+' | b';'))
}

/// The call's `grpc-timeout`: up to 8 digits and a unit (`H`, `M`, `S`, `m`, `u`, `n`). `None`
/// when absent or malformed (then it caps nothing, and goes on as it came).
pub fn timeout(headers: &HeaderMap) -> Option<Duration> {
    let v = headers.get(&GRPC_TIMEOUT)?.as_bytes();
    let (&unit, digits) = v.split_last()?;
    if digits.is_empty() || digits.len() > 8 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let n = digits.iter().fold(0u64, |n, d| n * 10 + u64::from(d - b'0'));
    Some(match unit {
        b'H' => Duration::from_secs(n * 3600),
        b'M' => Duration::from_secs(n * 60),
        b'S' => Duration::from_secs(n),
        b'm' => Duration::from_millis(n),
        b'u' => Duration::from_micros(n),
        b'n' => Duration::from_nanos(n),
        _ => return None,
    })
}

/// `left` as a `grpc-timeout` value: milliseconds, rounded up, or whole seconds (rounded up) past
/// what 8 digits of milliseconds hold.
pub fn timeout_value(left: Duration) -> HeaderValue {
    let ms = left.as_nanos().div_ceil(1_000_000).max(1);
    let text = if ms <= 99_999_999 { format!("{ms}m") } else { format!("{}S", ms.div_ceil(1000)) };
    HeaderValue::try_from(text).unwrap_or_else(|_| HeaderValue::from_static("1m"))
}

/// The call's status as the response head tells it: its `grpc-status` (a trailers-only
/// response), what a gRPC client makes of a status other than 200 or of an empty body with no
/// status, or `None` when the status is still to come in the trailers.
pub fn head_status(status: StatusCode, headers: &HeaderMap, ended: bool) -> Option<GrpcCode> {
    if let Some(v) = headers.get(&GRPC_STATUS) {
        return Some(GrpcCode::from_value(v.as_bytes()));
    }
    match status {
        StatusCode::OK if ended => Some(GrpcCode::UNKNOWN),
        StatusCode::OK => None,
        other => Some(GrpcCode::from_http(other.as_u16())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(name: &'static str, value: &'static str) -> HeaderMap {
        HeaderMap::from_iter([(HeaderName::from_static(name), HeaderValue::from_static(value))])
    }

    #[test]
    fn grpc_requests_are_known_by_their_content_type() {
        for (ct, grpc) in [
            ("application/grpc", true),
            ("application/grpc+proto", true),
            ("Application/GRPC; charset=x", true),
            ("application/grpc-web", false),
            ("application/json", false),
        ] {
            assert_eq!(is_grpc_type(&HeaderValue::from_static(ct)), grpc, "{ct}");
        }
    }

    #[test]
    fn timeouts_are_read_in_every_unit_and_malformed_ones_ignored() {
        for (v, d) in [
            ("1H", Duration::from_secs(3600)),
            ("2M", Duration::from_secs(120)),
            ("3S", Duration::from_secs(3)),
            ("200m", Duration::from_millis(200)),
            ("5u", Duration::from_micros(5)),
            ("99999999n", Duration::from_nanos(99_999_999)),
        ] {
            assert_eq!(timeout(&with("grpc-timeout", v)), Some(d), "{v}");
        }
        for bad in ["", "m", "123456789m", "1x", "-1S", "1.5S", " 1S"] {
            assert_eq!(timeout(&with("grpc-timeout", bad)), None, "{bad:?}");
        }
    }

    #[test]
    fn the_head_tells_the_status_of_a_trailers_only_or_failed_call() {
        let none = HeaderMap::new();
        let head = |s: u16, h: &HeaderMap, ended| head_status(StatusCode::from_u16(s).unwrap(), h, ended);
        assert_eq!(head(200, &with("grpc-status", "14"), true), Some(GrpcCode::UNAVAILABLE));
        assert_eq!(head(200, &none, false), None);
        assert_eq!(head(200, &none, true), Some(GrpcCode::UNKNOWN));
        assert_eq!(head(503, &none, true), Some(GrpcCode::UNAVAILABLE));
        assert_eq!(head(404, &none, false), Some(GrpcCode::UNIMPLEMENTED));
    }

    #[test]
    fn the_time_left_is_written_in_milliseconds_rounded_up() {
        assert_eq!(timeout_value(Duration::from_micros(199_001)), "200m");
        assert_eq!(timeout_value(Duration::ZERO), "1m");
        assert_eq!(timeout_value(Duration::from_secs(200_000)), "200000S");
    }
}
