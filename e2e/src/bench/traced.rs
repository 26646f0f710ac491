//! The tracing rows: one Pillion hop with tracing on at a sampling share, and the collector
//! they export to, which takes OTLP/HTTP exports and answers 200, doing nothing with them, so
//! that those rows measure what tracing costs the proxy and not what a collector costs.

use std::net::SocketAddr;

use anyhow::Result;
use pillion_e2e::process::free_addr;

use super::peers::{Bins, Target, outbound_listeners, pillion_base, start_pillion};

/// One Pillion hop that traces: `sampling` of requests start a sampled trace (the load sends
/// no trace context), and spans go to `collector` over OTLP/HTTP.
pub fn pillion_traced(
    bins: &Bins,
    upstream: SocketAddr,
    sampling: f64,
    collector: SocketAddr,
) -> Result<Target> {
    let dir = tempfile::tempdir()?;
    let (h1, h2) = (free_addr(), free_addr());
    let config = pillion_base(free_addr(), None)
        + &outbound_listeners(h1, h2, upstream, None, "http1")
        + &format!("tracing: {{otlp: \"http://{collector}\", sampling: {sampling}}}\n");
    let name = traced_name(sampling);
    let (p, _) = start_pillion(bins, name, dir.path(), &config)?;
    Ok(Target {
        name,
        h1,
        h2,
        procs: vec![p],
        note: format!(
            "as `pillion`, with tracing on: {}% of requests start a sampled trace, spans \
                       exported over OTLP/HTTP to a sink that answers 200",
            sampling * 100.0
        ),
        tls_admin: None,
        _dir: Some(dir),
    })
}

/// The row name of [`pillion_traced`] at `sampling` (0, 0.01 or 1).
pub fn traced_name(sampling: f64) -> &'static str {
    match sampling {
        0.0 => "pillion trace 0%",
        1.0 => "pillion trace 100%",
        _ => "pillion trace 1%",
    }
}

/// An OTLP/HTTP collector that reads each export and answers 200, so that the tracing rows
/// measure the proxy's cost, not a collector's. Runs until the bench ends.
pub fn start_sink() -> Result<SocketAddr> {
    use std::io::{BufRead, BufReader, Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            std::thread::spawn(move || {
                let Ok(mut out) = conn.try_clone() else { return };
                let mut reader = BufReader::new(conn);
                loop {
                    let mut length = 0usize;
                    let mut line = String::new();
                    loop {
                        line.clear();
                        if reader.read_line(&mut line).unwrap_or(0) == 0 {
                            return;
                        }
                        if line == "\r\n" {
                            break;
                        }
                        if let Some((k, v)) = line.split_once(':')
                            && k.eq_ignore_ascii_case("content-length")
                        {
                            length = v.trim().parse().unwrap_or(0);
                        }
                    }
                    let mut body = vec![0; length];
                    if reader.read_exact(&mut body).is_err()
                        || out.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n").is_err()
                    {
                        return;
                    }
                }
            });
        }
    });
    Ok(addr)
}
