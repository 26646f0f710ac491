//! The pool against real HTTP servers on 127.0.0.1, counting the connections they accept.

use std::{
    convert::Infallible,
    io::{Read, Write},
    net::SocketAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering::SeqCst},
        mpsc,
    },
    time::Duration,
};

use bytes::Bytes;
use http::{Request, Response, header};
use http_body_util::{BodyExt, Full};
use hyper::{body::Incoming, service::service_fn};
use hyper_util::rt::{TokioExecutor, TokioIo};
use pillion_config::Keepalive;
use tokio::{net::TcpListener, sync::Barrier, task::AbortHandle};

use super::{Pool, SendError, UpstreamBody};
use crate::body::Body;
use crate::upstream::connect::{ConnLimit, ConnectError, Connector};

/// What the test server answers.
#[derive(Clone, Default)]
struct Answer {
    /// Response body length.
    len: usize,
    /// Every request waits here before it is answered.
    barrier: Option<Arc<Barrier>>,
}

/// A hyper server (HTTP/1.1 keep-alive, or HTTP/2) that counts accepted connections.
struct Server {
    addr: SocketAddr,
    accepts: Arc<AtomicUsize>,
    conns: Arc<Mutex<Vec<AbortHandle>>>,
}

impl Server {
    async fn start(h2: bool, answer: Answer) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepts = Arc::new(AtomicUsize::new(0));
        let conns = Arc::new(Mutex::new(Vec::new()));
        let (count, handles) = (Arc::clone(&accepts), Arc::clone(&conns));
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                count.fetch_add(1, SeqCst);
                let answer = answer.clone();
                let svc = service_fn(move |_: Request<Incoming>| {
                    let answer = answer.clone();
                    async move {
                        if let Some(b) = &answer.barrier {
                            b.wait().await;
                        }
                        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(vec![b'x'; answer.len]))))
                    }
                });
                let io = TokioIo::new(stream);
                let task = if h2 {
                    let conn = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                        .serve_connection(io, svc);
                    tokio::spawn(async move { drop(conn.await) })
                } else {
                    let conn = hyper::server::conn::http1::Builder::new().serve_connection(io, svc);
                    tokio::spawn(async move { drop(conn.await) })
                };
                handles.lock().unwrap().push(task.abort_handle());
            }
        });
        Self { addr, accepts, conns }
    }

    fn accepts(&self) -> usize {
        self.accepts.load(SeqCst)
    }

    /// Closes every connection from the server side.
    fn close_all(&self) {
        for c in self.conns.lock().unwrap().drain(..) {
            c.abort();
        }
    }
}

/// An HTTP/1.1 server that answers each connection's first request as keep-alive and, once
/// told to, closes that connection, as an upstream with a short idle timeout does. Reports each
/// close.
struct ClosingServer {
    addr: SocketAddr,
    accepts: Arc<AtomicUsize>,
    close: mpsc::Sender<()>,
    closed: mpsc::Receiver<()>,
}

impl ClosingServer {
    fn start() -> Self {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let accepts = Arc::new(AtomicUsize::new(0));
        let count = Arc::clone(&accepts);
        let (close, close_rx) = mpsc::channel();
        let (closed_tx, closed) = mpsc::channel();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut s) = stream else { return };
                count.fetch_add(1, SeqCst);
                let mut head = Vec::new();
                let mut buf = [0; 1024];
                while !head.ends_with(b"\r\n\r\n") {
                    match s.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let _ = s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok");
                if close_rx.recv().is_err() {
                    return;
                }
                drop(s);
                let _ = closed_tx.send(());
            }
        });
        Self { addr, accepts, close, closed }
    }

    /// Closes the connection it last answered, and waits until it has.
    fn close_idle(&self) {
        self.close.send(()).unwrap();
        self.closed.recv().unwrap();
    }
}

fn pool_to(addr: SocketAddr, limit: Arc<ConnLimit>) -> Arc<Pool> {
    let connector = || Connector::new(addr, Duration::from_secs(1), None, Arc::clone(&limit));
    Pool::new(connector(), connector(), Some(Keepalive::DEFAULT))
}

async fn get_h1(pool: &Arc<Pool>) -> Result<Response<UpstreamBody>, SendError> {
    let req = Request::get("/").header(header::HOST, "test").body(Body::Empty).unwrap();
    pool.send_http1(req, true).await
}

async fn get_h2(pool: &Arc<Pool>) -> Result<Response<UpstreamBody>, SendError> {
    pool.send_http2(Request::get("http://test/").body(Body::Empty).unwrap()).await
}

async fn read_all(resp: Response<UpstreamBody>) -> Bytes {
    resp.into_body().collect().await.unwrap().to_bytes()
}

#[tokio::test]
async fn sequential_requests_reuse_one_connection() {
    let server = Server::start(false, Answer { len: 5, ..Answer::default() }).await;
    let pool = pool_to(server.addr, ConnLimit::new(100));
    for _ in 0..3 {
        assert_eq!(read_all(get_h1(&pool).await.unwrap()).await.len(), 5);
    }
    assert_eq!(server.accepts(), 1);
    assert_eq!(pool.idle_http1(), 1);
}

#[tokio::test]
async fn a_response_dropped_before_its_end_does_not_return_its_connection() {
    let server = Server::start(false, Answer { len: 64 * 1024, ..Answer::default() }).await;
    let pool = pool_to(server.addr, ConnLimit::new(100));
    drop(get_h1(&pool).await.unwrap());
    assert_eq!(pool.idle_http1(), 0);
    read_all(get_h1(&pool).await.unwrap()).await;
    assert_eq!(server.accepts(), 2);
    assert_eq!(pool.idle_http1(), 1);
}

#[tokio::test]
async fn at_most_max_idle_connections_are_kept() {
    let n = super::MAX_IDLE + 6;
    let answer = Answer { len: 1, barrier: Some(Arc::new(Barrier::new(n))) };
    let server = Server::start(false, answer).await;
    let pool = pool_to(server.addr, ConnLimit::new(1000));
    let mut all = tokio::task::JoinSet::new();
    for _ in 0..n {
        let pool = Arc::clone(&pool);
        all.spawn(async move { read_all(get_h1(&pool).await.unwrap()).await });
    }
    while let Some(r) = all.join_next().await {
        r.unwrap();
    }
    assert_eq!(server.accepts(), n);
    assert_eq!(pool.idle_http1(), super::MAX_IDLE);
}

#[tokio::test]
async fn the_sweep_closes_expired_idle_connections_and_ends_with_the_pool() {
    let server = Server::start(false, Answer { len: 2, ..Answer::default() }).await;
    let pool = pool_to(server.addr, ConnLimit::new(100));
    read_all(get_h1(&pool).await.unwrap()).await;
    assert_eq!(pool.idle_http1(), 1);
    tokio::time::pause();
    let step = super::SWEEP_EVERY;
    for _ in 0..2 {
        tokio::time::advance(step).await;
    }
    assert_eq!(pool.idle_http1(), 1, "not expired yet");
    // Up to one sweep period past the idle timeout, and a moment for the sweep to run.
    for _ in 0..3 {
        tokio::time::advance(step).await;
    }
    tokio::task::yield_now().await;
    assert_eq!(pool.idle_http1(), 0);
    tokio::time::resume();

    let sweep = pool.sweeper.get().unwrap().clone();
    assert!(!sweep.is_finished());
    drop(pool);
    tokio::task::yield_now().await;
    assert!(sweep.is_finished());
}

#[tokio::test]
async fn a_pooled_connection_the_server_closed_is_skipped() {
    let server = ClosingServer::start();
    let pool = pool_to(server.addr, ConnLimit::new(100));
    assert_eq!(read_all(get_h1(&pool).await.unwrap()).await, "ok");
    server.close_idle();
    // Time for the runtime to poll the socket's events and see the close.
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!((pool.idle_http1(), pool.h1.idle_open()), (1, 0));
    assert_eq!(read_all(get_h1(&pool).await.unwrap()).await, "ok");
    assert_eq!(server.accepts.load(SeqCst), 2);
}

#[tokio::test]
async fn the_connection_limit_counts_pooled_connections_while_open() {
    let server = Server::start(false, Answer { len: 2, ..Answer::default() }).await;
    let limit = ConnLimit::new(1);
    let pool = pool_to(server.addr, Arc::clone(&limit));
    let held = get_h1(&pool).await.unwrap();
    let refused = get_h1(&pool).await.map(drop).unwrap_err();
    assert!(matches!(refused, SendError::Connect(ConnectError::Overloaded(1))), "{refused:?}");
    // Dropped unread, the connection closes and gives its slot back.
    drop(held);
    let mut tries = 0;
    let resp = loop {
        match get_h1(&pool).await {
            Ok(resp) => break resp,
            Err(_) if tries < 100 => tries += 1,
            Err(e) => panic!("slot never released: {e:?}"),
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert_eq!(read_all(resp).await, "xx");
}

#[tokio::test]
async fn http2_multiplexes_concurrent_requests_and_reconnects_once_after_a_close() {
    let n = 50;
    let answer = Answer { len: 3, barrier: Some(Arc::new(Barrier::new(n))) };
    let server = Server::start(true, answer).await;
    let pool = pool_to(server.addr, ConnLimit::new(100));
    let burst = || {
        let mut all = tokio::task::JoinSet::new();
        for _ in 0..n {
            let pool = Arc::clone(&pool);
            all.spawn(async move { read_all(get_h2(&pool).await.unwrap()).await });
        }
        all.join_all()
    };
    // Every request waits for all the others at the server: they are in flight together.
    assert!(burst().await.iter().all(|b| b == "xxx"));
    assert_eq!(server.accepts(), 1);

    server.close_all();
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(burst().await.iter().all(|b| b == "xxx"));
    assert_eq!(server.accepts(), 2);
}

#[tokio::test]
async fn http2_connect_failures_reach_every_waiting_request() {
    let addr = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let pool = pool_to(addr, ConnLimit::new(100));
    let mut all = tokio::task::JoinSet::new();
    for _ in 0..10 {
        let pool = Arc::clone(&pool);
        all.spawn(async move { get_h2(&pool).await.map(drop) });
    }
    for r in all.join_all().await {
        assert!(matches!(r, Err(SendError::Connect(ConnectError::Io(..)))), "{r:?}");
    }
}

/// Answers the first request on each connection, keeps it open, and closes it when the next
/// request arrives, unanswered: a server stopping just as a pooled connection is used.
fn closes_at_the_second_request() -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let accepts = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&accepts);
    std::thread::spawn(move || {
        for mut s in listener.incoming().flatten() {
            counted.fetch_add(1, SeqCst);
            std::thread::spawn(move || {
                let head = |s: &mut std::net::TcpStream| {
                    let mut got = Vec::new();
                    let mut byte = [0u8; 1];
                    while !got.ends_with(b"\r\n\r\n") && s.read(&mut byte).is_ok_and(|n| n == 1) {
                        got.push(byte[0]);
                    }
                };
                head(&mut s);
                let _ = s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok");
                head(&mut s);
            });
        }
    });
    (addr, accepts)
}

#[tokio::test]
async fn a_resendable_request_a_pooled_connection_closes_under_goes_once_more_on_a_new_one() {
    let (addr, accepts) = closes_at_the_second_request();
    let pool = pool_to(addr, ConnLimit::new(100));
    assert_eq!(read_all(get_h1(&pool).await.unwrap()).await, "ok");
    // The pooled connection closes under the GET; a new one answers it.
    assert_eq!(read_all(get_h1(&pool).await.expect("sent again")).await, "ok");
    assert_eq!(accepts.load(SeqCst), 2);
    // Not resendable (a POST, a body): the close is the request's outcome.
    let post = Request::post("/").header(header::HOST, "test").body(Body::Empty).unwrap();
    assert!(matches!(pool.send_http1(post, false).await, Err(SendError::Http1(_))));
    assert_eq!(accepts.load(SeqCst), 2);
}
