//! A client connection that counts its bytes into `pillion_tcp_{read,write}_bytes_total` and keeps
//! `pillion_tcp_connections_open` right for as long as it lives.

use std::{
    io,
    pin::Pin,
    task::{Context, Poll},
};

use prometheus::{IntCounter, IntGauge};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::{
    live::Shared,
    metrics::{ConnLabels, Direction},
};

/// Byte and open-connection counters of one listener, resolved once.
#[derive(Debug, Clone)]
pub struct ConnMetrics {
    /// Bytes read from clients.
    pub read: IntCounter,
    /// Bytes written to clients.
    pub written: IntCounter,
    /// Connections open.
    pub open: IntGauge,
}

/// A stream whose traffic is counted.
#[derive(Debug)]
pub struct Metered<S> {
    inner: S,
    metrics: ConnMetrics,
}

impl<S> Metered<S> {
    /// Wraps `inner`, counting it as open until dropped.
    pub fn new(inner: S, metrics: ConnMetrics) -> Self {
        metrics.open.inc();
        Self { inner, metrics }
    }

    /// The wrapped stream.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }
}

impl<S> Drop for Metered<S> {
    fn drop(&mut self) {
        self.metrics.open.dec();
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Metered<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let res = Pin::new(&mut self.inner).poll_read(cx, buf);
        let n = buf.filled().len() - before;
        if n > 0 {
            self.metrics.read.inc_by(n as u64);
        }
        res
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Metered<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let res = Pin::new(&mut self.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = res {
            self.metrics.written.inc_by(n as u64);
        }
        res
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let res = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if let Poll::Ready(Ok(n)) = res {
            self.metrics.written.inc_by(n as u64);
        }
        res
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Counts an accepted connection and wraps it so its bytes are counted too.
pub fn meter<S>(
    shared: &Shared,
    stream: S,
    direction: Direction,
    tls: bool,
    protocol: &'static str,
) -> Metered<S> {
    let m = &shared.metrics;
    let labels = ConnLabels { direction, tls, protocol };
    m.tcp_connections(labels).inc();
    let cm = ConnMetrics {
        read: m.tcp_read_bytes(direction),
        written: m.tcp_write_bytes(direction),
        open: m.tcp_open(labels),
    };
    Metered::new(stream, cm)
}
