//! Local replies: every way a request can fail inside the proxy maps to one status and one
//! `x-pillion-error` code (and, for a gRPC client, one gRPC status), here and nowhere else; the
//! codecs' typed errors come in through the `From` impls below.

use http::{HeaderValue, Method, Response, StatusCode, Version, header};

use super::{body::ResponseBody, headers};
use crate::{
    body::Body,
    http1::{
        authority::Error as Authority,
        chunked::ChunkError,
        connection::Refusal,
        date, request,
        response::{self, Answering},
    },
};
use pillion_config::GrpcCode;

/// Why the proxy answered a request itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LocalError {
    /// The service has no endpoint to send to.
    NoEndpoint,
    /// No upstream connection could be made.
    ConnectFailed,
    /// The upstream reset, closed, or spoke broken HTTP.
    UpstreamReset,
    /// The upstream's HTTP/2 connection went away (GOAWAY) before it answered, as a stopping
    /// peer's does: replied as a reset, but an idempotent request is first tried elsewhere.
    UpstreamClosing,
    /// The route's timeout passed before the upstream answered.
    Timeout,
    /// The service's limits are reached.
    Overloaded,
    /// The client's identity is not allowed on this port.
    Unauthorized,
    /// An explicit listener had no route and no service.
    NoRoute,
    /// The request cannot be forwarded as it is.
    BadRequest,
    /// No `Host` on HTTP/1.1, more than one, or one that is not a host and port.
    BadHost,
    /// A request target in a form its method may not use, or an absolute one that is not
    /// `http(s)://host`.
    BadTarget,
    /// CONNECT: the proxy does not tunnel.
    Connect,
    /// The request head is over the listener's `max_header_bytes` or `max_headers`.
    HeadersTooLarge,
    /// The request line is over the listener's `max_request_line_bytes`.
    RequestLineTooLong,
    /// The request's framing could be read two ways: Content-Length with Transfer-Encoding,
    /// lengths that disagree, a coding other than chunked last, a malformed chunk.
    BadFraming,
    /// A line ends in LF without CR, or has a CR without LF.
    BadLineEnding,
    /// The request body is over the route's `max_request_bytes`.
    TooLarge,
    /// The request head was not complete within the listener's `header_read_timeout`.
    HeaderTimeout,
}

impl From<&request::Error> for LocalError {
    fn from(e: &request::Error) -> Self {
        use request::Error as E;
        match e {
            E::TooLarge(_) | E::TooManyHeaders(_) => Self::HeadersTooLarge,
            E::RequestLineTooLong(_) => Self::RequestLineTooLong,
            E::BareLineEnding => Self::BadLineEnding,
            E::ContentLength | E::TransferEncoding | E::AmbiguousFraming => Self::BadFraming,
            E::Target => Self::BadTarget,
            E::Authority(a) => match a {
                Authority::Form | Authority::Absolute => Self::BadTarget,
                Authority::MissingHost | Authority::RepeatedHost | Authority::InvalidHost => Self::BadHost,
            },
            E::Parse(_) | E::HeaderName | E::HeaderValue => Self::BadRequest,
        }
    }
}

impl From<&Refusal> for LocalError {
    fn from(r: &Refusal) -> Self {
        match r {
            Refusal::Head(e) => e.into(),
            Refusal::Body(ChunkError::LineEnding) => Self::BadLineEnding,
            Refusal::Body(_) => Self::BadFraming,
        }
    }
}

impl LocalError {
    /// Status and `x-pillion-error` code.
    pub fn status_and_code(self) -> (StatusCode, &'static str) {
        match self {
            Self::NoEndpoint => (StatusCode::SERVICE_UNAVAILABLE, "no-healthy-endpoint"),
            Self::ConnectFailed => (StatusCode::SERVICE_UNAVAILABLE, "connect-failed"),
            Self::Overloaded => (StatusCode::SERVICE_UNAVAILABLE, "overloaded"),
            Self::UpstreamReset | Self::UpstreamClosing => (StatusCode::BAD_GATEWAY, "upstream-reset"),
            Self::Timeout => (StatusCode::GATEWAY_TIMEOUT, "route-timeout"),
            Self::Unauthorized => (StatusCode::FORBIDDEN, "unauthorized"),
            Self::NoRoute => (StatusCode::NOT_FOUND, "no-route"),
            Self::BadRequest => (StatusCode::BAD_REQUEST, "bad-request"),
            Self::BadHost => (StatusCode::BAD_REQUEST, "bad-host"),
            Self::BadTarget => (StatusCode::BAD_REQUEST, "bad-target"),
            Self::Connect => (StatusCode::METHOD_NOT_ALLOWED, "connect-not-supported"),
            Self::HeadersTooLarge => (StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE, "headers-too-large"),
            Self::RequestLineTooLong => (StatusCode::URI_TOO_LONG, "request-line-too-long"),
            Self::BadFraming => (StatusCode::BAD_REQUEST, "bad-framing"),
            Self::BadLineEnding => (StatusCode::BAD_REQUEST, "bad-line-ending"),
            Self::TooLarge => (StatusCode::PAYLOAD_TOO_LARGE, "request-too-large"),
            Self::HeaderTimeout => (StatusCode::REQUEST_TIMEOUT, "header-timeout"),
        }
    }

    /// The gRPC status code a gRPC client gets for it, as gRPC's own mapping of the HTTP status
    /// would give it, but for the causes that mapping cannot tell apart (a timeout, a denial).
    fn grpc_status(self) -> GrpcCode {
        match self {
            Self::NoEndpoint | Self::ConnectFailed | Self::UpstreamReset | Self::UpstreamClosing => {
                GrpcCode::UNAVAILABLE
            }
            Self::Timeout | Self::HeaderTimeout => GrpcCode::DEADLINE_EXCEEDED,
            Self::Overloaded | Self::TooLarge => GrpcCode::RESOURCE_EXHAUSTED,
            Self::Unauthorized => GrpcCode::PERMISSION_DENIED,
            Self::NoRoute | Self::Connect => GrpcCode::UNIMPLEMENTED,
            Self::BadRequest
            | Self::BadHost
            | Self::BadTarget
            | Self::HeadersTooLarge
            | Self::RequestLineTooLong
            | Self::BadFraming
            | Self::BadLineEnding => GrpcCode::INTERNAL,
        }
    }

    /// The reply to a request: [`response`](Self::response), or for a gRPC request (`grpc`) a
    /// trailers-only gRPC response: HTTP 200, no body, `grpc-status` and `grpc-message` in the
    /// head, and `x-pillion-error` as ever. A gRPC client reads the status from there; by the HTTP
    /// status alone it would take a timeout or a denial for UNAVAILABLE.
    pub fn reply(self, grpc: bool) -> Response<ResponseBody> {
        if !grpc {
            return self.response();
        }
        let code = self.status_and_code().1;
        let mut resp = Response::new(Body::Empty.into());
        let h = resp.headers_mut();
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
        h.insert(headers::GRPC_STATUS.clone(), HeaderValue::from_static(self.grpc_status().as_str()));
        h.insert(headers::GRPC_MESSAGE.clone(), HeaderValue::from_static(code));
        h.insert(headers::ERROR.clone(), HeaderValue::from_static(code));
        resp
    }

    /// The reply sent to the client.
    pub fn response(self) -> Response<ResponseBody> {
        let (status, code) = self.status_and_code();
        let mut resp = Response::new(Body::full(format!("pillion: {code}\n")).into());
        *resp.status_mut() = status;
        let h = resp.headers_mut();
        h.insert(headers::ERROR.clone(), HeaderValue::from_static(code));
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
        if self == Self::Connect {
            // A 405 must say what is allowed (RFC 9110 section 15.5.6).
            h.insert(
                header::ALLOW,
                HeaderValue::from_static("GET, HEAD, POST, PUT, DELETE, OPTIONS, TRACE, PATCH"),
            );
        }
        resp
    }

    /// The reply as the HTTP/1.1 bytes of a last response, for a connection the guard closes
    /// itself, with no server left to frame it.
    pub fn http1_closing(self) -> Vec<u8> {
        let (parts, _) = self.response().into_parts();
        let body = format!("pillion: {}\n", self.status_and_code().1);
        let answering = Answering { method: &Method::GET, version: Version::HTTP_11, keep_alive: false };
        let mut out = Vec::with_capacity(256);
        date::with_now(|d| response::head(&parts, Some(body.len() as u64), answering, d, &mut out));
        out.extend_from_slice(body.as_bytes());
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_carry_status_and_cause() {
        let r = LocalError::Timeout.response();
        assert_eq!(r.status(), StatusCode::GATEWAY_TIMEOUT);
        assert_eq!(r.headers()["x-pillion-error"], "route-timeout");
        assert_eq!(LocalError::NoEndpoint.status_and_code().0, 503);
        assert_eq!(LocalError::UpstreamReset.status_and_code().0, 502);
    }

    #[test]
    fn a_grpc_client_gets_a_trailers_only_grpc_status() {
        let r = LocalError::Timeout.reply(true);
        assert_eq!(r.status(), StatusCode::OK);
        let h = |name: &str| r.headers()[name].to_str().unwrap().to_owned();
        assert_eq!((h("grpc-status"), h("grpc-message")), ("4".into(), "route-timeout".into()));
        assert_eq!(
            (h("content-type"), h("x-pillion-error")),
            ("application/grpc".into(), "route-timeout".into())
        );
        assert!(http_body::Body::is_end_stream(r.body()));
        assert_eq!(LocalError::NoEndpoint.reply(false).status(), StatusCode::SERVICE_UNAVAILABLE);
    }

    #[test]
    fn a_closing_reply_is_one_framed_http1_response() {
        let bytes = String::from_utf8(LocalError::HeaderTimeout.http1_closing()).unwrap();
        assert!(bytes.starts_with("HTTP/1.1 408 Request Timeout\r\n"), "{bytes}");
        assert!(bytes.contains("x-pillion-error: header-timeout\r\n"), "{bytes}");
        assert!(bytes.contains("content-length: 24\r\nconnection: close\r\n\r\n"), "{bytes}");
        assert!(bytes.ends_with("\r\n\r\npillion: header-timeout\n"), "{bytes}");
    }

    #[test]
    fn codec_errors_map_to_their_replies() {
        assert_eq!(LocalError::from(&request::Error::TooManyHeaders(8)), LocalError::HeadersTooLarge);
        assert_eq!(
            LocalError::from(&request::Error::RequestLineTooLong(512)),
            LocalError::RequestLineTooLong
        );
        assert_eq!(
            LocalError::from(&Refusal::Head(request::Error::BareLineEnding)),
            LocalError::BadLineEnding
        );
        assert_eq!(LocalError::from(&Refusal::Body(ChunkError::LineEnding)), LocalError::BadLineEnding);
        assert_eq!(LocalError::from(&Refusal::Body(ChunkError::Trailer)), LocalError::BadFraming);
        assert_eq!(LocalError::from(&request::Error::Authority(Authority::InvalidHost)), LocalError::BadHost);
        assert_eq!(LocalError::from(&request::Error::Authority(Authority::Form)), LocalError::BadTarget);
    }
}
