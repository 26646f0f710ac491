//! HTTP/1.1 message syntax (RFC 9112) shared by our codecs: the upstream client
//! (`upstream::http1`) and the client-facing request decoder ([`request`]).

pub mod body;
pub mod fields;
pub mod request;
pub mod response;
pub mod wire;
