//! HTTP/1.1 (RFC 9112): our server for client connections ([`server`]), and the message syntax
//! it shares with our upstream client (`upstream::http1`).

pub mod body;
pub mod chunked;
pub mod date;
pub mod feed;
pub mod fields;
pub mod linger;
pub mod maps;
pub mod request;
pub mod response;
pub mod server;
pub mod wire;
pub mod write;

#[cfg(test)]
mod tests;

use tokio::io::{AsyncRead, AsyncWrite};

/// A connection the codecs can serve: a byte stream its task may own.
pub trait Stream: AsyncRead + AsyncWrite + Unpin + Send + 'static {}

impl<S: AsyncRead + AsyncWrite + Unpin + Send + 'static> Stream for S {}
