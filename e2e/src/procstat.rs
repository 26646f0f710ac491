//! What `/proc` says of running processes: CPU time and resident memory of a process and all
//! its descendants (nginx's workers, a shell's children), for the benchmarks.

use std::process::Command;

/// `pid` and all its descendants.
pub fn process_tree(pid: u32) -> Vec<u32> {
    let mut all = vec![pid];
    let mut i = 0;
    while i < all.len() {
        let p = all[i];
        let tasks = std::fs::read_dir(format!("/proc/{p}/task")).into_iter().flatten();
        for task in tasks.flatten() {
            let children = std::fs::read_to_string(task.path().join("children")).unwrap_or_default();
            all.extend(children.split_whitespace().filter_map(|c| c.parse::<u32>().ok()));
        }
        i += 1;
    }
    all
}

/// CPU time (user + system) used so far by these processes and their descendants, in seconds.
pub fn cpu_seconds(pids: &[u32]) -> f64 {
    let ticks: u64 = pids.iter().flat_map(|p| process_tree(*p)).filter_map(stat_ticks).sum();
    ticks as f64 / clock_ticks_per_second()
}

/// utime + stime of one process, in clock ticks.
fn stat_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces; the fields after its closing ')' start at
    // field 3 (state), so utime (14) and stime (15) are at 11 and 12.
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
}

fn clock_ticks_per_second() -> f64 {
    static TICKS: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
            .unwrap_or(100.0)
    })
}

/// Resident memory (VmRSS) of these processes and their descendants, in KiB.
pub fn rss_kib(pids: &[u32]) -> u64 {
    pids.iter().flat_map(|p| process_tree(*p)).filter_map(|p| status_kib(p, "VmRSS")).sum()
}

/// A `kB` field of `/proc/PID/status` (`VmRSS`, `VmHWM`, ...), when the process exists.
pub fn status_kib(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let value = status.lines().find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))?;
    value.trim().trim_end_matches("kB").trim().parse().ok()
}
