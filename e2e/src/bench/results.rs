//! The results of a run: every figure measured for each configuration over all rounds, the
//! medians the report shows, and how the run was set up.

use std::time::Duration;

use super::{client::Latency, load::Throughput};

/// The peers Pillion is compared with.
pub const PEERS: [&str; 3] = ["nginx", "haproxy", "envoy"];

/// Where a configuration's processes run. Every configuration runs in the `Proxy` layout; the
/// single-hop ones run in the `Pod` layout too, as a second set of processes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    /// The proxy alone on the proxy core; the upstream and the client on the client core.
    Proxy,
    /// The proxy and an upstream of its own share the proxy core, as a sidecar shares its
    /// pod's CPU with the app it fronts; the client has the client core.
    Pod,
}

impl Layout {
    /// Its name in the report.
    pub fn name(self) -> &'static str {
        match self {
            Layout::Proxy => "proxy",
            Layout::Pod => "pod",
        }
    }
}

/// Everything measured for one configuration, over all rounds.
pub struct Row {
    pub name: &'static str,
    pub layout: Layout,
    pub note: String,
    /// Why the configuration was aborted (failed correctness check or measurement).
    pub failure: Option<String>,
    pub h1: Vec<Throughput>,
    pub h2: Vec<Throughput>,
    pub latency: Vec<Latency>,
    pub rss_idle_kib: Option<u64>,
    pub rss_conns_kib: Option<u64>,
    /// Whether it has proxy processes (CPU and memory apply).
    pub proxied: bool,
}

impl Row {
    pub fn new(name: &'static str, layout: Layout, note: String, proxied: bool) -> Self {
        Self {
            name,
            layout,
            note,
            failure: None,
            h1: Vec::new(),
            h2: Vec::new(),
            latency: Vec::new(),
            rss_idle_kib: None,
            rss_conns_kib: None,
            proxied,
        }
    }

    /// Its name with its layout, for logs and the chart.
    pub fn label(&self) -> String {
        match self.layout {
            Layout::Proxy => self.name.to_owned(),
            Layout::Pod => format!("{} (pod)", self.name),
        }
    }
    pub fn h1_rps(&self) -> Option<f64> {
        median(self.h1.iter().map(|t| t.rps))
    }
    pub fn h2_rps(&self) -> Option<f64> {
        median(self.h2.iter().map(|t| t.rps))
    }
    pub fn h1_cpu(&self) -> Option<f64> {
        median(self.h1.iter().filter_map(|t| t.cpu_per_10k))
    }
    pub fn h2_cpu(&self) -> Option<f64> {
        median(self.h2.iter().filter_map(|t| t.cpu_per_10k))
    }
    /// Median of one latency percentile, in microseconds.
    pub fn lat_us(&self, pick: fn(&Latency) -> Duration) -> Option<f64> {
        median(self.latency.iter().map(|l| micros(pick(l))))
    }
    /// Latency this configuration adds over `direct` at one percentile, in microseconds: the
    /// median over rounds of this round's figure minus the same round's direct figure. Rounds
    /// interleave the configurations so that drift hits a round's runs alike; pairing each run
    /// with its own round's direct run keeps that, where a difference of medians would mix
    /// one round's noise into another's.
    pub fn added_us(&self, direct: &Row, pick: fn(&Latency) -> Duration) -> Option<f64> {
        let pairs = self.latency.iter().zip(&direct.latency);
        median(pairs.map(|(own, base)| micros(pick(own)) - micros(pick(base))))
    }
    /// Non-2xx answers and failed requests over every run.
    pub fn errors(&self) -> u64 {
        self.h1.iter().chain(&self.h2).map(|t| t.errors).sum::<u64>()
            + self.latency.iter().map(|l| l.errors).sum::<u64>()
    }
}

/// How the run was set up, for the report's method section.
pub struct Settings {
    pub smoke: bool,
    pub rounds: u32,
    pub secs: u64,
    pub rate: u32,
    pub latency_conns: u32,
    pub idle_conns: usize,
    /// `Err(reason)` when the mTLS row was left out.
    pub mtls: Result<(), String>,
    /// Remarks given with `--note` (e.g. other work on the machine).
    pub notes: Vec<String>,
}

/// A duration in microseconds, the unit of every latency figure in the report.
fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

pub fn median(values: impl Iterator<Item = f64>) -> Option<f64> {
    let mut v: Vec<f64> = values.collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let m = v.len() / 2;
    Some(if v.len() % 2 == 1 { v[m] } else { (v[m - 1] + v[m]) / 2.0 })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_even_and_odd_counts() {
        assert_eq!(median([3.0, 1.0, 2.0].into_iter()), Some(2.0));
        assert_eq!(median([4.0, 1.0].into_iter()), Some(2.5));
        assert_eq!(median(std::iter::empty()), None);
    }

    fn with_p99s(name: &'static str, p99s_us: &[u64]) -> Row {
        let mut row = Row::new(name, Layout::Proxy, String::new(), true);
        row.latency = p99s_us
            .iter()
            .map(|&us| Latency {
                p50: Duration::ZERO,
                p99: Duration::from_micros(us),
                p999: Duration::ZERO,
                requests: 1,
                errors: 0,
            })
            .collect();
        row
    }

    #[test]
    fn added_latency_pairs_each_round_with_its_own_direct_run() {
        let direct = with_p99s("direct", &[100, 900, 100]);
        // Round two was slow for everyone; paired, the proxy adds 10 µs in every round.
        let proxy = with_p99s("p", &[110, 910, 110]);
        assert_eq!(proxy.added_us(&direct, |l| l.p99), Some(10.0));
        let noisy = with_p99s("q", &[400, 300, 120]);
        // Differences 300, -600, 20: the median is 20.
        assert_eq!(noisy.added_us(&direct, |l| l.p99), Some(20.0));
    }

    #[test]
    fn added_latency_uses_only_rounds_both_completed() {
        let direct = with_p99s("direct", &[100, 200]);
        let aborted = with_p99s("p", &[150]);
        assert_eq!(aborted.added_us(&direct, |l| l.p99), Some(50.0));
        assert_eq!(with_p99s("p", &[]).added_us(&direct, |l| l.p99), None);
    }
}
