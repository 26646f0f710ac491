//! Opaque TCP proxying: bytes copied both ways with half-close, to an endpoint the balancer picks.

use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncWrite};

use crate::{balance::Balancer, http::forward::source_chain};

/// Copies between `client` and an endpoint of `balancer` until both directions are done.
pub async fn proxy<S>(mut client: S, balancer: &Balancer, service: &str)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let Some(endpoint) = balancer.pick().map(Arc::clone) else {
        tracing::debug!(service, "no endpoint for TCP connection; closing");
        return;
    };
    let _in_flight = endpoint.conn.load.start();
    let mut upstream = match endpoint.conn.connector.connect().await {
        Ok(s) => s,
        Err(e) => {
            tracing::debug!(service, error = %source_chain(&e), "TCP upstream connect failed");
            return;
        }
    };
    if let Err(e) = tokio::io::copy_bidirectional(&mut client, &mut upstream).await {
        tracing::debug!(service, endpoint = %endpoint.addr, error = %e, "TCP connection ended with an error");
    }
}
