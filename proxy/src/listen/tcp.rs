//! Opaque TCP proxying: bytes copied both ways with half-close, to an endpoint the balancer
//! picks; a failed connect moves on to another endpoint before any byte is sent.

use tokio::io::{AsyncRead, AsyncWrite};

use crate::{
    balance::Service,
    balance::{Tried, outlier::Outcome},
    upstream::ConnectError,
    upstream::log::source_chain,
};

/// Endpoints tried before a TCP connection is given up.
const CONNECT_TRIES: usize = 3;

/// Copies between `client` and an endpoint of `service` until both directions are done.
pub async fn proxy<S>(mut client: S, service: &Service, name: &str)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let Some(_pending) = service.state.admit() else {
        tracing::debug!(service = name, "service at max_pending; closing TCP connection");
        return;
    };
    let balancer = &service.balancer;
    let mut tried = Tried::default();
    for _ in 0..CONNECT_TRIES.min(balancer.endpoints().len()) {
        let Some(i) = balancer.pick_index(tried) else { break };
        tried.add(i);
        let endpoint = balancer.endpoint(i);
        let _in_flight = endpoint.stats.load.start();
        // Boxed: the connect's state is needed once, not for the copy's whole life.
        let mut upstream = match Box::pin(endpoint.conn.connector.connect()).await {
            Ok(s) => s,
            Err(e) => {
                if !matches!(e, ConnectError::Overloaded(_)) {
                    balancer.report(i, Outcome::Failure);
                }
                tracing::debug!(service = name, error = %source_chain(&e), "TCP upstream connect failed");
                continue;
            }
        };
        balancer.report(i, Outcome::Success);
        if let Err(e) = tokio::io::copy_bidirectional(&mut client, &mut upstream).await {
            tracing::debug!(service = name, endpoint = %endpoint.addr, error = %e, "TCP connection ended with an error");
        }
        return;
    }
    tracing::debug!(service = name, "no TCP upstream reachable; closing");
}
