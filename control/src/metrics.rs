//! The control plane's own Prometheus metrics, registered once and served on `GET /metrics`.

use prometheus::{Encoder, IntCounter, IntGauge, Opts, Registry, TextEncoder};

/// Every metric pillion-control exports.
#[derive(Debug, Clone)]
pub struct Metrics {
    registry: Registry,
    /// Watch streams open now.
    pub connected_proxies: IntGauge,
    /// Snapshot lines sent to proxies (not keep-alives).
    pub pushes: IntCounter,
    /// Acks: a proxy applied a version.
    pub acks: IntCounter,
    /// Nacks: a proxy rejected a version.
    pub nacks: IntCounter,
    /// Workload certificates signed.
    pub certificates_signed: IntCounter,
    /// The current config version.
    pub config_version: IntGauge,
    /// Config directory states refused (parse or validation errors).
    pub config_errors: IntCounter,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Creates and registers every metric.
    pub fn new() -> Self {
        let registry = Registry::new();
        let gauge = |name: &str, help: &str| {
            let g = IntGauge::with_opts(Opts::new(name, help)).expect("valid metric name");
            registry.register(Box::new(g.clone())).expect("metric registered once");
            g
        };
        let counter = |name: &str, help: &str| {
            let c = IntCounter::with_opts(Opts::new(name, help)).expect("valid metric name");
            registry.register(Box::new(c.clone())).expect("metric registered once");
            c
        };
        Self {
            connected_proxies: gauge("pillion_control_connected_proxies", "Watch streams open now."),
            pushes: counter("pillion_control_pushes_total", "Snapshots sent to proxies."),
            acks: counter("pillion_control_acks_total", "Snapshot versions proxies reported applied."),
            nacks: counter("pillion_control_nacks_total", "Snapshot versions proxies reported rejected."),
            certificates_signed: counter(
                "pillion_control_certificates_signed_total",
                "Workload certificates signed.",
            ),
            config_version: gauge("pillion_control_config_version", "Current config version."),
            config_errors: counter(
                "pillion_control_config_errors_total",
                "Config directory changes refused for parse or validation errors.",
            ),
            registry,
        }
    }

    /// Prometheus text exposition of every metric.
    pub fn encode(&self) -> Vec<u8> {
        let mut buf = Vec::new();
        // Encoding into a Vec only fails on a bad metric family, which registration rules out.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        buf
    }
}
