//! The tracing rows' collector: it takes OTLP/HTTP exports and answers 200, doing nothing with
//! them, so that those rows measure what tracing costs the proxy and not what a collector costs.

use std::net::SocketAddr;

use anyhow::Result;

/// An OTLP/HTTP collector that reads each export and answers 200, so that the tracing rows
/// measure the proxy's cost, not a collector's. Runs until the bench ends.
pub fn start() -> Result<SocketAddr> {
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
