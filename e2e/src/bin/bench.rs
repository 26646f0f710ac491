//! `bench`: measures Pillion against no proxy (`direct`), nginx, haproxy and Envoy on loopback,
//! in two layouts (`proxy`: the proxy alone on its core; `pod`: the proxy sharing its core with
//! an upstream of its own, as a sidecar shares its pod's CPU), and writes `BENCHMARKS.md` and `benchmarks.png` at the workspace root (or next to `--out`).
//!
//! ```text
//! cargo build --release --workspace --bins && cargo run --release -p pillion-e2e --bin bench
//! cargo run --release -p pillion-e2e --bin bench -- --smoke      # ~a second per configuration
//! cargo run --release -p pillion-e2e --bin bench -- --only pillion,nginx --out /tmp/b/BENCHMARKS.md
//! ```
//!
//! It installs missing tools (`scripts/bench-setup.sh`), starts one upstream per layout and
//! every configuration of each layout ([`peers`]), then runs rounds. A round takes one measure at a time over every
//! configuration in turn (from a different first one each round): a correctness check
//! ([`client::check`]) and wrk throughput with the proxy's CPU time ([`load`]), then h2load
//! throughput, then fixed-rate latency ([`client::fixed_rate`]) in one-second slices that go
//! round the configurations. Medians go to the report ([`report`]) and the chart ([`chart`]).
//! Every process it starts is killed when it ends.

#[path = "../bench/chart.rs"]
mod chart;
#[path = "../bench/client.rs"]
mod client;
#[path = "../bench/env.rs"]
mod env;
#[path = "../bench/envoy.rs"]
mod envoy;
#[path = "../bench/load.rs"]
mod load;
#[path = "../bench/method.rs"]
mod method;
#[path = "../bench/peers.rs"]
mod peers;
#[path = "../bench/procs.rs"]
mod procs;
#[path = "../bench/report.rs"]
mod report;
#[path = "../bench/results.rs"]
mod results;
#[path = "../bench/traced.rs"]
mod traced;

use std::{net::SocketAddr, path::PathBuf, process::ExitCode, time::Duration};

use anyhow::{Context, Result, bail};
use clap::Parser;
use peers::{Bins, Target};
use results::{Layout, Row, Settings};

/// Benchmark Pillion against direct, nginx, haproxy and Envoy on loopback.
#[derive(Parser)]
struct Cli {
    /// About a second per configuration and one round; writes to a temp dir unless --out.
    #[arg(long)]
    smoke: bool,
    /// Report file; the chart `benchmarks.png` goes next to it. Default: BENCHMARKS.md at the
    /// workspace root.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Rounds of every configuration (default 5: a shared 2-core machine drifts by 10-25%
    /// between rounds, and a median of five shrugs off one or two bad ones; smoke 1).
    #[arg(long)]
    rounds: Option<u32>,
    /// Seconds per measured run (default 8, which keeps the fifteen configurations of both
    /// layouts at five rounds near half an hour on 2 cores; smoke 1).
    #[arg(long)]
    secs: Option<u64>,
    /// Request rate of the latency runs (default 2000; smoke 200).
    #[arg(long)]
    rate: Option<u32>,
    /// Do not run scripts/bench-setup.sh.
    #[arg(long)]
    skip_setup: bool,
    /// A remark to add to the report's method section (repeatable).
    #[arg(long)]
    note: Vec<String>,
    /// Measure only these configurations (comma-separated names, e.g. `pillion,nginx`; `direct`
    /// always runs, as the baseline). Needs --out, so a partial table never replaces BENCHMARKS.md.
    #[arg(long, value_delimiter = ',', requires = "out")]
    only: Vec<String>,
}

fn main() -> ExitCode {
    procs::kill_children_on_interrupt();
    procs::kill_children_on_panic();
    match run(Cli::parse()) {
        Ok(0) => ExitCode::SUCCESS,
        Ok(aborted) => {
            eprintln!("bench: {aborted} configuration(s) aborted; see the Correctness section");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Runs the benchmark; returns how many configurations were aborted.
fn run(cli: Cli) -> Result<usize> {
    if !cli.skip_setup {
        env::setup()?;
    }
    let bins = Bins::find()?;
    let machine = env::Machine::probe(&bins.pillion);
    if machine.cores < 2 {
        bail!("the benchmark pins the proxy and the client to different cores: it needs 2 or more");
    }
    let mut settings = settings(&cli);
    let out = out_path(&cli)?;
    procs::raise_nofile(8192);
    procs::pin_self(peers::CLIENT_CORE)?;

    let upstream_dir = tempfile::tempdir()?;
    let (_upstream, upstream) = peers::start_upstream(&bins, upstream_dir.path(), peers::CLIENT_CORE)?;
    let (_pod_upstream, pod_upstream) = peers::start_upstream(&bins, upstream_dir.path(), peers::PROXY_CORE)?;
    // The certificates' directory must outlive the mTLS proxies that read it.
    let certs = peers::Certs::make(&bins);
    settings.mtls = match &certs {
        Ok(c) => peers::mtls_supported(&bins, c, upstream),
        Err(e) => Err(format!("cannot make certificates: {e:#}")),
    };
    let mtls_certs = certs.as_ref().ok().filter(|_| settings.mtls.is_ok());
    let upstreams = Upstreams { proxy: upstream, pod: pod_upstream };
    let mut configs = start_all(&bins, upstreams, mtls_certs, &cli.only)?;
    for (target, row) in &mut configs {
        if let Some(t) = target {
            measure_memory(t, row, settings.idle_conns);
        }
    }
    for round in 1..=settings.rounds {
        eprintln!("bench: round {round} of {}", settings.rounds);
        // Each round starts one configuration further along, so that none always runs right
        // after the same one (after `direct`'s load, say): order effects spread over all.
        let order: Vec<usize> =
            (0..configs.len()).map(|k| (round as usize - 1 + k) % configs.len()).collect();
        // Measure by measure, every configuration back to back: the runs that are compared
        // with each other are then seconds apart, closer than this machine's slow spells last.
        for phase in [Phase::Http1, Phase::Http2] {
            for &i in &order {
                let (target, row) = &mut configs[i];
                if let Some(t) = target.as_mut().filter(|_| row.failure.is_none()) {
                    let measured = measure(t, row, &settings, phase);
                    abort_on_error(row, measured);
                }
            }
        }
        measure_latency(&mut configs, &order, &settings);
    }
    let rows: Vec<Row> = configs.into_iter().map(|(_, row)| row).collect();
    write_report(&rows, &settings, &machine, &out)?;
    Ok(rows.iter().filter(|r| r.failure.is_some()).count())
}

fn settings(cli: &Cli) -> Settings {
    let (rounds, secs, rate, conns, idle) =
        if cli.smoke { (1, 1, 200, 4, 100) } else { (5, 8, 2000, 16, 1000) };
    Settings {
        smoke: cli.smoke,
        rounds: cli.rounds.unwrap_or(rounds),
        secs: cli.secs.unwrap_or(secs),
        rate: cli.rate.unwrap_or(rate),
        latency_conns: conns,
        idle_conns: idle,
        mtls: Err("not checked".into()),
        notes: cli.note.clone(),
    }
}

/// `--out`, or BENCHMARKS.md at the workspace root (a kept temp dir for `--smoke`).
fn out_path(cli: &Cli) -> Result<PathBuf> {
    let path = match (&cli.out, cli.smoke) {
        (Some(p), _) => p.clone(),
        (None, true) => {
            tempfile::Builder::new().prefix("pillion-bench-").tempdir()?.keep().join("BENCHMARKS.md")
        }
        (None, false) => env::workspace_root().join("BENCHMARKS.md"),
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    }
    Ok(path)
}

/// The upstream of each layout.
#[derive(Clone, Copy)]
struct Upstreams {
    proxy: SocketAddr,
    pod: SocketAddr,
}

/// Starts every configuration, the single-hop ones in both layouts (the `pod` row right after
/// its `proxy` row); one that cannot start is kept as an aborted row. Each proxy's idle memory
/// is read right after it starts.
fn start_all(
    bins: &Bins,
    upstreams: Upstreams,
    mtls: Option<&peers::Certs>,
    only: &[String],
) -> Result<Vec<(Option<Target>, Row)>> {
    type Start<'a> = Box<dyn Fn(SocketAddr) -> Result<Target> + 'a>;
    // (name, whether it also runs in the pod layout, how to start it in front of an upstream)
    let mut starters: Vec<(&'static str, bool, Start<'_>)> = vec![
        ("direct", true, Box::new(|up| Ok(peers::direct(up)))),
        ("pillion", true, Box::new(|up| peers::pillion(bins, up))),
        ("nginx", true, Box::new(peers::nginx)),
        ("haproxy", true, Box::new(peers::haproxy)),
        ("envoy", true, Box::new(envoy::envoy)),
        ("pillion x2 plain", false, Box::new(|up| peers::two_hop(bins, up, None))),
    ];
    let sink = traced::start_sink()?;
    for sampling in [0.0, 0.01, 1.0] {
        let start: Start<'_> = Box::new(move |up| traced::pillion_traced(bins, up, sampling, sink));
        starters.push((traced::traced_name(sampling), false, start));
    }
    if let Some(certs) = mtls {
        starters.push(("pillion x2 mTLS", false, Box::new(move |up| peers::two_hop(bins, up, Some(certs)))));
    }
    if let Some(unknown) = only.iter().find(|o| !starters.iter().any(|(name, ..)| name == o)) {
        let names: Vec<_> = starters.iter().map(|(name, ..)| *name).collect();
        bail!("--only: no configuration `{unknown}` (there are: {})", names.join(", "));
    }
    starters.retain(|(name, ..)| only.is_empty() || *name == "direct" || only.iter().any(|o| o == name));
    let runs = starters.iter().flat_map(|(name, pod, start)| {
        let layouts: &[Layout] = if *pod { &[Layout::Proxy, Layout::Pod] } else { &[Layout::Proxy] };
        layouts.iter().map(move |&layout| (*name, layout, start))
    });
    Ok(runs
        .map(|(name, layout, start)| {
            let upstream = match layout {
                Layout::Proxy => upstreams.proxy,
                Layout::Pod => upstreams.pod,
            };
            match start(upstream) {
                Ok(t) => {
                    let proxied = !t.procs.is_empty();
                    let mut row = Row::new(t.name, layout, t.note.clone(), proxied);
                    row.rss_idle_kib = proxied.then(|| procs::rss_kib(&t.pids()));
                    (Some(t), row)
                }
                Err(e) => {
                    eprintln!("bench: {name} ({}) did not start: {e:#}", layout.name());
                    let mut row = Row::new(name, layout, String::new(), name != "direct");
                    row.failure = Some(format!("did not start: {e:#}"));
                    (None, row)
                }
            }
        })
        .collect())
}

/// Resident memory while the bench holds `n` idle keep-alive connections to the proxy.
fn measure_memory(t: &Target, row: &mut Row, n: usize) {
    if t.procs.is_empty() {
        return;
    }
    let pids = t.pids();
    match client::with_idle_connections(t.h1, n, || procs::rss_kib(&pids)) {
        Ok(kib) => row.rss_conns_kib = Some(kib),
        Err(e) => {
            eprintln!("bench: {}: holding {n} connections failed: {e:#}", row.label());
            row.failure = Some(format!("holding {n} idle connections failed: {e:#}"));
        }
    }
}

/// One throughput measure of a round.
#[derive(Clone, Copy)]
enum Phase {
    /// The correctness check, then HTTP/1.1 throughput (wrk).
    Http1,
    /// HTTP/2 throughput (h2load).
    Http2,
}

/// Marks the configuration aborted if its measure failed.
fn abort_on_error(row: &mut Row, measured: Result<()>) {
    if let Err(e) = measured {
        eprintln!("bench: {} aborted: {e:#}", row.label());
        row.failure = Some(format!("{e:#}"));
    }
}

/// One throughput measure of one configuration in a round. The correctness check opens each
/// round's HTTP/1.1 measure, so it runs every round, before that round's load on the
/// configuration.
fn measure(t: &mut Target, row: &mut Row, s: &Settings, phase: Phase) -> Result<()> {
    t.alive()?;
    let pids = t.pids();
    let name = row.label();
    match phase {
        Phase::Http1 => {
            client::check(t.h1, false).context("correctness check over HTTP/1.1")?;
            client::check(t.h2, true).context("correctness check over h2c")?;
            if let Some(admin) = t.tls_admin {
                peers::expect_inbound_tls(admin)?;
            }
            let h1 = load::wrk(t.h1, s.secs, &pids)?;
            eprintln!("bench:   {name:<24} http/1.1 {:>9.0} req/s  errors {}", h1.rps, h1.errors);
            row.h1.push(h1);
        }
        Phase::Http2 => {
            let h2 = load::h2load(t.h2, s.secs, &pids)?;
            eprintln!("bench:   {name:<24} h2       {:>9.0} req/s  errors {}", h2.rps, h2.errors);
            row.h2.push(h2);
        }
    }
    t.alive()
}

/// The round's latency measure: `secs` one-second slices at the fixed rate, each slice taken
/// over every configuration in `order`, and each configuration's slices pooled into the
/// round's percentiles. The configurations are thus measured over the same minute, in turns
/// shorter than this machine's slow spells, rather than one after another for `secs` each.
fn measure_latency(configs: &mut [(Option<Target>, Row)], order: &[usize], s: &Settings) {
    let mut pooled: Vec<client::Samples> = configs.iter().map(|_| client::Samples::default()).collect();
    for _ in 0..s.secs {
        for &i in order {
            let (target, row) = &mut configs[i];
            if let Some(t) = target.as_mut().filter(|_| row.failure.is_none()) {
                let slice = Duration::from_secs(1);
                let measured = t
                    .alive()
                    .and_then(|()| client::fixed_rate(t.h1, s.rate, slice, s.latency_conns, &mut pooled[i]))
                    .and_then(|()| t.alive());
                abort_on_error(row, measured.context("latency at a fixed rate"));
            }
        }
    }
    for ((_, row), samples) in configs.iter_mut().zip(pooled) {
        if row.failure.is_some() {
            continue;
        }
        match samples.latency() {
            Ok(l) => {
                let p99 = l.p99.as_secs_f64() * 1e6;
                eprintln!("bench:   {:<24} p99 {p99:>6.0} µs  errors {}", row.label(), l.errors);
                row.latency.push(l);
            }
            Err(e) => abort_on_error(row, Err(e)),
        }
    }
}

/// Draws the chart, writes the Markdown next to it and prints it.
fn write_report(rows: &[Row], s: &Settings, m: &env::Machine, out: &std::path::Path) -> Result<()> {
    let png = out.with_file_name("benchmarks.png");
    let mut text = report::markdown(rows, s, m);
    if let Err(e) = chart::draw(rows, s.rate, &png) {
        eprintln!("bench: no chart: {e:#}");
        text.push_str(&format!("\nChart not drawn: {e:#}\n"));
    }
    println!("{text}");
    // `kube-scale` writes its own section: carry it over.
    if let Some(scale) = pillion_e2e::scale::report::existing(out) {
        text.push('\n');
        text.push_str(&scale);
    }
    std::fs::write(out, &text).with_context(|| format!("write {}", out.display()))?;
    eprintln!("bench: wrote {} and {}", out.display(), png.display());
    Ok(())
}
