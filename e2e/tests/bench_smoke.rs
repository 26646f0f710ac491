//! The benchmark never rots: `bench --smoke` runs every configuration for about a second and
//! writes its report. No speed is asserted here, ever: only that it ran, covered every
//! configuration in each of its layouts (`proxy`, and `pod` for the single-hop ones) and that
//! each passed its correctness check.

use std::{
    path::Path,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use pillion_e2e::workspace_bin;

/// (configuration, layout) rows every report has (the mTLS row depends on the mTLS issue).
const CONFIGURATIONS: [(&str, &str); 11] = [
    ("direct", "proxy"),
    ("direct", "pod"),
    ("pillion", "proxy"),
    ("pillion", "pod"),
    ("nginx", "proxy"),
    ("nginx", "pod"),
    ("haproxy", "proxy"),
    ("haproxy", "pod"),
    ("envoy", "proxy"),
    ("envoy", "pod"),
    ("pillion x2 plain", "proxy"),
];
/// Longest a smoke run may take.
const LIMIT: Duration = Duration::from_secs(300);

#[test]
fn bench_smoke_measures_every_configuration_after_its_correctness_check() {
    if !tools_installed() {
        pillion_e2e::skip("needs packages", "bench_smoke");
        return;
    }
    // The bench runs the workspace's binaries found next to it; fail clearly if not built.
    workspace_bin("pillion");
    let dir = tempfile::tempdir().expect("temp dir");
    let report = dir.path().join("BENCHMARKS.md");
    let status = run_bench(&report);
    let text = std::fs::read_to_string(&report).unwrap_or_default();
    assert!(status, "bench --smoke failed; report so far:\n{text}");

    for (name, layout) in CONFIGURATIONS {
        let row = format!("| {name} | {layout} |");
        assert!(text.lines().any(|l| l.starts_with(&row)), "no row for {name} ({layout}):\n{text}");
    }
    let correctness = text
        .split("## Correctness")
        .nth(1)
        .and_then(|s| s.split("\n## ").next())
        .expect("a Correctness section");
    for (name, layout) in CONFIGURATIONS {
        assert!(
            correctness.contains(&format!("| {name} | {layout} | passed |")),
            "{name} ({layout}) did not pass its correctness check:\n{correctness}"
        );
    }
    assert!(!text.contains("FAILED"), "{text}");
}

/// Runs `bench --smoke --out REPORT` within [`LIMIT`]; whether it exited 0.
fn run_bench(report: &Path) -> bool {
    let mut child = Command::new(env!("CARGO_BIN_EXE_bench"))
        .args(["--smoke", "--skip-setup", "--out"])
        .arg(report)
        .stdout(Stdio::null())
        .spawn()
        .expect("start bench");
    let deadline = Instant::now() + LIMIT;
    loop {
        if let Some(status) = child.try_wait().expect("wait for bench") {
            return status.success();
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("bench --smoke did not finish within {LIMIT:?}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Runs `scripts/bench-setup.sh`, which installs what is missing when it can (as root): whether
/// wrk, h2load, nginx and haproxy are there afterwards (and Envoy, whose rows the test expects).
fn tools_installed() -> bool {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/bench-setup.sh");
    Command::new("bash").arg(script).stdout(Stdio::null()).status().is_ok_and(|s| s.success())
}
