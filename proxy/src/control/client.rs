//! A small HTTPS client for pillion-control: one HTTP/1.1 connection per call (the watch stream
//! keeps its own), mutual TLS with the workload's certificate or, before it has one, server
//! authentication only. The control plane must prove its SPIFFE identity. Its host, when a name,
//! is resolved on every connection with the proxy's resolver, each address tried in turn.

use std::sync::Arc;

use bytes::Bytes;
use http::{Request, Response, Uri};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use pillion_certs::{SpiffeId, tls::ALPN_HTTP11};
use rustls::ClientConfig;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use crate::dns::Resolver;

/// Why a call to the control plane failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// `control.address` is not `https://host:port`.
    #[error("control.address {0:?} is not https://HOST:PORT")]
    Address(String),
    /// TCP or TLS failed.
    #[error("cannot reach the control plane at {addr}: {error}")]
    Connect {
        /// host:port.
        addr: String,
        /// What failed.
        error: std::io::Error,
    },
    /// HTTP failed.
    #[error("control plane HTTP error: {0}")]
    Http(#[from] hyper::Error),
    /// The control plane answered with an error status.
    #[error("control plane answered {status}: {body}")]
    Status {
        /// Status code.
        status: u16,
        /// Its error text.
        body: String,
    },
    /// `control.token_file` is missing or empty (the kubelet may not have written a projected
    /// token yet): retried, since the file is read again on every attempt.
    #[error("control.token_file {path}: {reason}")]
    NoToken {
        /// The file.
        path: String,
        /// Why there is no token in it.
        reason: String,
    },
    /// Our TLS material could not be set up.
    #[error("TLS setup for the control plane: {0}")]
    Tls(#[from] pillion_certs::Error),
}

/// Where the control plane is and who it must be.
#[derive(Debug, Clone)]
pub struct ControlClient {
    authority: String,
    host: String,
    port: u16,
    resolver: Resolver,
    /// The identity the control plane must present.
    pub identity: SpiffeId,
}

impl ControlClient {
    /// A client for `address` (`https://host:port`), its host resolved with `resolver`; the
    /// control plane is expected to be `spiffe://TD/ns/pillion-system/sa/pillion-control` in
    /// our trust domain.
    pub fn new(address: &str, trust_domain: &str, resolver: Resolver) -> Result<Self, ClientError> {
        let uri: Uri = address.parse().map_err(|_| ClientError::Address(address.into()))?;
        let (Some("https"), Some(auth)) = (uri.scheme_str(), uri.authority()) else {
            return Err(ClientError::Address(address.into()));
        };
        let port = auth.port_u16().unwrap_or(443);
        let authority = format!("{}:{port}", auth.host());
        let identity =
            SpiffeId::parse(&format!("spiffe://{trust_domain}/ns/pillion-system/sa/pillion-control"))
                .map_err(|_| ClientError::Address(address.into()))?;
        Ok(Self { authority, host: auth.host().to_owned(), port, resolver, identity })
    }

    /// A TCP connection to the first of the control plane's addresses that accepts one.
    async fn connect(&self) -> Result<TcpStream, ClientError> {
        let connect_err = |error| ClientError::Connect { addr: self.authority.clone(), error };
        let addrs = self
            .resolver
            .socket_addrs(&self.host, self.port)
            .await
            .map_err(|e| connect_err(std::io::Error::other(e)))?;
        let mut last = None;
        for addr in addrs {
            match TcpStream::connect(addr).await {
                Ok(tcp) => return Ok(tcp),
                Err(e) => last = Some(std::io::Error::new(e.kind(), format!("{addr}: {e}"))),
            }
        }
        Err(connect_err(last.unwrap_or_else(|| std::io::Error::other("no address"))))
    }

    /// The TLS config for talking to it, offering HTTP/1.1 only.
    pub fn tls_config(&self, base: &ClientConfig) -> Arc<ClientConfig> {
        let mut config = base.clone();
        config.alpn_protocols = vec![ALPN_HTTP11.to_vec()];
        Arc::new(config)
    }

    /// Sends one request on a fresh connection and returns the response head and body stream.
    /// A non-2xx answer becomes `ClientError::Status` with the body's text.
    pub async fn send(
        &self,
        tls: Arc<ClientConfig>,
        mut req: Request<Full<Bytes>>,
    ) -> Result<Response<Incoming>, ClientError> {
        let connect_err = |error| ClientError::Connect { addr: self.authority.clone(), error };
        let tcp = self.connect().await?;
        let _ = tcp.set_nodelay(true);
        let name = pillion_certs::tls::server_name(&self.identity);
        let stream = TlsConnector::from(tls).connect(name, tcp).await.map_err(connect_err)?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        if let Ok(host) = self.authority.parse() {
            req.headers_mut().insert(http::header::HOST, host);
        }
        let resp = sender.send_request(req).await?;
        if resp.status().is_success() {
            return Ok(resp);
        }
        let status = resp.status().as_u16();
        let body = read_body(resp.into_body(), 4096).await;
        Err(ClientError::Status { status, body: String::from_utf8_lossy(&body).trim().to_owned() })
    }
}

/// Reads up to `max` bytes of a body.
pub async fn read_body(mut body: Incoming, max: usize) -> Vec<u8> {
    use http_body_util::BodyExt;
    let mut out = Vec::new();
    while let Some(Ok(frame)) = body.frame().await {
        if let Some(d) = frame.data_ref() {
            out.extend_from_slice(&d[..d.len().min(max - out.len())]);
            if out.len() >= max {
                break;
            }
        }
    }
    out
}
