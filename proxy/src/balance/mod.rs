//! Load balancing: which endpoint of a service gets the next request. Round robin, random,
//! least-request and peak-EWMA (both power of two choices), all honouring endpoint weights.

pub mod load;

use std::sync::{
    Arc,
    atomic::{AtomicUsize, Ordering::Relaxed},
};

use crate::{config::LbPolicy, upstream::Endpoint};

/// Picks endpoints of one service. Built with each config; the endpoints' load lives on.
#[derive(Debug)]
pub struct Balancer {
    policy: LbPolicy,
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
    /// A balancer over `endpoints` (which may be empty).
    pub fn new(policy: LbPolicy, endpoints: Vec<Arc<Endpoint>>) -> Self {
        let mut total = 0u64;
        let cumulative = endpoints
            .iter()
            .map(|e| {
                total += u64::from(e.weight);
                total
            })
            .collect();
        let schedule = if policy == LbPolicy::RoundRobin { schedule(&endpoints) } else { Vec::new() };
        Self { policy, endpoints, cumulative, schedule, cursor: AtomicUsize::new(fastrand::usize(..1024)) }
    }

    /// The endpoints, in config order.
    pub fn endpoints(&self) -> &[Arc<Endpoint>] {
        &self.endpoints
    }

    /// The next endpoint, or `None` when the service has none.
    pub fn pick(&self) -> Option<&Arc<Endpoint>> {
        match self.endpoints.len() {
            0 => return None,
            1 => return self.endpoints.first(),
            _ => {}
        }
        let i = match self.policy {
            LbPolicy::RoundRobin => {
                let n = self.cursor.fetch_add(1, Relaxed);
                self.schedule[n % self.schedule.len()] as usize
            }
            LbPolicy::Random => self.weighted_random(),
            LbPolicy::LeastRequest => self.p2c(|e| f64::from(e.conn.load.in_flight() + 1)),
            LbPolicy::PeakEwma => self.p2c(|e| e.conn.load.cost()),
        };
        self.endpoints.get(i)
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
    use crate::upstream::EndpointConn;
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
                    conn: Arc::new(EndpointConn::new(addr, Duration::from_secs(1), None, None).unwrap()),
                })
            })
            .collect()
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
        let b = Balancer::new(LbPolicy::RoundRobin, endpoints(&[1, 1, 2]));
        assert_eq!(spread(&b, 400), vec![100, 100, 200]);
    }

    #[tokio::test]
    async fn round_robin_interleaves() {
        let b = Balancer::new(LbPolicy::RoundRobin, endpoints(&[5, 1]));
        assert_eq!(b.schedule, vec![0, 0, 0, 1, 0, 0]);
    }

    #[tokio::test]
    async fn random_follows_weights() {
        let b = Balancer::new(LbPolicy::Random, endpoints(&[1, 3]));
        let c = spread(&b, 20_000);
        assert!((14_500..15_500).contains(&c[1]), "{c:?}");
    }

    #[tokio::test]
    async fn least_request_avoids_busy_endpoints() {
        let b = Balancer::new(LbPolicy::LeastRequest, endpoints(&[1, 1, 1]));
        let busy = b.endpoints()[0].clone();
        let _guards: Vec<_> = (0..10).map(|_| busy.conn.load.start()).collect();
        let c = spread(&b, 3_000);
        assert_eq!(c[0], 0, "{c:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn peak_ewma_avoids_slow_endpoints() {
        let b = Balancer::new(LbPolicy::PeakEwma, endpoints(&[1, 1, 1]));
        let slow = b.endpoints()[2].clone();
        let g = slow.conn.load.start();
        tokio::time::advance(Duration::from_millis(50)).await;
        g.finish();
        let c = spread(&b, 3_000);
        assert!(c[2] * 20 < c[0], "{c:?}");
    }

    #[test]
    fn empty_service_has_no_pick() {
        assert!(Balancer::new(LbPolicy::PeakEwma, Vec::new()).pick().is_none());
    }
}
