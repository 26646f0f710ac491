//! HTTP/1.1 Upgrade (WebSocket and friends): once the upstream answers 101, both connections are
//! handed over and bytes are copied between them until either side closes.

use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio::{io::AsyncWriteExt, sync::watch};

use crate::upstream::http1::Upgraded;

/// Joins the client's upgraded connection and the upstream's in a background task. The task
/// holds a drain receiver, so shutdown waits for the tunnel up to its deadline.
pub fn tunnel(client: OnUpgrade, upstream: Upgraded, drain: watch::Receiver<bool>) {
    tokio::spawn(async move {
        let _drain = drain;
        let client = match client.await {
            Ok(c) => c,
            Err(e) => {
                tracing::debug!(error = %e, "upgrade failed");
                return;
            }
        };
        let mut c = TokioIo::new(client);
        let Upgraded { io: mut u, read } = upstream;
        // What the upstream sent right behind its 101 goes first.
        let copied = async {
            c.write_all(&read).await?;
            tokio::io::copy_bidirectional(&mut c, &mut u).await
        };
        if let Err(e) = copied.await {
            tracing::debug!(error = %e, "upgraded connection ended with an error");
        }
    });
}
