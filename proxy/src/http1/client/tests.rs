//! The client against an upstream this test plays by hand on 127.0.0.1, byte for byte.

use std::{future::poll_fn, time::Duration};

use http::{HeaderMap, Request, header};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
};

use bytes::Bytes;
use http_body_util::{Either, Empty, Full};

use super::{Conn, Error};

/// The request bodies these tests send: none, or whole.
type Body = Either<Empty<Bytes>, Full<Bytes>>;
type ResponseBody = super::ResponseBody<TcpStream, Body>;

fn empty() -> Body {
    Either::Left(Empty::new())
}

fn full(b: impl Into<Bytes>) -> Body {
    Either::Right(Full::new(b.into()))
}

/// A connection to a socket this test answers on.
async fn pair() -> (Box<Conn<TcpStream>>, TcpStream) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (io, accepted) = tokio::join!(TcpStream::connect(listener.local_addr().unwrap()), listener.accept());
    (Conn::new(io.unwrap()), accepted.unwrap().0)
}

/// Reads a request head (and whatever came with it) until `\r\n\r\n` and `more` bytes after it.
async fn read_request(s: &mut TcpStream, more: usize) -> String {
    let mut got = Vec::new();
    let mut buf = [0; 4096];
    loop {
        if let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n") {
            if got.len() >= end + 4 + more {
                return String::from_utf8(got).unwrap();
            }
        }
        let n = s.read(&mut buf).await.unwrap();
        assert_ne!(n, 0, "closed after {:?}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&buf[..n]);
    }
}

/// The body's data and trailers.
async fn collect(body: &mut ResponseBody) -> Result<(Vec<u8>, Option<HeaderMap>), Error> {
    let (mut data, mut trailers) = (Vec::new(), None);
    while let Some(frame) = poll_fn(|cx| body.poll_frame(cx)).await {
        match frame?.into_data() {
            Ok(d) => data.extend_from_slice(&d),
            Err(f) => trailers = f.into_trailers().ok(),
        }
    }
    Ok((data, trailers))
}

fn get(path: &str) -> Request<Body> {
    Request::get(path).header(header::HOST, "up").body(empty()).unwrap()
}

#[tokio::test]
async fn a_chunked_response_and_its_trailers_then_the_connection_carries_another_request() {
    let (conn, mut up) = pair().await;
    let answer = async {
        assert_eq!(read_request(&mut up, 0).await, "GET /a HTTP/1.1\r\nhost: up\r\n\r\n");
        up.write_all(
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nx-t: 1\r\n\r\n",
        )
        .await
        .unwrap();
    };
    let (resp, ()) = tokio::join!(conn.send(get("/a")), answer);
    let mut body = resp.unwrap().into_body();
    let (data, trailers) = collect(&mut body).await.unwrap();
    assert_eq!((data.as_slice(), trailers.unwrap()["x-t"].as_bytes()), (&b"hello"[..], &b"1"[..]));

    let conn = body.take_reusable().expect("reusable after a complete exchange");
    let post = Request::post("/b").body(full("abc")).unwrap();
    let answer = async {
        let req = read_request(&mut up, 3).await;
        assert_eq!(req, "POST /b HTTP/1.1\r\ncontent-length: 3\r\n\r\nabc");
        up.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok").await.unwrap();
    };
    let (resp, ()) = tokio::join!(conn.send(post), answer);
    let mut body = resp.unwrap().into_body();
    assert_eq!(collect(&mut body).await.unwrap().0, b"ok");
    assert!(body.take_reusable().is_some());
}

#[tokio::test]
async fn interim_responses_are_skipped() {
    let (conn, mut up) = pair().await;
    let answer = async {
        read_request(&mut up, 0).await;
        up.write_all(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nlink: x\r\n\r\n")
            .await
            .unwrap();
        up.write_all(b"HTTP/1.1 204 No Content\r\n\r\n").await.unwrap();
    };
    let (resp, ()) = tokio::join!(conn.send(get("/")), answer);
    let mut resp = resp.unwrap();
    assert_eq!(resp.status(), 204);
    assert!(resp.body().is_end_stream() && resp.body_mut().take_reusable().is_some());
}

#[tokio::test]
async fn an_answer_before_the_upload_is_written_is_delivered_and_the_connection_dropped() {
    let (conn, mut up) = pair().await;
    // Far more than the sockets buffer: the write blocks while the upstream reads nothing.
    let upload = Request::put("/big").body(full(vec![b'x'; 64 << 20])).unwrap();
    let answer = async {
        read_request(&mut up, 0).await;
        up.write_all(b"HTTP/1.1 413 Content Too Large\r\ncontent-length: 4\r\n\r\nbig!").await.unwrap();
    };
    let (resp, ()) = tokio::join!(conn.send(upload), answer);
    let mut body = resp.unwrap().into_body();
    assert_eq!(collect(&mut body).await.unwrap().0, b"big!");
    assert!(body.take_reusable().is_none(), "the upload was never finished");
}

#[tokio::test]
async fn a_body_delimited_by_close_ends_there_and_the_connection_with_it() {
    let (conn, mut up) = pair().await;
    let answer = async {
        read_request(&mut up, 0).await;
        up.write_all(b"HTTP/1.1 200 OK\r\n\r\nabc").await.unwrap();
        up.shutdown().await.unwrap();
    };
    let (resp, ()) = tokio::join!(conn.send(get("/")), answer);
    let mut body = resp.unwrap().into_body();
    assert_eq!(collect(&mut body).await.unwrap().0, b"abc");
    assert!(body.take_reusable().is_none());
}

#[tokio::test]
async fn bytes_past_the_declared_length_keep_the_connection_out_of_the_pool() {
    let (conn, mut up) = pair().await;
    let answer = async {
        read_request(&mut up, 0).await;
        up.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nokHTTP/1.1 200 OK\r\n\r\nSMUGGLED")
            .await
            .unwrap();
    };
    let (resp, ()) = tokio::join!(conn.send(get("/")), answer);
    let mut body = resp.unwrap().into_body();
    assert_eq!(collect(&mut body).await.unwrap().0, b"ok");
    assert!(body.take_reusable().is_none());
}

#[tokio::test]
async fn a_body_cut_short_and_a_close_before_the_head_are_errors() {
    let (conn, mut up) = pair().await;
    let answer = async {
        read_request(&mut up, 0).await;
        up.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nabc").await.unwrap();
        drop(up);
    };
    let (resp, ()) = tokio::join!(conn.send(get("/")), answer);
    let mut body = resp.unwrap().into_body();
    assert!(matches!(collect(&mut body).await, Err(Error::ClosedInBody)));

    let (conn, mut up) = pair().await;
    let answer = async {
        read_request(&mut up, 0).await;
        up.write_all(b"HTTP/1.1 200 O").await.unwrap();
        drop(up);
    };
    let (resp, ()) = tokio::join!(conn.send(get("/")), answer);
    assert!(matches!(resp, Err(Error::ClosedBeforeHead)), "{resp:?}");
}

#[tokio::test]
async fn a_101_hands_over_the_socket_with_what_followed_the_head() {
    let (conn, mut up) = pair().await;
    let req = Request::get("/ws")
        .header(header::CONNECTION, "upgrade")
        .header(header::UPGRADE, "websocket")
        .body(empty())
        .unwrap();
    let answer = async {
        read_request(&mut up, 0).await;
        up.write_all(
            b"HTTP/1.1 101 Switching Protocols\r\nconnection: upgrade\r\nupgrade: websocket\r\n\r\nEARLY",
        )
        .await
        .unwrap();
    };
    let (resp, ()) = tokio::join!(conn.send(req), answer);
    let mut resp = resp.unwrap();
    assert_eq!(resp.status(), 101);
    let mut upgraded = resp.body_mut().take_upgrade().unwrap();
    assert_eq!(&upgraded.read[..], b"EARLY");
    upgraded.io.write_all(b"ping").await.unwrap();
    let mut ping = [0; 4];
    up.read_exact(&mut ping).await.unwrap();
    assert_eq!(&ping, b"ping");
}

#[tokio::test]
async fn an_idle_connection_the_upstream_closed_is_not_usable() {
    let (mut conn, up) = pair().await;
    assert!(conn.is_usable());
    drop(up);
    // The close reaches us a moment later; bounded, never a timing assertion.
    for _ in 0..500 {
        if !conn.is_usable() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("a closed connection still looked usable after 5 s");
}

#[tokio::test]
async fn an_idle_connection_the_upstream_spoke_on_is_not_usable() {
    let (mut conn, mut up) = pair().await;
    assert!(conn.is_usable());
    up.write_all(b"HTTP/1.1 408 Request Timeout\r\n\r\n").await.unwrap();
    for _ in 0..500 {
        if !conn.is_usable() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("a connection with unrequested bytes still looked usable after 5 s");
}
