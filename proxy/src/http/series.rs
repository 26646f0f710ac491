//! The request metrics a connection records into. Resolving a labelled series costs a hash of
//! every label and a read lock on the registry's map, per request; a connection's requests
//! nearly always go to one service and route, so each connection keeps the series of its last
//! (service, route, tls) and resolves again only when that changes (its client, and so the
//! `client_id` label, never does). Only `code="200"` is kept
//! (and, for gRPC calls, `grpc_status="0"`): other codes are rarer, and resolved each time.

use std::sync::{Arc, OnceLock};

use arc_swap::ArcSwapOption;
use http::StatusCode;
use prometheus::{Histogram, IntCounter};

use crate::metrics::{Metrics, RouteLabels};

/// One connection's cached series; empty until its first request.
#[derive(Debug, Default)]
pub struct SeriesCache(ArcSwapOption<Series>);

/// The series of one (direction, service, route, tls).
#[derive(Debug)]
pub struct Series {
    direction: &'static str,
    service: Box<str>,
    route: Box<str>,
    client_id: Box<str>,
    tls: bool,
    ok: IntCounter,
    /// `code="200", grpc_status="0"`, made at the first gRPC call.
    grpc_ok: OnceLock<IntCounter>,
    duration: Histogram,
}

/// What one finished request is recorded as.
#[derive(Debug, Clone, Copy)]
pub struct Sample<'a> {
    /// `direction` label.
    pub direction: &'static str,
    /// `service` label.
    pub service: &'a str,
    /// `route` label.
    pub route: &'a str,
    /// `client_id` label: the verified client's identity, `other` or empty.
    pub client_id: &'a str,
    /// Mutual TLS.
    pub tls: bool,
    /// Response status.
    pub code: StatusCode,
    /// A gRPC call's status, as its `grpc_status` label; empty for other requests.
    pub grpc_status: &'static str,
    /// Seconds to the response head.
    pub seconds: f64,
}

impl Sample<'_> {
    fn route_labels(&self) -> RouteLabels<'_> {
        RouteLabels { direction: self.direction, service: self.service, route: self.route }
    }
}

impl SeriesCache {
    /// Counts the request and records its duration.
    pub fn record(&self, m: &Metrics, s: Sample<'_>) {
        let cached = self.0.load();
        if let Some(series) = cached.as_ref().filter(|c| c.is(&s)) {
            series.record(m, &s);
            return;
        }
        drop(cached);
        let series = self.resolve(m, &s);
        series.record(m, &s);
    }

    /// The series of `s` (its code and status aside), for a call whose status comes later.
    pub fn series(&self, m: &Metrics, s: &Sample<'_>) -> Arc<Series> {
        match self.0.load_full() {
            Some(series) if series.is(s) => series,
            _ => self.resolve(m, s),
        }
    }

    fn resolve(&self, m: &Metrics, s: &Sample<'_>) -> Arc<Series> {
        let series = Arc::new(Series {
            direction: s.direction,
            service: s.service.into(),
            route: s.route.into(),
            client_id: s.client_id.into(),
            tls: s.tls,
            ok: m.requests(s.route_labels(), s.client_id, "200", "", s.tls),
            grpc_ok: OnceLock::new(),
            duration: m.request_duration(s.route_labels()),
        });
        self.0.store(Some(series.clone()));
        series
    }
}

impl Series {
    /// Whether `s` belongs to this series (a connection's direction never changes).
    fn is(&self, s: &Sample<'_>) -> bool {
        self.tls == s.tls && *self.service == *s.service && *self.route == *s.route
    }

    fn record(&self, m: &Metrics, s: &Sample<'_>) {
        self.count(m, s.code, s.grpc_status);
        self.observe(s.seconds);
    }

    /// Records the time to the response head.
    pub fn observe(&self, seconds: f64) {
        self.duration.observe(seconds);
    }

    /// Counts one request answered with `code` and, for a gRPC call, `grpc_status`.
    pub fn count(&self, m: &Metrics, code: StatusCode, grpc_status: &str) {
        match (code, grpc_status) {
            (StatusCode::OK, "") => self.ok.inc(),
            (StatusCode::OK, "0") => {
                let ok = || m.requests(self.labels(), &self.client_id, "200", "0", self.tls);
                self.grpc_ok.get_or_init(ok).inc();
            }
            _ => m.requests(self.labels(), &self.client_id, code.as_str(), grpc_status, self.tls).inc(),
        }
    }

    /// The `service` label.
    pub fn service(&self) -> &str {
        &self.service
    }

    /// The `route` label.
    pub fn route(&self) -> &str {
        &self.route
    }

    fn labels(&self) -> RouteLabels<'_> {
        RouteLabels { direction: self.direction, service: &self.service, route: &self.route }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_land_in_the_same_series_cached_or_not() {
        let m = Metrics::new();
        let cache = SeriesCache::default();
        let sample = |service, code| Sample {
            direction: "outbound",
            service,
            route: "r",
            client_id: "",
            tls: false,
            code,
            grpc_status: "",
            seconds: 0.001,
        };
        for _ in 0..3 {
            cache.record(&m, sample("a", StatusCode::OK));
        }
        cache.record(&m, sample("a", StatusCode::BAD_GATEWAY));
        cache.record(&m, sample("b", StatusCode::OK));
        cache.record(&m, sample("a", StatusCode::OK));
        let route = |service| RouteLabels { direction: "outbound", service, route: "r" };
        let count = |service, code| m.requests(route(service), "", code, "", false).get();
        assert_eq!((count("a", "200"), count("a", "502"), count("b", "200")), (4, 1, 1));
        let d = m.request_duration(route("a"));
        assert_eq!(d.get_sample_count(), 5);
    }
}
