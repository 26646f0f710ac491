//! gRPC status codes (the `grpc-status` numbers of the gRPC spec): their names as `retry.on`
//! takes them, and their metric labels. Bounded: a number outside 0..=16 is UNKNOWN.

use std::fmt;

/// A gRPC status code, 0 (OK) to 16 (UNAUTHENTICATED).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct GrpcCode(u8);

/// The codes' names in `retry.on` and logs, indexed by code.
const NAMES: [&str; 17] = [
    "ok",
    "cancelled",
    "unknown",
    "invalid-argument",
    "deadline-exceeded",
    "not-found",
    "already-exists",
    "permission-denied",
    "resource-exhausted",
    "failed-precondition",
    "aborted",
    "out-of-range",
    "unimplemented",
    "internal",
    "unavailable",
    "data-loss",
    "unauthenticated",
];

/// The codes as `grpc-status` values and `grpc_status` labels, indexed by code.
const NUMBERS: [&str; 17] =
    ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "10", "11", "12", "13", "14", "15", "16"];

/// The codes `retry.on` accepts: those that say the call may not have reached the server's
/// logic, or may succeed when tried again.
const RETRYABLE: [GrpcCode; 5] = [
    GrpcCode::CANCELLED,
    GrpcCode::DEADLINE_EXCEEDED,
    GrpcCode::RESOURCE_EXHAUSTED,
    GrpcCode::INTERNAL,
    GrpcCode::UNAVAILABLE,
];

impl GrpcCode {
    /// The call succeeded.
    pub const OK: Self = Self(0);
    /// The call was cancelled, usually by its caller.
    pub const CANCELLED: Self = Self(1);
    /// An error with no better code, or a status the proxy could not read.
    pub const UNKNOWN: Self = Self(2);
    /// The deadline passed.
    pub const DEADLINE_EXCEEDED: Self = Self(4);
    /// Not found.
    pub const NOT_FOUND: Self = Self(5);
    /// The caller may not do this.
    pub const PERMISSION_DENIED: Self = Self(7);
    /// Out of some resource (a quota, the proxy's limits).
    pub const RESOURCE_EXHAUSTED: Self = Self(8);
    /// The method is not served.
    pub const UNIMPLEMENTED: Self = Self(12);
    /// The server broke an invariant.
    pub const INTERNAL: Self = Self(13);
    /// The service cannot be reached now.
    pub const UNAVAILABLE: Self = Self(14);
    /// The caller did not authenticate.
    pub const UNAUTHENTICATED: Self = Self(16);

    /// Reads a `grpc-status` value: a decimal number, UNKNOWN when it is out of range or not a
    /// number (what a gRPC client would make of it).
    pub fn from_value(v: &[u8]) -> Self {
        match v {
            [d @ b'0'..=b'9'] => Self(d - b'0'),
            [b'1', d @ b'0'..=b'6'] => Self(10 + d - b'0'),
            _ => Self::UNKNOWN,
        }
    }

    /// The code gRPC clients derive from an HTTP status when a response has no `grpc-status`
    /// (the gRPC spec's "HTTP to gRPC status code mapping").
    pub fn from_http(status: u16) -> Self {
        match status {
            400 => Self::INTERNAL,
            401 => Self::UNAUTHENTICATED,
            403 => Self::PERMISSION_DENIED,
            404 => Self::UNIMPLEMENTED,
            429 | 502 | 503 | 504 => Self::UNAVAILABLE,
            _ => Self::UNKNOWN,
        }
    }

    /// The code's number.
    pub fn value(self) -> u8 {
        self.0
    }

    /// The number, as `grpc-status` and the `grpc_status` label write it.
    pub fn as_str(self) -> &'static str {
        NUMBERS[usize::from(self.0)]
    }

    /// The name, as `retry.on` and logs write it.
    pub fn name(self) -> &'static str {
        NAMES[usize::from(self.0)]
    }

    /// A code `retry.on` takes, by name.
    pub fn retryable(name: &str) -> Option<Self> {
        RETRYABLE.into_iter().find(|c| c.name() == name)
    }
}

impl fmt::Display for GrpcCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_values_read_as_codes_and_anything_else_is_unknown() {
        for n in 0..=16u8 {
            assert_eq!(GrpcCode::from_value(n.to_string().as_bytes()), GrpcCode(n));
            assert_eq!(GrpcCode(n).as_str(), n.to_string());
        }
        for bad in ["", "17", "-1", "01", "1 ", "x", "140"] {
            assert_eq!(GrpcCode::from_value(bad.as_bytes()), GrpcCode::UNKNOWN, "{bad:?}");
        }
    }

    #[test]
    fn retry_on_takes_only_the_retryable_names() {
        assert_eq!(GrpcCode::retryable("unavailable"), Some(GrpcCode::UNAVAILABLE));
        assert_eq!(GrpcCode::retryable("deadline-exceeded"), Some(GrpcCode::DEADLINE_EXCEEDED));
        assert_eq!(GrpcCode::retryable("not-found"), None);
        assert_eq!(GrpcCode::retryable("UNAVAILABLE"), None);
    }
}
