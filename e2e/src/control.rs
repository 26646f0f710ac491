//! A running `pillion-control` for tests: its CA, bootstrap tokens (one per enrolled workload,
//! made by `pillion-control token`) and config directory in a temporary directory, HTTPS on a
//! free port, driven with curl (`-k`: the control plane's certificate carries a SPIFFE ID, not a
//! DNS name), killed when dropped.

use std::{
    collections::BTreeMap,
    fs,
    io::Write,
    net::{SocketAddr, TcpStream},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

mod watch;

pub use watch::WatchStream;

use crate::{client::curl_status, pki::Pki, process::free_addr, workspace_bin};

/// A running `pillion-control serve`.
pub struct Control {
    /// HTTPS address.
    pub addr: SocketAddr,
    /// The CA it signs with (`pki.dir/ca`), also usable to issue test certificates.
    pub pki: Pki,
    /// Holds `config/`, `tokens` (the control plane's token file), `token-WORKLOAD` (each
    /// workload's own token, as its pods would mount it), `control.log` and the PKI.
    pub dir: tempfile::TempDir,
    tokens: BTreeMap<String, String>,
    child: Option<Child>,
    keepalive: String,
    cert_ttl: String,
    /// More environment for `serve` (the Kubernetes source's settings).
    env: Vec<(String, String)>,
}

impl Control {
    /// Writes `files` (name, YAML) into a fresh config directory, makes a bootstrap token for
    /// each of `enrolled` (workload names), and starts the control plane with a `keepalive`
    /// interval, waiting until `/v1/status` answers.
    pub fn start(files: &[(&str, &str)], enrolled: &[&str], keepalive: &str) -> Self {
        Self::start_with_env(files, enrolled, keepalive, Vec::new(), free_addr())
    }

    /// As [`Control::start`], with the Kubernetes source on (`--kubernetes --kubeconfig FILE`):
    /// `files` become the directory laid over the cluster's model.
    pub fn start_kubernetes(kubeconfig: &Path, files: &[(&str, &str)]) -> Self {
        Self::start_kubernetes_with(kubeconfig, files, &["web.shop"], free_addr(), "1s")
    }

    /// As [`Control::start_kubernetes`], with watch streams kept alive every `keepalive`.
    pub fn start_kubernetes_with_keepalive(
        kubeconfig: &Path,
        files: &[(&str, &str)],
        keepalive: &str,
    ) -> Self {
        Self::start_kubernetes_with(kubeconfig, files, &["web.shop"], free_addr(), keepalive)
    }

    /// As [`Control::start_kubernetes`], serving on `addr` (e.g. the host's address on a pods'
    /// bridge, see `Network::attach_host`), with bootstrap tokens for `enrolled` (`SA.NS`).
    pub fn start_kubernetes_at(
        kubeconfig: &Path,
        files: &[(&str, &str)],
        enrolled: &[&str],
        addr: SocketAddr,
    ) -> Self {
        Self::start_kubernetes_with(kubeconfig, files, enrolled, addr, "1s")
    }

    fn start_kubernetes_with(
        kubeconfig: &Path,
        files: &[(&str, &str)],
        enrolled: &[&str],
        addr: SocketAddr,
        keepalive: &str,
    ) -> Self {
        let env = vec![
            ("PILLION_CONTROL_KUBERNETES".to_owned(), "true".to_owned()),
            ("PILLION_CONTROL_KUBECONFIG".to_owned(), kubeconfig.display().to_string()),
        ];
        // A token file may not be empty: tests that never enrol still get one workload's token.
        Self::start_with_env(files, enrolled, keepalive, env, addr)
    }

    fn start_with_env(
        files: &[(&str, &str)],
        enrolled: &[&str],
        keepalive: &str,
        env: Vec<(String, String)>,
        addr: SocketAddr,
    ) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let pki = Pki::new(dir.path(), "pki");
        let config = dir.path().join("config");
        fs::create_dir_all(&config).expect("config dir");
        for (name, text) in files {
            fs::write(config.join(name), text).expect("write config file");
        }
        let mut tokens = BTreeMap::new();
        let mut file = fs::File::create(dir.path().join("tokens")).expect("token file");
        for workload in enrolled {
            let (token, lines) = make_token(workload);
            file.write_all(lines.as_bytes()).expect("write the token file");
            fs::write(dir.path().join(format!("token-{workload}")), format!("{token}\n")).expect("token");
            tokens.insert((*workload).to_owned(), token);
        }
        let mut control = Self {
            addr,
            pki,
            dir,
            tokens,
            child: None,
            keepalive: keepalive.to_owned(),
            cert_ttl: "24h".into(),
            env,
        };
        control.spawn();
        control
    }

    fn spawn(&mut self) {
        let dir = self.dir.path();
        let log =
            fs::OpenOptions::new().create(true).append(true).open(dir.join("control.log")).expect("log file");
        let child = Command::new(workspace_bin("pillion-control"))
            .arg("serve")
            .env("PILLION_CONTROL_CONFIG_DIR", dir.join("config"))
            .env("PILLION_CA_DIR", self.pki.dir.join("ca"))
            .env("PILLION_CONTROL_BIND", self.addr.to_string())
            .env("PILLION_CONTROL_TOKEN_FILE", dir.join("tokens"))
            .env("PILLION_CONTROL_KEEPALIVE", &self.keepalive)
            .env("PILLION_CONTROL_CERT_TTL", &self.cert_ttl)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .env("PILLION_LOG", "info,pillion_control=debug")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log file"))
            .stderr(log)
            .spawn()
            .expect("spawn pillion-control");
        self.child = Some(child);
        self.wait_up();
    }

    /// Restarts it signing certificates valid for `ttl` (e.g. `"9s"` to see renewals).
    pub fn set_cert_ttl(&mut self, ttl: &str) {
        self.cert_ttl = ttl.to_owned();
        self.restart();
    }

    /// Kills the control plane (as a crash would).
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts it again on the same address, CA and config directory.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    fn wait_up(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if TcpStream::connect(self.addr).is_ok() && self.get("/v1/status", None).0 == 200 {
                return;
            }
            if let Some(Ok(Some(status))) = self.child.as_mut().map(Child::try_wait) {
                panic!("pillion-control exited: {status}\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("pillion-control did not come up on {}:\n{}", self.addr, self.log());
    }

    /// The config directory.
    pub fn config_dir(&self) -> PathBuf {
        self.dir.path().join("config")
    }

    /// `workload`'s bootstrap token (it must be one of those enrolled at start).
    pub fn token(&self, workload: &str) -> &str {
        self.tokens.get(workload).unwrap_or_else(|| panic!("no token was made for {workload}"))
    }

    /// The file holding only `workload`'s bootstrap token, for its proxies' `control.token_file`.
    pub fn token_file(&self, workload: &str) -> PathBuf {
        self.token(workload);
        self.dir.path().join(format!("token-{workload}"))
    }

    /// `-H "Authorization: Bearer TOKEN"` curl arguments with `workload`'s token.
    pub fn bearer(&self, workload: &str) -> [String; 2] {
        ["-H".into(), format!("Authorization: Bearer {}", self.token(workload))]
    }

    /// Replaces (or adds) one config file atomically, as an operator's tooling would.
    pub fn write(&self, name: &str, text: &str) {
        let tmp = self.config_dir().join(format!(".{name}.tmp"));
        fs::write(&tmp, text).expect("write config file");
        fs::rename(&tmp, self.config_dir().join(name)).expect("replace config file");
    }

    /// `https://ADDR{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("https://{}{path}", self.addr)
    }

    /// `GET path`, with a client certificate directory (cert.pem, key.pem) if given.
    pub fn get(&self, path: &str, cert: Option<&Path>) -> (u16, String) {
        let mut args = vec!["-k".to_owned(), "-m".to_owned(), "10".to_owned()];
        args.extend(cert_args(cert));
        args.push(self.url(path));
        curl_status(&args.iter().map(String::as_str).collect::<Vec<_>>())
    }

    /// `POST path` with a body file and extra curl arguments (headers).
    pub fn post(&self, path: &str, cert: Option<&Path>, body: &Path, extra: &[&str]) -> (u16, String) {
        let mut args = vec!["-k".to_owned(), "-m".to_owned(), "10".to_owned()];
        args.extend(cert_args(cert));
        args.extend(["--data-binary".to_owned(), format!("@{}", body.display())]);
        args.extend(extra.iter().map(|s| (*s).to_owned()));
        args.push(self.url(path));
        curl_status(&args.iter().map(String::as_str).collect::<Vec<_>>())
    }

    /// `/v1/status` as JSON.
    pub fn status(&self) -> serde_json::Value {
        let (code, body) = self.get("/v1/status", None);
        assert_eq!(code, 200, "{body}");
        serde_json::from_str(&body).expect("status is JSON")
    }

    /// The running control plane's process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// Everything the control plane logged so far.
    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("control.log")).unwrap_or_default()
    }
}

/// Runs `pillion-control token --workload WORKLOAD`: the token (its stdout) and the text to
/// append to the control plane's token file (its stderr: comments and the digest line).
pub fn make_token(workload: &str) -> (String, String) {
    let out = Command::new(workspace_bin("pillion-control"))
        .args(["token", "--workload", workload])
        .output()
        .expect("run pillion-control token");
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "pillion-control token failed: {stdout}{stderr}");
    (stdout.trim().to_owned(), stderr.into_owned())
}

/// Starts `pillion-control serve` with a token file holding `token_file` (and a good CA and
/// config directory), expecting it to refuse to start: its exit status, its stderr and the token
/// file's path. Panics if it is still running after 20 seconds.
pub fn serve_refused(token_file: &str) -> (std::process::ExitStatus, String, PathBuf) {
    let tmp = tempfile::tempdir().expect("temp dir");
    let dir = tmp.path();
    let pki = Pki::new(dir, "pki");
    fs::create_dir_all(dir.join("config")).expect("config dir");
    let file = dir.join("tokens");
    fs::write(&file, token_file).expect("write token file");
    let mut child = Command::new(workspace_bin("pillion-control"))
        .arg("serve")
        .args(["--config-dir", &dir.join("config").display().to_string()])
        .args(["--ca", &pki.dir.join("ca").display().to_string()])
        .args(["--bind", &free_addr().to_string(), "--token-file", &file.display().to_string()])
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn pillion-control");
    let deadline = Instant::now() + Duration::from_secs(20);
    while child.try_wait().expect("wait").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("pillion-control serve started with token file {token_file:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().expect("collect output");
    (out.status, String::from_utf8_lossy(&out.stderr).into_owned(), file)
}

fn cert_args(cert: Option<&Path>) -> Vec<String> {
    match cert {
        Some(dir) => vec![
            "--cert".into(),
            dir.join("cert.pem").display().to_string(),
            "--key".into(),
            dir.join("key.pem").display().to_string(),
        ],
        None => Vec::new(),
    }
}

impl Drop for Control {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        if std::thread::panicking() {
            eprintln!("--- pillion-control log ({}) ---\n{}", self.dir.path().display(), self.log());
        }
    }
}
