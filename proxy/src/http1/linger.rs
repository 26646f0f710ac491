//! Closing a client connection without losing its last reply: the reply is written, the write
//! side shut, and what the client still sends is read and dropped for a moment, since closing
//! with unread bytes makes the kernel answer them with a reset that destroys the reply.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::Stream;

/// How long a closing connection may take to receive its reply, and then how long the client
/// is read from (and ignored) before the socket closes.
pub const LINGER: Duration = Duration::from_secs(2);
/// Sends a rejection's reply, half-closes, and reads (and drops) what the client still sends
/// for a moment: closing with unread bytes would reset the connection and lose the reply.
pub async fn close_with<S: Stream>(mut io: S, reply: Vec<u8>) {
    let _ = tokio::time::timeout(LINGER, async {
        io.write_all(&reply).await?;
        io.shutdown().await
    })
    .await;
    // On the heap: in the future, it would make every connection task that may linger 4 KiB larger.
    let mut sink = vec![0u8; 4096];
    let _ = tokio::time::timeout(LINGER, async {
        while let Ok(n) = io.read(&mut sink).await {
            if n == 0 {
                break;
            }
        }
    })
    .await;
}
