//! The proxy's side of pillion-control: get a certificate, watch this workload's snapshot,
//! hand each one to [`update`](crate::live::update) (which merges it over the file's config and
//! applies it, or keeps the last good one), and say which with an ack. While the control plane is away the proxy keeps serving and reconnects
//! with jittered exponential backoff, resuming from the version it has.

pub mod certificate;
pub mod client;

use std::{sync::Arc, time::Duration};

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full};
use pillion_certs::CredentialStore;
use serde::Deserialize;

use pillion_config::{overlay::Overlay, schema};

use crate::{
    live::{Shared, update},
    metrics::UpdateSource,
};
use client::{ClientError, ControlClient};

/// Longest snapshot line accepted.
const MAX_LINE: usize = 16 * 1024 * 1024;
const MIN_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// One NDJSON line of the watch stream.
#[derive(Debug, Deserialize)]
struct Line {
    #[serde(default)]
    keepalive: bool,
    version: Option<u64>,
    #[serde(default)]
    services: Vec<schema::Service>,
    #[serde(default)]
    routes: Vec<schema::Route>,
    #[serde(default)]
    inbound: InboundPart,
    /// The control plane's process epoch: versions are only comparable within one.
    #[serde(default)]
    epoch: u64,
}

#[derive(Debug, Default, Deserialize)]
struct InboundPart {
    #[serde(default)]
    ports: Vec<schema::InboundPort>,
}

/// Decodes one NDJSON line of the watch stream: the snapshot it carries, or `None` for a
/// keep-alive (or any line without a version).
pub fn decode_line(raw: &[u8]) -> Result<Option<Overlay>, serde_json::Error> {
    let line: Line = serde_json::from_slice(raw)?;
    let (false, Some(version)) = (line.keepalive, line.version) else { return Ok(None) };
    Ok(Some(Overlay {
        version,
        epoch: line.epoch,
        services: line.services,
        routes: line.routes,
        ports: line.inbound.ports,
    }))
}

/// Watches this workload's snapshots until the process exits.
pub async fn run(shared: Arc<Shared>, client: ControlClient, workload: String, store: Arc<CredentialStore>) {
    let mut backoff = MIN_BACKOFF;
    loop {
        match watch_once(&shared, &client, &workload, &store, &mut backoff).await {
            Ok(()) => tracing::info!("control plane closed the watch; reconnecting"),
            Err(e) => {
                tracing::warn!(error = %e, retry_in = ?backoff, "control plane unavailable; serving the last good config")
            }
        }
        shared.metrics.control_reconnects.inc();
        tokio::time::sleep(backoff.mul_f64(0.5 + fastrand::f64() / 2.0)).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

async fn watch_once(
    shared: &Arc<Shared>,
    client: &ControlClient,
    workload: &str,
    store: &Arc<CredentialStore>,
    backoff: &mut Duration,
) -> Result<(), ClientError> {
    let (have, epoch) = shared.layers().overlay.as_ref().map_or((0, 0), |o| (o.version, o.epoch));
    let tls = client.tls_config(&*pillion_certs::tls::client_config(store, &client.identity)?);
    let req = Request::get(format!("/v1/watch/{workload}?version={have}&epoch={epoch}"))
        .body(Full::default())
        .map_err(|e| ClientError::Address(e.to_string()))?;
    let resp = client.send(Arc::clone(&tls), req).await?;
    *backoff = MIN_BACKOFF;
    shared.metrics.control_connected.set(1);
    tracing::info!(workload, version = have, "watching the control plane");
    let mut body = resp.into_body();
    let mut buf: Vec<u8> = Vec::new();
    let result = loop {
        let Some(frame) = body.frame().await else { break Ok(()) };
        let frame = match frame {
            Ok(f) => f,
            Err(e) => break Err(e.into()),
        };
        let Some(data) = frame.data_ref() else { continue };
        buf.extend_from_slice(data);
        while let Some(nl) = buf.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = buf.drain(..=nl).collect();
            on_line(shared, client, workload, &tls, &line);
        }
        if buf.len() > MAX_LINE {
            break Err(ClientError::Status { status: 200, body: "a snapshot line over 16 MiB".into() });
        }
    };
    shared.metrics.control_connected.set(0);
    result
}

fn on_line(
    shared: &Arc<Shared>,
    client: &ControlClient,
    workload: &str,
    tls: &Arc<rustls::ClientConfig>,
    raw: &[u8],
) {
    let overlay = match decode_line(raw) {
        Ok(Some(o)) => o,
        Ok(None) => return,
        Err(e) => {
            tracing::warn!(error = %e, "unreadable line from the control plane");
            return;
        }
    };
    let version = overlay.version;
    let error = match update::update(shared, None, Some(overlay), UpdateSource::Control, None) {
        Ok(_) => {
            shared.ready.store(true, std::sync::atomic::Ordering::Relaxed);
            None
        }
        Err(e) => Some(e),
    };
    let body = serde_json::json!({"workload": workload, "version": version, "error": error});
    let (client, tls) = (client.clone(), Arc::clone(tls));
    tokio::spawn(async move {
        let req = Request::post("/v1/ack")
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(body.to_string())));
        if let Ok(req) = req {
            if let Err(e) = client.send(tls, req).await {
                tracing::warn!(error = %e, version, "could not ack to the control plane");
            }
        }
    });
}
