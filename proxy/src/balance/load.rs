//! What the balancer knows of an endpoint's load: requests in flight and a peak-sensitive
//! exponentially weighted moving average of its latency. Lock-free; a lost update under a race
//! only blurs an estimate.

use std::{
    sync::atomic::{AtomicU32, AtomicU64, Ordering::Relaxed},
    time::Duration,
};

use tokio::time::Instant;

/// How fast old latency samples fade.
const DECAY: Duration = Duration::from_secs(10);
/// Latency assumed for an endpoint with no samples yet.
const DEFAULT_RTT: Duration = Duration::from_millis(5);

/// Load figures of one endpoint.
#[derive(Debug)]
pub struct Load {
    in_flight: AtomicU32,
    /// EWMA of latency in nanoseconds, as f64 bits.
    ewma: AtomicU64,
    /// Nanoseconds after `epoch` of the last update.
    stamp: AtomicU64,
    epoch: Instant,
}

impl Default for Load {
    fn default() -> Self {
        Self {
            in_flight: AtomicU32::new(0),
            ewma: AtomicU64::new((DEFAULT_RTT.as_nanos() as f64).to_bits()),
            stamp: AtomicU64::new(0),
            epoch: Instant::now(),
        }
    }
}

impl Load {
    /// Requests in flight now.
    pub fn in_flight(&self) -> u32 {
        self.in_flight.load(Relaxed)
    }

    /// Marks a request as started now; the guard ends it.
    pub fn start(&self) -> InFlight<'_> {
        self.start_at(Instant::now())
    }

    /// Marks a request as started at `started` (a clock reading the caller already has).
    pub fn start_at(&self, started: Instant) -> InFlight<'_> {
        self.in_flight.fetch_add(1, Relaxed);
        InFlight { load: self, started }
    }

    fn now(&self) -> u64 {
        self.since_epoch(Instant::now())
    }

    fn since_epoch(&self, at: Instant) -> u64 {
        at.saturating_duration_since(self.epoch).as_nanos() as u64
    }

    /// The latency estimate decayed to now: an endpoint left alone looks cheaper over time, so a
    /// once-slow endpoint is probed again rather than starved forever.
    fn ewma_now(&self, now: u64) -> f64 {
        let ewma = f64::from_bits(self.ewma.load(Relaxed));
        let x = now.saturating_sub(self.stamp.load(Relaxed)) as f64 / DECAY.as_nanos() as f64;
        // Samples come microseconds apart under load: there e^-x is 1 - x to within x^2/2 (under
        // 5e-7), and the series costs nothing next to `exp`.
        ewma * if x < 1e-3 { 1.0 - x } else { (-x).exp() }
    }

    /// Records a sample of `rtt`, taken at `at`.
    fn observe(&self, rtt: Duration, at: Instant) {
        let now = self.since_epoch(at);
        // Through u64: a u128 to f64 conversion is a software routine.
        let rtt = rtt.as_nanos() as u64 as f64;
        let ewma = self.ewma_now(now);
        // Peak-sensitive: a slow response counts at once, fast ones pull the average down slowly.
        let next = if rtt > ewma { rtt } else { ewma + (rtt - ewma) * 0.25 };
        self.ewma.store(next.to_bits(), Relaxed);
        self.stamp.store(now, Relaxed);
    }

    /// Peak-EWMA cost: expected latency times the queue a new request would join.
    pub fn cost(&self) -> f64 {
        self.ewma_now(self.now()).max(1.0) * f64::from(self.in_flight() + 1)
    }
}

/// A request in flight; records its latency when `finish`ed, or only ends it when dropped.
#[derive(Debug)]
pub struct InFlight<'a> {
    load: &'a Load,
    started: Instant,
}

impl InFlight<'_> {
    /// Records the time to the response as a latency sample.
    pub fn finish(self) {
        // One clock read for both the sample and its timestamp.
        let now = Instant::now();
        self.load.observe(now.saturating_duration_since(self.started), now);
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.load.in_flight.fetch_sub(1, Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn slow_samples_raise_cost_at_once_and_fade_with_time() {
        let load = Load::default();
        let base = load.cost();
        let req = load.start();
        tokio::time::advance(Duration::from_millis(50)).await;
        req.finish();
        assert!(load.cost() > base * 9.0, "a 50ms sample must count at once");
        tokio::time::advance(Duration::from_secs(60)).await;
        assert!(load.cost() < base, "an idle endpoint's cost decays");
    }

    #[tokio::test(start_paused = true)]
    async fn in_flight_requests_multiply_cost() {
        let load = Load::default();
        let one = load.cost();
        let a = load.start();
        let _b = load.start();
        assert_eq!(load.in_flight(), 2);
        assert!((load.cost() / one - 3.0).abs() < 0.01);
        drop(a);
        assert_eq!(load.in_flight(), 1);
    }
}
