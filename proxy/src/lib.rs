//! Pillion, a lightweight L7 sidecar proxy.
//!
//! Layers, bottom up; a module imports only from the layers below it:
//! - leaves: `metrics` (every family, typed label sets), `tls` (workload credentials),
//!   `drain` (the drain signal); the config itself is the `pillion_config` crate;
//! - `http1`, `http2`: the codecs, both sides, generic over streams and bodies;
//! - `body`: a request's body on its way upstream;
//! - `upstream`: connecting to endpoints and their pools; `balance` over it: services,
//!   endpoints as the balancer sees them, outlier ejection, the retry budget;
//! - `live`: the config version in force and its one update path;
//! - `http`: one request's life (route, attempt, forward, local replies, headers);
//! - `listen`: accepting connections, what each is for, detection, the guard, metering;
//! - `admin`, `control` (the control-plane client), `dns` (resolving names: services' `dns`
//!   endpoints, the control-plane address), `iptables` (`pillion init`), and `run` here.
#![forbid(unsafe_code)]

pub mod admin;
pub mod balance;
pub mod body;
pub mod control;
pub mod dns;
pub mod drain;
pub mod http;
pub mod http1;
pub mod http2;
pub mod iptables;
pub mod listen;
pub mod live;
pub mod metrics;
pub mod tls;
pub mod trace;
pub mod upstream;

use std::{net::SocketAddr, path::PathBuf, sync::Arc, time::Duration};

use anyhow::Context;
use tokio::{net::TcpListener, signal::unix::SignalKind};

use crate::{
    listen::accept::ListenerSpec,
    live::{Serving, Shared},
    metrics::{Metrics, UpdateSource},
};

/// Longest wait at start for the first answers for `dns` names before reporting ready.
const FIRST_ANSWERS_WAIT: Duration = Duration::from_secs(5);

/// How `pillion run` was asked to run.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// The config file.
    pub config: PathBuf,
    /// Longest wait for in-flight work after SIGTERM.
    pub drain_timeout: Duration,
    /// Log every request.
    pub access_log: bool,
}

/// Runs the proxy until SIGTERM or SIGINT, then drains and returns.
pub async fn run(opts: RunOptions) -> anyhow::Result<()> {
    let (config, loaded_text) = pillion_config::load(&opts.config).map_err(|e| anyhow::anyhow!("{e}"))?;
    let resolver = dns::Resolver::new(&config.resolver);
    let enrollment = match (&config.control, &config.tls) {
        (Some(ctl), Some(paths)) => Some(enroll(ctl, paths, resolver.clone()).await?),
        _ => None,
    };
    // With a control plane and no services of its own, the proxy has nothing to serve until the
    // first snapshot arrives; a file with services is a local fallback and serves at once.
    let wait_for_control = config.control.is_some() && config.services.is_empty();
    let metrics = Metrics::new();
    let tls = match &config.tls {
        Some(paths) => {
            Some(tls::Tls::start(paths, &metrics).context("cannot load the workload certificate")?)
        }
        None => None,
    };
    let serving = Serving::build(config, 1, None, tls.as_deref()).context("cannot set up upstream TLS")?;
    let (spans, span_queue) = trace::Spans::new(&metrics);
    let shared = Shared::new(serving, metrics, opts.access_log, tls, spans);
    tokio::spawn(trace::export::run(span_queue, Arc::downgrade(&shared)));
    shared.metrics.config_updates(true, UpdateSource::File).inc();

    let rt = shared.serving.load_full();
    let cfg = &rt.config;
    let admin = bind(cfg.admin_bind, "admin").await?;
    let mut listeners = vec![
        (bind(cfg.inbound.bind, "inbound").await?, ListenerSpec::Inbound, &cfg.inbound.limits),
        (bind(cfg.outbound.bind, "outbound").await?, ListenerSpec::Transparent, &cfg.outbound.limits),
    ];
    for (i, l) in cfg.outbound.listeners.iter().enumerate() {
        let tcp = bind(l.bind, &format!("outbound.listeners[{i}]")).await?;
        listeners.push((tcp, ListenerSpec::Explicit(i), &cfg.outbound.limits));
    }

    tokio::spawn(admin::serve(admin, Arc::clone(&shared)));
    let loops: Vec<_> = listeners
        .into_iter()
        .map(|(tcp, spec, limits)| {
            tokio::spawn(listen::accept::accept_loop(tcp, spec, limits.clone(), Arc::clone(&shared)))
        })
        .collect();
    // The watch is registered here, before the proxy reports ready: a change written as soon as
    // `/ready` answers must not fall in a gap before the watch exists.
    tokio::spawn(live::file::watch(opts.config.clone(), loaded_text, Arc::clone(&shared)));
    tokio::spawn(publish_endpoints(Arc::clone(&shared)));
    let first_answers = dns::watch::spawn(Arc::clone(&shared), resolver);
    drop(rt);

    if let (Some(e), Some(tls)) = (enrollment, &shared.tls) {
        tokio::spawn(e.clone().renew_forever(Arc::clone(&tls.store)));
        tokio::spawn(control::run(Arc::clone(&shared), e.client, e.workload, Arc::clone(&tls.store)));
    }
    // Ready once each `dns` name has had its first answer or failure (bounded): a sidecar that
    // answers 503 for a name about to resolve would be ready too early, but one whose DNS is
    // away must not stay unready for it.
    if tokio::time::timeout(FIRST_ANSWERS_WAIT, first_answers).await.is_err() {
        tracing::warn!(waited = ?FIRST_ANSWERS_WAIT, "some dns names have no answer yet; ready without them");
    }
    if wait_for_control {
        tracing::info!("listening; ready once the control plane's first snapshot is applied");
    } else {
        shared.ready.store(true, std::sync::atomic::Ordering::Relaxed);
        tracing::info!(version = 1, "pillion ready");
    }

    wait_for_stop_signal().await?;
    tracing::info!(deadline = ?opts.drain_timeout, "draining");
    shared.drain.send_replace(true);
    for l in loops {
        let _ = l.await;
    }
    // Every connection holds a drain receiver; when the last one goes, we are drained.
    if tokio::time::timeout(opts.drain_timeout, shared.drain.closed()).await.is_err() {
        tracing::warn!(
            remaining = shared.drain.receiver_count(),
            "drain deadline passed; closing what is left"
        );
    } else {
        tracing::info!("drained");
    }
    Ok(())
}

async fn bind(addr: SocketAddr, what: &str) -> anyhow::Result<TcpListener> {
    let tcp = TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot bind the {what} listener on {addr}"))?;
    tracing::info!(listener = what, %addr, "listening");
    Ok(tcp)
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

/// Ejections end by time alone; refresh `pillion_endpoints` every second so it shows that.
async fn publish_endpoints(shared: Arc<Shared>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tick.tick().await;
        shared.publish_endpoints();
    }
}

/// Makes sure the workload has a certificate, asking the control plane for one if need be, and
/// retrying with backoff while it cannot be reached or does not know the workload yet (a Pod
/// starts before the control plane's watch has seen it). Any other refusal is final.
async fn enroll(
    ctl: &pillion_config::ControlConfig,
    paths: &pillion_config::schema::Tls,
    resolver: dns::Resolver,
) -> anyhow::Result<control::certificate::Enrollment> {
    let client = control::client::ControlClient::new(&ctl.address, ctl.identity.trust_domain(), resolver)?;
    let e = control::certificate::Enrollment {
        client,
        workload: ctl.workload.clone(),
        identity: ctl.identity.clone(),
        paths: pillion_certs::CredentialPaths {
            cert: paths.cert.clone().into(),
            key: paths.key.clone().into(),
            trust: paths.trust.clone().into(),
        },
        token_file: ctl.token_file.clone(),
    };
    let mut backoff = Duration::from_millis(200);
    loop {
        match e.ensure().await {
            Ok(()) => return Ok(e),
            Err(err @ control::client::ClientError::Status { status: 400..=403 | 405..=499, .. }) => {
                return Err(anyhow::anyhow!("the control plane refused to issue a certificate: {err}"));
            }
            Err(err) => {
                tracing::warn!(error = %err, retry_in = ?backoff, "cannot get a workload certificate yet");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(30));
            }
        }
    }
}
