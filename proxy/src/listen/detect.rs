//! Protocol detection by peeking at a connection's first bytes, without consuming them: TLS
//! ClientHello, HTTP/2 preface, HTTP/1 request line, or opaque. Bounded in bytes and time, so a
//! server-first protocol (the client waits for the server to speak) is opaque after the timeout.

use std::time::Duration;

use pillion_config::Protocol;
use tokio::net::TcpStream;

use crate::http2::PREFACE;

/// How long to wait for a client's first bytes to tell its protocol.
pub const DETECT_TIMEOUT: Duration = Duration::from_secs(1);
/// The most bytes looked at.
const PEEK_CAP: usize = 64;

/// What a client opened with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Detected {
    /// A TLS handshake record (ClientHello).
    Tls,
    /// The HTTP/2 connection preface (h2c prior knowledge).
    Http2,
    /// An HTTP/1.x request line.
    Http1,
    /// Anything else, or nothing within the timeout.
    Opaque,
}

const METHODS: &[&[u8]] =
    &[b"GET ", b"HEAD ", b"POST ", b"PUT ", b"DELETE ", b"OPTIONS ", b"PATCH ", b"TRACE ", b"CONNECT "];

/// Classifies a prefix; `None` while more bytes could still change the answer.
pub fn classify(buf: &[u8]) -> Option<Detected> {
    if buf.is_empty() {
        return None;
    }
    // TLS record: handshake (22), major version 3.
    if buf[0] == 0x16 {
        return match buf.get(1) {
            None => None,
            Some(3) => Some(Detected::Tls),
            Some(_) => Some(Detected::Opaque),
        };
    }
    let n = buf.len().min(PREFACE.len());
    if buf[..n] == PREFACE[..n] {
        return if n == PREFACE.len() { Some(Detected::Http2) } else { None };
    }
    for m in METHODS {
        let n = buf.len().min(m.len());
        if buf[..n] == m[..n] {
            if n < m.len() {
                return None;
            }
            // The method names are also plausible opaque bytes; require the request line's
            // shape: a target and an HTTP/1.x version (or enough bytes to see it coming).
            let line_end = buf.iter().position(|&b| b == b'\n');
            return match line_end {
                Some(end) => {
                    let line = &buf[..end];
                    let ok = line.windows(7).any(|w| w == b"HTTP/1.");
                    Some(if ok { Detected::Http1 } else { Detected::Opaque })
                }
                None if buf.len() >= PEEK_CAP => Some(Detected::Http1),
                None => None,
            };
        }
    }
    Some(Detected::Opaque)
}

/// Whether a connection to a port or service speaking `protocol` is HTTP: the config says so, or
/// (for `auto`) its first bytes do. A detection already made is reused, and one made here is
/// kept in `detected`, so that no connection is peeked at twice.
pub async fn is_http(protocol: Protocol, stream: &TcpStream, detected: &mut Option<Detected>) -> bool {
    match protocol {
        Protocol::Tcp => false,
        Protocol::Http1 | Protocol::Http2 => true,
        Protocol::Auto => {
            let d = match *detected {
                Some(d) => d,
                None => *detected.insert(detect(stream, DETECT_TIMEOUT).await),
            };
            matches!(d, Detected::Http1 | Detected::Http2)
        }
    }
}

/// Peeks until the protocol is known, `timeout` passes, or `PEEK_CAP` bytes are seen.
pub async fn detect(stream: &TcpStream, timeout: Duration) -> Detected {
    let mut buf = [0u8; PEEK_CAP];
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let n = match tokio::time::timeout_at(deadline, stream.peek(&mut buf)).await {
            Ok(Ok(n)) => n,
            Ok(Err(_)) | Err(_) => return Detected::Opaque,
        };
        if n == 0 {
            return Detected::Opaque; // closed before saying anything we know
        }
        if let Some(d) = classify(&buf[..n]) {
            return d;
        }
        if n == PEEK_CAP {
            return Detected::Opaque;
        }
        // A partial prefix: peek would return the same bytes at once, so wait a little for
        // more. Rare (a request line split across packets), and bounded by the deadline.
        if tokio::time::timeout_at(deadline, tokio::time::sleep(Duration::from_millis(1))).await.is_err() {
            return Detected::Opaque;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_each_protocol() {
        assert_eq!(classify(&[0x16, 0x03, 0x01]), Some(Detected::Tls));
        assert_eq!(classify(PREFACE), Some(Detected::Http2));
        assert_eq!(classify(b"GET / HTTP/1.1\r\nHost: x\r\n"), Some(Detected::Http1));
        assert_eq!(classify(b"POST /a HTTP/1.0\r\n"), Some(Detected::Http1));
        assert_eq!(classify(b"*1\r\n$4\r\nPING\r\n"), Some(Detected::Opaque));
        assert_eq!(classify(b"GET key\r\n"), Some(Detected::Opaque), "memcached-style text is not HTTP");
        assert_eq!(classify(&[0x16, 0x01]), Some(Detected::Opaque));
    }

    #[test]
    fn waits_for_more_bytes_when_a_prefix_is_ambiguous() {
        assert_eq!(classify(b""), None);
        assert_eq!(classify(b"PRI * HT"), None);
        assert_eq!(classify(b"GE"), None);
        assert_eq!(classify(b"GET /long/path"), None);
        assert_eq!(classify(&[0x16]), None);
    }

    #[tokio::test]
    async fn silent_clients_are_opaque_after_the_timeout() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let _client = tokio::net::TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
        let (server, _) = l.accept().await.unwrap();
        assert_eq!(detect(&server, Duration::from_millis(50)).await, Detected::Opaque);
    }

    #[tokio::test]
    async fn split_request_lines_are_still_http() {
        use tokio::io::AsyncWriteExt;
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut client = tokio::net::TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
        let (server, _) = l.accept().await.unwrap();
        client.write_all(b"GET /a").await.unwrap();
        let writer = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(20)).await;
            client.write_all(b" HTTP/1.1\r\n\r\n").await.unwrap();
            client
        });
        assert_eq!(detect(&server, Duration::from_secs(5)).await, Detected::Http1);
        drop(writer.await);
    }
}
