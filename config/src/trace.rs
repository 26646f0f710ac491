//! The `tracing` section: where spans go (an OTLP/HTTP collector) and how many requests start a
//! trace, in its file form and validated.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// `tracing:` as written.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Tracing {
    /// The collector's OTLP/HTTP address, `http://host:port` (spans go to `/v1/traces` unless a
    /// path is given).
    pub otlp: String,
    /// Share of requests without a trace context that start a sampled trace, 0 to 1. A parent's
    /// own decision is always honoured.
    #[serde(default)]
    pub sampling: Option<f64>,
    /// `service.name` of the spans; the workload's name by default.
    #[serde(default)]
    pub service_name: Option<String>,
}

/// Tracing, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct TracingConfig {
    /// `host:port` to connect to.
    pub authority: String,
    /// The request path spans are POSTed to.
    pub path: String,
    /// Share of new traces sampled.
    pub sampling: f64,
    /// `service.name`.
    pub service_name: Arc<str>,
}

/// Share of requests that start a sampled trace unless the config says otherwise.
pub const DEFAULT_SAMPLING: f64 = 0.01;

/// Checks `t`; the problems are (path under `tracing`, message).
pub fn validate(t: &Tracing, workload: Option<&str>) -> Result<TracingConfig, Vec<(&'static str, String)>> {
    let mut problems = Vec::new();
    let sampling = t.sampling.unwrap_or(DEFAULT_SAMPLING);
    if !(0.0..=1.0).contains(&sampling) {
        problems.push(("tracing.sampling", format!("sampling must be between 0 and 1, not {sampling}")));
    }
    let (authority, path) = match t.otlp.strip_prefix("http://") {
        Some(rest) => {
            let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
            (
                authority.to_owned(),
                if path.is_empty() || path == "/" { "/v1/traces" } else { path }.to_owned(),
            )
        }
        None => {
            let why = if t.otlp.starts_with("https://") {
                "OTLP over TLS is not supported: send to a collector beside the proxy over http://"
            } else {
                "the OTLP address must be http://host:port"
            };
            problems.push(("tracing.otlp", why.to_owned()));
            (String::new(), String::new())
        }
    };
    let valid_authority = authority
        .rsplit_once(':')
        .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0));
    if problems.is_empty() && !valid_authority {
        problems.push(("tracing.otlp", format!("{:?} has no host:port", t.otlp)));
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    let service_name = t.service_name.as_deref().or(workload).unwrap_or("pillion");
    Ok(TracingConfig { authority, path, sampling, service_name: service_name.into() })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(otlp: &str, sampling: Option<f64>) -> Result<TracingConfig, Vec<(&'static str, String)>> {
        validate(&Tracing { otlp: otlp.into(), sampling, service_name: None }, Some("web"))
    }

    #[test]
    fn an_http_collector_gets_the_standard_path_and_the_workload_name() {
        let t = check("http://127.0.0.1:4318", None).expect("valid");
        assert_eq!((t.authority.as_str(), t.path.as_str()), ("127.0.0.1:4318", "/v1/traces"));
        assert_eq!((t.sampling, &*t.service_name), (DEFAULT_SAMPLING, "web"));
        assert_eq!(check("http://otel:4318/custom", Some(1.0)).expect("valid").path, "/custom");
    }

    #[test]
    fn tls_a_missing_port_and_a_bad_share_are_errors() {
        assert_eq!(check("https://otel:4318", None).unwrap_err()[0].0, "tracing.otlp");
        assert!(check("http://otel", None).unwrap_err()[0].1.contains("host:port"));
        assert_eq!(check("http://otel:4318", Some(1.5)).unwrap_err()[0].0, "tracing.sampling");
    }
}
