//! The scale benchmark's section of BENCHMARKS.md: written in place of the last run's section
//! (or appended), leaving the rest of the file as it is.

use std::{fmt::Write, path::Path, time::Duration};

use anyhow::{Context, Result};

use super::Results;

/// The section's heading; the section runs to the next `## ` heading.
pub const HEADING: &str = "## The control plane at scale";

/// The section for `r`, measured on `when` (a date and time) by `command`.
pub fn section(r: &Results, when: &str, command: &str) -> String {
    let mut out = String::new();
    let shape = r.shape.unwrap_or(super::mesh::Shape { namespaces: 0, services: 0, endpoints: 0 });
    let _ = write!(
        out,
        "{HEADING}\n\n{when}, made by `{command}`. A real kube-apiserver and etcd on loopback hold \
         {} Services in {} namespaces, each with one EndpointSlice of {} ready endpoints whose Pods \
         run as the Service's own ServiceAccount ({} objects in all); `pillion-control --kubernetes` \
         watches them, and {} simulated proxies (one per workload: mutual TLS with the workload's \
         certificate, `GET /v1/watch/WORKLOAD`, every line time-stamped on arrival) follow their \
         snapshots. Each workload sees the {} Services of its own namespace. A change moves one \
         endpoint of one Service to a new address (a Pod restarted elsewhere); the {} proxies of \
         that namespace must get it, and no other proxy may be pushed anything. The CPU and \
         memory figures are the control plane's process alone.\n\n",
        shape.total_services(),
        shape.namespaces,
        shape.endpoints,
        r.objects,
        r.watchers,
        shape.services,
        r.affected_per_change,
    );
    let _ = writeln!(out, "| measure | value |\n|---|---:|");
    let mut row = |name: &str, value: String| {
        let _ = writeln!(out, "| {name} | {value} |");
    };
    row("objects written through the API", format!("{} in {:.1} s", r.objects, r.load_secs));
    row("control plane start to every workload published", secs(r.published_secs));
    row(&format!("watchers opened to all {} served their first snapshot", r.watchers), secs(r.first_snapshots_secs));
    row("control-plane CPU from start to all served", secs(r.sync_cpu_secs));
    row(
        &format!("change to its last affected proxy, p50 / p90 / max over {} changes", r.propagation.len()),
        percentiles(&r.propagation),
    );
    row("change to each affected proxy, p50 / p90 / max", percentiles(&r.per_proxy));
    row("affected proxies that never got a change", r.missed.to_string());
    row("snapshots pushed to proxies a change did not affect", r.stray.to_string());
    row("control-plane CPU per change", format!("{:.1} ms", r.change_cpu_ms));
    row(
        &format!("control-plane CPU, idle with every stream open (keep-alive {})", super::KEEPALIVE),
        format!("{:.2} ms/s", r.idle_cpu_ms_per_s),
    );
    row("control-plane RSS with every stream open (peak)", format!("{} ({})", mib(r.control_rss_kib), mib(r.control_peak_kib)));
    row("streams reopened (refused before publication, or broken)", r.reopened.to_string());
    row(
        &format!("one proxy's RSS, its own namespace in view ({} services)", r.proxy_narrow.1),
        mib(r.proxy_narrow.0),
    );
    row(&format!("one proxy's RSS, the whole mesh in view ({} services)", r.proxy_wide.1), mib(r.proxy_wide.0));
    out.push_str(
        "\nA change waits out the control plane's 100 ms settle time (a burst of events is \
         translated once) before it is translated and pushed.\n",
    );
    out
}

/// This section as the file at `path` has it, if it does: for a writer that rewrites the rest.
pub fn existing(path: &Path) -> Option<String> {
    let old = std::fs::read_to_string(path).ok()?;
    span(&old).map(|(start, end)| old[start..end].to_owned())
}

/// Writes `section` into the file at `path` in place of its old one, or at its end.
pub fn splice(path: &Path, section: &str) -> Result<()> {
    let old = std::fs::read_to_string(path).unwrap_or_default();
    let new = match span(&old) {
        Some((start, end)) => format!("{}{}{}", &old[..start], section, &old[end..]),
        None if old.is_empty() => section.to_owned(),
        None => format!("{}\n\n{section}", old.trim_end_matches('\n')),
    };
    std::fs::write(path, new).with_context(|| format!("write {}", path.display()))
}

/// Where the section is in `text`: its heading up to the next `## ` heading or the end.
fn span(text: &str) -> Option<(usize, usize)> {
    let start = text.find(HEADING)?;
    let after = start + HEADING.len();
    Some((start, text[after..].find("\n## ").map_or(text.len(), |i| after + i + 1)))
}

fn secs(s: f64) -> String {
    format!("{s:.1} s")
}

fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

fn percentiles(samples: &[Duration]) -> String {
    if samples.is_empty() {
        return "-".into();
    }
    let mut sorted = samples.to_vec();
    sorted.sort();
    let at = |q: f64| sorted[((sorted.len() - 1) as f64 * q).round() as usize];
    let ms = |d: Duration| format!("{} ms", d.as_millis());
    format!("{} / {} / {}", ms(at(0.5)), ms(at(0.9)), ms(at(1.0)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_section_replaces_the_old_one_and_keeps_the_rest() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("B.md");
        std::fs::write(&path, format!("# B\n\n## One\n\nx\n\n{HEADING}\n\nold\n\n## Two\n\ny\n")).expect("write");
        splice(&path, &format!("{HEADING}\n\nnew\n\n")).expect("splice");
        let text = std::fs::read_to_string(&path).expect("read");
        assert_eq!(text, format!("# B\n\n## One\n\nx\n\n{HEADING}\n\nnew\n\n## Two\n\ny\n"));
        std::fs::write(&path, "# B\n").expect("write");
        splice(&path, &format!("{HEADING}\n\nnew\n")).expect("splice");
        assert_eq!(std::fs::read_to_string(&path).expect("read"), format!("# B\n\n{HEADING}\n\nnew\n"));
    }
}
