//! The scale benchmark never rots: a small mesh through the same code as the full run
//! (`kube-scale`), asserting what it measures is right, never how fast: every simulated proxy is
//! served, every change reaches every proxy it affects and no other, and a real proxy holds its
//! own namespace's services, or the whole mesh's when its workload is annotated to see it.

use pillion_e2e::{
    kube::KubeApi,
    scale::{self, Options, mesh::Shape},
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_small_mesh_runs_through_the_scale_benchmark_and_changes_reach_only_their_proxies() {
    if !KubeApi::can_start_or_skip("kube_scale") {
        return;
    }
    let shape = Shape { namespaces: 3, services: 3, endpoints: 2 };
    let r = scale::run(Options { shape, watchers: 6, changes: 4 }).await.unwrap_or_else(|e| panic!("{e:#}"));
    assert_eq!(r.propagation.len(), 4, "{r:?}");
    assert_eq!(r.affected_per_change, 3, "each namespace's three workloads see its change: {r:?}");
    assert_eq!(r.per_proxy.len(), 4 * 3, "{r:?}");
    assert_eq!((r.missed, r.stray), (0, 0), "only the affected proxies get a change, all of them: {r:?}");
    assert_eq!(r.proxy_narrow.1, shape.services, "{r:?}");
    assert_eq!(r.proxy_wide.1, shape.total_services(), "{r:?}");
    let section = scale::report::section(&r, "now", "test");
    assert!(section.contains("| snapshots pushed to proxies a change did not affect | 0 |"), "{section}");
}
