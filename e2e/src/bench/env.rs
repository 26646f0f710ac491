//! The machine and the tools: installing what is missing (`scripts/bench-setup.sh`) and
//! describing the machine, the tool versions and the date for the report.

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use anyhow::{Result, bail};

use super::procs;

/// The workspace root (where `BENCHMARKS.md` goes by default).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("e2e sits in the workspace").to_owned()
}

/// Runs `scripts/bench-setup.sh`, which installs only the missing Debian packages.
pub fn setup() -> Result<()> {
    let script = workspace_root().join("scripts/bench-setup.sh");
    let out = procs::run_bounded(Command::new("bash").arg(&script), Duration::from_secs(15 * 60))?;
    eprint!("{}", String::from_utf8_lossy(&out.stderr));
    if !out.status.success() {
        bail!(
            "{} failed ({}): the benchmark needs wrk, h2load, nginx and haproxy",
            script.display(),
            out.status
        );
    }
    Ok(())
}

/// What the report says about where it ran.
pub struct Machine {
    pub cores: usize,
    pub cpu: String,
    pub kernel: String,
    pub date: String,
    pub loadavg: String,
    /// (tool, version line).
    pub tools: Vec<(&'static str, String)>,
}

impl Machine {
    /// Reads `/proc` and asks each tool its version. Call before pinning the bench process, or
    /// the core count would be 1.
    pub fn probe(pillion: &Path) -> Self {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu = cpuinfo
            .lines()
            .find_map(|l| l.strip_prefix("model name"))
            .and_then(|l| l.split_once(':'))
            .map(|(_, m)| m.trim().to_owned())
            .unwrap_or_else(|| "unknown".into());
        let tools = vec![
            ("pillion", version(pillion.to_str().unwrap_or("pillion"), &["--version"])),
            ("wrk", version("wrk", &["--version"])),
            ("h2load", version("h2load", &["--version"])),
            ("nginx", version_of_sbin("nginx", &["-v"])),
            ("haproxy", version_of_sbin("haproxy", &["-v"])),
            ("envoy", envoy_version()),
            ("gnuplot", version("gnuplot", &["--version"])),
        ];
        Self {
            cores: std::thread::available_parallelism().map_or(0, |n| n.get()),
            cpu,
            kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
                .unwrap_or_default()
                .trim()
                .to_owned(),
            date: first_line("date", &["-u", "+%Y-%m-%d %H:%M UTC"]).unwrap_or_default(),
            loadavg: std::fs::read_to_string("/proc/loadavg")
                .unwrap_or_default()
                .split_whitespace()
                .take(3)
                .collect::<Vec<_>>()
                .join(", "),
            tools,
        }
    }
}

/// Envoy's version line, without the path to the binary it starts with.
fn envoy_version() -> String {
    let Some(p) = super::envoy::program() else { return "not installed".into() };
    let line = version(p.to_str().unwrap_or("envoy"), &["--version"]);
    line.split_once("version: ").map_or(line.clone(), |(_, v)| format!("envoy {v}"))
}

fn version_of_sbin(name: &str, args: &[&str]) -> String {
    match procs::find_program(name) {
        Some(p) => version(p.to_str().unwrap_or(name), args),
        None => "not installed".into(),
    }
}

fn version(program: &str, args: &[&str]) -> String {
    first_line(program, args).unwrap_or_else(|| "not installed".into())
}

/// First non-empty line a command prints, on stdout or stderr (nginx -v and wrk --version use
/// stderr or exit non-zero).
fn first_line(program: &str, args: &[&str]) -> Option<String> {
    let out = procs::run_bounded(Command::new(program).args(args), Duration::from_secs(10)).ok()?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    text.lines().map(str::trim).find(|l| !l.is_empty()).map(str::to_owned)
}
