//! `GET /v1/watch/{workload}`: the NDJSON stream of one workload's snapshots.
//!
//! The current snapshot goes out at once (unless the caller resumes with `?version=N&epoch=E`,
//! E is this process's epoch and N is still current), then one line per change of that workload's snapshot, and a
//! `{"keepalive":true}` line whenever the stream has been quiet for the keep-alive interval. The
//! stream ends when the workload is removed from the config or the caller's certificate
//! expires; the proxy then reconnects (and gets 404 or must present its renewed certificate).

use std::{convert::Infallible, sync::Arc, time::Duration};

use bytes::Bytes;
use futures_util::stream;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use tokio::{
    sync::watch,
    time::{Instant, Interval},
};

use crate::{
    State,
    api::Body,
    snapshot::{Channel, Snapshot},
};

/// The line sent when nothing changed for a while, so proxies and middleboxes see a live stream.
pub const KEEPALIVE: &[u8] = b"{\"keepalive\":true}\n";

/// Counts one open stream for `/v1/status` and the connected gauge while it lives.
struct Connected {
    state: Arc<State>,
    workload: String,
}

impl Connected {
    fn new(state: Arc<State>, workload: String, cert_expiry: Option<i64>) -> Self {
        state.metrics.connected_proxies.inc();
        state.status.connected(&workload, cert_expiry);
        tracing::info!(%workload, "proxy connected");
        Self { state, workload }
    }
}

impl Drop for Connected {
    fn drop(&mut self) {
        self.state.metrics.connected_proxies.dec();
        self.state.status.disconnected(&self.workload);
        tracing::info!(workload = %self.workload, "proxy disconnected");
    }
}

struct Watch {
    rx: watch::Receiver<Snapshot>,
    first: Option<Bytes>,
    keepalive: Interval,
    /// When the caller's certificate expires: the stream must not outlive it.
    until: Instant,
    conn: Connected,
}

/// The response body of a watch: an endless NDJSON stream.
pub fn stream(
    state: Arc<State>,
    workload: String,
    channel: &Channel,
    resume: Option<u64>,
    cert_expiry: Option<i64>,
) -> Body {
    let mut rx = channel.subscribe();
    let current = rx.borrow_and_update().clone();
    let first = (resume != Some(current.version)).then_some(current.line);
    let every = state.keepalive;
    let mut keepalive = tokio::time::interval_at(Instant::now() + every, every);
    keepalive.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let until = Instant::now() + cert_expiry.map_or(Duration::from_secs(365 * 86_400), seconds_until);
    let conn = Connected::new(state, workload, cert_expiry);
    let w = Watch { rx, first, keepalive, until, conn };
    let lines = stream::unfold(w, |mut w| async move {
        if let Some(line) = w.first.take() {
            w.conn.state.metrics.pushes.inc();
            return Some((Ok::<_, Infallible>(Frame::data(line)), w));
        }
        tokio::select! {
            changed = w.rx.changed() => {
                // An error means the workload's channel is gone: removed from the config.
                changed.ok()?;
                let line = w.rx.borrow_and_update().line.clone();
                w.keepalive.reset();
                w.conn.state.metrics.pushes.inc();
                Some((Ok(Frame::data(line)), w))
            }
            _ = w.keepalive.tick() => Some((Ok(Frame::data(Bytes::from_static(KEEPALIVE))), w)),
            () = tokio::time::sleep_until(w.until) => {
                tracing::info!(workload = %w.conn.workload, "client certificate expired; ending its watch");
                None
            }
        }
    });
    StreamBody::new(lines).boxed_unsync()
}

fn seconds_until(unix: i64) -> Duration {
    let now =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64);
    Duration::from_secs(unix.saturating_sub(now).max(0) as u64)
}
