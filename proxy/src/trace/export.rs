//! Span export: requests hand finished spans to a bounded queue without waiting; one task
//! takes them off in batches and POSTs each batch to the collector as OTLP/HTTP protobuf. When
//! the collector is slow or away, the queue fills and new spans are dropped and counted, so a
//! request never waits on tracing and memory stays bounded. The task wakes when a batch is full
//! or a second has passed, never once per span: at full sampling a wake-up per request would
//! cost more than the spans.

use std::{
    sync::{
        Arc, Weak,
        atomic::{AtomicUsize, Ordering::Relaxed},
    },
    time::Duration,
};

use bytes::Bytes;
use http::{Request, header};
use http_body_util::Full;
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use opentelemetry_proto::tonic::{
    collector::trace::v1::ExportTraceServiceRequest,
    common::v1::InstrumentationScope,
    resource::v1::Resource,
    trace::v1::{ResourceSpans, ScopeSpans},
};
use pillion_config::trace::TracingConfig;
use prometheus::IntCounter;
use prost::Message;
use tokio::{
    net::TcpStream,
    sync::{Notify, mpsc},
};

use super::span::{SpanData, Value, key_value};
use crate::{live::Shared, metrics::Metrics};

/// Spans waiting for export, at most.
const QUEUE: usize = 2048;
/// Spans in one export, at most.
const BATCH: usize = 512;
/// Longest a span waits for its batch to fill.
const BATCH_DELAY: Duration = Duration::from_secs(1);
/// Longest one export may take, connect included.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(5);

/// Where requests put their finished spans.
#[derive(Debug)]
pub struct Spans {
    tx: mpsc::Sender<SpanData>,
    waiting: Arc<Waiting>,
    queue_full: IntCounter,
}

/// How many spans wait, and the exporter's bells: the first span, and a full batch.
#[derive(Debug, Default)]
struct Waiting {
    count: AtomicUsize,
    first: Notify,
    full: Notify,
}

/// The exporter's end of the queue.
#[derive(Debug)]
pub struct Queue {
    rx: mpsc::Receiver<SpanData>,
    waiting: Arc<Waiting>,
}

impl Spans {
    /// A queue, and its other end for [`run`].
    pub fn new(metrics: &Metrics) -> (Self, Queue) {
        let (tx, rx) = mpsc::channel(QUEUE);
        let waiting = Arc::new(Waiting::default());
        let spans = Self { tx, waiting: Arc::clone(&waiting), queue_full: metrics.trace_spans("queue_full") };
        (spans, Queue { rx, waiting })
    }

    /// Queues `span`, or drops it when the queue is full.
    pub fn record(&self, span: SpanData) {
        // The receiver never waits on the channel itself, so a send wakes nobody.
        if self.tx.try_send(span).is_err() {
            self.queue_full.inc();
            return;
        }
        match self.waiting.count.fetch_add(1, Relaxed) + 1 {
            1 => self.waiting.first.notify_one(),
            BATCH => self.waiting.full.notify_one(),
            _ => {}
        }
    }
}

/// Exports queued spans to the collector the config in force names, until the proxy ends.
pub async fn run(Queue { mut rx, waiting }: Queue, shared: Weak<Shared>) {
    let mut conn: Option<SendRequest<Full<Bytes>>> = None;
    let mut batch = Vec::with_capacity(BATCH);
    loop {
        if waiting.count.load(Relaxed) == 0 {
            // Nothing to send: no timer runs while tracing is idle or off.
            waiting.first.notified().await;
        }
        if waiting.count.load(Relaxed) < BATCH {
            // A full batch, or a second: whichever comes first.
            let _ = tokio::time::timeout(BATCH_DELAY, waiting.full.notified()).await;
        }
        while batch.len() < BATCH {
            match rx.try_recv() {
                Ok(span) => batch.push(span),
                Err(mpsc::error::TryRecvError::Empty) => break,
                Err(mpsc::error::TryRecvError::Disconnected) => return,
            }
        }
        waiting.count.fetch_sub(batch.len(), Relaxed);
        if batch.is_empty() {
            continue;
        }
        let Some(shared) = shared.upgrade() else { return };
        let settings = shared.serving.load().config.tracing.clone();
        let n = batch.len() as u64;
        let sent = match &settings {
            Some(t) => tokio::time::timeout(EXPORT_TIMEOUT, export(&mut conn, t, &batch)).await,
            // Tracing was turned off by a reload: what was queued goes nowhere.
            None => Ok(Err(ExportError::Off)),
        };
        batch.clear();
        match sent {
            Ok(Ok(())) => shared.metrics.trace_spans("exported").inc_by(n),
            Ok(Err(e)) => {
                conn = None;
                shared.metrics.trace_spans("export_failed").inc_by(n);
                tracing::debug!(error = %e, spans = n, "span export failed");
            }
            Err(_) => {
                conn = None;
                shared.metrics.trace_spans("export_failed").inc_by(n);
                tracing::debug!(spans = n, "span export timed out");
            }
        }
    }
}

/// Why a batch was not exported.
#[derive(Debug, thiserror::Error)]
enum ExportError {
    #[error("connect to the collector: {0}")]
    Connect(std::io::Error),
    #[error("HTTP: {0}")]
    Http(hyper::Error),
    #[error("the collector answered {0}")]
    Status(http::StatusCode),
    #[error("tracing is off")]
    Off,
}

async fn export(
    conn: &mut Option<SendRequest<Full<Bytes>>>,
    t: &TracingConfig,
    batch: &[SpanData],
) -> Result<(), ExportError> {
    let body = encode(&t.service_name, batch);
    let tx = match conn.as_mut().filter(|c| !c.is_closed()) {
        Some(tx) => tx,
        None => conn.insert(connect(&t.authority).await?),
    };
    tx.ready().await.map_err(ExportError::Http)?;
    let req = Request::post(&t.path)
        .header(header::HOST, &t.authority)
        .header(header::CONTENT_TYPE, "application/x-protobuf")
        .body(Full::new(body))
        .map_err(|_| ExportError::Status(http::StatusCode::BAD_REQUEST))?;
    let resp = tx.send_request(req).await.map_err(ExportError::Http)?;
    if !resp.status().is_success() {
        return Err(ExportError::Status(resp.status()));
    }
    Ok(())
}

async fn connect(authority: &str) -> Result<SendRequest<Full<Bytes>>, ExportError> {
    let tcp = TcpStream::connect(authority).await.map_err(ExportError::Connect)?;
    let _ = tcp.set_nodelay(true);
    let (tx, conn) = http1::handshake(TokioIo::new(tcp)).await.map_err(ExportError::Http)?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(tx)
}

/// One OTLP export request: the proxy as the resource, its spans in one scope.
fn encode(service_name: &Arc<str>, batch: &[SpanData]) -> Bytes {
    let resource = Resource {
        attributes: vec![
            key_value("service.name", &Value::Str(service_name.as_ref().into())),
            key_value("telemetry.sdk.name", &Value::Static("pillion")),
        ],
        ..Resource::default()
    };
    let scope = InstrumentationScope {
        name: "pillion".into(),
        version: env!("CARGO_PKG_VERSION").into(),
        ..InstrumentationScope::default()
    };
    let spans = batch.iter().map(SpanData::to_otlp).collect();
    let request = ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(resource),
            scope_spans: vec![ScopeSpans { scope: Some(scope), spans, ..ScopeSpans::default() }],
            ..ResourceSpans::default()
        }],
    };
    Bytes::from(request.encode_to_vec())
}
