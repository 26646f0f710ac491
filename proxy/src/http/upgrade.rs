//! HTTP/1.1 Upgrade (WebSocket and friends): once the upstream answers 101, both connections are
//! handed over and bytes are copied between them until either side closes.

use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio::sync::watch;

/// Joins the client's and the upstream's upgraded connections in a background task. The task
/// holds a drain receiver, so shutdown waits for the tunnel up to its deadline.
pub fn tunnel(client: OnUpgrade, upstream: OnUpgrade, drain: watch::Receiver<bool>) {
    tokio::spawn(async move {
        let _drain = drain;
        let (client, upstream) = match tokio::try_join!(client, upstream) {
            Ok(pair) => pair,
            Err(e) => {
                tracing::debug!(error = %e, "upgrade failed");
                return;
            }
        };
        let (mut c, mut u) = (TokioIo::new(client), TokioIo::new(upstream));
        if let Err(e) = tokio::io::copy_bidirectional(&mut c, &mut u).await {
            tracing::debug!(error = %e, "upgraded connection ended with an error");
        }
    });
}
