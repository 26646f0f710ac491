//! A real tracing backend for tests: Jaeger v2 (`cmd/jaeger`, built from its Go module by
//! `scripts/jaeger-tool.sh`) with OTLP receivers (HTTP and gRPC), in-memory storage and the query
//! service, every listener on its own free loopback port so that tests can run side by side.
//! Traces are read back through the query service's HTTP API (`/api/traces/{id}`), the one the
//! Jaeger UI uses. Everything lives in a temporary directory and dies with the [`Jaeger`].
//!
//! ```ignore
//! let Some(jaeger) = Jaeger::start_or_skip("my_test") else { return };
//! // point the proxy's OTLP exporter at jaeger.otlp_http_endpoint() (it POSTs to /v1/traces)
//! let trace = jaeger.wait_trace("4bf92f3577b34da6a3ce929d0e0e4736", 2, Duration::from_secs(10));
//! ```
//!
//! The calls block (like [`crate::process::Proxy`]): from async code, only while nothing the
//! test needs runs on the same runtime thread.

use std::{
    fs,
    io::{Read, Write},
    net::{SocketAddr, TcpStream},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::OnceLock,
    time::{Duration, Instant},
};

use serde_json::Value;
use tempfile::TempDir;

use crate::process::free_addr;

/// Set to the path of a `jaeger` binary to use it instead of the script's cache; `scripts/test.sh`
/// sets it to what `scripts/jaeger-tool.sh` built.
pub const JAEGER_ENV: &str = "PILLION_JAEGER";
/// How long Jaeger gets to come up. Its start is well under a second when idle; two shared cores
/// under a parallel test run make that many seconds.
const START_WAIT: Duration = Duration::from_secs(60);

/// A running Jaeger. Dropping it kills it; its traces are in memory only and go with it.
pub struct Jaeger {
    bin: PathBuf,
    otlp_http: SocketAddr,
    otlp_grpc: SocketAddr,
    query_http: SocketAddr,
    /// `None` while stopped by [`Jaeger::stop`].
    child: Option<Child>,
    dir: TempDir,
}

impl Jaeger {
    /// Starts Jaeger, or, when the binary has not been built on this machine (`scripts/test.sh`
    /// builds it; without Go it cannot), says SKIPPED for `test` (which fails a CI run) and
    /// returns `None`. Panics on any other failure, with the log.
    pub fn start_or_skip(test: &str) -> Option<Jaeger> {
        match binary() {
            Ok(_) => Some(Jaeger::start()),
            Err(Missing::NotBuilt(why)) => {
                crate::skip("needs jaeger", &format!("{test} ({why})"));
                None
            }
            Err(Missing::Broken(why)) => panic!("jaeger: {why}"),
        }
    }

    /// Starts Jaeger on fresh loopback ports and waits until it accepts OTLP and answers queries.
    /// Panics (with the log) if it cannot, or if the binary is not there.
    pub fn start() -> Jaeger {
        let bin = binary().unwrap_or_else(|e| panic!("jaeger: {e:?}")).clone();
        let dir = tempfile::Builder::new().prefix("pillion-jaeger-").tempdir().expect("temp dir");
        let unbound = ([127, 0, 0, 1], 0).into();
        let mut jaeger =
            Jaeger { bin, otlp_http: unbound, otlp_grpc: unbound, query_http: unbound, child: None, dir };
        // free_port only knows the ports it handed out in this process: another test process (a
        // parallel runner, a second checkout's suite) may bind one between our check and
        // Jaeger's bind. Such a start fails at once, and new ports fix it.
        for attempt in 1.. {
            let (otlp_http, otlp_grpc, query_http, query_grpc) =
                (free_addr(), free_addr(), free_addr(), free_addr());
            (jaeger.otlp_http, jaeger.otlp_grpc, jaeger.query_http) = (otlp_http, otlp_grpc, query_http);
            let config_file = jaeger.dir.path().join("config.yaml");
            fs::write(config_file, config(otlp_http, otlp_grpc, query_http, query_grpc))
                .expect("write jaeger config");
            let _ = fs::remove_file(jaeger.dir.path().join("jaeger.log"));
            match jaeger.spawn() {
                Ok(()) => break,
                Err(e) if attempt < 5 && e.contains("address already in use") => continue,
                Err(e) => panic!("{e}"),
            }
        }
        jaeger
    }

    /// `http://127.0.0.1:PORT`, the OTLP/HTTP receiver; exporters POST to `{this}/v1/traces`.
    /// The same across [`restart`](Self::restart)s.
    pub fn otlp_http_endpoint(&self) -> String {
        format!("http://{}", self.otlp_http)
    }

    /// The OTLP/gRPC receiver (`127.0.0.1:PORT`, plaintext h2c); the same across restarts.
    pub fn otlp_grpc_addr(&self) -> SocketAddr {
        self.otlp_grpc
    }

    /// `http://127.0.0.1:PORT`, the query service (HTTP API and UI).
    pub fn query_url(&self) -> String {
        format!("http://{}", self.query_http)
    }

    /// The trace with this id (32 hex digits) as the query API returns it (`traceID`, `spans`,
    /// `processes`), or `None` while Jaeger has no such trace (or is stopped).
    pub fn trace(&self, trace_id_hex: &str) -> Option<Value> {
        let (status, body) = http_get(self.query_http, &format!("/api/traces/{trace_id_hex}"))?;
        if status != 200 {
            return None;
        }
        let json: Value =
            serde_json::from_str(&body).unwrap_or_else(|e| panic!("jaeger: bad JSON ({e}): {body}"));
        json["data"].get(0).cloned()
    }

    /// The recent traces (at most 100, Jaeger's default limit) that have a span of `service`.
    pub fn traces(&self, service: &str) -> Vec<Value> {
        let Some((200, body)) = http_get(self.query_http, &format!("/api/traces?service={service}")) else {
            return Vec::new();
        };
        let json: Value =
            serde_json::from_str(&body).unwrap_or_else(|e| panic!("jaeger: bad JSON ({e}): {body}"));
        json["data"].as_array().cloned().unwrap_or_default()
    }

    /// Polls [`trace`](Self::trace) until the trace has at least `n_spans` spans, and returns it.
    /// Panics after `timeout` with what it last saw and Jaeger's log: spans arrive in batches from
    /// an exporter, so a test states how many it expects rather than taking the first sighting.
    pub fn wait_trace(&self, trace_id_hex: &str, n_spans: usize, timeout: Duration) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            let trace = self.trace(trace_id_hex);
            let seen = trace.as_ref().map_or(0, |t| spans(t).len());
            if seen >= n_spans {
                return trace.expect("seen > 0");
            }
            if Instant::now() > deadline {
                panic!(
                    "jaeger: trace {trace_id_hex} has {seen} spans, not {n_spans}, after {timeout:?}: {}\n{}",
                    trace.map(|t| t.to_string()).unwrap_or_else(|| "(no trace)".into()),
                    self.log_tail()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Kills Jaeger (SIGKILL, as a crash would): the collector is gone, its ports refuse
    /// connections, and the traces it held are lost.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// [`stop`](Self::stop)s it if running, then starts it again on the same ports and waits until
    /// it is ready: exporters configured with the old endpoints reach the new one. It starts empty.
    /// While stopped, its ports are free for anyone: a server that another test *process* starts
    /// meanwhile may take one (this process's [`free_addr`] never hands them out again).
    pub fn restart(&mut self) {
        self.stop();
        self.spawn().unwrap_or_else(|e| panic!("{e}"));
    }

    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// The directory holding `config.yaml` and `jaeger.log` (appended to across restarts).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The last lines of Jaeger's log, for a failure message.
    pub fn log_tail(&self) -> String {
        let text = fs::read_to_string(self.dir.path().join("jaeger.log")).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        format!("--- jaeger.log (last 40 lines) ---\n{}", lines[lines.len().saturating_sub(40)..].join("\n"))
    }

    /// Starts the process and waits until it is ready; on failure, why, with the log.
    fn spawn(&mut self) -> Result<(), String> {
        let log = self.dir.path().join("jaeger.log");
        let started = fs::read_to_string(&log).map_or(0, |t| t.len());
        let mut command = Command::new(&self.bin);
        command.arg("--config").arg(self.dir.path().join("config.yaml"));
        let child = crate::kube::spawn(command, &log).map_err(|e| format!("jaeger: {e:#}"))?;
        self.child = Some(child);
        self.wait_ready(started).inspect_err(|_| self.stop())
    }

    /// Waits for the collector's own word that every component started (so every listener is
    /// bound by this process, not merely a port that answers: after a lost port race it could
    /// be another's), then for the query API to answer. `log_from`: where this run's log begins.
    fn wait_ready(&mut self, log_from: usize) -> Result<(), String> {
        const READY: &str = "Everything is ready. Begin running and processing data.";
        let deadline = Instant::now() + START_WAIT;
        loop {
            let log = fs::read_to_string(self.dir.path().join("jaeger.log")).unwrap_or_default();
            if log.get(log_from..).is_some_and(|run| run.contains(READY))
                && http_get(self.query_http, "/api/services").is_some_and(|(s, _)| s == 200)
            {
                return Ok(());
            }
            let child = self.child.as_mut().expect("spawned");
            if let Ok(Some(status)) = child.try_wait() {
                return Err(format!("jaeger exited before it was ready: {status}\n{}", self.log_tail()));
            }
            if Instant::now() > deadline {
                return Err(format!("jaeger not ready within {START_WAIT:?}\n{}", self.log_tail()));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Jaeger {
    fn drop(&mut self) {
        self.stop();
        if std::thread::panicking() {
            eprintln!("{}", self.log_tail());
        }
    }
}

/// POSTs one span of `service` to `{endpoint}/v1/traces` as OTLP/JSON, as an app would send its
/// own; returns the HTTP status (0: no answer).
pub fn send_span(endpoint: &str, service: &str, trace_id: &str, span_id: &str) -> u16 {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_nanos();
    // OTLP/JSON: ids are hex strings (not base64, the protobuf JSON default), times are
    // nanosecond integers as strings.
    let body = serde_json::json!({
        "resourceSpans": [{
            "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": service}}]},
            "scopeSpans": [{
                "scope": {"name": "pillion-e2e"},
                "spans": [{
                    "traceId": trace_id,
                    "spanId": span_id,
                    "name": "check",
                    "kind": 2,
                    "startTimeUnixNano": (now - 1_000_000).to_string(),
                    "endTimeUnixNano": now.to_string(),
                }],
            }],
        }],
    });
    let url = format!("{endpoint}/v1/traces");
    let (status, out) = crate::client::curl_status(&[
        "--max-time",
        "10",
        "-X",
        "POST",
        "-H",
        "content-type: application/json",
        "--data-binary",
        &body.to_string(),
        &url,
    ]);
    assert!(status == 0 || status == 200, "OTLP/HTTP POST to {url}: {status} {out}");
    status
}

/// The spans of a trace that [`Jaeger::trace`] returned (empty if it has none).
pub fn spans(trace: &Value) -> &[Value] {
    trace["spans"].as_array().map_or(&[], Vec::as_slice)
}

/// The service name of a span of `trace` (from the trace's `processes` table).
pub fn service_of<'a>(trace: &'a Value, span: &Value) -> Option<&'a str> {
    let process = span["processID"].as_str()?;
    trace["processes"][process]["serviceName"].as_str()
}

/// The collector configuration: OTLP in, memory storage, the query service; nothing else. Every
/// address is given, since each component's default is a fixed port on 0.0.0.0 (OTLP 4317/4318,
/// query 16685/16686) that parallel tests would fight over; the internal metrics (a Prometheus
/// endpoint on :8888 by default) are turned off, and the query service does not trace itself.
/// No batch processor: spans go to storage as they arrive, so a test waits for nothing extra.
fn config(
    otlp_http: SocketAddr,
    otlp_grpc: SocketAddr,
    query_http: SocketAddr,
    query_grpc: SocketAddr,
) -> String {
    format!(
        r#"service:
  extensions: [jaeger_storage, jaeger_query]
  pipelines:
    traces:
      receivers: [otlp]
      exporters: [jaeger_storage_exporter]
  telemetry:
    metrics:
      level: none
    logs:
      level: info

extensions:
  jaeger_storage:
    backends:
      memstore:
        memory:
          max_traces: 100000
  jaeger_query:
    storage:
      traces: memstore
    enable_tracing: false
    http:
      endpoint: "{query_http}"
    grpc:
      endpoint: "{query_grpc}"

receivers:
  otlp:
    protocols:
      grpc:
        endpoint: "{otlp_grpc}"
      http:
        endpoint: "{otlp_http}"

exporters:
  jaeger_storage_exporter:
    trace_storage: memstore
"#
    )
}

/// Why there is no binary to run.
#[derive(Debug, Clone)]
enum Missing {
    /// `scripts/jaeger-tool.sh` has not built it here: a reason to skip (which CI fails on).
    NotBuilt(String),
    /// `$PILLION_JAEGER` names nothing runnable, or the script cannot run: a reason to fail.
    Broken(String),
}

/// The `jaeger` binary: `$PILLION_JAEGER`, else what the script's `--check` says is built. Never
/// builds (minutes, inside a test's time limit): `scripts/test.sh` does that beforehand.
fn binary() -> Result<&'static PathBuf, Missing> {
    static BIN: OnceLock<Result<PathBuf, Missing>> = OnceLock::new();
    BIN.get_or_init(locate).as_ref().map_err(Clone::clone)
}

fn locate() -> Result<PathBuf, Missing> {
    if let Some(path) = std::env::var_os(JAEGER_ENV) {
        let path = PathBuf::from(path);
        if !path.is_file() {
            return Err(Missing::Broken(format!("${JAEGER_ENV} ({}) is not a file", path.display())));
        }
        return Ok(path);
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("e2e/ is inside the workspace");
    let script = root.join("scripts/jaeger-tool.sh");
    // stdout carries the path; stderr ("not built ...") goes straight to the terminal.
    let out = Command::new(&script)
        .arg("--check")
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| Missing::Broken(format!("cannot run {}: {e}", script.display())))?;
    if !out.status.success() {
        return Err(Missing::NotBuilt(format!(
            "not built on this machine; run {} (scripts/test.sh does, given Go)",
            script.display()
        )));
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    let path = PathBuf::from(stdout.lines().last().unwrap_or_default().trim());
    if !path.is_file() {
        return Err(Missing::Broken(format!(
            "{} printed {}, which is no file",
            script.display(),
            path.display()
        )));
    }
    Ok(path)
}

/// A plain HTTP/1.0 GET on loopback: status and body, or `None` if nothing answered. HTTP/1.0 so
/// that Go's server sends the body as is and closes, never chunked.
fn http_get(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").ok()?;
    let mut buf = Vec::new();
    stream.read_to_end(&mut buf).ok()?;
    let text = String::from_utf8_lossy(&buf);
    let status = text.split(' ').nth(1)?.parse().ok()?;
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default();
    Some((status, body))
}
