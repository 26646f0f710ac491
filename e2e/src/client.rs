//! Clients for tests: a tiny blocking HTTP/1.1 GET (admin checks), curl, and pooled hyper
//! clients for HTTP/1.1 and h2c when a test sends many requests.

use std::{
    io::{Read, Write},
    net::{SocketAddr, TcpStream},
    process::{Command, Output},
    time::Duration,
};

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::TokioExecutor,
};

/// A blocking `GET path` with `Connection: close`; returns status and body.
pub fn get(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(30))).ok()?;
    write!(s, "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").ok()?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).ok()?;
    let text = String::from_utf8_lossy(&buf).into_owned();
    let status = text.split(' ').nth(1)?.parse().ok()?;
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default();
    Some((status, body))
}

/// Status of a blocking GET.
pub fn get_status(addr: SocketAddr, path: &str) -> Option<u16> {
    get(addr, path).map(|(s, _)| s)
}

/// Body of a blocking GET that answered 200.
pub fn get_text(addr: SocketAddr, path: &str) -> Option<String> {
    get(addr, path).filter(|(s, _)| *s == 200).map(|(_, b)| b)
}

/// Runs curl with `-sS` and the given arguments.
pub fn curl(args: &[&str]) -> Output {
    Command::new("curl").arg("-sS").args(args).output().expect("curl is installed (scripts/setup.sh)")
}

/// Runs curl and returns `(status code, stdout)` using `-w` to append the code.
pub fn curl_status(args: &[&str]) -> (u16, String) {
    let mut all = vec!["-o", "-", "-w", "\n%{http_code}"];
    all.extend_from_slice(args);
    let out = curl(&all);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
    (code.trim().parse().unwrap_or(0), body.to_owned())
}

/// A pooled hyper client.
#[derive(Clone)]
pub struct HttpClient {
    inner: Client<HttpConnector, Full<Bytes>>,
}

impl HttpClient {
    /// HTTP/1.1 with keep-alive.
    pub fn http1() -> Self {
        Self { inner: Client::builder(TokioExecutor::new()).build_http() }
    }

    /// HTTP/2 with prior knowledge (h2c).
    pub fn http2() -> Self {
        Self { inner: Client::builder(TokioExecutor::new()).http2_only(true).build_http() }
    }

    /// Sends a request and collects the response body.
    pub async fn send(&self, req: Request<Full<Bytes>>) -> Result<Response<Bytes>, String> {
        let resp = self.inner.request(req).await.map_err(|e| format!("{e:?}"))?;
        let (parts, body) = resp.into_parts();
        let body = body.collect().await.map_err(|e| e.to_string())?.to_bytes();
        Ok(Response::from_parts(parts, body))
    }

    /// `GET http://addr{path}` with an optional Host header.
    pub async fn get(
        &self,
        addr: SocketAddr,
        path: &str,
        host: Option<&str>,
    ) -> Result<Response<Bytes>, String> {
        let mut b = Request::get(format!("http://{addr}{path}"));
        if let Some(h) = host {
            b = b.header("host", h);
        }
        self.send(b.body(Full::default()).map_err(|e| e.to_string())?).await
    }
}
