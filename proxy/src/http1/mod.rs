//! HTTP/1.1 (RFC 9112), both sides: our server for client connections ([`server`]), our client
//! for upstream ones ([`client`]), and the message syntax they share. Generic over the stream and
//! the bodies, so that each can be tested and fuzzed alone.

pub mod authority;
pub mod body;
pub mod chunked;
pub mod client;
pub mod connection;
pub mod date;
pub mod feed;
pub mod fields;
pub mod framing;
pub mod linger;
pub mod maps;
pub mod request;
pub mod response;
pub mod server;
pub mod upgrade;
pub mod wire;
pub mod write;

#[cfg(test)]
mod tests;

use tokio::io::{AsyncRead, AsyncWrite};

/// A connection the codecs can serve: a byte stream its task may own.
pub trait Stream: AsyncRead + AsyncWrite + Unpin + Send + 'static {}

impl<S: AsyncRead + AsyncWrite + Unpin + Send + 'static> Stream for S {}

/// Errors a body can end with: the peer's, or a limit of ours.
pub type BodyError = Box<dyn std::error::Error + Send + Sync>;
