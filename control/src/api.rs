//! The HTTPS API (HTTP/2 and HTTP/1.1): accept, TLS with an optional client certificate, and one
//! handler per path. Who may do what is decided per request from the client certificate's SPIFFE
//! ID (or, for certificates only, a bootstrap token of the workload asked for, or with
//! `--kubernetes` a projected ServiceAccount token of its ServiceAccount, see
//! [`tokenreview`](crate::kubernetes::tokenreview)):
//!
//! | path | caller |
//! |---|---|
//! | `GET /v1/watch/{workload}` | a client cert of the workload's identity |
//! | `POST /v1/ack` | a client cert of the acked workload's identity |
//! | `POST /v1/certificates?workload=W` | a bootstrap token of W, W's ServiceAccount token, or a valid cert of W's identity |
//! | `GET /v1/status`, `GET /metrics` | anyone who can reach the port |

use std::{convert::Infallible, sync::Arc, time::Duration};

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited, combinators::UnsyncBoxBody};
use hyper::{body::Incoming, service::service_fn};
use hyper_util::{
    rt::{TokioExecutor, TokioIo, TokioTimer},
    server::conn::auto,
};
use pillion_certs::{CertInfo, SpiffeId};
use serde::Deserialize;
use tokio::net::TcpListener;
use tokio_rustls::{TlsAcceptor, rustls::ServerConfig};

use crate::{
    State,
    ca::SignError,
    kubernetes::{
        tokenreview::{ReviewError, Reviewer},
        workloads,
    },
    metrics::CertRefusal,
    snapshot::Channel,
    tokens::Verdict,
};

/// Response body: a full buffer or a watch stream.
pub type Body = UnsyncBoxBody<Bytes, Infallible>;

/// Largest request body accepted (a CSR or an ack is a few hundred bytes).
const MAX_BODY: usize = 64 * 1024;
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The verified client of a connection.
#[derive(Debug, Clone, Default)]
struct Peer {
    identity: Option<SpiffeId>,
    /// Certificate expiry, unix seconds.
    not_after: Option<i64>,
}

/// Accepts connections until the process exits.
pub async fn serve(tcp: TcpListener, tls: Arc<ServerConfig>, state: Arc<State>) {
    let acceptor = TlsAcceptor::from(tls);
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder.http1().timer(TokioTimer::new()).header_read_timeout(Duration::from_secs(10));
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(Duration::from_secs(30))
        .keep_alive_timeout(Duration::from_secs(10));
    let builder = Arc::new(builder);
    loop {
        let (stream, addr) = match tcp.accept().await {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(error = %e, "accept failed; backing off");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let (acceptor, builder, state) = (acceptor.clone(), Arc::clone(&builder), Arc::clone(&state));
        tokio::spawn(async move {
            let _ = stream.set_nodelay(true);
            let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => return tracing::info!(%addr, error = %e, "TLS handshake failed"),
                Err(_) => return tracing::info!(%addr, "TLS handshake timed out"),
            };
            let leaf = tls.get_ref().1.peer_certificates().and_then(|c| c.first());
            let info = leaf.and_then(|der| CertInfo::parse(der, "client certificate".as_ref()).ok());
            let peer = Arc::new(Peer {
                identity: info.as_ref().and_then(|i| i.spiffe_id("client certificate".as_ref()).ok()),
                not_after: info.as_ref().map(CertInfo::not_after_unix),
            });
            let svc = service_fn(move |req| handle(Arc::clone(&state), Arc::clone(&peer), req));
            if let Err(e) = builder.serve_connection(TokioIo::new(tls), svc).await {
                tracing::debug!(%addr, error = %e, "connection ended with an error");
            }
        });
    }
}

async fn handle(
    state: Arc<State>,
    peer: Arc<Peer>,
    req: Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    let path = req.uri().path().to_owned();
    let method = req.method().clone();
    Ok(match (method, path.as_str()) {
        (Method::GET, p) if p.starts_with("/v1/watch/") => {
            let workload = &p["/v1/watch/".len()..];
            // A version means something only within the epoch (process lifetime) that issued it.
            let same_epoch =
                query(&req, "epoch").and_then(|e| e.parse::<u64>().ok()) == Some(crate::snapshot::epoch());
            let resume = query(&req, "version").and_then(|v| v.parse().ok()).filter(|_| same_epoch);
            watch(state, &peer, workload, resume)
        }
        (Method::POST, "/v1/ack") => ack(&state, &peer, req).await,
        (Method::POST, "/v1/certificates") => certificates(&state, &peer, req).await,
        (Method::GET, "/v1/status") => {
            let doc = state.status.render(&state.snapshots.load());
            json(StatusCode::OK, &doc)
        }
        (Method::GET, "/metrics") => {
            let mut r = Response::new(full(state.metrics.encode()));
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
            );
            r
        }
        (_, "/v1/ack" | "/v1/certificates" | "/v1/status" | "/metrics") => {
            error(StatusCode::METHOD_NOT_ALLOWED, "method not allowed on this path")
        }
        _ => error(
            StatusCode::NOT_FOUND,
            "no such path; see /v1/watch/{workload}, /v1/ack, /v1/certificates, /v1/status, /metrics",
        ),
    })
}

/// The workload's channel, if the caller's certificate is of its identity; else the reply.
fn authorize(state: &State, peer: &Peer, workload: &str) -> Result<Arc<Channel>, Refusal> {
    let Some(identity) = &peer.identity else {
        let msg = "a client certificate of the workload's identity is required";
        return Err(Refusal(StatusCode::FORBIDDEN, msg.into()));
    };
    let table = state.snapshots.load();
    let Some(channel) = table.workloads.get(workload) else {
        return Err(Refusal(StatusCode::NOT_FOUND, format!("unknown workload {workload:?}")));
    };
    if &channel.identity != identity {
        tracing::warn!(%workload, client = %identity, "refused: identity is not the workload's");
        let msg = format!("client identity {identity} is not workload {workload:?}'s identity");
        return Err(Refusal(StatusCode::FORBIDDEN, msg));
    }
    Ok(Arc::clone(channel))
}

fn watch(state: Arc<State>, peer: &Peer, workload: &str, resume: Option<u64>) -> Response<Body> {
    let channel = match authorize(&state, peer, workload) {
        Ok(c) => c,
        Err(refusal) => return refusal.reply(),
    };
    let body =
        crate::watch::stream(Arc::clone(&state), workload.to_owned(), &channel, resume, peer.not_after);
    let mut r = Response::new(body);
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/x-ndjson"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// `POST /v1/ack` body.
#[derive(Debug, Deserialize)]
struct Ack {
    workload: String,
    version: u64,
    #[serde(default)]
    error: Option<String>,
}

async fn ack(state: &State, peer: &Peer, req: Request<Incoming>) -> Response<Body> {
    let body = match read_body(req).await {
        Ok(b) => b,
        Err(refusal) => return refusal.reply(),
    };
    let ack: Ack = match serde_json::from_slice(&body) {
        Ok(a) => a,
        Err(e) => return error(StatusCode::BAD_REQUEST, &format!("bad ack: {e}")),
    };
    if let Err(refusal) = authorize(state, peer, &ack.workload) {
        return refusal.reply();
    }
    match &ack.error {
        None => {
            state.metrics.acks.inc();
            tracing::debug!(workload = %ack.workload, version = ack.version, "ack");
        }
        Some(e) => {
            state.metrics.nacks.inc();
            tracing::warn!(workload = %ack.workload, version = ack.version, error = %e, "proxy rejected a snapshot");
        }
    }
    state.status.ack(&ack.workload, ack.version, ack.error);
    let mut r = Response::new(full(Vec::new()));
    *r.status_mut() = StatusCode::NO_CONTENT;
    r
}

async fn certificates(state: &State, peer: &Peer, req: Request<Incoming>) -> Response<Body> {
    let workload = query(&req, "workload");
    let authorization = req.headers().get(header::AUTHORIZATION).cloned();
    // Read before answering, refusals included: a client still sending its body when the reply
    // comes may see the stream reset instead of the reply.
    let body = match read_body(req).await {
        Ok(b) => b,
        Err(Refusal(status, msg)) => return refuse(state, peer, "-", CertRefusal::BadRequest, status, &msg),
    };
    let Some(workload) = workload else {
        let msg = "name the workload: POST /v1/certificates?workload=NAME";
        return refuse(state, peer, "-", CertRefusal::BadRequest, StatusCode::BAD_REQUEST, msg);
    };
    let table = state.snapshots.load();
    let Some(channel) = table.workloads.get(&workload).cloned() else {
        let msg = format!("unknown workload {workload:?}");
        return refuse(state, peer, &workload, CertRefusal::UnknownWorkload, StatusCode::NOT_FOUND, &msg);
    };
    let how = match authenticate(state, peer, &workload, &channel.identity, authorization.as_ref()).await {
        Ok(how) => how,
        Err((reason, msg)) => {
            // Only a review that could not be made is worth retrying.
            let status = match reason {
                CertRefusal::TokenReviewFailed => StatusCode::SERVICE_UNAVAILABLE,
                _ => StatusCode::FORBIDDEN,
            };
            return refuse(state, peer, &workload, reason, status, &msg);
        }
    };
    let Ok(csr) = std::str::from_utf8(&body) else {
        let msg = "bad CSR: not PEM text";
        return refuse(state, peer, &workload, CertRefusal::BadCsr, StatusCode::BAD_REQUEST, msg);
    };
    match state.signer.sign(csr, &channel.identity) {
        Ok(pem) => {
            state.metrics.certificates_signed.inc();
            tracing::info!(%workload, identity = %channel.identity, by = how, "signed a workload certificate");
            let mut r = Response::new(full(pem));
            r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/x-pem-file"));
            r
        }
        Err(e @ SignError::BadCsr(_)) => {
            refuse(state, peer, &workload, CertRefusal::BadCsr, StatusCode::BAD_REQUEST, &e.to_string())
        }
        Err(e @ SignError::WrongIdentity(_)) => {
            refuse(state, peer, &workload, CertRefusal::CsrIdentity, StatusCode::FORBIDDEN, &e.to_string())
        }
        Err(e @ SignError::Failed(_)) => {
            tracing::error!(%workload, error = %e, "signing failed");
            error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string())
        }
    }
}

/// How the caller proved it may have `identity` (`"certificate"`, `"token"` or
/// `"service-account"`), or why not.
async fn authenticate(
    state: &State,
    peer: &Peer,
    workload: &str,
    identity: &SpiffeId,
    authorization: Option<&HeaderValue>,
) -> Result<&'static str, (CertRefusal, String)> {
    if let Some(id) = &peer.identity {
        // A caller that proved an identity gets that identity only, token or not.
        if id != identity {
            let msg = format!("client identity {id} is not workload {workload:?}'s identity {identity}");
            return Err((CertRefusal::WrongIdentity, msg));
        }
        // The handshake refuses expired certificates; this is one that expired on an open
        // connection.
        if peer.not_after.is_none_or(|t| t <= crate::status::now_unix()) {
            return Err((CertRefusal::ExpiredCertificate, "the client certificate has expired".into()));
        }
        return Ok("certificate");
    }
    match state.signer.check_token(authorization.map(HeaderValue::as_bytes), workload) {
        Some(Verdict::Valid) => Ok("token"),
        Some(Verdict::WrongWorkload(owner)) => {
            // The owner goes to the log only: the caller needs no help finding what it can get.
            tracing::warn!(%workload, token_of = %owner, "a bootstrap token was presented for another workload");
            let msg = format!("this bootstrap token does not enrol workload {workload:?}");
            Err((CertRefusal::WrongWorkload, msg))
        }
        Some(Verdict::Unknown) => match (&state.reviewer, authorization.and_then(bearer)) {
            (Some(reviewer), Some(token)) => {
                review(reviewer, token, workload, identity, state.signer.trust_domain()).await
            }
            _ => Err((CertRefusal::BadToken, "unknown bootstrap token".into())),
        },
        None => {
            let msg = format!("need a bootstrap token of {workload:?} or a valid certificate of {identity}");
            Err((CertRefusal::NoCredentials, msg))
        }
    }
}

/// The identity a ServiceAccount token proves, which must be `workload`'s.
async fn review(
    reviewer: &Reviewer,
    token: &str,
    workload: &str,
    identity: &SpiffeId,
    trust_domain: &str,
) -> Result<&'static str, (CertRefusal, String)> {
    let who = match reviewer.review(token).await {
        Ok(who) => who,
        Err(e @ ReviewError::Unavailable(_)) => return Err((CertRefusal::TokenReviewFailed, e.to_string())),
        Err(e) => return Err((CertRefusal::BadToken, e.to_string())),
    };
    // The workload and identity are the review's; the query only has to agree with them.
    let own = workloads::workload_name(&who.namespace, &who.service_account);
    let own_identity = workloads::identity(trust_domain, &who.namespace, &who.service_account);
    if own != workload || own_identity != identity.as_str() {
        tracing::warn!(%workload, token_of = %own, pod = %who.pod, "a ServiceAccount token was presented for another workload");
        let msg = format!("this ServiceAccount token enrols workload {own:?} only, not {workload:?}");
        return Err((CertRefusal::WrongWorkload, msg));
    }
    tracing::debug!(%workload, pod = %who.pod, "ServiceAccount token reviewed");
    Ok("service-account")
}

/// The token of an `Authorization: Bearer TOKEN` header value.
fn bearer(value: &HeaderValue) -> Option<&str> {
    crate::tokens::bearer(value.as_bytes()).and_then(|t| std::str::from_utf8(t).ok())
}

/// Counts, logs and answers a refused certificate request.
fn refuse(
    state: &State,
    peer: &Peer,
    workload: &str,
    reason: CertRefusal,
    status: StatusCode,
    message: &str,
) -> Response<Body> {
    state.metrics.certificate_refused(reason);
    let client = peer.identity.as_ref().map(SpiffeId::as_str);
    tracing::warn!(%workload, ?client, reason = reason.label(), %message, "certificate request refused");
    error(status, message)
}

async fn read_body(req: Request<Incoming>) -> Result<Bytes, Refusal> {
    match Limited::new(req.into_body(), MAX_BODY).collect().await {
        Ok(c) => Ok(c.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => {
            Err(Refusal(StatusCode::PAYLOAD_TOO_LARGE, "request body too large".into()))
        }
        Err(e) => Err(Refusal(StatusCode::BAD_REQUEST, format!("cannot read the request body: {e}"))),
    }
}

fn query(req: &Request<Incoming>, key: &str) -> Option<String> {
    req.uri()
        .query()?
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == key)
        .map(|(_, v)| v.to_owned())
}

fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into()).boxed_unsync()
}

fn json(status: StatusCode, value: &serde_json::Value) -> Response<Body> {
    let mut body = serde_json::to_vec_pretty(value).unwrap_or_default();
    body.push(b'\n');
    let mut r = Response::new(full(body));
    *r.status_mut() = status;
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

/// A request refused before its handler ran: status and message.
struct Refusal(StatusCode, String);

impl Refusal {
    fn reply(self) -> Response<Body> {
        error(self.0, &self.1)
    }
}

/// A JSON error reply: `{"error": "..."}`.
fn error(status: StatusCode, message: &str) -> Response<Body> {
    json(status, &serde_json::json!({ "error": message }))
}
