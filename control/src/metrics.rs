//! The control plane's own Prometheus metrics, registered once and served on `GET /metrics`.

use prometheus::{Encoder, IntCounter, IntCounterVec, IntGauge, Opts, Registry, TextEncoder};

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
    /// Certificate requests refused, by [`CertRefusal`]; count them with
    /// [`Metrics::certificate_refused`].
    certificate_refusals: IntCounterVec,
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
            certificate_refusals: {
                let opts = Opts::new(
                    "pillion_control_certificate_refusals_total",
                    "Workload certificate requests refused, by reason.",
                );
                let c = IntCounterVec::new(opts, &["reason"]).expect("valid metric name");
                registry.register(Box::new(c.clone())).expect("metric registered once");
                // Every reason is exported from the start, so a first refusal is a 0 -> 1 change
                // an alert's rate() can see, not a new series.
                for reason in CertRefusal::ALL {
                    c.with_label_values(&[reason.label()]);
                }
                c
            },
            config_version: gauge("pillion_control_config_version", "Current config version."),
            config_errors: counter(
                "pillion_control_config_errors_total",
                "Config directory changes refused for parse or validation errors.",
            ),
            registry,
        }
    }

    /// Counts one refused certificate request.
    pub fn certificate_refused(&self, reason: CertRefusal) {
        self.certificate_refusals.with_label_values(&[reason.label()]).inc();
    }

    /// Prometheus text exposition of every metric.
    pub fn encode(&self) -> Vec<u8> {
        let mut buf = Vec::new();
        // Encoding into a Vec only fails on a bad metric family, which registration rules out.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        buf
    }
}

/// Why a certificate request was refused: the `reason` label of
/// `pillion_control_certificate_refusals_total` (README.md lists them for operators).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CertRefusal {
    /// `no-credentials`: neither a client certificate nor a bearer token (403).
    NoCredentials,
    /// `bad-token`: a bearer token that is in no line of the token file and, with
    /// `--kubernetes`, one the TokenReview refused (403).
    BadToken,
    /// `wrong-workload`: a bearer token of another workload (403).
    WrongWorkload,
    /// `wrong-identity`: a client certificate of another identity than the workload's (403).
    WrongIdentity,
    /// `expired-certificate`: the workload's own certificate, expired since the connection
    /// was opened (403).
    ExpiredCertificate,
    /// `csr-identity`: the CSR asks for another identity than the workload's (403).
    CsrIdentity,
    /// `bad-csr`: the body is not a readable CSR (400).
    BadCsr,
    /// `unknown-workload`: no workload of that name (404).
    UnknownWorkload,
    /// `bad-request`: no `?workload=`, or a body too large or unreadable (400, 413).
    BadRequest,
    /// `token-review-failed`: the API server could not be asked about a ServiceAccount token
    /// (503: the proxy retries).
    TokenReviewFailed,
}

impl CertRefusal {
    /// Every reason, in the order README.md lists them.
    pub const ALL: [Self; 10] = [
        Self::NoCredentials,
        Self::BadToken,
        Self::WrongWorkload,
        Self::WrongIdentity,
        Self::ExpiredCertificate,
        Self::CsrIdentity,
        Self::BadCsr,
        Self::UnknownWorkload,
        Self::BadRequest,
        Self::TokenReviewFailed,
    ];

    /// The label value.
    pub fn label(self) -> &'static str {
        match self {
            Self::NoCredentials => "no-credentials",
            Self::BadToken => "bad-token",
            Self::WrongWorkload => "wrong-workload",
            Self::WrongIdentity => "wrong-identity",
            Self::ExpiredCertificate => "expired-certificate",
            Self::CsrIdentity => "csr-identity",
            Self::BadCsr => "bad-csr",
            Self::UnknownWorkload => "unknown-workload",
            Self::BadRequest => "bad-request",
            Self::TokenReviewFailed => "token-review-failed",
        }
    }
}
