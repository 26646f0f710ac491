//! The Markdown report (`BENCHMARKS.md`): a summary row per configuration, then one table per
//! measure with each figure as a ratio to `direct` and to the best of nginx and haproxy, the
//! correctness checks, the machine and the method.

use std::{fmt::Write as _, time::Duration};

use super::{
    client::Latency,
    env::Machine,
    load::Throughput,
    results::{PEERS, Row, Settings},
};

/// Reads one figure of a row.
type Getter<'a> = Box<dyn Fn(&Row) -> Option<f64> + 'a>;
/// Picks one percentile of a latency run.
type Percentile = fn(&Latency) -> Duration;
/// Reads one figure of a row, and formats it.
type Figure = (&'static str, fn(&Row) -> Option<f64>, fn(f64) -> String);

/// One measure of every row, with the direction that counts as better.
struct Measure<'a> {
    rows: &'a [Row],
    get: Getter<'a>,
    higher_is_better: bool,
}

impl Measure<'_> {
    fn of(&self, name: &str) -> Option<f64> {
        self.rows.iter().find(|r| r.name == name).and_then(|r| (self.get)(r))
    }
    /// The best value among the peers that completed.
    fn best_peer(&self) -> Option<f64> {
        let peers = PEERS.iter().filter_map(|p| self.of(p));
        if self.higher_is_better { peers.reduce(f64::max) } else { peers.reduce(f64::min) }
    }
}

fn ratio(v: Option<f64>, base: Option<f64>) -> String {
    match (v, base) {
        (Some(v), Some(b)) if b.abs() > f64::EPSILON => format!("{:.2}x", v / b),
        _ => "-".into(),
    }
}

fn or_dash(v: Option<f64>, f: impl Fn(f64) -> String) -> String {
    v.map_or_else(|| "-".into(), f)
}

fn thousands(v: f64) -> String {
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

fn us(v: f64) -> String {
    format!("{v:.0} µs")
}

fn signed_us(v: f64) -> String {
    format!("{v:+.0} µs")
}

fn mib(kib: f64) -> String {
    format!("{:.1} MiB", kib / 1024.0)
}

fn status(row: &Row) -> String {
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
    mtls(&mut out, rows, s);
    correctness(&mut out, rows);
    method(&mut out, rows, s, m);
    out
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
        "## Summary\n\n| configuration | HTTP/1.1 req/s | HTTP/2 req/s | p50 | p99 | p99.9 | \
         proxy CPU s / 10k req (HTTP/1.1) | RSS idle | RSS with {} conns | status |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|---:|---|",
        thousands(s.idle_conns as f64)
    );
    for r in rows {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            r.name,
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
         its correctness check or a measurement (see Correctness).\n",
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
    let (direct, best) = (m.of("direct"), m.best_peer());
    let _ = writeln!(
        out,
        "## {title}\n\n`{tool}`, requests/s (higher is better).\n\n\
         | configuration | req/s | vs direct | vs best peer | non-2xx + errors | per round |\n\
         |---|---:|---:|---:|---:|---|"
    );
    for r in rows {
        let v = get(r);
        let rounds: Vec<String> = runs(r).iter().map(|t| thousands(t.rps)).collect();
        let errors: u64 = runs(r).iter().map(|t| t.errors).sum();
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} |",
            r.name,
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
         configuration alike. \"vs best peer\" compares the added latency with the lower of \
         nginx's and haproxy's. A negative added figure means the run's noise was larger than \
         the proxy's cost at that percentile.\n\n\
         | configuration | p50 | p99 | p99.9 | added p50 | added p99 | added p99.9 | \
         added p99 vs best peer | p99 vs direct | requests | errors |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        thousands(f64::from(s.rate)),
        s.latency_conns,
        s.secs
    );
    let direct = rows.iter().find(|d| d.name == "direct");
    let added = |r: &Row, p: Percentile| -> Option<f64> {
        if r.name == "direct" {
            return None;
        }
        r.added_us(direct?, p)
    };
    let added_p99 =
        Measure { rows, get: Box::new(move |r: &Row| added(r, pick[1].1)), higher_is_better: false };
    let best = added_p99.best_peer();
    let direct_p99 = direct.and_then(|d| d.lat_us(pick[1].1));
    for r in rows {
        let abs: Vec<String> = pick.iter().map(|(_, p)| or_dash(r.lat_us(*p), us)).collect();
        let add: Vec<String> = pick.iter().map(|(_, p)| or_dash(added(r, *p), signed_us)).collect();
        let errors: u64 = r.latency.iter().map(|l| l.errors).sum();
        let requests: u64 = r.latency.iter().map(|l| l.requests).sum();
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {errors} |",
            r.name,
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
         (all of them: nginx master and worker, both Pillion hops) read from `/proc/PID/stat` \
         around each throughput run, divided by the requests served (lower is better). Direct \
         has no proxy, so there is no ratio to direct.\n\n\
         | configuration | HTTP/1.1 (wrk) | vs best peer | HTTP/2 (h2load) | vs best peer |\n\
         |---|---:|---:|---:|---:|"
    );
    let secs = |v: f64| format!("{v:.3} s");
    for r in rows.iter().filter(|r| r.proxied) {
        let (a, b) = (Row::h1_cpu(r), Row::h2_cpu(r));
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} |",
            r.name,
            or_dash(a, secs),
            ratio(a, h1.best_peer()),
            or_dash(b, secs),
            ratio(b, h2.best_peer())
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
         {n} idle keep-alive connections that have each served one request (lower is better).\n\n\
         | configuration | idle | vs best peer | with {n} connections | vs best peer |\n\
         |---|---:|---:|---:|---:|"
    );
    for r in rows.iter().filter(|r| r.proxied) {
        let (a, b) = (r.rss_idle_kib.map(|v| v as f64), r.rss_conns_kib.map(|v| v as f64));
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} |",
            r.name,
            or_dash(a, mib),
            ratio(a, idle.best_peer()),
            or_dash(b, mib),
            ratio(b, held.best_peer())
        );
    }
    out.push('\n');
}

fn mtls(out: &mut String, rows: &[Row], s: &Settings) {
    out.push_str("## The cost of mTLS between two Pillion hops\n\n");
    let find = |n: &str| rows.iter().find(|r| r.name == n);
    match (&s.mtls, find("pillion x2 plain"), find("pillion x2 mTLS")) {
        (Err(why), _, _) => {
            let _ = writeln!(
                out,
                "mTLS row: pending the mTLS issue (`pillion check` rejects a \
                                   config with `tls:` and `inbound.mtls: strict`: {why}).\n"
            );
        }
        (Ok(()), Some(plain), Some(tls)) => {
            let _ = writeln!(
                out,
                "| measure | two hops, plaintext | two hops, mTLS | mTLS vs plaintext |\n|---|---:|---:|---:|"
            );
            let lines: [Figure; 5] = [
                ("HTTP/1.1 req/s", Row::h1_rps, thousands),
                ("HTTP/2 req/s", Row::h2_rps, thousands),
                ("p99 latency", |r| r.lat_us(|l| l.p99), us),
                ("CPU s / 10k req (HTTP/1.1)", Row::h1_cpu, |v| format!("{v:.3} s")),
                ("RSS idle", |r| r.rss_idle_kib.map(|v| v as f64), mib),
            ];
            for (name, get, fmt) in lines {
                let (a, b) = (get(plain), get(tls));
                let _ =
                    writeln!(out, "| {name} | {} | {} | {} |", or_dash(a, fmt), or_dash(b, fmt), ratio(b, a));
            }
            out.push('\n');
        }
        _ => out.push_str("mTLS row: not measured.\n\n"),
    }
}

fn correctness(out: &mut String, rows: &[Row]) {
    let _ = writeln!(
        out,
        "## Correctness\n\nBefore each configuration's throughput runs, in every round: 20 GETs of \
         `/fixed` over HTTP/1.1 and 20 over h2c, each must answer 200 with a 1,024-byte body. For the mTLS row, hop B's metrics must also \
         show that those requests arrived over TLS.\n\n\
         | configuration | check | errors under load |\n|---|---|---:|"
    );
    for r in rows {
        let check = match &r.failure {
            None => "passed".to_owned(),
            Some(e) => format!("FAILED: {}", e.replace('\n', " ").replace('|', "/")),
        };
        let _ = writeln!(out, "| {} | {check} | {} |", r.name, r.errors());
    }
    out.push('\n');
}

fn method(out: &mut String, rows: &[Row], s: &Settings, m: &Machine) {
    let _ = writeln!(
        out,
        "## Machine and method\n\n| | |\n|---|---|\n| CPU | {} |\n| cores | {} |\n| kernel | {} |\n| date | {} |",
        m.cpu, m.cores, m.kernel, m.date
    );
    for (tool, v) in &m.tools {
        let _ = writeln!(out, "| {tool} | {v} |");
    }
    let _ = writeln!(
        out,
        "\n- Pinning (taskset): every proxy under test on core 1; the upstream \
         (`pillion-e2e-backend`, `/fixed` = 1 KiB over HTTP/1.1 and h2c), wrk (`-t1`), h2load \
         (`-t1`) and the bench's own latency and idle-connection clients on core 0. This machine \
         has {} cores, so the client and the upstream share one core: absolute numbers are \
         bounded by that core, and `direct` pays for the client and the upstream on one core too. \
         Pillion sees one CPU under taskset and so runs a single-threaded runtime.\n\
         - Each throughput run lasts {} s; rounds: {}. A round takes one measure at a time \
         (HTTP/1.1 throughput, then HTTP/2, then latency in one-second slices taken in turn) \
         over every configuration back to back, each round starting one configuration further \
         along the list: the runs compared with each other are seconds apart, so that this \
         machine's slow spells (tens of seconds in which the proxy core runs about a quarter \
         slower) and order effects hit all alike.\n\
         - Everything runs on 127.0.0.1.",
        m.cores, s.secs, s.rounds
    );
    let _ = writeln!(out, "- Load average (1, 5, 15 min) when the run started: {}.", m.loadavg);
    for note in &s.notes {
        let _ = writeln!(out, "- {note}");
    }
    out.push_str("\n| configuration | how it is set up |\n|---|---|\n");
    for r in rows {
        let _ = writeln!(out, "| {} | {} |", r.name, r.note);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thousands_are_separated() {
        assert_eq!(thousands(1234567.4), "1,234,567");
        assert_eq!(thousands(999.0), "999");
    }
}
