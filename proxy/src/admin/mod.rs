//! The admin listener: `/metrics`, `/ready`, `/live`, `/config`, `/debug/route`. Plain HTTP/1.1, separate from
//! the data path, and still answering while the proxy drains (so `/ready` can say 503).

pub mod debug_route;

use std::{convert::Infallible, sync::Arc};

use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use hyper::{body::Incoming, server::conn::http1, service::service_fn};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;

use crate::body::Body;
use crate::live::Shared;

/// Serves admin requests until the process exits.
pub async fn serve(tcp: TcpListener, shared: Arc<Shared>) {
    loop {
        let (stream, _) = match tcp.accept().await {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(error = %e, "admin accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            }
        };
        let shared = Arc::clone(&shared);
        tokio::spawn(async move {
            let svc = service_fn(move |req| handle(Arc::clone(&shared), req));
            let _ = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(std::time::Duration::from_secs(10))
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}

async fn handle(shared: Arc<Shared>, req: Request<Incoming>) -> Result<Response<Body>, Infallible> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return Ok(text(StatusCode::METHOD_NOT_ALLOWED, "use GET\n"));
    }
    Ok(match req.uri().path() {
        "/metrics" => {
            shared
                .metrics
                .runtime_tasks
                .set(tokio::runtime::Handle::current().metrics().num_alive_tasks() as i64);
            let mut r = Response::new(Body::full(shared.metrics.encode()));
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
            );
            r
        }
        "/live" => text(StatusCode::OK, "live\n"),
        "/ready" if shared.is_ready() => text(StatusCode::OK, "ready\n"),
        "/ready" => text(StatusCode::SERVICE_UNAVAILABLE, "not ready\n"),
        "/config" => config(&shared),
        "/debug/route" => {
            let rt = shared.serving.load();
            match crate::admin::debug_route::explain(&rt, req.uri().query().unwrap_or("")) {
                Ok(doc) => json(&doc),
                Err(e) => text(StatusCode::BAD_REQUEST, &format!("{e}\n")),
            }
        }
        _ => text(StatusCode::NOT_FOUND, "not found; try /metrics, /ready, /live, /config, /debug/route\n"),
    })
}

fn config(shared: &Shared) -> Response<Body> {
    let rt = shared.serving.load();
    json(&serde_json::json!({ "version": rt.version, "config": rt.config.file }))
}

fn json(doc: &serde_json::Value) -> Response<Body> {
    match serde_json::to_vec_pretty(doc) {
        Ok(body) => {
            let mut r = Response::new(Body::full(body));
            r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
            r
        }
        Err(e) => text(StatusCode::INTERNAL_SERVER_ERROR, &format!("cannot encode JSON: {e}\n")),
    }
}

fn text(status: StatusCode, body: &str) -> Response<Body> {
    let mut r = Response::new(Body::full(body.to_owned()));
    *r.status_mut() = status;
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    r
}
