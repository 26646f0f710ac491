//! pillion-control: holds the mesh's services, routes and workloads (a directory of YAML files,
//! the Kubernetes API, or both), pushes each proxy its own snapshot, and signs workload
//! certificates.
//!
//! - [`source`] reads and merges the directory; [`view`] and [`validate`] decide what each
//!   workload sees and check it with the proxy's own validator; [`reload`] watches the directory.
//! - [`kubernetes`] watches the API and translates it into the same model; [`compose`] lays
//!   the directory over it and publishes.
//! - [`snapshot`] holds each workload's current NDJSON line; [`watch`] streams it.
//! - [`api`] serves HTTPS; [`ca`] signs CSRs for callers with a workload's own certificate or a
//!   bootstrap token of that workload ([`tokens`]); [`status`] and [`metrics`] are what operators
//!   read.
#![forbid(unsafe_code)]

pub mod api;
pub mod ca;
pub mod compose;
pub mod kubernetes;
pub mod metrics;
pub mod reload;
pub mod snapshot;
pub mod source;
pub mod status;
pub mod tokens;
pub mod validate;
pub mod view;
pub mod watch;

use std::{net::SocketAddr, path::PathBuf, sync::Arc, time::Duration};

use anyhow::Context;
use pillion_certs::{ClientAuth, CredentialStore};
use tokio::{net::TcpListener, signal::unix::SignalKind};

/// Everything the API handlers and the reload task share.
#[derive(Debug)]
pub struct State {
    /// Every workload's current snapshot.
    pub snapshots: snapshot::Snapshots,
    /// What `/v1/status` shows.
    pub status: status::Status,
    /// What `/metrics` shows.
    pub metrics: metrics::Metrics,
    /// The CA and its rules.
    pub signer: Arc<ca::Signer>,
    /// Longest quiet time on a watch stream before a keep-alive line.
    pub keepalive: Duration,
    /// The last good mesh of each source.
    pub sources: compose::Sources,
    /// With `--kubernetes`: who a ServiceAccount token presented for a certificate belongs to.
    pub reviewer: Option<kubernetes::tokenreview::Reviewer>,
}

/// How `pillion-control serve` was asked to run.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// The directory of YAML files, if any.
    pub config_dir: Option<PathBuf>,
    /// Read the mesh from the Kubernetes API too (under the directory).
    pub kubernetes: Option<kubernetes::Options>,
    /// The CA directory (`ca.pem`, `ca-key.pem`).
    pub ca_dir: PathBuf,
    /// The HTTPS address.
    pub bind: SocketAddr,
    /// The bootstrap token file (`WORKLOAD sha256:HEX` lines), if token bootstrap is allowed.
    pub token_file: Option<PathBuf>,
    /// Lifetime of signed workload certificates (and of the control plane's own).
    pub cert_ttl: Duration,
    /// Keep-alive interval of watch streams.
    pub keepalive: Duration,
}

/// Runs the control plane until SIGTERM or SIGINT.
pub async fn run(opts: ServeOptions) -> anyhow::Result<()> {
    let signer = Arc::new(ca::Signer::load(&opts.ca_dir, opts.token_file.as_deref(), opts.cert_ttl)?);
    let store = CredentialStore::new(signer.serving_credentials()?);
    let tls = pillion_certs::tls::server_config(&store, ClientAuth::Optional)
        .context("cannot build the TLS server config")?;
    let client = match &opts.kubernetes {
        Some(k) => Some(kubernetes::client(k).await?),
        None => None,
    };
    let state = Arc::new(State {
        snapshots: snapshot::Snapshots::default(),
        status: status::Status::default(),
        metrics: metrics::Metrics::new(),
        signer: Arc::clone(&signer),
        keepalive: opts.keepalive,
        sources: compose::Sources::default(),
        reviewer: client.clone().map(kubernetes::tokenreview::Reviewer::new),
    });
    if let Some(dir) = &opts.config_dir {
        // A bad directory at start-up is reported like any other; there is just no last good one
        // yet.
        let initial = source::read_dir(dir);
        reload::apply(&state, initial.clone());
        tokio::spawn(reload::watch_dir(dir.clone(), Arc::clone(&state), initial));
    } else {
        // Nothing yet: workloads appear when the cluster is listed.
        compose::set_cluster(&state, source::Mesh::default());
    }
    if let (Some(k), Some(client)) = (&opts.kubernetes, client) {
        let settings = kubernetes::translate::Settings {
            trust_domain: signer.trust_domain().to_owned(),
            cluster_domain: k.cluster_domain.clone(),
        };
        tracing::info!(cluster_domain = %k.cluster_domain, "watching the Kubernetes API");
        tokio::spawn(kubernetes::run(client, settings, Arc::clone(&state)));
    }
    tokio::spawn(ca::renew_serving_cert(Arc::clone(&signer), store));

    let tcp = TcpListener::bind(opts.bind)
        .await
        .with_context(|| format!("cannot bind the API listener on {}", opts.bind))?;
    tracing::info!(
        addr = %opts.bind,
        identity = %signer.identity(),
        bootstrap_tokens = signer.token_count(),
        "pillion-control listening"
    );
    tokio::spawn(api::serve(tcp, tls, state));
    wait_for_stop_signal().await?;
    tracing::info!("stopping");
    Ok(())
}

async fn wait_for_stop_signal() -> anyhow::Result<()> {
    let mut term =
        tokio::signal::unix::signal(SignalKind::terminate()).context("cannot listen for SIGTERM")?;
    let mut int = tokio::signal::unix::signal(SignalKind::interrupt()).context("cannot listen for SIGINT")?;
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    Ok(())
}
