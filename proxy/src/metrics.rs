//! Every Prometheus metric the proxy exports, registered once. Each labelled family is reached
//! through one method whose arguments are its label set, typed (`Direction`, `ConnLabels`,
//! `RequestLabels`, ...), so the label order and spelling live here and nowhere else.

use prometheus::{
    Encoder, Gauge, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec,
    Opts, Registry, TextEncoder,
};

/// Which side of the pod traffic is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Into the pod, towards the app.
    Inbound,
    /// From the app, out of the pod.
    Outbound,
}

impl Direction {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Inbound => "inbound",
            Self::Outbound => "outbound",
        }
    }
}

/// The `tls` label value.
pub fn tls_label(tls: bool) -> &'static str {
    if tls { "true" } else { "false" }
}

/// A client connection's labels.
#[derive(Debug, Clone, Copy)]
pub struct ConnLabels {
    /// Which side it came in on.
    pub direction: Direction,
    /// Mutual TLS.
    pub tls: bool,
    /// `http` or `tcp`.
    pub protocol: &'static str,
}

/// The labels of a request's route: who served it.
#[derive(Debug, Clone, Copy)]
pub struct RouteLabels<'a> {
    /// Which side it came in on.
    pub direction: &'static str,
    /// The service it went to.
    pub service: &'a str,
    /// The route it took (empty for none).
    pub route: &'a str,
}

/// Where a config update came from (the `source` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpdateSource {
    /// The config file.
    File,
    /// pillion-control.
    Control,
}

impl UpdateSource {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::File => "file",
            Self::Control => "control",
        }
    }
}

/// An endpoint's state (the `state` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndpointState {
    /// In rotation.
    Healthy,
    /// Ejected by outlier detection.
    Ejected,
}

/// Latency buckets in seconds, from half a millisecond to a minute.
const LATENCY_BUCKETS: &[f64] =
    &[0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0];

/// The proxy's metrics.
#[derive(Debug, Clone)]
pub struct Metrics {
    registry: Registry,
    /// Requests answered, by direction, service, route, status code and TLS.
    requests: IntCounterVec,
    /// Seconds until the response headers, by direction, service and route.
    request_duration: HistogramVec,
    /// Connections accepted, by direction, TLS and protocol.
    tcp_connections: IntCounterVec,
    /// Connections open now, by direction, TLS and protocol.
    tcp_open: IntGaugeVec,
    /// Bytes read from clients, by direction.
    tcp_read_bytes: IntCounterVec,
    /// Bytes written to clients, by direction.
    tcp_write_bytes: IntCounterVec,
    /// Endpoints by service and state.
    endpoints: IntGaugeVec,
    /// Retries sent, by service.
    retries: IntCounterVec,
    /// Requests refused by a service's limits, by service.
    overloaded: IntCounterVec,
    /// Connections or requests denied by authorization, by direction.
    authz_denied: IntCounterVec,
    /// Failed TLS handshakes, by direction.
    tls_handshake_errors: IntCounterVec,
    /// Expiry of the workload certificate, unix seconds.
    pub cert_expiry: Gauge,
    /// Version of the config in force.
    pub config_version: IntGauge,
    /// Config updates by result and source.
    config_updates: IntCounterVec,
    /// Connections not accepted because a listener was at its limit, by direction.
    connections_refused: IntCounterVec,
    /// Client connections the guard ended (bad framing, timeouts, floods), by direction and reason.
    http_rejected: IntCounterVec,
    /// DNS resolutions of services' `dns` names, by service and result.
    dns_resolutions: IntCounterVec,
    /// Times the control-plane watch was lost and reconnected.
    pub control_reconnects: IntCounter,
    /// 1 while the control-plane watch is open.
    pub control_connected: IntGauge,
    /// Tasks alive in the async runtime (one per connection, plus a few), to spot leaks.
    pub runtime_tasks: IntGauge,
    /// Spans by what became of them.
    trace_spans: IntCounterVec,
}

impl Metrics {
    /// Registers every metric in a fresh registry.
    pub fn new() -> Self {
        let registry = Registry::new();
        let counter = |name: &str, help: &str, labels: &[&str]| {
            let c = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric");
            registry.register(Box::new(c.clone())).expect("unique metric");
            c
        };
        let gauge = |name: &str, help: &str, labels: &[&str]| {
            let g = IntGaugeVec::new(Opts::new(name, help), labels).expect("valid metric");
            registry.register(Box::new(g.clone())).expect("unique metric");
            g
        };
        let requests = counter(
            "pillion_requests_total",
            "HTTP requests answered.",
            &["direction", "service", "route", "code", "grpc_status", "client_id", "tls"],
        );
        let request_duration = HistogramVec::new(
            HistogramOpts::new(
                "pillion_request_duration_seconds",
                "Time from request received to response headers sent.",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
            &["direction", "service", "route"],
        )
        .expect("valid metric");
        registry.register(Box::new(request_duration.clone())).expect("unique metric");
        let cert_expiry = Gauge::new(
            "pillion_identity_cert_expiry_timestamp_seconds",
            "Expiry of the workload certificate in use, unix seconds.",
        )
        .expect("valid metric");
        registry.register(Box::new(cert_expiry.clone())).expect("unique metric");
        let config_version =
            IntGauge::new("pillion_config_version", "Version of the config in force.").expect("valid metric");
        registry.register(Box::new(config_version.clone())).expect("unique metric");
        let control_reconnects = IntCounter::new(
            "pillion_control_reconnects_total",
            "Times the control-plane watch was lost and reconnected.",
        )
        .expect("valid metric");
        registry.register(Box::new(control_reconnects.clone())).expect("unique metric");
        let control_connected =
            IntGauge::new("pillion_control_connected", "1 while the control-plane watch is open.")
                .expect("valid metric");
        registry.register(Box::new(control_connected.clone())).expect("unique metric");
        let runtime_tasks = IntGauge::new("pillion_runtime_tasks", "Tasks alive in the async runtime.")
            .expect("valid metric");
        registry.register(Box::new(runtime_tasks.clone())).expect("unique metric");
        let conn_labels = &["direction", "tls", "protocol"];
        Self {
            requests,
            request_duration,
            tcp_connections: counter(
                "pillion_tcp_connections_total",
                "Client connections accepted.",
                conn_labels,
            ),
            tcp_open: gauge("pillion_tcp_connections_open", "Client connections open now.", conn_labels),
            tcp_read_bytes: counter(
                "pillion_tcp_read_bytes_total",
                "Bytes read from clients.",
                &["direction"],
            ),
            tcp_write_bytes: counter(
                "pillion_tcp_write_bytes_total",
                "Bytes written to clients.",
                &["direction"],
            ),
            endpoints: gauge("pillion_endpoints", "Endpoints by state.", &["service", "state"]),
            retries: counter("pillion_retries_total", "Retries sent upstream.", &["service"]),
            overloaded: counter(
                "pillion_overloaded_total",
                "Requests refused because a service was at its limits.",
                &["service"],
            ),
            authz_denied: counter(
                "pillion_authz_denied_total",
                "Denied by authorization policy.",
                &["direction"],
            ),
            tls_handshake_errors: counter(
                "pillion_tls_handshake_errors_total",
                "Failed TLS handshakes.",
                &["direction"],
            ),
            cert_expiry,
            config_version,
            config_updates: counter(
                "pillion_config_updates_total",
                "Config updates, applied or rejected.",
                &["result", "source"],
            ),
            connections_refused: counter(
                "pillion_listener_connections_refused_total",
                "Connections left unaccepted because a listener was at max_connections.",
                &["direction"],
            ),
            http_rejected: counter(
                "pillion_http_rejected_total",
                "Client connections ended before routing: malformed framing, header timeout, HTTP/2 control-frame flood.",
                &["direction", "reason"],
            ),
            dns_resolutions: counter(
                "pillion_dns_resolutions_total",
                "Resolutions of services' dns names: answered (ok, records or none) or failed.",
                &["service", "result"],
            ),
            control_reconnects,
            control_connected,
            runtime_tasks,
            trace_spans: counter(
                "pillion_trace_spans_total",
                "Spans exported, or dropped because the queue was full or the collector failed.",
                &["result"],
            ),
            registry,
        }
    }

    /// `pillion_requests_total` for a request of `route` from `client_id` (empty when not
    /// known), answered with `code` and, for a gRPC call, `grpc_status` (else empty).
    pub fn requests(
        &self,
        route: RouteLabels<'_>,
        client_id: &str,
        code: &str,
        grpc_status: &str,
        tls: bool,
    ) -> IntCounter {
        let RouteLabels { direction, service, route } = route;
        let labels = [direction, service, route, code, grpc_status, client_id, tls_label(tls)];
        self.requests.with_label_values(&labels)
    }

    /// `pillion_request_duration_seconds` of `route`.
    pub fn request_duration(&self, route: RouteLabels<'_>) -> Histogram {
        self.request_duration.with_label_values(&[route.direction, route.service, route.route])
    }

    /// `pillion_tcp_connections_total`.
    pub fn tcp_connections(&self, c: ConnLabels) -> IntCounter {
        self.tcp_connections.with_label_values(&[c.direction.as_str(), tls_label(c.tls), c.protocol])
    }

    /// `pillion_tcp_connections_open`.
    pub fn tcp_open(&self, c: ConnLabels) -> IntGauge {
        self.tcp_open.with_label_values(&[c.direction.as_str(), tls_label(c.tls), c.protocol])
    }

    /// `pillion_tcp_read_bytes_total`.
    pub fn tcp_read_bytes(&self, d: Direction) -> IntCounter {
        self.tcp_read_bytes.with_label_values(&[d.as_str()])
    }

    /// `pillion_tcp_write_bytes_total`.
    pub fn tcp_write_bytes(&self, d: Direction) -> IntCounter {
        self.tcp_write_bytes.with_label_values(&[d.as_str()])
    }

    /// `pillion_endpoints` of `service` in `state`.
    pub fn endpoints(&self, service: &str, state: EndpointState) -> IntGauge {
        let state = match state {
            EndpointState::Healthy => "healthy",
            EndpointState::Ejected => "ejected",
        };
        self.endpoints.with_label_values(&[service, state])
    }

    /// Forgets every `pillion_endpoints` series (services a reload removed go with them).
    pub fn reset_endpoints(&self) {
        self.endpoints.reset();
    }

    /// `pillion_trace_spans_total` with `result`: `exported`, `queue_full` or `export_failed`.
    pub fn trace_spans(&self, result: &str) -> IntCounter {
        self.trace_spans.with_label_values(&[result])
    }

    /// `pillion_retries_total` of `service`.
    pub fn retries(&self, service: &str) -> IntCounter {
        self.retries.with_label_values(&[service])
    }

    /// `pillion_overloaded_total` of `service`.
    pub fn overloaded(&self, service: &str) -> IntCounter {
        self.overloaded.with_label_values(&[service])
    }

    /// `pillion_authz_denied_total`.
    pub fn authz_denied(&self, d: Direction) -> IntCounter {
        self.authz_denied.with_label_values(&[d.as_str()])
    }

    /// `pillion_tls_handshake_errors_total`.
    pub fn tls_handshake_errors(&self, d: Direction) -> IntCounter {
        self.tls_handshake_errors.with_label_values(&[d.as_str()])
    }

    /// `pillion_config_updates_total`: an update from `source`, applied or rejected.
    pub fn config_updates(&self, applied: bool, source: UpdateSource) -> IntCounter {
        let result = if applied { "applied" } else { "rejected" };
        self.config_updates.with_label_values(&[result, source.as_str()])
    }

    /// `pillion_dns_resolutions_total`: a name of `service` answered, or not.
    pub fn dns_resolutions(&self, service: &str, ok: bool) -> IntCounter {
        self.dns_resolutions.with_label_values(&[service, if ok { "ok" } else { "failed" }])
    }

    /// `pillion_listener_connections_refused_total`.
    pub fn connections_refused(&self, d: Direction) -> IntCounter {
        self.connections_refused.with_label_values(&[d.as_str()])
    }

    /// What counts a listener's rejected connections into `pillion_http_rejected_total`.
    pub fn rejections(&self, d: Direction) -> Rejections {
        Rejections { counter: self.http_rejected.clone(), direction: d }
    }

    /// The Prometheus text exposition of every metric.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(16 * 1024);
        // Encoding into a Vec cannot fail on I/O; a broken metric is skipped rather than fatal.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        out
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// Counts one listener direction's rejected connections, by reason.
#[derive(Debug, Clone)]
pub struct Rejections {
    counter: IntCounterVec,
    direction: Direction,
}

impl Rejections {
    /// Counts into a family of its own: for a codec's tests, which have no `Metrics`.
    pub fn new(counter: IntCounterVec, direction: Direction) -> Self {
        Self { counter, direction }
    }

    /// Counts one rejection for `reason`.
    pub fn count(&self, reason: &str) {
        self.counter.with_label_values(&[self.direction.as_str(), reason]).inc();
    }
}
