//! Opening upstream connections: TCP with a per-service connect timeout, to one fixed endpoint.
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
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// Why an upstream connection could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// No connection within the service's `connect_timeout`.
    #[error("connect to {0} timed out after {1:?}")]
    Timeout(SocketAddr, Duration),
    /// The connection was refused, unreachable, or failed.
    #[error("connect to {0}: {1}")]
    Io(SocketAddr, io::Error),
}

/// Connects to one endpoint address.
#[derive(Debug, Clone)]
pub struct Connector {
    addr: SocketAddr,
    timeout: Duration,
}

impl Connector {
    /// A connector for `addr` that gives up after `timeout`.
    pub fn new(addr: SocketAddr, timeout: Duration) -> Self {
        Self { addr, timeout }
    }

    /// Opens one TCP connection with `TCP_NODELAY` set.
    pub async fn connect(&self) -> Result<TcpStream, ConnectError> {
        let addr = self.addr;
        let stream = tokio::time::timeout(self.timeout, TcpStream::connect(addr))
            .await
            .map_err(|_| ConnectError::Timeout(addr, self.timeout))?
            .map_err(|e| ConnectError::Io(addr, e))?;
        stream
            .set_nodelay(true)
            .map_err(|e| ConnectError::Io(addr, e))?;
        Ok(stream)
    }
}

impl tower_service::Service<Uri> for Connector {
    type Response = TokioIo<TcpStream>;
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
