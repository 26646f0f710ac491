//! Child processes of a test: the proxy and backends, each killed when dropped.

use std::{
    fs,
    net::{SocketAddr, TcpListener, TcpStream},
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Stdio},
    time::{Duration, Instant},
};

/// How long a process gets to come up before the test gives up on it.
const START_WAIT: Duration = Duration::from_secs(30);

/// A free port on 127.0.0.1 for a server to bind. Taken below the kernel's ephemeral range
/// (32768+), so that no client connection of a concurrent test can be holding it, and handed out
/// once per test process.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU16, Ordering};
    const LOW: u16 = 20_000;
    const SPAN: u16 = 12_000;
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let _ = NEXT.compare_exchange(
        0,
        1 + (std::process::id() % u32::from(SPAN)) as u16,
        Ordering::SeqCst,
        Ordering::SeqCst,
    );
    for _ in 0..SPAN {
        let port = LOW + NEXT.fetch_add(1, Ordering::SeqCst) % SPAN;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free loopback port in {LOW}..{}", LOW + SPAN);
}

/// A free `127.0.0.1:PORT` address.
pub fn free_addr() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], free_port()))
}

/// A program on `PATH` or in the sbin directories (where nginx and haproxy live, which a
/// non-root `PATH` may lack).
pub fn find_program(name: &str) -> Option<PathBuf> {
    let path = std::env::var("PATH").unwrap_or_default();
    path.split(':')
        .chain(["/usr/sbin", "/sbin", "/usr/local/sbin"])
        .map(|d| Path::new(d).join(name))
        .find(|p| p.is_file())
}

/// `name` on `PATH`, or in the venv `venv` the setup scripts make under the tools cache
/// (`$PILLION_TOOLS_DIR`, default `~/.cache/pillion/tools`) for tools that come from PyPI.
pub fn find_venv_program(venv: &str, name: &str) -> Option<PathBuf> {
    let tools = std::env::var_os("PILLION_TOOLS_DIR")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| Path::new(&home).join(".cache/pillion/tools")));
    let in_venv = tools.map(|t| t.join(venv).join("bin").join(name));
    find_program(name).or(in_venv.filter(|p| p.is_file()))
}

/// Debian's Python, where `scripts/setup.sh` installs python3-h2 and python3-grpcio (a pyenv
/// shim first on `PATH` may lack them).
pub fn python3() -> &'static str {
    if Path::new("/usr/bin/python3").exists() { "/usr/bin/python3" } else { "python3" }
}

/// Path of a binary built from this workspace (`pillion`, `pillion-certs`, ...), found next to
/// the running executable: `target/<profile>/` for binaries, its parent for test executables.
pub fn workspace_bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    let dir = exe.parent().expect("exe dir");
    for d in [dir, dir.parent().unwrap_or(dir)] {
        let p = d.join(name);
        if p.exists() {
            return p;
        }
    }
    panic!("{name} is not built next to {}; run `cargo build --workspace --bins` first", dir.display());
}

pub(crate) fn wait_for_port(addr: SocketAddr, child: &mut Child, what: &str) {
    let deadline = Instant::now() + START_WAIT;
    while Instant::now() < deadline {
        if TcpStream::connect(addr).is_ok() {
            return;
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("{what} exited before listening on {addr}: {status}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("{what} did not listen on {addr} within {START_WAIT:?}");
}

/// A running `pillion-e2e-backend`.
pub struct Backend {
    /// Where it listens.
    pub addr: SocketAddr,
    child: Child,
}

impl Backend {
    /// Starts a backend named `name` on a free port.
    pub fn start(name: &str) -> Self {
        Self::start_with(name, free_addr(), 0)
    }

    /// Starts a backend with added latency on a given address.
    pub fn start_with(name: &str, addr: SocketAddr, delay_ms: u64) -> Self {
        Self::start_args(name, addr, &["--delay-ms", &delay_ms.to_string()])
    }

    /// Starts a backend that answers every request with `status`.
    pub fn failing(name: &str, status: u16) -> Self {
        Self::start_args(name, free_addr(), &["--fail-status", &status.to_string()])
    }

    fn start_args(name: &str, addr: SocketAddr, extra: &[&str]) -> Self {
        let mut child = Command::new(workspace_bin("pillion-e2e-backend"))
            .args(["--listen", &addr.to_string(), "--name", name])
            .args(extra)
            .stdin(Stdio::null())
            .spawn()
            .expect("spawn backend");
        wait_for_port(addr, &mut child, "backend");
        Self { addr, child }
    }

    /// Kills it now.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A running `pillion run`, with its config file and log in a temporary directory.
pub struct Proxy {
    /// Admin address.
    pub admin: SocketAddr,
    /// The directory holding `config.yaml` and `pillion.log`.
    pub dir: tempfile::TempDir,
    child: Option<Child>,
}

impl Proxy {
    /// Writes `config` (YAML; `{admin}` is replaced by a free admin address) and starts
    /// `pillion run` on it, waiting until `/ready` answers 200.
    pub fn start(config: &str) -> Self {
        Self::start_with_args(config, &[])
    }

    /// As `start`, with extra `pillion run` arguments.
    pub fn start_with_args(config: &str, args: &[&str]) -> Self {
        let proxy = Self::spawn(config, args);
        proxy.wait_ready();
        proxy
    }

    /// Starts `pillion run` and returns once its admin port accepts connections, ready or not.
    pub fn spawn(config: &str, args: &[&str]) -> Self {
        Self::spawn_with_nofile(config, args, None)
    }

    /// As `spawn`, with the open-file limit (`ulimit -n`) set to `nofile` when given.
    pub fn spawn_with_nofile(config: &str, args: &[&str], nofile: Option<u32>) -> Self {
        let mut proxy = Self::launch(config, args, nofile);
        let child = proxy.child.as_mut().expect("just spawned");
        wait_for_port(proxy.admin, child, "pillion");
        proxy
    }

    /// As `spawn`, without waiting for the admin port: for a proxy that is still enrolling
    /// (which it does before it listens).
    pub fn launch_enrolling(config: &str) -> Self {
        Self::launch(config, &[], None)
    }

    fn launch(config: &str, args: &[&str], nofile: Option<u32>) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let admin = free_addr();
        let config = with_outbound_bind(&config.replace("{admin}", &admin.to_string()));
        fs::write(dir.path().join("config.yaml"), config).expect("write config");
        let log = fs::File::create(dir.path().join("pillion.log")).expect("log file");
        let mut cmd = match nofile {
            Some(n) => {
                let mut c = Command::new("prlimit");
                c.arg(format!("--nofile={n}:{n}")).arg(workspace_bin("pillion"));
                c
            }
            None => Command::new(workspace_bin("pillion")),
        };
        let child = cmd
            .arg("run")
            .arg("--config")
            .arg(dir.path().join("config.yaml"))
            .args(args)
            .env("PILLION_LOG", "info,pillion_proxy=debug")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log file"))
            .stderr(log)
            .spawn()
            .expect("spawn pillion");
        Self { admin, dir, child: Some(child) }
    }

    /// Waits (bounded) until `/ready` answers 200.
    pub fn wait_ready(&self) {
        let deadline = Instant::now() + START_WAIT;
        while Instant::now() < deadline {
            if crate::client::get_status(self.admin, "/ready") == Some(200) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("pillion never became ready; log:\n{}", self.log());
    }

    /// The config file path.
    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("config.yaml")
    }

    /// Replaces the config file atomically (write then rename), as an operator or a ConfigMap
    /// update would. The transparent listener keeps the address it was started with.
    pub fn write_config(&self, config: &str) {
        let bound = fs::read_to_string(self.config_path()).unwrap_or_default();
        let outbound =
            bound.lines().find_map(|l| l.strip_prefix(OUTBOUND_BIND_MARK)).unwrap_or_default().to_owned();
        let config = inject_outbound_bind(&config.replace("{admin}", &self.admin.to_string()), &outbound);
        let tmp = self.dir.path().join("config.yaml.tmp");
        fs::write(&tmp, config).expect("write config");
        fs::rename(&tmp, self.config_path()).expect("replace config");
    }

    /// Everything the proxy logged so far.
    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("pillion.log")).unwrap_or_default()
    }

    /// The admin `/metrics` text.
    pub fn metrics(&self) -> String {
        crate::client::get_text(self.admin, "/metrics").unwrap_or_default()
    }

    /// The value of one sample line of `/metrics`, matched by name and label substrings.
    pub fn metric(&self, name: &str, labels: &[&str]) -> Option<f64> {
        metric_value(&self.metrics(), name, labels)
    }

    /// Waits (up to 30 s, polling) until the metric's value satisfies `ok`, and returns it;
    /// panics naming `what` and the last value otherwise. For counts that settle a moment after
    /// the client has seen the effect (a connection's gauge drops when its task ends, just after
    /// the peer has read the close).
    pub fn wait_metric(&self, name: &str, labels: &[&str], what: &str, ok: impl Fn(f64) -> bool) -> f64 {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let value = self.metric(name, labels);
            if let Some(v) = value.filter(|v| ok(*v)) {
                return v;
            }
            assert!(Instant::now() < deadline, "{what}: {name}{labels:?} is {value:?} after 30 s");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The proxy's process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// Open file descriptors and resident memory (KiB) of the proxy process, from /proc.
    pub fn fds_and_rss(&self) -> (usize, u64) {
        let pid = self.pid();
        let fds = fs::read_dir(format!("/proc/{pid}/fd")).map(|d| d.count()).unwrap_or(0);
        let rss = crate::procstat::status_kib(pid, "VmRSS").unwrap_or(0);
        (fds, rss)
    }

    /// Sends a signal (e.g. `"TERM"`, `"HUP"`) to the proxy.
    pub fn signal(&self, sig: &str) {
        let pid = self.child.as_ref().expect("running").id();
        let ok = Command::new("kill").args([&format!("-{sig}"), &pid.to_string()]).status().expect("kill");
        assert!(ok.success(), "kill -{sig} {pid}");
    }

    /// Waits for the process to exit, up to `limit`.
    pub fn wait_exit(&mut self, limit: Duration) -> ExitStatus {
        let child = self.child.as_mut().expect("running");
        let deadline = Instant::now() + limit;
        loop {
            if let Some(s) = child.try_wait().expect("wait") {
                self.child = None;
                return s;
            }
            assert!(Instant::now() < deadline, "pillion did not exit within {limit:?}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Path of the test's temporary directory.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        if std::thread::panicking() {
            eprintln!("--- pillion log ({}) ---\n{}", self.dir.path().display(), self.log());
        }
    }
}

const OUTBOUND_BIND_MARK: &str = "# e2e outbound bind: ";

/// Gives the transparent outbound listener a free port unless the config names one, so that
/// tests running side by side do not all fight for 127.0.0.1:15001.
fn with_outbound_bind(config: &str) -> String {
    if config.contains("# keep outbound bind") {
        return config.to_owned();
    }
    inject_outbound_bind(config, &free_addr().to_string())
}

fn inject_outbound_bind(config: &str, addr: &str) -> String {
    if addr.is_empty() {
        return config.to_owned();
    }
    let mut out = format!("{OUTBOUND_BIND_MARK}{addr}\n");
    let mut done = false;
    for line in config.lines() {
        if !done && line.starts_with("outbound:") {
            done = true;
            match line.strip_prefix("outbound: {") {
                Some(rest) => out.push_str(&format!("outbound: {{bind: \"{addr}\", {rest}\n")),
                None => out.push_str(&format!("{line}\n  bind: \"{addr}\"\n")),
            }
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    if !done {
        out.push_str(&format!("outbound: {{bind: \"{addr}\"}}\n"));
    }
    out
}

/// Finds `name{...labels...} VALUE` in Prometheus text; every label substring must appear.
pub fn metric_value(text: &str, name: &str, labels: &[&str]) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| l.split(['{', ' ']).next() == Some(name))
        .filter(|l| labels.iter().all(|lab| l.contains(lab)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .reduce(|a, b| a + b)
}

/// Runs `pillion check --config FILE` and returns (success, stderr).
pub fn pillion_check(file: &Path) -> (bool, String) {
    let out = Command::new(workspace_bin("pillion"))
        .arg("check")
        .arg("--config")
        .arg(file)
        .output()
        .expect("run check");
    (out.status.success(), String::from_utf8_lossy(&out.stderr).into_owned())
}
