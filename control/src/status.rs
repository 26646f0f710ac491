//! What operators see on `GET /v1/status`: the config version, the directory's last error (file,
//! line, column), and per workload whether its proxies are connected, which version they acked,
//! the last rejection and its reason, their certificate expiry and when they were last seen.
//!
//! Proxies are tracked per workload: replicas of one workload share a name and an identity, so
//! `streams` counts their watch connections and the ack fields hold the latest report.

use std::{
    collections::{BTreeMap, HashMap},
    sync::Mutex,
    time::SystemTime,
};

use serde::Serialize;
use serde_json::{Value, json};

use crate::{snapshot::Table, source::SourceError};

#[derive(Debug, Default, Clone)]
struct ProxyState {
    streams: u32,
    acked_version: Option<u64>,
    last_error: Option<String>,
    nacked_version: Option<u64>,
    cert_expiry: Option<i64>,
    last_seen: Option<i64>,
}

#[derive(Debug, Default)]
struct Inner {
    config_error: Option<SourceError>,
    proxies: HashMap<String, ProxyState>,
}

/// Shared status, updated by the reload task and the API handlers.
#[derive(Debug, Default)]
pub struct Status {
    inner: Mutex<Inner>,
}

/// One proxy report as `/v1/status` shows it.
#[derive(Debug, Serialize)]
struct ProxyView<'a> {
    workload: &'a str,
    identity: Option<&'a str>,
    /// The version of the workload's current snapshot.
    version: Option<u64>,
    connected: bool,
    streams: u32,
    acked_version: Option<u64>,
    last_error: Option<&'a str>,
    nacked_version: Option<u64>,
    cert_expiry: Option<String>,
    cert_expiry_unix: Option<i64>,
    last_seen: Option<String>,
}

pub(crate) fn now_unix() -> i64 {
    SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64)
}

fn rfc3339(unix: i64) -> Option<String> {
    time::OffsetDateTime::from_unix_timestamp(unix).ok().map(pillion_certs::cert::format_time)
}

impl Status {
    fn with<T>(&self, f: impl FnOnce(&mut Inner) -> T) -> T {
        // A poisoned lock only means a panic elsewhere mid-update; the counters are still usable.
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut inner)
    }

    /// Records the directory's current error, or clears it.
    pub fn set_config_error(&self, error: Option<SourceError>) {
        self.with(|i| i.config_error = error);
    }

    /// A watch stream opened, by a client whose certificate expires at `cert_expiry` (unix).
    pub fn connected(&self, workload: &str, cert_expiry: Option<i64>) {
        self.with(|i| {
            let p = i.proxies.entry(workload.to_owned()).or_default();
            p.streams += 1;
            p.cert_expiry = cert_expiry.or(p.cert_expiry);
            p.last_seen = Some(now_unix());
        });
    }

    /// A watch stream closed.
    pub fn disconnected(&self, workload: &str) {
        self.with(|i| {
            if let Some(p) = i.proxies.get_mut(workload) {
                p.streams = p.streams.saturating_sub(1);
                p.last_seen = Some(now_unix());
            }
        });
    }

    /// A proxy of `workload` reported `version` applied (`error` None) or rejected.
    pub fn ack(&self, workload: &str, version: u64, error: Option<String>) {
        self.with(|i| {
            let p = i.proxies.entry(workload.to_owned()).or_default();
            p.last_seen = Some(now_unix());
            match error {
                None => {
                    p.acked_version = Some(version);
                    // A newer applied version supersedes an older rejection.
                    if p.nacked_version.is_some_and(|n| n <= version) {
                        p.last_error = None;
                        p.nacked_version = None;
                    }
                }
                Some(e) => {
                    p.last_error = Some(e);
                    p.nacked_version = Some(version);
                }
            }
        });
    }

    /// The `/v1/status` document.
    pub fn render(&self, table: &Table) -> Value {
        self.with(|i| {
            let mut names: BTreeMap<&str, ()> = table.workloads.keys().map(|k| (k.as_str(), ())).collect();
            names.extend(i.proxies.keys().map(|k| (k.as_str(), ())));
            let proxies: Vec<ProxyView<'_>> = names
                .into_keys()
                .map(|name| {
                    let channel = table.workloads.get(name);
                    let p = i.proxies.get(name).cloned().unwrap_or_default();
                    ProxyView {
                        workload: name,
                        identity: channel.map(|c| c.identity.as_str()),
                        version: channel.map(|c| c.current().version),
                        connected: p.streams > 0,
                        streams: p.streams,
                        acked_version: p.acked_version,
                        last_error: i.proxies.get(name).and_then(|p| p.last_error.as_deref()),
                        nacked_version: p.nacked_version,
                        cert_expiry: p.cert_expiry.and_then(rfc3339),
                        cert_expiry_unix: p.cert_expiry,
                        last_seen: p.last_seen.and_then(rfc3339),
                    }
                })
                .collect();
            let config_error = i.config_error.as_ref().and_then(|e| e.problems.first()).map(|first| {
                let all = i.config_error.as_ref().map(|e| &e.problems);
                json!({
                    "file": first.file, "line": first.line, "col": first.col, "message": first.message,
                    "text": i.config_error.as_ref().map(ToString::to_string),
                    "problems": all,
                })
            });
            json!({ "version": table.version, "config_error": config_error, "proxies": proxies })
        })
    }
}
