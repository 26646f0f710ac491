//! A test upstream: a small hyper server (HTTP/1.1 and h2c on one port) whose paths exercise the
//! proxy. Runs as its own process (`pillion-e2e-backend`) so tests can kill it.
//!
//! Paths: `/` names the backend (`x-backend` header, body `backend NAME`); `/headers` echoes the
//! request head as JSON; `/upload` answers `SHA256HEX LEN` of the body; `/download?bytes=N`
//! streams N pattern bytes; `/delay?ms=N`; `/status?code=N`; `/trailers` sends trailers;
//! `/ws` is a WebSocket echo; `/fixed` returns 1 KiB.

use std::{convert::Infallible, net::SocketAddr, time::Duration};

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, StreamBody, combinators::BoxBody};
use hyper::body::{Frame, Incoming};
use hyper_util::{
    rt::{TokioExecutor, TokioIo},
    server::conn::auto,
};
use sha2::{Digest, Sha256};
use tokio::net::TcpListener;

type Body = BoxBody<Bytes, std::io::Error>;

/// The byte at offset `i` of every `/download` body, so a client can check what it got.
pub fn pattern_byte(i: u64) -> u8 {
    (i.wrapping_mul(31).wrapping_add(i >> 13) % 251) as u8
}

/// How a backend behaves on every request.
#[derive(Debug, Clone, Copy, Default)]
pub struct Behaviour {
    /// Added latency.
    pub delay: Duration,
    /// Answer every request with this status instead (e.g. 503 for a sick endpoint).
    pub fail_status: Option<u16>,
}

/// Serves forever on `listener`.
pub async fn serve(listener: TcpListener, name: String, behaviour: Behaviour) {
    serve_until(listener, name, behaviour, std::future::pending()).await
}

/// Serves on `listener` until `stop` resolves, then stops as a well-behaved server does on
/// SIGTERM: it closes the listener, lets every connection finish the request it is on, closes
/// it (an idle HTTP/1.1 keep-alive connection at once, HTTP/2 with a GOAWAY), and returns once
/// every connection has closed.
pub async fn serve_until(
    listener: TcpListener,
    name: String,
    behaviour: Behaviour,
    stop: impl std::future::Future<Output = ()>,
) {
    let name: &'static str = Box::leak(name.into_boxed_str());
    let (stopping, stop_rx) = tokio::sync::watch::channel(false);
    let mut conns = tokio::task::JoinSet::new();
    let mut stop = std::pin::pin!(stop);
    loop {
        let (stream, peer) = tokio::select! {
            () = &mut stop => break,
            Some(_) = conns.join_next(), if !conns.is_empty() => continue,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(_) => continue,
            },
        };
        let _ = stream.set_nodelay(true);
        let mut stop_rx = stop_rx.clone();
        conns.spawn(async move {
            let svc = hyper::service::service_fn(move |req| handle(req, name, peer, behaviour));
            let builder = auto::Builder::new(TokioExecutor::new());
            let mut conn = std::pin::pin!(builder.serve_connection_with_upgrades(TokioIo::new(stream), svc));
            tokio::select! {
                _ = conn.as_mut() => return,
                _ = stop_rx.wait_for(|s| *s) => conn.as_mut().graceful_shutdown(),
            }
            let _ = conn.await;
        });
    }
    drop(listener);
    let _ = stopping.send(true);
    while conns.join_next().await.is_some() {}
}

fn full(b: impl Into<Bytes>) -> Body {
    Full::new(b.into()).map_err(|never| match never {}).boxed()
}

fn query(req: &Request<Incoming>, key: &str) -> Option<u64> {
    req.uri().query()?.split('&').find_map(|kv| kv.strip_prefix(key)?.strip_prefix('=')?.parse().ok())
}

async fn handle(
    mut req: Request<Incoming>,
    name: &'static str,
    peer: std::net::SocketAddr,
    b: Behaviour,
) -> Result<Response<Body>, Infallible> {
    if !b.delay.is_zero() {
        tokio::time::sleep(b.delay).await;
    }
    if let Some(code) = b.fail_status.and_then(|c| StatusCode::from_u16(c).ok()) {
        let mut r = status(code);
        r.headers_mut().insert("x-backend", HeaderValue::from_static(name));
        return Ok(r);
    }
    // Read what the client sent before answering, as a well-behaved upstream does: a hyper server
    // that answers with the body unread closes the connection after the response, without saying
    // so, and the next request a proxy sends on it races that close.
    if !matches!(req.uri().path(), "/upload" | "/ws") {
        while let Some(frame) = req.body_mut().frame().await {
            if frame.is_err() {
                break;
            }
        }
    }
    let mut resp = match req.uri().path() {
        "/headers" => {
            let mut heads: Vec<(String, String)> = req
                .headers()
                .iter()
                .map(|(k, v)| (k.to_string(), String::from_utf8_lossy(v.as_bytes()).into_owned()))
                .collect();
            heads.push((":version".into(), format!("{:?}", req.version())));
            heads.push((":method".into(), req.method().to_string()));
            Response::new(full(serde_json::to_vec(&heads).unwrap_or_default()))
        }
        "/upload" => {
            let mut hasher = Sha256::new();
            let mut len = 0u64;
            let mut body = req.into_body();
            while let Some(frame) = body.frame().await {
                match frame {
                    Ok(f) => {
                        if let Some(d) = f.data_ref() {
                            hasher.update(d);
                            len += d.len() as u64;
                        }
                    }
                    Err(_) => return Ok(status(StatusCode::BAD_REQUEST)),
                }
            }
            Response::new(full(format!("{} {len}", hex(&hasher.finalize()))))
        }
        "/download" => {
            let total = query(&req, "bytes").unwrap_or(1024);
            let chunks = futures_util::stream::unfold(0u64, move |off| async move {
                if off >= total {
                    return None;
                }
                let n = (total - off).min(64 * 1024);
                let chunk: Vec<u8> = (off..off + n).map(pattern_byte).collect();
                Some((Ok(Frame::data(Bytes::from(chunk))), off + n))
            });
            let mut r = Response::new(BodyExt::boxed(StreamBody::new(chunks)));
            r.headers_mut().insert("content-length", HeaderValue::from(total));
            r
        }
        "/delay" => {
            tokio::time::sleep(Duration::from_millis(query(&req, "ms").unwrap_or(1000))).await;
            Response::new(full(format!("backend {name} delayed\n")))
        }
        "/status" => {
            let code = query(&req, "code").and_then(|c| StatusCode::from_u16(c as u16).ok());
            status(code.unwrap_or(StatusCode::OK))
        }
        "/trailers" => {
            let mut trailers = HeaderMap::new();
            trailers.insert("x-checksum", HeaderValue::from_static("abc123"));
            let frames = futures_util::stream::iter([
                Ok(Frame::data(Bytes::from_static(b"with trailers\n"))),
                Ok(Frame::trailers(trailers)),
            ]);
            Response::new(BodyExt::boxed(StreamBody::new(frames)))
        }
        "/fixed" => Response::new(full(Bytes::from_static(&[b'x'; 1024]))),
        // Which connection the request came on: a kept upstream pool shows the same one.
        "/peer" => Response::new(full(peer.to_string())),
        "/ws" => return Ok(websocket(&mut req)),
        _ => Response::new(full(format!("backend {name}\n"))),
    };
    resp.headers_mut().insert("x-backend", HeaderValue::from_static(name));
    Ok(resp)
}

fn status(code: StatusCode) -> Response<Body> {
    let mut r = Response::new(full(format!("status {}\n", code.as_u16())));
    *r.status_mut() = code;
    r
}

/// Accepts a WebSocket upgrade and echoes every message back.
fn websocket(req: &mut Request<Incoming>) -> Response<Body> {
    use tokio_tungstenite::tungstenite::{handshake::derive_accept_key, protocol::Role};
    let Some(key) = req.headers().get("sec-websocket-key") else {
        return status(StatusCode::BAD_REQUEST);
    };
    let accept = derive_accept_key(key.as_bytes());
    let on_upgrade = hyper::upgrade::on(req);
    tokio::spawn(async move {
        let Ok(upgraded) = on_upgrade.await else {
            return;
        };
        let mut ws =
            tokio_tungstenite::WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, None)
                .await;
        while let Some(Ok(msg)) = ws.next().await {
            if (msg.is_text() || msg.is_binary()) && ws.send(msg).await.is_err() {
                break;
            }
        }
    });
    let mut r = status(StatusCode::SWITCHING_PROTOCOLS);
    let h = r.headers_mut();
    h.insert("connection", HeaderValue::from_static("upgrade"));
    h.insert("upgrade", HeaderValue::from_static("websocket"));
    if let Ok(v) = HeaderValue::from_str(&accept) {
        h.insert("sec-websocket-accept", v);
    }
    r
}

/// Lowercase hex of bytes.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Binds `addr` and serves there until SIGTERM, then stops gracefully (see [`serve_until`]);
/// for the binary.
pub async fn run(addr: SocketAddr, name: String, behaviour: Behaviour) -> std::io::Result<()> {
    let listener = TcpListener::bind(addr).await?;
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    serve_until(listener, name, behaviour, async move {
        term.recv().await;
    })
    .await;
    Ok(())
}

/// A TCP echo server on a free loopback port, for opaque-TCP tests; runs until the runtime ends.
pub async fn tcp_echo() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.expect("bind an echo port");
    let addr = l.local_addr().expect("echo address");
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                let (mut r, mut w) = s.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });
    addr
}
