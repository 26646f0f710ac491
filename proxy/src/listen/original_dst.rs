//! Transparent interception: where a connection redirected by `pillion init`'s iptables rules was
//! really going, read from the kernel's connection tracking (`SO_ORIGINAL_DST`).

use std::net::SocketAddr;

use socket2::SockRef;
use tokio::net::TcpStream;

/// The address the client originally connected to, before an iptables `REDIRECT` sent it to us.
///
/// `None` when the connection was not redirected: the kernel has no NAT entry for it (or no
/// connection tracking at all), or the entry says the client connected to us directly, in which
/// case the original destination is our own local address.
pub fn original_dst(stream: &TcpStream) -> Option<SocketAddr> {
    let local = canonical(stream.local_addr().ok()?);
    let sock = SockRef::from(stream);
    // An IPv4 client accepted on a dual-stack `[::]` listener is tracked as IPv4, so ask the IPv4
    // table first for those and fall back to the IPv6 one.
    let found = match local {
        SocketAddr::V4(_) => sock.original_dst_v4().or_else(|_| sock.original_dst_v6()).ok()?,
        SocketAddr::V6(_) => sock.original_dst_v6().ok()?,
    };
    let original = canonical(found.as_socket()?);
    (original != local).then_some(original)
}

/// Shows an IPv4-mapped IPv6 address (`::ffff:10.0.0.1`) as the IPv4 address it is.
fn canonical(addr: SocketAddr) -> SocketAddr {
    SocketAddr::new(addr.ip().to_canonical(), addr.port())
}

#[cfg(test)]
mod tests {
    use tokio::net::TcpListener;

    use super::*;

    #[tokio::test]
    async fn a_direct_loopback_connection_has_no_original_destination() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let client = TcpStream::connect(addr).await.unwrap();
        let (server, _) = listener.accept().await.unwrap();
        assert_eq!(original_dst(&server), None);
        assert_eq!(original_dst(&client), None);
    }

    #[tokio::test]
    async fn a_direct_ipv6_loopback_connection_has_no_original_destination() {
        // Some CI sandboxes have no IPv6 at all; nothing to check there.
        let Ok(listener) = TcpListener::bind("[::1]:0").await else {
            return;
        };
        let addr = listener.local_addr().unwrap();
        let _client = TcpStream::connect(addr).await.unwrap();
        let (server, _) = listener.accept().await.unwrap();
        assert_eq!(original_dst(&server), None);
    }
}
