//! Telling an HTTP/2 client (prior knowledge) from an HTTP/1 one by its first bytes, so that each
//! connection is served by the one codec it speaks. The bytes read to decide are read through the
//! guard (under its timeouts) and handed out again by the connection's next reads; an HTTP/2
//! connection's frames are counted from its first byte.

use std::io;

use bytes::BytesMut;
use tokio::io::AsyncReadExt;

use super::{Guarded, Scan, Stream};
use crate::http2::PREFACE;
use crate::http2::guard::Frames;

/// Read at once while sniffing: a whole small request head, so HTTP/1 costs no extra read.
const FIRST_READ: usize = 1024;

impl<S: Stream> Guarded<S> {
    /// Counts the connection's frames from its first byte (the preface, not yet read) on: for
    /// a client already seen, by a peek, to open with the HTTP/2 preface. Returns `true`.
    pub fn start_http2(&mut self) -> bool {
        self.scan = Scan::Http2(Frames::new(PREFACE.len()));
        true
    }

    /// Reads until the client's first bytes say whether it speaks HTTP/2 with prior knowledge;
    /// `false` for anything else (HTTP/1, garbage, or a connection closed or rejected before
    /// the bytes arrived), which the HTTP/1 codec then answers.
    pub async fn sniff_http2(&mut self) -> io::Result<bool> {
        let mut seen = BytesMut::with_capacity(FIRST_READ);
        let h2 = loop {
            if seen.len() >= PREFACE.len() {
                break seen.starts_with(PREFACE);
            }
            if !PREFACE.starts_with(&seen) {
                break false;
            }
            if self.read_buf(&mut seen).await? == 0 {
                break false;
            }
        };
        if h2 {
            self.start_http2();
            if let Err(why) = self.scan.feed(&seen) {
                self.reject(why);
                return Ok(true);
            }
        }
        if !seen.is_empty() {
            self.replay = Some(seen.freeze());
        }
        Ok(h2)
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use prometheus::{IntCounterVec, Opts};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;
    use crate::listen::guard::Rejections;
    use pillion_config::ListenerLimits;

    async fn sniff(sent: &[&[u8]]) -> (bool, Vec<u8>) {
        let (client, server) = tokio::io::duplex(4096);
        let counter = IntCounterVec::new(Opts::new("r", "r"), &["direction", "reason"]).unwrap();
        let rejections = Rejections::new(counter, crate::metrics::Direction::Inbound);
        let peer: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let mut guarded = Guarded::new(server, &ListenerLimits::default(), peer, rejections);
        let writer = {
            let sent: Vec<Vec<u8>> = sent.iter().map(|b| b.to_vec()).collect();
            tokio::spawn(async move {
                let mut client = client;
                for part in sent {
                    client.write_all(&part).await.unwrap();
                    tokio::task::yield_now().await;
                }
            })
        };
        let h2 = guarded.sniff_http2().await.unwrap();
        writer.await.unwrap();
        let mut all = Vec::new();
        guarded.read_to_end(&mut all).await.unwrap();
        (h2, all)
    }

    #[tokio::test]
    async fn the_preface_means_http2_and_every_byte_is_read_again() {
        let (h2, all) = sniff(&[&PREFACE[..5], &PREFACE[5..], b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"]).await;
        assert!(h2);
        assert_eq!(&all[..PREFACE.len()], PREFACE);
        assert_eq!(all.len(), PREFACE.len() + 9);
    }

    #[tokio::test]
    async fn a_request_line_or_a_closed_connection_means_http1() {
        let req = b"GET / HTTP/1.1\r\nhost: a\r\n\r\n";
        assert_eq!(sniff(&[&req[..]]).await, (false, req.to_vec()));
        // "P" could start the preface, "PUT" cannot.
        assert!(!sniff(&[b"P", b"UT / HTTP/1.1\r\nhost: a\r\n\r\n"]).await.0);
        assert_eq!(sniff(&[]).await, (false, Vec::new()));
    }
}
