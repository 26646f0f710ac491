//! Load balancing: which endpoint of a service gets the next request. Round robin, random,
//! least-request and peak-EWMA (both power of two choices), all honouring endpoint weights and
//! skipping ejected endpoints (or, when all are ejected, not: panic mode).

pub mod budget;
pub mod direct;
pub mod load;
pub mod outlier;
mod service;

pub use service::{Endpoint, Pending, Service, ServiceState, Stats};

use std::sync::{
    Arc,
    atomic::{AtomicUsize, Ordering::Relaxed},
};

use outlier::Outcome;
use pillion_config::{LbPolicy, OutlierConfig};

/// Endpoints already tried by a request, as a bit set over their indices (retries go elsewhere).
#[derive(Debug, Clone, Copy, Default)]
pub struct Tried(u64);

impl Tried {
    /// Marks index `i` as tried.
    pub fn add(&mut self, i: usize) {
        if i < 64 {
            self.0 |= 1 << i;
        }
    }

    fn has(self, i: usize) -> bool {
        i < 64 && self.0 & (1 << i) != 0
    }
}

/// Picks endpoints of one service. Built with each config; the endpoints' load lives on.
#[derive(Debug)]
pub struct Balancer {
    service: Arc<str>,
    policy: LbPolicy,
    outlier: OutlierConfig,
    endpoints: Vec<Arc<Endpoint>>,
    /// Running sum of weights, for weighted random picks.
    cumulative: Vec<u64>,
    /// Endpoint indices in smooth weighted round-robin order.
    schedule: Vec<u32>,
    cursor: AtomicUsize,
}

/// Longest round-robin schedule; weights are scaled down to fit.
const MAX_SCHEDULE: u64 = 4096;

impl Balancer {
    /// A balancer over `endpoints` (which may be empty) of `service`.
    pub fn new(
        service: Arc<str>,
        policy: LbPolicy,
        outlier: OutlierConfig,
        endpoints: Vec<Arc<Endpoint>>,
    ) -> Self {
        let mut total = 0u64;
        let cumulative = endpoints
            .iter()
            .map(|e| {
                total += u64::from(e.weight);
                total
            })
            .collect();
        let schedule = if policy == LbPolicy::RoundRobin { schedule(&endpoints) } else { Vec::new() };
        let cursor = AtomicUsize::new(fastrand::usize(..1024));
        Self { service, policy, outlier, endpoints, cumulative, schedule, cursor }
    }

    /// The endpoints, in config order.
    pub fn endpoints(&self) -> &[Arc<Endpoint>] {
        &self.endpoints
    }

    /// The next endpoint, or `None` when the service has none.
    pub fn pick(&self) -> Option<&Arc<Endpoint>> {
        self.pick_index(Tried::default()).map(|i| &self.endpoints[i])
    }

    /// The index of the next endpoint: healthy and not yet tried if there is one; otherwise
    /// untried; otherwise any (panic mode: when everything is ejected, still try).
    pub fn pick_index(&self, tried: Tried) -> Option<usize> {
        let n = self.endpoints.len();
        match n {
            0 => return None,
            1 => return Some(0),
            _ => {}
        }
        let usable = |i: usize| !tried.has(i) && !self.endpoints[i].stats.health.is_ejected();
        for _ in 0..4 {
            let i = self.choose();
            if usable(i) {
                return Some(i);
            }
        }
        let start = fastrand::usize(..n);
        let ring = (0..n).map(|k| (start + k) % n);
        ring.clone()
            .find(|&i| usable(i))
            .or_else(|| ring.clone().find(|&i| !tried.has(i)))
            .or(Some(self.choose()))
    }

    /// The endpoint at an index from `pick_index`.
    pub fn endpoint(&self, i: usize) -> &Arc<Endpoint> {
        &self.endpoints[i]
    }

    /// Records how a try to endpoint `i` went, ejecting it when it crosses the failure
    /// threshold and the service's ejection cap allows.
    pub fn report(&self, i: usize, outcome: Outcome) {
        let Some(e) = self.endpoints.get(i) else { return };
        if !e.stats.health.record(outcome, &self.outlier) {
            return;
        }
        let ejected = self.ejected();
        if (ejected + 1) * 100 <= self.endpoints.len() * self.outlier.max_ejected_percent as usize {
            let duration = e.stats.health.eject(&self.outlier);
            tracing::warn!(service = %self.service, endpoint = %e.addr, ?duration, "endpoint ejected after consecutive failures");
        }
    }

    /// Endpoints ejected now.
    pub fn ejected(&self) -> usize {
        self.endpoints.iter().filter(|e| e.stats.health.is_ejected()).count()
    }

    fn choose(&self) -> usize {
        match self.policy {
            LbPolicy::RoundRobin => {
                let n = self.cursor.fetch_add(1, Relaxed);
                self.schedule[n % self.schedule.len()] as usize
            }
            LbPolicy::Random => self.weighted_random(),
            LbPolicy::LeastRequest => self.p2c(|e| f64::from(e.stats.load.in_flight() + 1)),
            LbPolicy::PeakEwma => self.p2c(|e| e.stats.load.cost()),
        }
    }

    fn weighted_random(&self) -> usize {
        let total = self.cumulative.last().copied().unwrap_or(1);
        let n = fastrand::u64(..total);
        self.cumulative.partition_point(|&c| c <= n)
    }

    /// Power of two choices: two weighted random candidates, the one with the lower
    /// cost per unit of weight wins.
    fn p2c(&self, cost: impl Fn(&Endpoint) -> f64) -> usize {
        let a = self.weighted_random();
        let mut b = self.weighted_random();
        if a == b {
            b = (a + 1 + fastrand::usize(..self.endpoints.len() - 1)) % self.endpoints.len();
        }
        let per_weight = |i: usize| cost(&self.endpoints[i]) / f64::from(self.endpoints[i].weight);
        if per_weight(b) < per_weight(a) { b } else { a }
    }
}

/// Smooth weighted round robin (as nginx does), unrolled once into a fixed schedule so that
/// picking is one atomic increment.
fn schedule(endpoints: &[Arc<Endpoint>]) -> Vec<u32> {
    let total: u64 = endpoints.iter().map(|e| u64::from(e.weight)).sum();
    let scale = total.div_ceil(MAX_SCHEDULE).max(1);
    let weights: Vec<i64> = endpoints.iter().map(|e| (u64::from(e.weight) / scale).max(1) as i64).collect();
    let sum: i64 = weights.iter().sum();
    let mut current = vec![0i64; weights.len()];
    (0..sum)
        .map(|_| {
            for (c, w) in current.iter_mut().zip(&weights) {
                *c += w;
            }
            let (best, _) =
                current.iter().enumerate().max_by_key(|(i, c)| (**c, -(*i as i64))).unwrap_or((0, &0));
            current[best] -= sum;
            best as u32
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::upstream::{ConnLimit, EndpointConn};
    use std::time::Duration;

    fn endpoints(weights: &[u32]) -> Vec<Arc<Endpoint>> {
        weights
            .iter()
            .enumerate()
            .map(|(i, &weight)| {
                let addr = format!("127.0.0.1:{}", 1000 + i).parse().unwrap();
                Arc::new(Endpoint {
                    addr,
                    weight,
                    conn: Arc::new(EndpointConn::plain(addr, Duration::from_secs(1), ConnLimit::new(100))),
                    stats: Arc::default(),
                })
            })
            .collect()
    }

    fn outlier() -> OutlierConfig {
        OutlierConfig { consecutive_failures: 2, ejection: Duration::from_secs(30), max_ejected_percent: 50 }
    }

    fn balancer(policy: LbPolicy, weights: &[u32]) -> Balancer {
        Balancer::new(Arc::from("svc"), policy, outlier(), endpoints(weights))
    }

    fn spread(b: &Balancer, n: usize) -> Vec<usize> {
        let mut counts = vec![0; b.endpoints().len()];
        for _ in 0..n {
            let e = b.pick().unwrap();
            counts[b.endpoints().iter().position(|x| Arc::ptr_eq(x, e)).unwrap()] += 1;
        }
        counts
    }

    #[tokio::test]
    async fn round_robin_is_exact_by_weight() {
        let b = balancer(LbPolicy::RoundRobin, &[1, 1, 2]);
        assert_eq!(spread(&b, 400), vec![100, 100, 200]);
    }

    #[tokio::test]
    async fn round_robin_interleaves() {
        let b = balancer(LbPolicy::RoundRobin, &[5, 1]);
        assert_eq!(b.schedule, vec![0, 0, 0, 1, 0, 0]);
    }

    #[tokio::test]
    async fn random_follows_weights() {
        let b = balancer(LbPolicy::Random, &[1, 3]);
        let c = spread(&b, 20_000);
        assert!((14_500..15_500).contains(&c[1]), "{c:?}");
    }

    #[tokio::test]
    async fn least_request_avoids_busy_endpoints() {
        let b = balancer(LbPolicy::LeastRequest, &[1, 1, 1]);
        let busy = b.endpoints()[0].clone();
        let _guards: Vec<_> = (0..10).map(|_| busy.stats.load.start()).collect();
        let c = spread(&b, 3_000);
        assert_eq!(c[0], 0, "{c:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn peak_ewma_avoids_slow_endpoints() {
        let b = balancer(LbPolicy::PeakEwma, &[1, 1, 1]);
        let slow = b.endpoints()[2].clone();
        let g = slow.stats.load.start();
        tokio::time::advance(Duration::from_millis(50)).await;
        g.finish();
        let c = spread(&b, 3_000);
        assert!(c[2] * 20 < c[0], "{c:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn ejected_endpoints_get_nothing_until_they_return() {
        let b = balancer(LbPolicy::RoundRobin, &[1, 1, 1, 1]);
        b.report(1, Outcome::Failure);
        b.report(1, Outcome::Failure);
        assert_eq!(b.ejected(), 1);
        assert_eq!(spread(&b, 300)[1], 0);
        tokio::time::advance(Duration::from_secs(31)).await;
        assert_eq!(b.ejected(), 0);
        assert_eq!(spread(&b, 400)[1], 100);
    }

    #[tokio::test(start_paused = true)]
    async fn ejection_stops_at_the_cap_and_panic_mode_still_picks() {
        let b = balancer(LbPolicy::PeakEwma, &[1, 1]);
        for i in 0..2 {
            b.report(i, Outcome::Failure);
            b.report(i, Outcome::Failure);
        }
        assert_eq!(b.ejected(), 1, "50% of two endpoints");
        let one = balancer(LbPolicy::PeakEwma, &[1]);
        assert!(one.pick().is_some());
    }

    #[tokio::test]
    async fn retries_avoid_endpoints_already_tried() {
        let b = balancer(LbPolicy::Random, &[1, 1, 1]);
        let mut tried = Tried::default();
        tried.add(0);
        tried.add(2);
        for _ in 0..100 {
            assert_eq!(b.pick_index(tried), Some(1));
        }
        tried.add(1);
        assert!(b.pick_index(tried).is_some(), "all tried: still an answer");
    }

    #[test]
    fn empty_service_has_no_pick() {
        assert!(balancer(LbPolicy::PeakEwma, &[]).pick().is_none());
    }
}
