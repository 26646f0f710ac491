//! The control plane at scale (a benchmark, never a test of speed): a real kube-apiserver holding
//! a whole mesh ([`mesh`]), `pillion-control --kubernetes` watching it, and hundreds of simulated
//! proxies ([`watchers`]) following their workloads' snapshots. It measures how long the control
//! plane takes to serve everyone from a cold start, how long an EndpointSlice change takes to
//! reach every proxy it affects (and that no other proxy is pushed anything), the control plane's
//! CPU and memory, and one real proxy's memory with a one-namespace view against the whole mesh.
//! [`report`] turns the figures into the BENCHMARKS.md section.

pub mod mesh;
pub mod report;
pub mod watchers;

use std::{
    collections::HashSet,
    net::Ipv4Addr,
    path::PathBuf,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use pillion_certs::SpiffeId;

use self::{mesh::Shape, watchers::Watchers};
use crate::{control::Control, kube::KubeApi, process::Proxy};

/// Enough ClusterIPs for thousands of Services (the API server allows up to 20 bits).
const SERVICE_CIDR: &str = "10.96.0.0/20";
/// What the control plane's log and a proxy's watch would call a long wait.
const WAIT: Duration = Duration::from_secs(300);
/// How long after a change's last expected push a stray push to another proxy is still caught.
const STRAY_WINDOW: Duration = Duration::from_millis(500);
/// The quiet spell over which idle CPU is measured.
const IDLE: Duration = Duration::from_secs(10);
/// The control plane's keep-alive on watch streams: its default.
pub const KEEPALIVE: &str = "15s";

/// What to build and how hard to push it.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// The mesh.
    pub shape: Shape,
    /// Simulated proxies, one per workload, namespace by namespace.
    pub watchers: usize,
    /// EndpointSlice changes, one after another.
    pub changes: usize,
}

/// Everything measured.
#[derive(Debug, Default)]
pub struct Results {
    /// The mesh measured.
    pub shape: Option<Shape>,
    /// Simulated proxies.
    pub watchers: usize,
    /// Objects written, and how long writing them took.
    pub objects: usize,
    /// Seconds to write them.
    pub load_secs: f64,
    /// Control plane started -> every workload published.
    pub published_secs: f64,
    /// Watchers started -> every one has its first snapshot.
    pub first_snapshots_secs: f64,
    /// Control-plane CPU seconds from its start until every watcher had a snapshot.
    pub sync_cpu_secs: f64,
    /// Control-plane CPU milliseconds per second with every stream open and nothing changing.
    pub idle_cpu_ms_per_s: f64,
    /// Per change: from the API write to the last affected proxy's snapshot.
    pub propagation: Vec<Duration>,
    /// Per affected proxy and change: from the API write to its snapshot.
    pub per_proxy: Vec<Duration>,
    /// Proxies affected by each change.
    pub affected_per_change: usize,
    /// Affected proxies that never got the change.
    pub missed: usize,
    /// Snapshots pushed to proxies a change did not affect.
    pub stray: usize,
    /// Control-plane CPU milliseconds per change.
    pub change_cpu_ms: f64,
    /// Control-plane resident memory (KiB) with every stream open, and its peak.
    pub control_rss_kib: u64,
    /// Control-plane peak resident memory (KiB).
    pub control_peak_kib: u64,
    /// Streams reopened (refused before publication, or broken).
    pub reopened: usize,
    /// A real proxy's resident memory (KiB) and the services it holds: one namespace's view.
    pub proxy_narrow: (u64, usize),
    /// The same with the whole mesh in view.
    pub proxy_wide: (u64, usize),
}

/// Runs the whole benchmark, printing progress to stderr.
pub async fn run(opts: Options) -> Result<Results> {
    let shape = opts.shape;
    let mut r = Results { shape: Some(shape), watchers: opts.watchers, ..Results::default() };
    if opts.watchers > shape.total_services() {
        bail!("{} watchers but only {} workloads", opts.watchers, shape.total_services());
    }
    let kube = KubeApi::start_with_service_cidr(SERVICE_CIDR).await?;
    let client = kube.client().await?;
    let begun = Instant::now();
    mesh::load(&client, shape).await?;
    (r.objects, r.load_secs) = (shape.total_objects(), begun.elapsed().as_secs_f64());
    progress(&format!("{} objects written in {:.1}s", r.objects, r.load_secs));

    let kubeconfig = kube.kubeconfig().to_owned();
    let begun = Instant::now();
    let control =
        blocking(move || Control::start_kubernetes_with_keepalive(&kubeconfig, &[], KEEPALIVE)).await?;
    let pid = control.pid();
    let cpu_at_start = cpu(pid);
    let wide = mesh::wide_workload();
    let control = blocking(move || {
        control.until_published(&wide, WAIT);
        control
    })
    .await?;
    r.published_secs = begun.elapsed().as_secs_f64();
    progress(&format!("model published {:.1}s after start", r.published_secs));

    // Watchers: the first `watchers` workloads, namespace by namespace.
    let watched: Vec<(usize, usize)> = (0..shape.namespaces)
        .flat_map(|i| (0..shape.services).map(move |k| (i, k)))
        .take(opts.watchers)
        .collect();
    let (control, certs) = blocking(move || {
        let certs: Vec<(String, PathBuf)> = watched
            .iter()
            .map(|&(i, k)| {
                let name = mesh::workload(i, k);
                let dir = control.pki.issue(&name, &mesh::identity(i, k), &[]);
                (name, dir)
            })
            .collect();
        (control, certs)
    })
    .await?;
    let control_id = SpiffeId::parse("spiffe://cluster.local/ns/pillion-system/sa/pillion-control")?;
    let begun = Instant::now();
    let mut streams = Watchers::start(control.addr, &certs, &control_id)?;
    let mut seen = HashSet::new();
    while seen.len() < certs.len() {
        let line = tokio::time::timeout(WAIT, streams.lines.recv()).await.ok().flatten();
        let line = line.with_context(|| format!("only {} of {} watchers got a snapshot", seen.len(), certs.len()))?;
        seen.insert(line.watcher);
    }
    r.first_snapshots_secs = begun.elapsed().as_secs_f64();
    r.sync_cpu_secs = cpu(pid) - cpu_at_start;
    progress(&format!("{} watchers served in {:.1}s", certs.len(), r.first_snapshots_secs));

    let before = cpu(pid);
    tokio::time::sleep(IDLE).await;
    r.idle_cpu_ms_per_s = (cpu(pid) - before) * 1000.0 / IDLE.as_secs_f64();
    drain(&mut streams);

    changes(&client, &mut streams, &watched_namespaces(&certs), shape, opts.changes, pid, &mut r).await?;
    (r.control_rss_kib, r.control_peak_kib) = memory(pid);
    r.reopened = streams.reopened.load(std::sync::atomic::Ordering::Relaxed);
    drop(streams);

    let (control, narrow) = blocking(move || {
        let narrow = proxy_memory(&control, Some((0, 0)));
        (control, narrow)
    })
    .await?;
    r.proxy_narrow = narrow;
    r.proxy_wide = blocking(move || proxy_memory(&control, None)).await?;
    Ok(r)
}

/// The namespace of each watcher, by index.
fn watched_namespaces(certs: &[(String, PathBuf)]) -> Vec<String> {
    certs.iter().map(|(w, _)| w.rsplit_once('.').map_or(w.clone(), |(_, ns)| ns.to_owned())).collect()
}

/// Moves one endpoint at a time, `changes` times, in namespaces that have watchers, and times
/// its arrival at every watcher of that namespace (each sees its own namespace).
async fn changes(
    client: &kube::Client,
    streams: &mut Watchers,
    namespaces: &[String],
    shape: Shape,
    changes: usize,
    pid: u32,
    r: &mut Results,
) -> Result<()> {
    let watched_namespaces = namespaces.iter().collect::<HashSet<_>>().len();
    let before = cpu(pid);
    for c in 0..changes {
        let (i, k) = (c % watched_namespaces, c % shape.services);
        let ip = Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 250, 0, 1)) + c as u32);
        let needle = format!("\"{ip}:8080\"");
        let affected: HashSet<usize> =
            (0..namespaces.len()).filter(|w| namespaces[*w] == mesh::namespace(i)).collect();
        r.affected_per_change = r.affected_per_change.max(affected.len());
        let sent = Instant::now();
        mesh::move_endpoint(client, shape, i, k, ip).await?;
        let mut waiting = affected.clone();
        let mut last = sent;
        while !waiting.is_empty() {
            let Ok(Some(line)) = tokio::time::timeout(Duration::from_secs(30), streams.lines.recv()).await else {
                r.missed += waiting.len();
                break;
            };
            if !affected.contains(&line.watcher) {
                r.stray += 1;
            } else if waiting.contains(&line.watcher) && contains(&line.text, &needle) {
                waiting.remove(&line.watcher);
                r.per_proxy.push(line.at - sent);
                last = line.at;
            }
        }
        r.propagation.push(last - sent);
        tokio::time::sleep(STRAY_WINDOW).await;
        while let Ok(line) = streams.lines.try_recv() {
            if !affected.contains(&line.watcher) {
                r.stray += 1;
            }
        }
    }
    // The stray window's sleeps are idle time, not the changes' cost: take it out.
    let idle = r.idle_cpu_ms_per_s * STRAY_WINDOW.as_secs_f64() * changes as f64;
    r.change_cpu_ms = ((cpu(pid) - before) * 1000.0 - idle).max(0.0) / changes.max(1) as f64;
    progress(&format!("{changes} changes: {} missed, {} stray pushes", r.missed, r.stray));
    Ok(())
}

/// Starts a real proxy for workload `svc-K.ns-I` (`None`: the wide one), waits for its
/// snapshot, and reads its resident memory (KiB) and how many services it holds.
fn proxy_memory(control: &Control, workload: Option<(usize, usize)>) -> (u64, usize) {
    let (name, identity) = match workload {
        Some((i, k)) => (mesh::workload(i, k), mesh::identity(i, k)),
        None => (mesh::wide_workload(), mesh::wide_identity()),
    };
    let certs = control.pki.issue(&format!("proxy-{name}"), &identity, &[]);
    let cfg = format!(
        "workload: {{name: {name}, identity: \"{identity}\"}}\n{}\ncontrol: {{address: \"https://{}\"}}\n\
         admin: {{bind: \"{{admin}}\"}}\ninbound: {{bind: \"{}\"}}\n",
        crate::pki::tls_section(&certs),
        control.addr,
        crate::process::free_addr(),
    );
    let proxy = Proxy::spawn(&cfg, &[]);
    proxy.wait_ready();
    // Let the snapshot's allocations settle before reading RSS.
    std::thread::sleep(Duration::from_secs(2));
    let services = proxy
        .metrics()
        .lines()
        .filter(|l| l.starts_with("pillion_endpoints{") && l.contains("state=\"healthy\""))
        .count();
    (proxy.fds_and_rss().1, services)
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle.as_bytes())
}

fn drain(streams: &mut Watchers) {
    while streams.lines.try_recv().is_ok() {}
}

fn cpu(pid: u32) -> f64 {
    crate::procstat::cpu_seconds(&[pid])
}

/// VmRSS and VmHWM of `pid`, KiB.
fn memory(pid: u32) -> (u64, u64) {
    let field = |name| crate::procstat::status_kib(pid, name).unwrap_or(0);
    (field("VmRSS"), field("VmHWM"))
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f).await.context("a blocking step panicked")
}

fn progress(what: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "kube-scale: {what}");
}
