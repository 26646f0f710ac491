//! Finding the kube-apiserver and etcd binaries (and the Gateway API CRDs) that
//! `scripts/kube-tools.sh` builds from Go modules into its cache directory. The script is the
//! one place that knows the directory's name and what counts as built, so the harness asks it
//! rather than repeating that logic.

use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::OnceLock,
};

/// Set to a directory holding `kube-apiserver`, `etcd` and `gateway-api/` to use those instead
/// of the script's cache (e.g. binaries built some other way).
pub const TOOLS_ENV: &str = "PILLION_KUBE_TOOLS";

/// The script's exit status for "go is not installed": the one reason to skip rather than fail.
const NO_GO: i32 = 3;

/// The built tools.
#[derive(Debug, Clone)]
pub struct KubeTools {
    pub dir: PathBuf,
}

/// Why the tools are not there.
#[derive(Debug, Clone)]
pub enum Unavailable {
    /// Nothing to build them with: a reason to skip (which CI counts as a failure).
    NoGo(String),
    /// The build, or the directory, is broken: a reason to fail.
    Broken(String),
}

impl KubeTools {
    pub fn kube_apiserver(&self) -> PathBuf {
        self.dir.join("kube-apiserver")
    }

    pub fn etcd(&self) -> PathBuf {
        self.dir.join("etcd")
    }

    /// The standard-channel Gateway API CRD files.
    pub fn gateway_crd(&self, file: &str) -> PathBuf {
        self.dir.join("gateway-api").join(file)
    }

    /// The tools, building them first if this machine has not yet (minutes, once; the script
    /// says so on stderr, which the test harness does not capture). Asked once per process.
    pub fn get() -> Result<KubeTools, Unavailable> {
        static TOOLS: OnceLock<Result<KubeTools, Unavailable>> = OnceLock::new();
        TOOLS.get_or_init(locate).clone()
    }
}

fn locate() -> Result<KubeTools, Unavailable> {
    if let Some(dir) = std::env::var_os(TOOLS_ENV) {
        return check(PathBuf::from(dir), &format!("${TOOLS_ENV}"));
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("e2e/ is inside the workspace");
    let script = root.join("scripts/kube-tools.sh");
    // stdout carries the directory; stderr (build progress, errors) goes straight to the terminal.
    let out = Command::new(&script)
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| Unavailable::Broken(format!("cannot run {}: {e}", script.display())))?;
    match out.status.code() {
        Some(0) => {}
        Some(NO_GO) => {
            return Err(Unavailable::NoGo(format!(
                "go is not installed, so {} cannot build kube-apiserver and etcd",
                script.display()
            )));
        }
        _ => return Err(Unavailable::Broken(format!("{} failed ({})", script.display(), out.status))),
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    let dir = stdout.lines().last().unwrap_or_default().trim();
    check(PathBuf::from(dir), &script.display().to_string())
}

fn check(dir: PathBuf, from: &str) -> Result<KubeTools, Unavailable> {
    let tools = KubeTools { dir };
    for needed in [tools.kube_apiserver(), tools.etcd(), tools.dir.join("gateway-api")] {
        if !needed.exists() {
            return Err(Unavailable::Broken(format!(
                "{} (from {from}) is missing; run scripts/kube-tools.sh",
                needed.display()
            )));
        }
    }
    Ok(tools)
}
