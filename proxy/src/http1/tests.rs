//! The HTTP/1.1 server against raw clients on real sockets: framing, pipelining, 100-continue,
//! HTTP/1.0, refusals, hang-ups, connection limits and draining.

use std::{future::Future, net::SocketAddr, pin::Pin, sync::Arc, time::Duration};

use http::{Request, Response};
use http_body_util::BodyExt;
use prometheus::{IntCounterVec, Opts};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    sync::{Notify, oneshot, watch},
};

use bytes::Bytes;
use http_body_util::Full;

use super::{
    body::RequestBody,
    client::Upgraded,
    connection::Refusal,
    request::{self, Limits},
    server::{Respond, Settings, serve},
};
use crate::metrics::Rejections;

/// The responses these tests' services give: whole bodies, and replies of the tests' own for
/// what the server refuses (which status and words the proxy sends is `http::reply`'s to say).
#[derive(Debug)]
struct Body(Full<Bytes>);

impl Body {
    fn full(b: impl Into<Bytes>) -> Self {
        Self(Full::new(b.into()))
    }
}

impl http_body::Body for Body {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        Pin::new(&mut self.0).poll_frame(cx)
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.0.size_hint()
    }
}

impl Respond for Body {
    type Upgrade = TcpStream;

    fn take_upgrade(&mut self) -> Option<Upgraded<TcpStream>> {
        None
    }

    fn refusal(why: &Refusal) -> (Response<Self>, &'static str) {
        let (status, reason) = match why {
            Refusal::Head(request::Error::TooLarge(_) | request::Error::TooManyHeaders(_)) => {
                (431, "too-large")
            }
            _ => (400, "bad"),
        };
        let mut r = Response::new(Self::full(reason));
        *r.status_mut() = http::StatusCode::from_u16(status).unwrap();
        (r, reason)
    }

    fn bad_switch() -> Response<Self> {
        let mut r = Response::new(Self::full("bad switch"));
        *r.status_mut() = http::StatusCode::BAD_GATEWAY;
        r
    }
}

type Service =
    Arc<dyn Fn(Request<RequestBody>) -> Pin<Box<dyn Future<Output = Response<Body>> + Send>> + Send + Sync>;

const SETTINGS: Settings =
    Settings { limits: Limits { max_head: 1024, max_headers: 16, max_request_line: 512 }, max_requests: 0 };

/// The server's own tests need no header timeout.
impl super::connection::Client for TcpStream {
    fn receiving_head(&mut self, _: bool) {}
}

struct Server {
    addr: SocketAddr,
    drain: watch::Sender<bool>,
    rejected: IntCounterVec,
}

/// Serves each accepted connection with `service`.
async fn start(settings: Settings, service: Service) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (drain, _) = watch::channel(false);
    let rejected = IntCounterVec::new(Opts::new("rejected", "t"), &["direction", "reason"]).unwrap();
    let (tx, counter) = (drain.clone(), rejected.clone());
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let (mut rx, service) = (tx.subscribe(), Arc::clone(&service));
            let rejections = Rejections::new(counter.clone(), crate::metrics::Direction::Inbound);
            tokio::spawn(async move {
                serve(stream, settings, &mut rx, &rejections, |req| service(req)).await;
            });
        }
    });
    Server { addr, drain, rejected }
}

/// Answers `METHOD PATH BODY-LENGTH trailers=N`.
fn echo() -> Service {
    Arc::new(|req: Request<RequestBody>| {
        Box::pin(async move {
            let (parts, body) = req.into_parts();
            let collected = body.collect().await.unwrap();
            let trailers = collected.trailers().map_or(0, http::HeaderMap::len);
            let len = collected.to_bytes().len();
            Response::new(Body::full(format!("{} {} {len} trailers={trailers}\n", parts.method, parts.uri)))
        })
    })
}

/// Sends `wire` and reads until the server closes.
async fn exchange(addr: SocketAddr, wire: &[u8]) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(wire).await.unwrap();
    read_to_close(&mut s).await
}

async fn read_to_close(s: &mut TcpStream) -> String {
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out)).await.unwrap().unwrap();
    String::from_utf8(out).unwrap()
}

#[tokio::test]
async fn pipelined_requests_are_answered_in_order_with_their_framing() {
    let s = start(SETTINGS, echo()).await;
    let out = exchange(
        s.addr,
        b"GET /a HTTP/1.1\r\nHost: x\r\n\r\nPOST /b HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello\
          HEAD /c HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    let a = out.find("GET /a 0 trailers=0\n").unwrap();
    let b = out.find("POST /b 5 trailers=0\n").unwrap();
    let c = out.rfind("HTTP/1.1 200 OK\r\n").unwrap();
    assert!(a < b && b < c, "{out}");
    assert!(out.contains("content-length: 20\r\n") && out.contains("date: "), "{out}");
    // The HEAD response has no body and closes, as asked.
    assert!(out[c..].ends_with("connection: close\r\n\r\n"), "{out}");
}

#[tokio::test]
async fn a_chunked_body_with_trailers_follows_a_100_continue() {
    let s = start(SETTINGS, echo()).await;
    let mut c = TcpStream::connect(s.addr).await.unwrap();
    c.write_all(
        b"POST /up HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nTransfer-Encoding: chunked\r\n\r\n",
    )
    .await
    .unwrap();
    let mut interim = [0u8; 25];
    c.read_exact(&mut interim).await.unwrap();
    assert_eq!(&interim, b"HTTP/1.1 100 Continue\r\n\r\n");
    c.write_all(b"5\r\nhello\r\n3\r\nabc\r\n0\r\nx-t: 1\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let out = read_to_close(&mut c).await;
    assert!(out.contains("POST /up 8 trailers=1\n") && out.contains("GET / 0 trailers=0\n"), "{out}");
}

#[tokio::test]
async fn http10_closes_unless_it_asks_for_keep_alive() {
    let s = start(SETTINGS, echo()).await;
    let out =
        exchange(s.addr, b"GET /1 HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET /2 HTTP/1.0\r\n\r\n").await;
    let second = out.find("GET /1 0").unwrap();
    assert!(out[..second].contains("connection: keep-alive\r\n"), "{out}");
    assert!(
        out[second..].contains("connection: close\r\n") && out.ends_with("GET /2 0 trailers=0\n"),
        "{out}"
    );
}

#[tokio::test]
async fn bad_heads_get_a_local_400_or_431_and_are_counted() {
    let s = start(SETTINGS, echo()).await;
    let out = exchange(s.addr, b"GET / HTTP/1.1\r\n\r\n").await;
    assert!(out.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{out}");
    assert!(out.ends_with("\r\n\r\nbad") && out.contains("connection: close"), "{out}");
    let big = format!("GET / HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n", "a".repeat(4096));
    let out = exchange(s.addr, big.as_bytes()).await;
    assert!(out.starts_with("HTTP/1.1 431 ") && out.ends_with("too-large"), "{out}");
    assert_eq!(s.rejected.with_label_values(&["inbound", "bad"]).get(), 1);
    assert_eq!(s.rejected.with_label_values(&["inbound", "too-large"]).get(), 1);
}

#[tokio::test]
async fn a_client_whose_connection_resets_cancels_its_request() {
    let (dropped_tx, dropped) = oneshot::channel::<()>();
    let dropped_tx = Arc::new(std::sync::Mutex::new(Some(dropped_tx)));
    let service: Service = Arc::new(move |_req| {
        let tx = dropped_tx.lock().unwrap().take();
        Box::pin(async move {
            // Sends when the request's future is dropped.
            struct OnDrop(Option<oneshot::Sender<()>>);
            impl Drop for OnDrop {
                fn drop(&mut self) {
                    if let Some(tx) = self.0.take() {
                        let _ = tx.send(());
                    }
                }
            }
            let _guard = OnDrop(tx);
            std::future::pending::<Response<Body>>().await
        })
    });
    let s = start(SETTINGS, service).await;
    let mut c = TcpStream::connect(s.addr).await.unwrap();
    c.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    // Closed with a reset: a close with a FIN is a half-close, answered (below).
    socket2::SockRef::from(&c).set_linger(Some(Duration::ZERO)).unwrap();
    drop(c);
    tokio::time::timeout(Duration::from_secs(10), dropped).await.unwrap().unwrap();
}

#[tokio::test]
async fn a_client_that_half_closes_after_its_requests_gets_every_answer() {
    let s = start(SETTINGS, echo()).await;
    let mut c = TcpStream::connect(s.addr).await.unwrap();
    c.write_all(
        b"POST /1 HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhiGET /2 HTTP/1.1\r\nHost: x\r\n\r\n",
    )
    .await
    .unwrap();
    c.shutdown().await.unwrap();
    let out = read_to_close(&mut c).await;
    assert!(out.contains("POST /1 2 trailers=0\n") && out.ends_with("GET /2 0 trailers=0\n"), "{out}");
}

#[tokio::test]
async fn the_last_request_allowed_on_a_connection_closes_it() {
    let settings = Settings { max_requests: 2, ..SETTINGS };
    let s = start(settings, echo()).await;
    let out = exchange(s.addr, b"GET /1 HTTP/1.1\r\nHost: x\r\n\r\nGET /2 HTTP/1.1\r\nHost: x\r\n\r\n").await;
    let second = out.find("GET /1 0").unwrap();
    assert!(!out[..second].contains("connection: close"), "{out}");
    assert!(
        out[second..].contains("connection: close\r\n") && out.ends_with("GET /2 0 trailers=0\n"),
        "{out}"
    );
}

#[tokio::test]
async fn a_body_the_service_does_not_read_closes_the_connection_after_the_reply() {
    let service: Service = Arc::new(|_req| Box::pin(async { Response::new(Body::full("early\n")) }));
    let s = start(SETTINGS, service).await;
    let mut c = TcpStream::connect(s.addr).await.unwrap();
    c.write_all(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\npart").await.unwrap();
    let out = read_to_close(&mut c).await;
    assert!(out.contains("connection: close\r\n") && out.ends_with("early\n"), "{out}");
}

#[tokio::test]
async fn draining_closes_idle_connections_and_lets_a_request_in_flight_finish() {
    let (entered, release) = (Arc::new(Notify::new()), Arc::new(Notify::new()));
    let (inside, held) = (Arc::clone(&entered), Arc::clone(&release));
    let service: Service = Arc::new(move |_req| {
        let (inside, held) = (Arc::clone(&inside), Arc::clone(&held));
        Box::pin(async move {
            inside.notify_one();
            held.notified().await;
            Response::new(Body::full("done\n"))
        })
    });
    let s = start(SETTINGS, service).await;
    let mut idle = TcpStream::connect(s.addr).await.unwrap();
    let mut busy = TcpStream::connect(s.addr).await.unwrap();
    busy.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    entered.notified().await;
    s.drain.send_replace(true);
    assert_eq!(read_to_close(&mut idle).await, "");
    release.notify_one();
    let out = read_to_close(&mut busy).await;
    assert!(out.contains("connection: close\r\n") && out.ends_with("done\n"), "{out}");
}
