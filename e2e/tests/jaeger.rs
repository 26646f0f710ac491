//! The tracing harness is a real Jaeger: a span POSTed over OTLP/HTTP (the JSON encoding, by
//! curl, so that nothing of Pillion's is involved) is stored and read back through the query API
//! with its service name and ids; protobuf spans arrive over OTLP/HTTP and OTLP/gRPC alike; and a
//! Jaeger taken away with `stop()` refuses spans until `restart()` brings it back on the same
//! endpoint. Each test starts its own (`pillion_e2e::jaeger`).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use pillion_e2e::{
    client::curl_status,
    jaeger::{self, Jaeger},
};

const SERVICE: &str = "harness-check";
/// How long a stored span gets to show up in the query API; it is there at once when idle.
const WAIT: Duration = Duration::from_secs(20);

#[test]
fn span_sent_over_otlp_http_is_read_back() {
    let Some(jaeger) = Jaeger::start_or_skip("jaeger::span_sent_over_otlp_http_is_read_back") else { return };
    let (trace_id, span_id) = ("0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331");
    assert_eq!(jaeger::send_span(&jaeger.otlp_http_endpoint(), SERVICE, trace_id, span_id), 200);

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
    assert_eq!(
        jaeger::send_span(&endpoint, SERVICE, "1bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"),
        0
    );
    assert!(std::net::TcpStream::connect(grpc).is_err(), "OTLP/gRPC still listening on {grpc}");

    jaeger.restart();
    assert!(jaeger.is_running());
    assert_eq!(jaeger.otlp_http_endpoint(), endpoint, "the endpoint moved");
    let (trace_id, span_id) = ("2bf92f3577b34da6a3ce929d0e0e4736", "01f067aa0ba902b7");
    assert_eq!(jaeger::send_span(&endpoint, SERVICE, trace_id, span_id), 200);
    let trace = jaeger.wait_trace(trace_id, 1, WAIT);
    assert_eq!(jaeger::spans(&trace)[0]["spanID"], span_id);
    // A second restart works as well: the harness keeps no state the first one used up.
    jaeger.restart();
    assert!(jaeger.trace(trace_id).is_none(), "memory storage should start empty");
}

/// One span as a protobuf `ExportTraceServiceRequest`, encoded by hand (the fields are few and
/// stable: OTLP's `.proto` numbers them for good), so the test needs no OTLP crate. This is the
/// encoding an exporter sends in practice, on both transports.
fn export_request_protobuf(trace_id: &str, span_id: &str) -> Vec<u8> {
    fn varint(out: &mut Vec<u8>, mut v: u64) {
        while v >= 0x80 {
            out.push(v as u8 | 0x80);
            v >>= 7;
        }
        out.push(v as u8);
    }
    /// A length-delimited field (wire type 2): strings, bytes, messages.
    fn len_field(out: &mut Vec<u8>, number: u64, bytes: &[u8]) {
        varint(out, number << 3 | 2);
        varint(out, bytes.len() as u64);
        out.extend_from_slice(bytes);
    }
    fn fixed64_field(out: &mut Vec<u8>, number: u64, v: u64) {
        varint(out, number << 3 | 1);
        out.extend_from_slice(&v.to_le_bytes());
    }
    let hex = |s: &str| -> Vec<u8> {
        (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex id")).collect()
    };
    let now = SystemTime::now().duration_since(UNIX_EPOCH).expect("clock").as_nanos() as u64;

    let mut span = Vec::new();
    len_field(&mut span, 1, &hex(trace_id)); // trace_id
    len_field(&mut span, 2, &hex(span_id)); // span_id
    len_field(&mut span, 5, b"check"); // name
    varint(&mut span, 6 << 3); // kind: SPAN_KIND_SERVER (2)
    varint(&mut span, 2);
    fixed64_field(&mut span, 7, now - 1_000_000); // start_time_unix_nano
    fixed64_field(&mut span, 8, now); // end_time_unix_nano
    let mut scope = Vec::new();
    len_field(&mut scope, 1, b"pillion-e2e"); // InstrumentationScope.name
    let mut scope_spans = Vec::new();
    len_field(&mut scope_spans, 1, &scope);
    len_field(&mut scope_spans, 2, &span);
    let mut value = Vec::new();
    len_field(&mut value, 1, SERVICE.as_bytes()); // AnyValue.string_value
    let mut attribute = Vec::new();
    len_field(&mut attribute, 1, b"service.name"); // KeyValue.key
    len_field(&mut attribute, 2, &value);
    let mut resource = Vec::new();
    len_field(&mut resource, 1, &attribute);
    let mut resource_spans = Vec::new();
    len_field(&mut resource_spans, 1, &resource);
    len_field(&mut resource_spans, 2, &scope_spans);
    let mut request = Vec::new();
    len_field(&mut request, 1, &resource_spans);
    request
}

#[test]
fn protobuf_spans_arrive_over_otlp_http_and_otlp_grpc() {
    let Some(jaeger) = Jaeger::start_or_skip("jaeger::protobuf_spans_arrive_over_otlp_http_and_otlp_grpc")
    else {
        return;
    };
    let dir = tempfile::tempdir().expect("temp dir");

    // OTLP/HTTP, binary protobuf: what the proxy's exporter POSTs.
    let (http_trace, http_span) = ("3bf92f3577b34da6a3ce929d0e0e4736", "02f067aa0ba902b7");
    let body = dir.path().join("http.bin");
    std::fs::write(&body, export_request_protobuf(http_trace, http_span)).expect("write body");
    let url = format!("{}/v1/traces", jaeger.otlp_http_endpoint());
    let data = format!("@{}", body.display());
    let (status, out) = curl_status(&[
        "--max-time",
        "10",
        "-H",
        "content-type: application/x-protobuf",
        "--data-binary",
        &data,
        &url,
    ]);
    assert_eq!(status, 200, "{url}: {out}");

    // OTLP/gRPC: the same message in one gRPC frame (uncompressed flag, 4-byte length), over h2c.
    let (grpc_trace, grpc_span) = ("4bf92f3577b34da6a3ce929d0e0e4736", "03f067aa0ba902b7");
    let message = export_request_protobuf(grpc_trace, grpc_span);
    let mut frame = vec![0];
    frame.extend_from_slice(&(message.len() as u32).to_be_bytes());
    frame.extend_from_slice(&message);
    let body = dir.path().join("grpc.bin");
    std::fs::write(&body, frame).expect("write body");
    let headers = dir.path().join("headers.txt");
    let url = format!(
        "http://{}/opentelemetry.proto.collector.trace.v1.TraceService/Export",
        jaeger.otlp_grpc_addr()
    );
    let data = format!("@{}", body.display());
    let (status, out) = curl_status(&[
        "--max-time",
        "10",
        "--http2-prior-knowledge",
        "-H",
        "content-type: application/grpc",
        "-H",
        "te: trailers",
        "-D",
        &headers.display().to_string(),
        "--data-binary",
        &data,
        &url,
    ]);
    let headers = std::fs::read_to_string(&headers).unwrap_or_default();
    assert_eq!(status, 200, "{url}: {out}\n{headers}");
    // curl writes the trailers after the headers: gRPC's own verdict, OK.
    assert!(headers.contains("grpc-status: 0"), "{headers}");

    for (trace_id, span_id) in [(http_trace, http_span), (grpc_trace, grpc_span)] {
        let trace = jaeger.wait_trace(trace_id, 1, WAIT);
        let spans = jaeger::spans(&trace);
        assert_eq!(spans[0]["spanID"], span_id, "{trace}");
        assert_eq!(spans[0]["operationName"], "check", "{trace}");
        assert_eq!(jaeger::service_of(&trace, &spans[0]), Some(SERVICE), "{trace}");
    }
}
