//! The tracing harness is a real Jaeger: a span POSTed over OTLP/HTTP (the JSON encoding, by
//! curl, so that nothing of Pillion's is involved) is stored and read back through the query API
//! with its service name and ids; and a Jaeger taken away with `stop()` refuses spans until
//! `restart()` brings it back on the same endpoint. Each test starts its own (`pillion_e2e::jaeger`).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use pillion_e2e::{
    client::curl_status,
    jaeger::{self, Jaeger},
};
use serde_json::json;

const SERVICE: &str = "harness-check";
/// How long a stored span gets to show up in the query API; it is there at once when idle.
const WAIT: Duration = Duration::from_secs(20);

/// POSTs one span to `{endpoint}/v1/traces` as OTLP/JSON; returns the HTTP status (0: no answer).
fn send_span(endpoint: &str, trace_id: &str, span_id: &str) -> u16 {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).expect("clock").as_nanos();
    // OTLP/JSON: ids are hex strings (not base64, the protobuf JSON default), times are
    // nanosecond integers as strings.
    let body = json!({
        "resourceSpans": [{
            "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": SERVICE}}]},
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
    let (status, out) = curl_status(&[
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

#[test]
fn span_sent_over_otlp_http_is_read_back() {
    let Some(jaeger) = Jaeger::start_or_skip("jaeger::span_sent_over_otlp_http_is_read_back") else { return };
    let (trace_id, span_id) = ("0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331");
    assert_eq!(send_span(&jaeger.otlp_http_endpoint(), trace_id, span_id), 200);

    let trace = jaeger.wait_trace(trace_id, 1, WAIT);
    assert_eq!(trace["traceID"], trace_id);
    let spans = jaeger::spans(&trace);
    assert_eq!(spans.len(), 1, "{trace}");
    assert_eq!(spans[0]["spanID"], span_id);
    assert_eq!(spans[0]["operationName"], "check");
    assert_eq!(jaeger::service_of(&trace, &spans[0]), Some(SERVICE), "{trace}");

    // The search API finds it by service too, which is how a test finds traces whose id it
    // did not choose (one the proxy started).
    let found = jaeger.traces(SERVICE);
    assert!(found.iter().any(|t| t["traceID"] == trace_id), "{found:?}");
    assert!(jaeger.trace("00000000000000000000000000000001").is_none());
}

#[test]
fn stop_takes_the_collector_away_and_restart_brings_it_back() {
    let Some(mut jaeger) =
        Jaeger::start_or_skip("jaeger::stop_takes_the_collector_away_and_restart_brings_it_back")
    else {
        return;
    };
    let endpoint = jaeger.otlp_http_endpoint();
    let grpc = jaeger.otlp_grpc_addr();

    jaeger.stop();
    assert!(!jaeger.is_running());
    // Gone as a crashed collector is: the connection is refused, no answer at all.
    assert_eq!(send_span(&endpoint, "1bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"), 0);
    assert!(std::net::TcpStream::connect(grpc).is_err(), "OTLP/gRPC still listening on {grpc}");

    jaeger.restart();
    assert!(jaeger.is_running());
    assert_eq!(jaeger.otlp_http_endpoint(), endpoint, "the endpoint moved");
    let (trace_id, span_id) = ("2bf92f3577b34da6a3ce929d0e0e4736", "01f067aa0ba902b7");
    assert_eq!(send_span(&endpoint, trace_id, span_id), 200);
    let trace = jaeger.wait_trace(trace_id, 1, WAIT);
    assert_eq!(jaeger::spans(&trace)[0]["spanID"], span_id);
    // A second restart works as well: the harness keeps no state the first one used up.
    jaeger.restart();
    assert!(jaeger.trace(trace_id).is_none(), "memory storage should start empty");
}
