//! HTTP/1.1 Upgrade (WebSocket and friends): once the upstream answers 101, the client's
//! connection and the upstream's are joined and bytes are copied between them until either side
//! closes. Run by the client connection's own task, which holds its drain receiver, so shutdown
//! waits for the tunnel up to its deadline.

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};

use super::client::Upgraded;

/// Copies between `client` and the upstream until either closes. `client_read` is what the
/// client sent right behind its request head; the upstream's bytes behind its 101 go first.
pub async fn tunnel<C, U>(client: &mut C, client_read: Bytes, upstream: Upgraded<U>)
where
    C: AsyncRead + AsyncWrite + Unpin,
    U: AsyncRead + AsyncWrite + Unpin,
{
    let Upgraded { io: mut u, read } = upstream;
    let copied = async {
        client.write_all(&read).await?;
        u.write_all(&client_read).await?;
        tokio::io::copy_bidirectional(client, &mut u).await
    };
    if let Err(e) = copied.await {
        tracing::debug!(error = %e, "upgraded connection ended with an error");
    }
}
