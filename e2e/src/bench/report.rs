//! The Markdown report (`BENCHMARKS.md`): a summary row per configuration and layout, then one
//! table per measure with each figure as a ratio to `direct` and to the best of nginx, haproxy
//! and Envoy in the same layout; then the sections of [`super::method`] (mTLS, correctness, the
//! machine and the method).

use std::{fmt::Write as _, time::Duration};

use super::{
    client::Latency,
    env::Machine,
    load::Throughput,
    method,
    results::{Layout, PEERS, Row, Settings},
};

/// Reads one figure of a row.
type Getter<'a> = Box<dyn Fn(&Row) -> Option<f64> + 'a>;
/// Picks one percentile of a latency run.
type Percentile = fn(&Latency) -> Duration;

/// One measure of every row, with the direction that counts as better.
struct Measure<'a> {
    rows: &'a [Row],
    get: Getter<'a>,
    higher_is_better: bool,
}

impl Measure<'_> {
    fn of(&self, name: &str, layout: Layout) -> Option<f64> {
        self.rows.iter().find(|r| r.name == name && r.layout == layout).and_then(|r| (self.get)(r))
    }
    /// The best value among the peers of `layout` that completed.
    fn best_peer(&self, layout: Layout) -> Option<f64> {
        let peers = PEERS.iter().filter_map(|p| self.of(p, layout));
        if self.higher_is_better { peers.reduce(f64::max) } else { peers.reduce(f64::min) }
    }
}

pub(crate) fn ratio(v: Option<f64>, base: Option<f64>) -> String {
    match (v, base) {
        (Some(v), Some(b)) if b.abs() > f64::EPSILON => format!("{:.2}x", v / b),
        _ => "-".into(),
    }
}

pub(crate) fn or_dash(v: Option<f64>, f: impl Fn(f64) -> String) -> String {
    v.map_or_else(|| "-".into(), f)
}

pub(crate) fn thousands(v: f64) -> String {
    let s = format!("{:.0}", v.abs());
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    if v < 0.0 { format!("-{out}") } else { out }
}

pub(crate) fn us(v: f64) -> String {
    format!("{v:.0} µs")
}

fn signed_us(v: f64) -> String {
    format!("{v:+.0} µs")
}

pub(crate) fn mib(kib: f64) -> String {
    format!("{:.1} MiB", kib / 1024.0)
}

pub(crate) fn status(row: &Row) -> String {
    match (&row.failure, row.errors()) {
        (Some(_), _) => "**ABORTED**".into(),
        (None, 0) => "ok".into(),
        (None, n) => format!("**FLAGGED: {n} errors**"),
    }
}

/// The whole `BENCHMARKS.md`.
pub fn markdown(rows: &[Row], s: &Settings, m: &Machine) -> String {
    let mut out = String::new();
    header(&mut out, s, m);
    summary(&mut out, rows, s);
    throughput(&mut out, rows, "HTTP/1.1 keep-alive throughput", "wrk -t1 -c50", Row::h1_rps, |r| &r.h1);
    throughput(&mut out, rows, "HTTP/2 throughput", "h2load -t1 -c10 -m10 (h2c)", Row::h2_rps, |r| &r.h2);
    latency(&mut out, rows, s);
    cpu(&mut out, rows);
    memory(&mut out, rows, s);
    method::mtls(&mut out, rows, s);
    method::correctness(&mut out, rows);
    method::method(&mut out, rows, s, m);
    out
}

/// The first two cells of a row: configuration and layout.
fn cells(r: &Row) -> String {
    format!("| {} | {} |", r.name, r.layout.name())
}

fn header(out: &mut String, s: &Settings, m: &Machine) {
    let mode = if s.smoke { "smoke run (numbers are not meaningful)" } else { "full run" };
    let _ = writeln!(
        out,
        "# Pillion benchmarks\n\n{mode}, {} on {}: {} round(s) of every configuration, \
         interleaved; each figure is the median over rounds. Made by \
         `cargo build --release --workspace --bins && cargo run --release -p pillion-e2e --bin bench`.\n",
        m.date, m.cpu, s.rounds
    );
    let _ =
        writeln!(out, "Chart: [benchmarks.png](benchmarks.png) (throughput and p99 per configuration).\n");
}

fn summary(out: &mut String, rows: &[Row], s: &Settings) {
    let _ = writeln!(
        out,
        "## Summary\n\n| configuration | layout | HTTP/1.1 req/s | HTTP/2 req/s | p50 | p99 | p99.9 | \
         proxy CPU s / 10k req (HTTP/1.1) | RSS idle | RSS with {} conns | status |\n\
         |---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|",
        thousands(s.idle_conns as f64)
    );
    for r in rows {
        let _ = writeln!(
            out,
            "{} {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            cells(r),
            or_dash(r.h1_rps(), thousands),
            or_dash(r.h2_rps(), thousands),
            or_dash(r.lat_us(|l| l.p50), us),
            or_dash(r.lat_us(|l| l.p99), us),
            or_dash(r.lat_us(|l| l.p999), us),
            or_dash(r.h1_cpu(), |v| format!("{v:.3}")),
            or_dash(r.rss_idle_kib.map(|v| v as f64), mib),
            or_dash(r.rss_conns_kib.map(|v| v as f64), mib),
            status(r),
        );
    }
    let _ = writeln!(
        out,
        "\nLatency is at a fixed {} req/s (open loop, coordinated omission corrected). \
         A FLAGGED row had non-2xx answers or failed requests under load; an ABORTED row failed \
         its correctness check or a measurement (see Correctness). Layout `proxy`: the proxy \
         alone on its core, the upstream on the client's; `pod`: the proxy and an upstream of its \
         own share one core, as a sidecar shares its pod's CPU with its app (see Machine and \
         method).\n",
        thousands(f64::from(s.rate))
    );
}

fn throughput(
    out: &mut String,
    rows: &[Row],
    title: &str,
    tool: &str,
    get: fn(&Row) -> Option<f64>,
    runs: fn(&Row) -> &Vec<Throughput>,
) {
    let m = Measure { rows, get: Box::new(get), higher_is_better: true };
    let _ = writeln!(
        out,
        "## {title}\n\n`{tool}`, requests/s (higher is better); both ratios within the row's \
         layout.\n\n\
         | configuration | layout | req/s | vs direct | vs best peer | non-2xx + errors | per round |\n\
         |---|---|---:|---:|---:|---:|---|"
    );
    for r in rows {
        let v = get(r);
        let (direct, best) = (m.of("direct", r.layout), m.best_peer(r.layout));
        let rounds: Vec<String> = runs(r).iter().map(|t| thousands(t.rps)).collect();
        let errors: u64 = runs(r).iter().map(|t| t.errors).sum();
        let _ = writeln!(
            out,
            "{} {} | {} | {} | {} | {} |",
            cells(r),
            or_dash(v, thousands),
            ratio(v, direct),
            ratio(v, best),
            errors,
            rounds.join(", ")
        );
    }
    out.push('\n');
}

fn latency(out: &mut String, rows: &[Row], s: &Settings) {
    let pick: [(&str, Percentile); 3] = [("p50", |l| l.p50), ("p99", |l| l.p99), ("p99.9", |l| l.p999)];
    let _ = writeln!(
        out,
        "## Latency at a fixed rate\n\n{} req/s over {} HTTP/1.1 keep-alive connections (opened \
         before the first request is due), open loop, measured from each request's scheduled \
         send time (coordinated omission corrected). Each round's {} s per configuration are \
         taken in one-second slices that go round every configuration in turn, pooled per \
         configuration, so that all are measured over the same stretch of time. The p50, p99 \
         and p99.9 columns are medians over rounds. \"Added\" is paired by round: each round's \
         figure minus direct's figure in the same round, then the median of those differences \
         over rounds, so that a round the whole machine ran slow in counts against every \
         configuration alike; direct is the one of the same layout. \"vs best peer\" compares \
         the added latency with the lowest of nginx's, haproxy's and Envoy's in the same layout. \
         A negative added figure means the run's noise was larger than \
         the proxy's cost at that percentile.\n\n\
         | configuration | layout | p50 | p99 | p99.9 | added p50 | added p99 | added p99.9 | \
         added p99 vs best peer | p99 vs direct | requests | errors |\n\
         |---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        thousands(f64::from(s.rate)),
        s.latency_conns,
        s.secs
    );
    let direct = |layout: Layout| rows.iter().find(|d| d.name == "direct" && d.layout == layout);
    let added = move |r: &Row, p: Percentile| -> Option<f64> {
        if r.name == "direct" {
            return None;
        }
        r.added_us(direct(r.layout)?, p)
    };
    let added_p99 =
        Measure { rows, get: Box::new(move |r: &Row| added(r, pick[1].1)), higher_is_better: false };
    for r in rows {
        let best = added_p99.best_peer(r.layout);
        let direct_p99 = direct(r.layout).and_then(|d| d.lat_us(pick[1].1));
        let abs: Vec<String> = pick.iter().map(|(_, p)| or_dash(r.lat_us(*p), us)).collect();
        let add: Vec<String> = pick.iter().map(|(_, p)| or_dash(added(r, *p), signed_us)).collect();
        let errors: u64 = r.latency.iter().map(|l| l.errors).sum();
        let requests: u64 = r.latency.iter().map(|l| l.requests).sum();
        let _ = writeln!(
            out,
            "{} {} | {} | {} | {} | {} | {errors} |",
            cells(r),
            abs.join(" | "),
            add.join(" | "),
            ratio(added(r, pick[1].1), best),
            ratio(r.lat_us(pick[1].1), direct_p99),
            thousands(requests as f64),
        );
    }
    out.push('\n');
}

fn cpu(out: &mut String, rows: &[Row]) {
    let h1 = Measure { rows, get: Box::new(Row::h1_cpu), higher_is_better: false };
    let h2 = Measure { rows, get: Box::new(Row::h2_cpu), higher_is_better: false };
    let _ = writeln!(
        out,
        "## Proxy CPU per 10,000 requests\n\nuser + system CPU seconds of the proxy processes \
         (all of them: nginx master and worker, both Pillion hops; not the pod layout's \
         upstream) read from `/proc/PID/stat` around each throughput run, divided by the \
         requests served (lower is better); \"vs best peer\" within the same layout. Direct \
         has no proxy, so there is no ratio to direct.\n\n\
         | configuration | layout | HTTP/1.1 (wrk) | vs best peer | HTTP/2 (h2load) | vs best peer |\n\
         |---|---|---:|---:|---:|---:|"
    );
    let secs = |v: f64| format!("{v:.3} s");
    for r in rows.iter().filter(|r| r.proxied) {
        let (a, b) = (Row::h1_cpu(r), Row::h2_cpu(r));
        let _ = writeln!(
            out,
            "{} {} | {} | {} | {} |",
            cells(r),
            or_dash(a, secs),
            ratio(a, h1.best_peer(r.layout)),
            or_dash(b, secs),
            ratio(b, h2.best_peer(r.layout))
        );
    }
    out.push('\n');
}

fn memory(out: &mut String, rows: &[Row], s: &Settings) {
    let idle =
        Measure { rows, get: Box::new(|r: &Row| r.rss_idle_kib.map(|v| v as f64)), higher_is_better: false };
    let held =
        Measure { rows, get: Box::new(|r: &Row| r.rss_conns_kib.map(|v| v as f64)), higher_is_better: false };
    let n = thousands(s.idle_conns as f64);
    let _ = writeln!(
        out,
        "## Proxy resident memory\n\nVmRSS of the proxy processes (summed over nginx's master and \
         worker, and over both Pillion hops): idle right after start, and while the bench holds \
         {n} idle keep-alive connections that have each served one request (lower is better). \
         Each layout runs processes of its own, so each is read on its own.\n\n\
         | configuration | layout | idle | vs best peer | with {n} connections | vs best peer |\n\
         |---|---|---:|---:|---:|---:|"
    );
    for r in rows.iter().filter(|r| r.proxied) {
        let (a, b) = (r.rss_idle_kib.map(|v| v as f64), r.rss_conns_kib.map(|v| v as f64));
        let _ = writeln!(
            out,
            "{} {} | {} | {} | {} |",
            cells(r),
            or_dash(a, mib),
            ratio(a, idle.best_peer(r.layout)),
            or_dash(b, mib),
            ratio(b, held.best_peer(r.layout))
        );
    }
    out.push('\n');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thousands_are_separated() {
        assert_eq!(thousands(1234567.4), "1,234,567");
        assert_eq!(thousands(999.0), "999");
    }

    #[test]
    fn best_peer_is_taken_within_the_layout() {
        let row = |name, layout, kib| {
            let mut r = Row::new(name, layout, String::new(), true);
            r.rss_idle_kib = Some(kib);
            r
        };
        let rows = [
            row("nginx", Layout::Proxy, 100),
            row("envoy", Layout::Proxy, 300),
            row("nginx", Layout::Pod, 500),
            row("envoy", Layout::Pod, 400),
            row("pillion", Layout::Pod, 50),
        ];
        let m = Measure {
            rows: &rows,
            get: Box::new(|r| r.rss_idle_kib.map(|v| v as f64)),
            higher_is_better: false,
        };
        assert_eq!(m.best_peer(Layout::Proxy), Some(100.0));
        assert_eq!(m.best_peer(Layout::Pod), Some(400.0));
        assert_eq!(m.of("nginx", Layout::Pod), Some(500.0));
    }
}
