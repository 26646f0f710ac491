//! Opening upstream connections: TCP with a per-service connect timeout, to one fixed endpoint,
//! wrapped in mutual TLS when the endpoint has an identity.
//!
//! The connector ignores the request URI: each endpoint owns its own client and pool, so the URI
//! can carry the request's real authority while the bytes go to the endpoint the balancer picked.

use std::{
    future::Future,
    io,
    net::SocketAddr,
    pin::Pin,
    task::{Context, Poll},
    time::Duration,
};

use http::Uri;
use hyper_util::{
    client::legacy::connect::{Connected, Connection},
    rt::TokioIo,
};
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::TcpStream,
};
use tokio_rustls::{TlsConnector, client::TlsStream};

use crate::tls::TlsTarget;

/// Why an upstream connection could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// No connection within the service's `connect_timeout`.
    #[error("connect to {0} timed out after {1:?}")]
    Timeout(SocketAddr, Duration),
    /// The connection was refused, unreachable, or failed.
    #[error("connect to {0}: {1}")]
    Io(SocketAddr, io::Error),
    /// The TLS handshake failed, e.g. the peer is not who the endpoint's identity says.
    #[error("mTLS handshake with {addr} (expecting {expected}): {error}")]
    Tls {
        /// Endpoint address.
        addr: SocketAddr,
        /// The identity the endpoint had to prove.
        expected: String,
        /// What went wrong.
        error: io::Error,
    },
}

/// Connects to one endpoint address.
#[derive(Debug, Clone)]
pub struct Connector {
    addr: SocketAddr,
    timeout: Duration,
    tls: Option<TlsTarget>,
}

impl Connector {
    /// A connector for `addr` that gives up after `timeout`, speaking mTLS when `tls` is set.
    pub fn new(addr: SocketAddr, timeout: Duration, tls: Option<TlsTarget>) -> Self {
        Self { addr, timeout, tls }
    }

    /// Opens one connection: TCP with `TCP_NODELAY`, then the TLS handshake if meshed, all
    /// within the connect timeout.
    pub async fn connect(&self) -> Result<UpstreamStream, ConnectError> {
        let addr = self.addr;
        tokio::time::timeout(self.timeout, self.open())
            .await
            .map_err(|_| ConnectError::Timeout(addr, self.timeout))?
            .inspect_err(|e| {
                if matches!(e, ConnectError::Tls { .. }) {
                    tracing::warn!(error = %e, "upstream mTLS handshake failed");
                }
            })
    }

    async fn open(&self) -> Result<UpstreamStream, ConnectError> {
        let addr = self.addr;
        let tcp = TcpStream::connect(addr).await.map_err(|e| ConnectError::Io(addr, e))?;
        tcp.set_nodelay(true).map_err(|e| ConnectError::Io(addr, e))?;
        let Some(t) = &self.tls else { return Ok(UpstreamStream::Plain(tcp)) };
        let tls = TlsConnector::from(t.config.clone())
            .connect(t.server_name.clone(), tcp)
            .await
            .map_err(|error| ConnectError::Tls { addr, expected: t.identity.to_string(), error })?;
        Ok(UpstreamStream::Tls(Box::new(tls)))
    }
}

impl tower_service::Service<Uri> for Connector {
    type Response = TokioIo<UpstreamStream>;
    type Error = ConnectError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, ConnectError>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), ConnectError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: Uri) -> Self::Future {
        let this = self.clone();
        Box::pin(async move { this.connect().await.map(TokioIo::new) })
    }
}

/// An upstream connection, plain or mTLS.
#[derive(Debug)]
pub enum UpstreamStream {
    /// Plain TCP.
    Plain(TcpStream),
    /// Mutual TLS over TCP.
    Tls(Box<TlsStream<TcpStream>>),
}

impl Connection for UpstreamStream {
    fn connected(&self) -> Connected {
        match self {
            Self::Plain(s) => s.connected(),
            Self::Tls(s) => {
                let c = s.get_ref().0.connected();
                if s.get_ref().1.alpn_protocol() == Some(b"h2") { c.negotiated_h2() } else { c }
            }
        }
    }
}

impl AsyncRead for UpstreamStream {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Self::Tls(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for UpstreamStream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Self::Tls(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Self::Tls(s) => Pin::new(s).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Self::Plain(s) => s.is_write_vectored(),
            Self::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_flush(cx),
            Self::Tls(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Self::Tls(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}
