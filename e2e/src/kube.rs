//! A real Kubernetes control plane for tests: etcd and kube-apiserver (built from Go modules by
//! `scripts/kube-tools.sh`, see [`tools`]) on free loopback ports, with a fresh cluster CA, an
//! admin kubeconfig, service-account token signing and the Gateway API CRDs installed. No
//! controller-manager, scheduler or kubelet: objects are stored and served, nothing acts on them
//! (no namespace gets a `default` ServiceAccount, deleted namespaces stay Terminating, Pods are
//! never scheduled). Everything lives in a temporary directory and dies with the [`KubeApi`].
//!
//! ```ignore
//! let Some(kube) = KubeApi::start_or_skip("my_test").await else { return };
//! let client = kube.client().await?;
//! ```

pub mod certs;
pub mod crds;
pub mod objects;
pub mod pods;
pub mod tools;

use std::{
    fs,
    io::Write,
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use ::kube::{
    Client, Config,
    config::{KubeConfigOptions, Kubeconfig},
};
use anyhow::{Context, Result, bail};
use tempfile::TempDir;

pub use self::{
    certs::{ADMIN_USER, KubeCerts},
    tools::KubeTools,
};
use crate::process::free_addr;

/// The issuer (`iss`) of the service-account tokens this API server signs.
pub const SA_ISSUER: &str = "https://kubernetes.default.svc.cluster.local";
/// Service ClusterIPs are allocated from here. Only ever stored as data: nothing routes to them
/// and no test may send traffic there (there is no kube-proxy).
pub const SERVICE_CIDR: &str = "10.96.0.0/24";
/// Set (to anything) to keep each harness's directory (logs, certificates, etcd data) after the
/// test, for a look at what the API server said.
pub const KEEP_ENV: &str = "PILLION_KEEP_KUBE";
/// How long etcd, and then the API server, get to become ready. Generous: on two shared cores the
/// API server's start (bootstrap RBAC, priority-and-fairness config, OpenAPI) takes seconds.
const START_WAIT: Duration = Duration::from_secs(120);

/// etcd and kube-apiserver, running. Dropping it kills both and removes their data.
pub struct KubeApi {
    tools: KubeTools,
    certs: KubeCerts,
    kubeconfig: PathBuf,
    etcd_client: SocketAddr,
    apiserver_addr: SocketAddr,
    /// `--service-cluster-ip-range`, kept for restarts.
    service_cidr: String,
    etcd: Child,
    /// `None` while stopped by [`KubeApi::stop_apiserver`].
    apiserver: Option<Child>,
    /// Removed (after `Drop::drop` has killed the processes writing into it) unless
    /// [`KEEP_ENV`] is set.
    dir: TempDir,
}

impl KubeApi {
    /// Starts a control plane, or, when the tools cannot be had on this machine (no Go to build
    /// them), says SKIPPED for `test` (which fails a CI run) and returns `None`. Panics on any
    /// other failure, with the logs.
    pub async fn start_or_skip(test: &str) -> Option<KubeApi> {
        if !Self::can_start_or_skip(test) {
            return None;
        }
        Some(KubeApi::start().await.unwrap_or_else(|e| panic!("{e:#}")))
    }

    /// Whether the tools are here (built if need be), or, when they cannot be had, says SKIPPED
    /// for `test` and returns false; for a test that starts its API server some other way.
    pub fn can_start_or_skip(test: &str) -> bool {
        match KubeTools::get() {
            Ok(_) => true,
            Err(tools::Unavailable::NoGo(why)) => {
                crate::skip("needs go", &format!("{test} ({why})"));
                false
            }
            Err(tools::Unavailable::Broken(why)) => panic!("kube tools: {why}"),
        }
    }

    /// Starts etcd, then kube-apiserver against it, waits for `/readyz`, and installs the
    /// Gateway API CRDs (see [`crds`]). Errors carry the tail of the failing process's log.
    pub async fn start() -> Result<KubeApi> {
        Self::start_with_service_cidr(SERVICE_CIDR).await
    }

    /// As [`KubeApi::start`], allocating ClusterIPs from `cidr` (the default /24 holds 254
    /// Services; the scale benchmark needs thousands).
    pub async fn start_with_service_cidr(cidr: &str) -> Result<KubeApi> {
        let begun = Instant::now();
        let tools = KubeTools::get().map_err(|e| anyhow::anyhow!("kube tools: {e:?}"))?;
        let dir = tempfile::Builder::new().prefix("pillion-kube-").tempdir().context("temp dir")?;
        let certs = KubeCerts::generate(&dir.path().join("pki"))?;
        let (etcd_client, etcd_peer) = (free_addr(), free_addr());
        let apiserver_addr = free_addr();
        let kubeconfig = dir.path().join("kubeconfig");
        certs.write_kubeconfig(&kubeconfig, &format!("https://{apiserver_addr}"))?;

        let etcd =
            spawn(etcd_command(&tools, dir.path(), etcd_client, etcd_peer), &dir.path().join("etcd.log"))?;
        let mut kube =
            KubeApi {
            tools,
            certs,
            kubeconfig,
            etcd_client,
            apiserver_addr,
            service_cidr: cidr.to_owned(),
            etcd,
            apiserver: None,
            dir,
        };
        kube.wait_etcd().await?;
        kube.start_apiserver().await?;
        let ready = begun.elapsed();
        let client = kube.client().await?;
        crds::install(&client, &kube.tools).await.map_err(|e| kube.with_log(e))?;
        // Straight to the stream: the test harness captures `eprintln!`. One line, for the record.
        let _ = writeln!(
            std::io::stderr(),
            "kube: API server {} ready in {:.1}s, Gateway API CRDs established at {:.1}s",
            kube.server_url(),
            ready.as_secs_f64(),
            begun.elapsed().as_secs_f64()
        );
        Ok(kube)
    }

    /// `https://127.0.0.1:PORT`; the same across API server restarts.
    pub fn server_url(&self) -> String {
        format!("https://{}", self.apiserver_addr)
    }

    /// The admin kubeconfig (user [`ADMIN_USER`], group `system:masters`), for `kubectl` or any
    /// client; it stays valid across API server restarts.
    pub fn kubeconfig(&self) -> &Path {
        &self.kubeconfig
    }

    /// The cluster CA, which the API server's serving certificate chains to.
    pub fn ca_pem(&self) -> &Path {
        &self.certs.ca_pem
    }

    /// The admin client certificate and key.
    pub fn admin_cert(&self) -> &Path {
        &self.certs.admin_cert
    }

    pub fn admin_key(&self) -> &Path {
        &self.certs.admin_key
    }

    /// Every file the harness made (CA, serving and admin certificates, service-account keys).
    pub fn certs(&self) -> &KubeCerts {
        &self.certs
    }

    /// etcd's client URL (`http://127.0.0.1:PORT`), for a test that looks underneath the API.
    pub fn etcd_url(&self) -> String {
        format!("http://{}", self.etcd_client)
    }

    /// The directory holding the logs (`etcd.log`, `kube-apiserver.log`), certificates and data.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// A new admin client from the kubeconfig. Make one per tokio runtime: a client's
    /// connections belong to the runtime it first ran on.
    pub async fn client(&self) -> Result<Client> {
        let kubeconfig = Kubeconfig::read_from(&self.kubeconfig).context("read kubeconfig")?;
        let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
            .await
            .context("load kubeconfig")?;
        Client::try_from(config).context("build client")
    }

    /// Kills the API server (SIGKILL, as a crash would), keeping etcd and so every object.
    pub fn stop_apiserver(&mut self) {
        if let Some(mut child) = self.apiserver.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the API server (again) on the same address with the same keys, and waits until it
    /// is ready: clients and the kubeconfig made before keep working.
    pub async fn start_apiserver(&mut self) -> Result<()> {
        if self.apiserver.is_some() {
            bail!("the API server is already running");
        }
        let log = self.dir.path().join("kube-apiserver.log");
        let command = apiserver_command(self);
        self.apiserver = Some(spawn(command, &log)?);
        self.wait_ready().await.map_err(|e| self.with_log(e))
    }

    /// [`stop_apiserver`](Self::stop_apiserver), then [`start_apiserver`](Self::start_apiserver).
    pub async fn restart_apiserver(&mut self) -> Result<()> {
        let begun = Instant::now();
        self.stop_apiserver();
        self.start_apiserver().await?;
        let _ = writeln!(
            std::io::stderr(),
            "kube: API server restarted in {:.1}s",
            begun.elapsed().as_secs_f64()
        );
        Ok(())
    }

    /// The last lines of both logs, for a failure message.
    pub fn log_tail(&self) -> String {
        let mut out = String::new();
        for name in ["etcd.log", "kube-apiserver.log"] {
            let text = fs::read_to_string(self.dir.path().join(name)).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            let tail = lines[lines.len().saturating_sub(30)..].join("\n");
            out.push_str(&format!("--- {name} (last 30 lines) ---\n{tail}\n"));
        }
        out
    }

    fn with_log(&self, e: anyhow::Error) -> anyhow::Error {
        e.context(self.log_tail())
    }

    async fn wait_etcd(&mut self) -> Result<()> {
        let deadline = Instant::now() + START_WAIT;
        loop {
            // etcd answers /health with {"health":"true"} once it has a leader, itself.
            if http_get(self.etcd_client, "/health").await.is_some_and(|body| body.contains("\"true\"")) {
                return Ok(());
            }
            if let Some(status) = self.etcd.try_wait().context("etcd status")? {
                return Err(self.with_log(anyhow::anyhow!("etcd exited before it was healthy: {status}")));
            }
            if Instant::now() > deadline {
                return Err(self.with_log(anyhow::anyhow!("etcd not healthy within {START_WAIT:?}")));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Polls `/readyz` as the admin until it says ok: every post-start hook has run (bootstrap
    /// RBAC, the CRD informers), so the API is complete, not merely listening.
    async fn wait_ready(&mut self) -> Result<()> {
        let client = self.client().await?;
        let deadline = Instant::now() + START_WAIT;
        loop {
            let req = http::Request::get("/readyz").body(Vec::new()).expect("a valid request");
            let last = match tokio::time::timeout(Duration::from_secs(5), client.request_text(req)).await {
                Ok(Ok(body)) if body.trim() == "ok" => return Ok(()),
                Ok(Ok(body)) => body,
                Ok(Err(e)) => e.to_string(),
                Err(_) => "/readyz timed out".into(),
            };
            let child = self.apiserver.as_mut().expect("started above");
            if let Some(status) = child.try_wait().context("kube-apiserver status")? {
                bail!("kube-apiserver exited before it was ready: {status}");
            }
            if Instant::now() > deadline {
                bail!("kube-apiserver not ready within {START_WAIT:?}; last /readyz: {last}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for KubeApi {
    fn drop(&mut self) {
        // The API server first: it would otherwise log etcd's disappearance for nothing.
        self.stop_apiserver();
        let _ = self.etcd.kill();
        let _ = self.etcd.wait();
        if std::env::var_os(KEEP_ENV).is_some() {
            self.dir.disable_cleanup(true);
            let _ = writeln!(std::io::stderr(), "kube: kept {} (${KEEP_ENV})", self.dir.path().display());
        }
    }
}

fn etcd_command(tools: &KubeTools, dir: &Path, client: SocketAddr, peer: SocketAddr) -> Command {
    let mut c = Command::new(tools.etcd());
    c.arg("--name=pillion-e2e")
        .arg(format!("--data-dir={}", dir.join("etcd").display()))
        .arg(format!("--listen-client-urls=http://{client}"))
        .arg(format!("--advertise-client-urls=http://{client}"))
        .arg(format!("--listen-peer-urls=http://{peer}"))
        .arg(format!("--initial-advertise-peer-urls=http://{peer}"))
        .arg(format!("--initial-cluster=pillion-e2e=http://{peer}"))
        // The data must outlive API server restarts, not a power cut: skipping fsync keeps a
        // busy shared disk from making every write slow.
        .arg("--unsafe-no-fsync")
        .arg("--log-level=warn");
    c
}

fn apiserver_command(kube: &KubeApi) -> Command {
    let (tools, certs, etcd, addr) = (&kube.tools, &kube.certs, kube.etcd_client, kube.apiserver_addr);
    let path = |p: &Path| p.display().to_string();
    let mut c = Command::new(tools.kube_apiserver());
    c.arg(format!("--etcd-servers=http://{etcd}"))
        .arg(format!("--bind-address={}", addr.ip()))
        .arg(format!("--secure-port={}", addr.port()))
        // Otherwise the API server advertises the host's first address. Loopback it may
        // advertise only with no endpoint reconciler: the `kubernetes` Service then has no
        // endpoints, which nothing here needs (no Pod runs in this cluster).
        .arg(format!("--advertise-address={}", addr.ip()))
        .arg("--endpoint-reconciler-type=none")
        .arg(format!("--tls-cert-file={}", path(&certs.serving_cert)))
        .arg(format!("--tls-private-key-file={}", path(&certs.serving_key)))
        .arg(format!("--client-ca-file={}", path(&certs.ca_pem)))
        .arg("--authorization-mode=Node,RBAC")
        .arg(format!("--service-account-issuer={SA_ISSUER}"))
        .arg(format!("--service-account-key-file={}", path(&certs.sa_pub)))
        .arg(format!("--service-account-signing-key-file={}", path(&certs.sa_key)))
        .arg(format!("--service-cluster-ip-range={}", kube.service_cidr))
        // Unset, it would write self-signed certificates to /var/run/kubernetes.
        .arg(format!("--cert-dir={}", path(certs.ca_pem.parent().expect("pki dir"))))
        .arg("--profiling=false");
    c
}

/// Spawns `command` with stdout and stderr appended to `log`, killed with the thread that spawns
/// it should the test process die without dropping the [`KubeApi`] (a Ctrl-C, a killed run).
pub(crate) fn spawn(mut command: Command, log: &Path) -> Result<Child> {
    use std::os::unix::process::CommandExt;
    let out = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .with_context(|| format!("open {}", log.display()))?;
    command.stdin(Stdio::null()).stdout(out.try_clone()?).stderr(out);
    // SAFETY: prctl is async-signal-safe, and the closure touches nothing else.
    unsafe {
        command.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) == -1 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    command.spawn().with_context(|| format!("spawn {:?}", command.get_program()))
}

/// A plain HTTP/1.0 GET on loopback (etcd's client port): the body, or `None` on any failure.
async fn http_get(addr: SocketAddr, path: &str) -> Option<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let attempt = async {
        let mut stream = tokio::net::TcpStream::connect(addr).await.ok()?;
        stream.write_all(format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes()).await.ok()?;
        let mut response = String::new();
        stream.read_to_string(&mut response).await.ok()?;
        response.split_once("\r\n\r\n").map(|(_, body)| body.to_owned())
    };
    tokio::time::timeout(Duration::from_secs(2), attempt).await.ok().flatten()
}
