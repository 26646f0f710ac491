//! The simulated proxies: one watch stream per workload, `GET /v1/watch/{workload}` over mutual
//! TLS with the workload's own certificate, as a proxy opens it (verifying the control plane's
//! SPIFFE identity). Every snapshot line is time-stamped as it arrives and handed to the driver;
//! keep-alive lines are dropped. A stream that fails or ends is opened again, and counted.

use std::{
    net::SocketAddr,
    path::PathBuf,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering::Relaxed},
    },
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use bytes::{Bytes, BytesMut};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use pillion_certs::{CredentialPaths, CredentialStore, Credentials, SpiffeId, tls};
use rustls::ClientConfig;
use tokio::{net::TcpStream, sync::mpsc, task::JoinHandle};
use tokio_rustls::TlsConnector;

/// How long a refused or broken stream waits before it is opened again.
const RETRY: Duration = Duration::from_millis(200);

/// One snapshot line, as watcher `watcher` received it.
#[derive(Debug)]
pub struct Line {
    /// Index of the watcher (its place in the list given to [`Watchers::start`]).
    pub watcher: usize,
    /// When its last byte arrived.
    pub at: Instant,
    /// The line, newline included.
    pub text: Bytes,
}

/// The running watch streams; dropping it stops them.
pub struct Watchers {
    /// Every snapshot line of every watcher, in arrival order.
    pub lines: mpsc::UnboundedReceiver<Line>,
    /// Streams refused (404 before the workload is published) or broken, and opened again.
    pub reopened: Arc<AtomicUsize>,
    tasks: Vec<JoinHandle<()>>,
}

impl Watchers {
    /// Opens one stream per `(workload, certificate directory)` to the control plane at `addr`,
    /// which must prove `control_identity`.
    pub fn start(addr: SocketAddr, workloads: &[(String, PathBuf)], control_identity: &SpiffeId) -> Result<Self> {
        let (tx, lines) = mpsc::unbounded_channel();
        let reopened = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::with_capacity(workloads.len());
        for (watcher, (workload, certs)) in workloads.iter().enumerate() {
            let credentials = Credentials::load(&CredentialPaths::in_dir(certs))
                .with_context(|| format!("load {}", certs.display()))?;
            let mut config = (*tls::client_config(&CredentialStore::new(credentials), control_identity)?).clone();
            config.alpn_protocols = vec![tls::ALPN_HTTP11.to_vec()];
            let stream = Stream {
                addr,
                tls: Arc::new(config),
                name: tls::server_name(control_identity),
                path: format!("/v1/watch/{workload}"),
                watcher,
                tx: tx.clone(),
            };
            let reopened = Arc::clone(&reopened);
            tasks.push(tokio::spawn(async move {
                loop {
                    // Ok means the control plane ended the stream; either way, open it again.
                    let _ = stream.follow().await;
                    if stream.tx.is_closed() {
                        return;
                    }
                    reopened.fetch_add(1, Relaxed);
                    tokio::time::sleep(RETRY).await;
                }
            }));
        }
        Ok(Self { lines, reopened, tasks })
    }
}

impl Drop for Watchers {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

struct Stream {
    addr: SocketAddr,
    tls: Arc<ClientConfig>,
    name: rustls_pki_types::ServerName<'static>,
    path: String,
    watcher: usize,
    tx: mpsc::UnboundedSender<Line>,
}

impl Stream {
    /// Opens the stream and forwards its snapshot lines until it ends.
    async fn follow(&self) -> Result<()> {
        let tcp = TcpStream::connect(self.addr).await?;
        let tls = TlsConnector::from(Arc::clone(&self.tls)).connect(self.name.clone(), tcp).await?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls)).await?;
        tokio::spawn(conn);
        let req = http::Request::get(&self.path)
            .header(http::header::HOST, self.addr.to_string())
            .body(Empty::<Bytes>::new())?;
        let resp = sender.send_request(req).await?;
        if !resp.status().is_success() {
            bail!("{} answered {}", self.path, resp.status());
        }
        let mut body = resp.into_body();
        let mut pending = BytesMut::new();
        while let Some(frame) = body.frame().await {
            let Some(data) = frame?.into_data().ok() else { continue };
            pending.extend_from_slice(&data);
            while let Some(end) = pending.iter().position(|b| *b == b'\n') {
                let text = pending.split_to(end + 1).freeze();
                if text.starts_with(b"{\"keepalive\"") {
                    continue;
                }
                let line = Line { watcher: self.watcher, at: Instant::now(), text };
                if self.tx.send(line).is_err() {
                    return Ok(());
                }
            }
        }
        Ok(())
    }
}
