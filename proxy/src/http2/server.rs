//! Our HTTP/2 server side: hyper's server with a listener's limits, its frames written in one
//! write per poll (`coalesce`), its request futures boxed where they are built, and a graceful
//! GOAWAY when the proxy drains.

use std::{convert::Infallible, future::Future, time::Duration};

use http::{Request, Response};
use hyper::{body::Incoming, service::service_fn};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use pillion_config::ListenerLimits;
use tokio::sync::watch;

use super::coalesce::{Coalesce, Counted, Polls};
use crate::{drain, http1::Stream};

/// hyper's HTTP/2 server settings.
pub type Builder = hyper::server::conn::http2::Builder<TokioExecutor>;

/// The HTTP/2 server settings for a listener's clients.
pub fn builder(limits: &ListenerLimits) -> Builder {
    let mut h2 = Builder::new(TokioExecutor::new());
    h2.timer(TokioTimer::new())
        .max_concurrent_streams(limits.max_concurrent_streams)
        .max_header_list_size(u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX))
        .max_pending_accept_reset_streams(64)
        .max_local_error_reset_streams(256)
        .adaptive_window(true)
        .keep_alive_interval(Duration::from_secs(30))
        .keep_alive_timeout(Duration::from_secs(10));
    h2
}

/// Serves HTTP/2 on `io` with `service` until the connection closes, or shuts it down
/// gracefully once the proxy drains.
pub async fn serve<S, F, Fut, B>(
    io: S,
    builder: &Builder,
    drain: &mut watch::Receiver<bool>,
    service: F,
) -> Result<(), hyper::Error>
where
    S: Stream,
    F: Fn(Request<Incoming>) -> Fut + Send + 'static,
    Fut: Future<Output = Response<B>> + Send + 'static,
    B: http_body::Body<Data = bytes::Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let svc = service_fn(move |req| {
        // Boxed where it is built, as in the HTTP/1.1 server: hyper moves the service's future
        // into its stream task and the spawn moves that again, and each move of the ~5 KiB
        // request future was a copy of all of it.
        let handling = Box::into_pin(Box::write(Box::new_uninit(), service(req)));
        async move { Ok::<_, Infallible>(handling.await) }
    });
    // The frames one poll of the connection makes leave in one write (see `coalesce`); hyper's
    // server polls the codec in this task, so this task's polls are the ones counted.
    let polls = Polls::default();
    let io = TokioIo::new(Coalesce::new(io, polls.clone()));
    // Boxed: inline, its ~5 KiB of state would be in every connection's task, HTTP/1.1 too.
    let mut served = Box::pin(Counted::new(builder.serve_connection(io, svc), polls));
    drain::until_drained(served.as_mut(), drain, |s| s.inner().graceful_shutdown()).await
}
