//! Our HTTP/2 client side: hyper's client connection with the settings every upstream
//! connection gets, its frames written in one write per poll (`coalesce`), its codec run in a
//! task of its own whose polls are counted for that.

use std::net::SocketAddr;

use hyper::client::conn::http2::{Builder, SendRequest};
use hyper_util::rt::{TokioIo, TokioTimer};
use pillion_config::Keepalive;

use super::coalesce::{Coalesce, Counted, CountedSpawn, Polls};
use crate::http1::{BodyError, Stream};

/// Opens HTTP/2 on `io`, a connection to `endpoint` kept alive by `keepalive`, and spawns the
/// task that runs it; returns the handle requests are sent through.
pub async fn handshake<S, B>(
    io: S,
    endpoint: SocketAddr,
    keepalive: Option<Keepalive>,
) -> Result<SendRequest<B>, hyper::Error>
where
    S: Stream,
    B: http_body::Body<Data = bytes::Bytes, Error: Into<BodyError>> + Send + Unpin + 'static,
{
    // The frames one poll of the codec makes leave in one write (see `coalesce`); the codec
    // runs in a task hyper spawns through the builder's executor, which counts its polls.
    let polls = Polls::default();
    let mut builder = Builder::new(CountedSpawn(polls.clone()));
    builder.timer(TokioTimer::new()).adaptive_window(true);
    if let Some(k) = keepalive {
        builder.keep_alive_interval(k.interval).keep_alive_timeout(k.timeout);
    }
    let (tx, conn) = builder.handshake::<_, B>(TokioIo::new(Coalesce::new(io, polls.clone()))).await?;
    let run = async move {
        if let Err(e) = conn.await {
            tracing::debug!(%endpoint, error = %e, "upstream HTTP/2 connection failed");
        }
    };
    tokio::spawn(Counted::new(run, polls));
    Ok(tx)
}
