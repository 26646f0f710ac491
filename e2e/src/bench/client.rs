//! The bench's own clients, run in-process on the client core: the correctness check before a
//! configuration is measured, the fixed-rate latency generator, and the idle keep-alive
//! connections held while the proxy's memory is read.
//!
//! The latency generator is open loop (as wrk2): request `k` of connection `i` (of `n`) is due
//! at `start + (k * n + i) / rate`, whatever happened before. Its latency is counted from the
//! moment it was due when the connection was still busy with the previous answer at that
//! moment (the wait is the system's fault: coordinated omission corrected), and from the moment
//! it was sent otherwise (a late timer wake-up is the generator's fault, not the proxy's).

use std::{
    net::SocketAddr,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail, ensure};
use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

/// Length of the upstream's `/fixed` body.
pub const BODY_LEN: usize = 1024;
/// Requests of the correctness check.
pub const CHECK_REQUESTS: usize = 20;

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread().enable_all().build().context("tokio runtime")
}

fn get_fixed(addr: SocketAddr) -> Request<Empty<Bytes>> {
    Request::get("/fixed").header("host", addr.to_string()).body(Empty::new()).expect("static request")
}

/// Fails unless the answer is 200 with a 1 KiB body.
async fn expect_fixed(resp: http::Response<hyper::body::Incoming>) -> Result<()> {
    let status = resp.status();
    let body = resp.into_body().collect().await?.to_bytes();
    ensure!(
        status == StatusCode::OK && body.len() == BODY_LEN,
        "got {status} with a {}-byte body, want 200 with {BODY_LEN} bytes",
        body.len()
    );
    Ok(())
}

/// 20 GETs of `/fixed` over one HTTP/1.1 (or h2c) connection; each must be 200 with 1 KiB.
pub fn check(addr: SocketAddr, http2: bool) -> Result<()> {
    runtime()?.block_on(async {
        tokio::time::timeout(Duration::from_secs(20), check_requests(addr, http2))
            .await
            .context("timed out")?
    })
}

async fn check_requests(addr: SocketAddr, use_h2: bool) -> Result<()> {
    let io = TokioIo::new(TcpStream::connect(addr).await.context("connect")?);
    if use_h2 {
        let (mut send, conn) = http2::handshake(TokioExecutor::new(), io).await?;
        tokio::spawn(conn);
        for i in 0..CHECK_REQUESTS {
            let resp = send.send_request(get_fixed(addr)).await?;
            expect_fixed(resp).await.with_context(|| format!("request {}", i + 1))?;
        }
    } else {
        let (mut send, conn) = http1::handshake(io).await?;
        tokio::spawn(conn);
        for i in 0..CHECK_REQUESTS {
            send.ready().await?;
            let resp = send.send_request(get_fixed(addr)).await?;
            expect_fixed(resp).await.with_context(|| format!("request {}", i + 1))?;
        }
    }
    Ok(())
}

/// Latency percentiles of one configuration's fixed-rate slices in a round.
#[derive(Clone, Debug)]
pub struct Latency {
    pub p50: Duration,
    pub p99: Duration,
    pub p999: Duration,
    pub requests: u64,
    pub errors: u64,
}

/// The samples of one configuration's fixed-rate slices, pooled until the round is over.
#[derive(Default)]
pub struct Samples {
    latencies: Vec<Duration>,
    errors: u64,
}

impl Samples {
    /// Percentiles over every sample; an error if no request succeeded.
    pub fn latency(mut self) -> Result<Latency> {
        let (s, errors) = (&mut self.latencies, self.errors);
        ensure!(!s.is_empty(), "no request succeeded ({errors} errors)");
        s.sort_unstable();
        let at = |q: f64| s[((s.len() as f64 * q) as usize).min(s.len() - 1)];
        Ok(Latency { p50: at(0.50), p99: at(0.99), p999: at(0.999), requests: s.len() as u64, errors })
    }
}

/// Sends GET `/fixed` at `rate` requests/s for `length` over `conns` HTTP/1.1 keep-alive
/// connections, opened before the first request is due, and adds the latencies to `into` (see
/// the module doc for how they are timed). Fails if no request of this run succeeded.
pub fn fixed_rate(
    addr: SocketAddr,
    rate: u32,
    length: Duration,
    conns: u32,
    into: &mut Samples,
) -> Result<()> {
    runtime()?.block_on(async {
        // Time enough to open every connection first, so that no connect is timed.
        let start = Instant::now() + Duration::from_millis(100);
        let end = start + length;
        let interval = Duration::from_secs(1) / rate;
        let tasks: Vec<_> =
            (0..conns).map(|i| tokio::spawn(connection(addr, i, conns, interval, start, end))).collect();
        let before = into.latencies.len();
        for t in tasks {
            let (s, e) = tokio::time::timeout(length + Duration::from_secs(30), t)
                .await
                .context("latency run timed out")??;
            into.latencies.extend(s);
            into.errors += e;
        }
        ensure!(into.latencies.len() > before, "no request succeeded ({} errors so far)", into.errors);
        Ok(())
    })
}

/// One connection's share of a fixed-rate run: its samples and error count. A failed request
/// is counted and the connection re-opened.
async fn connection(
    addr: SocketAddr,
    i: u32,
    n: u32,
    interval: Duration,
    start: Instant,
    end: Instant,
) -> (Vec<Duration>, u64) {
    let mut samples = Vec::new();
    let mut errors = 0;
    // A failed connect here is retried, and counted, by the first request.
    let mut send = connect(addr).await.ok();
    let mut free_at = start;
    for k in 0u32.. {
        let due = start + interval * (k * n + i);
        if due >= end {
            break;
        }
        tokio::time::sleep_until(due.into()).await;
        let sent = Instant::now();
        let from = if free_at <= due { sent } else { due };
        match request(addr, &mut send).await {
            Ok(()) => samples.push(Instant::now() - from),
            Err(_) => {
                errors += 1;
                send = None;
            }
        }
        free_at = Instant::now();
    }
    (samples, errors)
}

async fn connect(addr: SocketAddr) -> Result<http1::SendRequest<Empty<Bytes>>> {
    let stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let (send, conn) = http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    Ok(send)
}

async fn request(addr: SocketAddr, send: &mut Option<http1::SendRequest<Empty<Bytes>>>) -> Result<()> {
    let s = match send {
        Some(s) => s,
        None => send.insert(connect(addr).await?),
    };
    s.ready().await?;
    let resp = s.send_request(get_fixed(addr)).await?;
    expect_fixed(resp).await
}

/// Opens `n` keep-alive connections to `addr`, each after one complete GET `/fixed`, runs
/// `measure` while they are all open and idle, then closes them.
pub fn with_idle_connections<T>(addr: SocketAddr, n: usize, measure: impl FnOnce() -> T) -> Result<T> {
    runtime()?.block_on(async {
        let mut open = Vec::with_capacity(n);
        // A few at a time, as clients arriving, not a connect storm.
        for batch in (0..n).collect::<Vec<_>>().chunks(25) {
            let opening = batch.iter().map(|_| one_idle_connection(addr));
            for c in futures_util::future::join_all(opening).await {
                open.push(c?);
            }
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        let value = measure();
        drop(open);
        Ok(value)
    })
}

async fn one_idle_connection(addr: SocketAddr) -> Result<TcpStream> {
    let fut = async {
        let mut s = TcpStream::connect(addr).await.context("connect")?;
        s.write_all(format!("GET /fixed HTTP/1.1\r\nHost: {addr}\r\n\r\n").as_bytes()).await?;
        read_one_response(&mut s).await?;
        Ok(s)
    };
    tokio::time::timeout(Duration::from_secs(10), fut).await.context("idle connection: no answer")?
}

/// Reads one HTTP/1.1 response with a `content-length` body.
async fn read_one_response(s: &mut TcpStream) -> Result<()> {
    let mut buf = Vec::with_capacity(2048);
    let mut chunk = [0u8; 4096];
    loop {
        let n = s.read(&mut chunk).await?;
        if n == 0 {
            bail!("connection closed before a full response");
        }
        buf.extend_from_slice(&chunk[..n]);
        let Some(head_end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
            continue;
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
        ensure!(head.starts_with("http/1.1 200"), "not a 200: {head}");
        let len: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .context("no content-length")?
            .trim()
            .parse()?;
        if buf.len() >= head_end + 4 + len {
            return Ok(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pooled_slices_give_one_set_of_percentiles() {
        let mut pooled = Samples::default();
        // Two slices: 1..=100 µs, then 101..=200 µs with two failed requests.
        pooled.latencies.extend((1..=100).map(Duration::from_micros));
        pooled.latencies.extend((101..=200).rev().map(Duration::from_micros));
        pooled.errors = 2;
        let l = pooled.latency().expect("samples");
        assert_eq!((l.p50, l.p99), (Duration::from_micros(101), Duration::from_micros(199)));
        assert_eq!((l.requests, l.errors), (200, 2));
    }

    #[test]
    fn no_sample_is_an_error() {
        let none = Samples { latencies: Vec::new(), errors: 3 };
        assert!(none.latency().unwrap_err().to_string().contains("3 errors"));
    }
}
