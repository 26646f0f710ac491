//! Opening upstream connections: TCP with a per-service connect timeout, to one fixed endpoint,
//! wrapped in mutual TLS when the endpoint has an identity.
//!
//! A connector is bound to one endpoint (each endpoint owns its pools, see `pool`), so requests
//! keep their real authority while the bytes go to the endpoint the balancer picked.

use std::{
    io,
    net::SocketAddr,
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering::Relaxed},
    },
    task::{Context, Poll},
    time::Duration,
};

use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::TcpStream,
};
use tokio_rustls::{TlsConnector, client::TlsStream};

use crate::{http1::client::Transport, tls::TlsTarget};

/// Why an upstream connection could not be made. Cheap to clone (causes sit behind `Arc`), so
/// that requests waiting on one shared HTTP/2 connect can all be told why it failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ConnectError {
    /// No connection within the service's `connect_timeout`.
    #[error("connect to {0} timed out after {1:?}")]
    Timeout(SocketAddr, Duration),
    /// The connection was refused, unreachable, or failed.
    #[error("connect to {0}: {1}")]
    Io(SocketAddr, Arc<io::Error>),
    /// The service already has `max_connections` upstream connections open.
    #[error("service at max_connections ({0})")]
    Overloaded(usize),
    /// The TLS handshake failed, e.g. the peer is not who the endpoint's identity says.
    #[error("mTLS handshake with {addr} (expecting {expected}): {error}")]
    Tls {
        /// Endpoint address.
        addr: SocketAddr,
        /// The identity the endpoint had to prove.
        expected: String,
        /// What went wrong.
        error: Arc<io::Error>,
    },
    /// The connection opened but the HTTP handshake on it failed.
    #[error("HTTP handshake with {0}: {1}")]
    Handshake(SocketAddr, Arc<hyper::Error>),
}

/// Upstream connections open to one service, against its `max_connections`.
#[derive(Debug)]
pub struct ConnLimit {
    open: AtomicUsize,
    /// The limit; updated in place when a reload changes it.
    pub max: AtomicUsize,
}

impl ConnLimit {
    /// A limit of `max` connections.
    pub fn new(max: usize) -> Arc<Self> {
        Arc::new(Self { open: AtomicUsize::new(0), max: AtomicUsize::new(max) })
    }

    fn take(self: &Arc<Self>) -> Result<ConnSlot, ConnectError> {
        let max = self.max.load(Relaxed);
        if self.open.fetch_add(1, Relaxed) >= max {
            self.open.fetch_sub(1, Relaxed);
            return Err(ConnectError::Overloaded(max));
        }
        Ok(ConnSlot(Arc::clone(self)))
    }
}

/// One open connection counted in a `ConnLimit`; released on drop.
#[derive(Debug)]
struct ConnSlot(Arc<ConnLimit>);

impl Drop for ConnSlot {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Relaxed);
    }
}

/// Connects to one endpoint address.
#[derive(Debug, Clone)]
pub struct Connector {
    addr: SocketAddr,
    timeout: Duration,
    tls: Option<TlsTarget>,
    limit: Arc<ConnLimit>,
}

impl Connector {
    /// A connector for `addr` that gives up after `timeout`, speaking mTLS when `tls` is set,
    /// and counting its connections in the service's `limit`.
    pub fn new(addr: SocketAddr, timeout: Duration, tls: Option<TlsTarget>, limit: Arc<ConnLimit>) -> Self {
        Self { addr, timeout, tls, limit }
    }

    /// The endpoint address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Opens one connection: TCP with `TCP_NODELAY`, then the TLS handshake if meshed, all
    /// within the connect timeout.
    pub async fn connect(&self) -> Result<UpstreamStream, ConnectError> {
        let addr = self.addr;
        let slot = self.limit.take()?;
        tokio::time::timeout(self.timeout, self.open(slot))
            .await
            .map_err(|_| ConnectError::Timeout(addr, self.timeout))?
            .inspect_err(|e| {
                if matches!(e, ConnectError::Tls { .. }) {
                    tracing::warn!(error = %e, "upstream mTLS handshake failed");
                }
            })
    }

    async fn open(&self, slot: ConnSlot) -> Result<UpstreamStream, ConnectError> {
        let addr = self.addr;
        let tcp = TcpStream::connect(addr).await.map_err(|e| ConnectError::Io(addr, Arc::new(e)))?;
        tcp.set_nodelay(true).map_err(|e| ConnectError::Io(addr, Arc::new(e)))?;
        let Some(t) = &self.tls else { return Ok(UpstreamStream { io: Io::Plain(tcp), _slot: slot }) };
        let tls = TlsConnector::from(t.config.clone())
            .connect(t.server_name.clone(), tcp)
            .await
            .map_err(|e| ConnectError::Tls { addr, expected: t.identity.to_string(), error: Arc::new(e) })?;
        Ok(UpstreamStream { io: Io::Tls(Box::new(tls)), _slot: slot })
    }
}

/// An upstream connection, plain or mTLS, counted against its service's limit while open.
#[derive(Debug)]
pub struct UpstreamStream {
    io: Io,
    _slot: ConnSlot,
}

#[derive(Debug)]
enum Io {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl Transport for UpstreamStream {
    /// A plain connection is asked without a read; TLS records only a read can tell.
    fn quiet(&self) -> Option<bool> {
        match &self.io {
            Io::Plain(s) => s.quiet(),
            Io::Tls(_) => None,
        }
    }
}

impl AsyncRead for UpstreamStream {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().io {
            Io::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Io::Tls(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for UpstreamStream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match &mut self.get_mut().io {
            Io::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Io::Tls(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match &mut self.get_mut().io {
            Io::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Io::Tls(s) => Pin::new(s).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match &self.io {
            Io::Plain(s) => s.is_write_vectored(),
            Io::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().io {
            Io::Plain(s) => Pin::new(s).poll_flush(cx),
            Io::Tls(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().io {
            Io::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Io::Tls(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}
