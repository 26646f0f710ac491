//! The configurations under test, each started in its own temporary directory with a generated
//! config: the upstream alone (`direct`), one Pillion hop, nginx and haproxy as the equivalent
//! reverse proxy, and two Pillion hops (plaintext, and mutual TLS when Pillion supports it).
//!
//! Every configuration offers two addresses: one for the HTTP/1.1 rows (wrk, latency) and one
//! for the HTTP/2 rows (h2load, h2c with prior knowledge). Proxies run on core 1
//! ([`PROXY_CORE`]) and every client on core 0 ([`CLIENT_CORE`]); the upstream of the `proxy`
//! layout runs on core 0, the one of the `pod` layout on core 1 beside the proxy
//! ([`super::results::Layout`]).

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use pillion_e2e::{client, process::free_addr};

use super::procs::{self, Pinned};

/// Core of the proxy under test (and of the `pod` layout's upstream).
pub const PROXY_CORE: usize = 1;
/// Core of the load generators, the bench itself and the `proxy` layout's upstream.
pub const CLIENT_CORE: usize = 0;
/// How long a server gets to start listening.
pub(crate) const START_WAIT: Duration = Duration::from_secs(20);

/// Binaries of this workspace the bench runs, found next to the bench executable.
pub struct Bins {
    pub pillion: PathBuf,
    pub backend: PathBuf,
    pub certs: PathBuf,
}

impl Bins {
    /// Finds `pillion`, `pillion-e2e-backend` and `pillion-certs`; names the build command if one
    /// is missing.
    pub fn find() -> Result<Self> {
        let exe = std::env::current_exe().context("current exe")?;
        let dir = exe.parent().context("exe dir")?.to_owned();
        let find = |name: &str| -> Result<PathBuf> {
            [dir.as_path(), dir.parent().unwrap_or(&dir)]
                .iter()
                .map(|d| d.join(name))
                .find(|p| p.is_file())
                .with_context(|| {
                    format!(
                        "`{name}` is not built next to {}: run \
                         `cargo build --release --workspace --bins` first \
                         (or `cargo build --workspace --bins` for a debug bench)",
                        dir.display()
                    )
                })
        };
        Ok(Self {
            pillion: find("pillion")?,
            backend: find("pillion-e2e-backend")?,
            certs: find("pillion-certs")?,
        })
    }
}

/// One configuration under test: where clients send requests, and the proxy processes whose
/// CPU and memory are measured (none for `direct`).
pub struct Target {
    pub name: &'static str,
    pub h1: SocketAddr,
    pub h2: SocketAddr,
    pub procs: Vec<Pinned>,
    /// How it talks to the upstream, for the report.
    pub note: String,
    /// Admin address of a proxy whose inbound requests must have come over mutual TLS.
    pub tls_admin: Option<SocketAddr>,
    pub(crate) _dir: Option<tempfile::TempDir>,
}

impl Target {
    /// Pids of its proxy processes.
    pub fn pids(&self) -> Vec<u32> {
        self.procs.iter().map(Pinned::pid).collect()
    }

    /// Fails if one of its processes has exited.
    pub fn alive(&mut self) -> Result<()> {
        for p in &mut self.procs {
            if let Some(status) = p.exited() {
                bail!("{} exited ({status}); log:\n{}", p.name(), p.log_tail());
            }
        }
        Ok(())
    }
}

/// Starts an upstream: `pillion-e2e-backend`, whose `/fixed` returns 1 KiB, on `core`.
pub fn start_upstream(bins: &Bins, dir: &Path, core: usize) -> Result<(Pinned, SocketAddr)> {
    let addr = free_addr();
    let args = ["--listen", &addr.to_string(), "--name", "up", "--delay-ms", "0"].map(String::from);
    let name = format!("upstream-core{core}");
    let log = dir.join(format!("{name}.log"));
    let mut p = Pinned::spawn(&name, core, &bins.backend, &args, &[], &log)?;
    p.wait_for_port(addr, START_WAIT)?;
    Ok((p, addr))
}

/// The upstream itself, no proxy.
pub fn direct(upstream: SocketAddr) -> Target {
    Target {
        name: "direct",
        h1: upstream,
        h2: upstream,
        procs: Vec::new(),
        note: "client -> upstream".into(),
        tls_admin: None,
        _dir: None,
    }
}

/// Starts `pillion run` on `config` (YAML; `{admin}` is filled in) and waits for `/ready`.
pub(crate) fn start_pillion(
    bins: &Bins,
    name: &str,
    dir: &Path,
    config: &str,
) -> Result<(Pinned, SocketAddr)> {
    let admin = free_addr();
    let path = dir.join(format!("{name}.yaml"));
    std::fs::write(&path, config.replace("{admin}", &admin.to_string()))?;
    let args = ["run".to_owned(), "--config".to_owned(), path.display().to_string()];
    let env = [("PILLION_LOG", "warn"), ("NO_COLOR", "1")];
    let log = dir.join(format!("{name}.log"));
    let mut p = Pinned::spawn(name, PROXY_CORE, &bins.pillion, &args, &env, &log)?;
    p.wait_for_port(admin, START_WAIT)?;
    let deadline = Instant::now() + START_WAIT;
    while client::get_status(admin, "/ready") != Some(200) {
        if Instant::now() > deadline {
            bail!("{name} never became ready; log:\n{}", p.log_tail());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok((p, admin))
}

/// The listeners, transparent outbound and inbound addresses every Pillion config needs, on
/// free ports so that several proxies can run side by side.
pub(crate) fn pillion_base(inbound: SocketAddr, app: Option<SocketAddr>) -> String {
    let app = app.map(|a| format!(", app: \"{a}\"")).unwrap_or_default();
    format!(
        "admin: {{bind: \"{{admin}}\"}}\ninbound: {{bind: \"{inbound}\"{app}}}\noutbound:\n  bind: \"{}\"\n",
        free_addr()
    )
}

/// Explicit listeners `h1` and `h2` to `endpoint`: the HTTP/1.1 rows' through an `http1`
/// service, the HTTP/2 rows' through one speaking `h2_protocol` (`http1` or `http2`).
/// `identity` turns on mTLS to the endpoint.
pub(crate) fn outbound_listeners(
    h1: SocketAddr,
    h2: SocketAddr,
    endpoint: SocketAddr,
    identity: Option<&str>,
    h2_protocol: &str,
) -> String {
    let id = identity.map(|i| format!(", identity: \"{i}\"")).unwrap_or_default();
    let service = |name: &str, protocol: &str| {
        format!("  - {{name: {name}, protocol: {protocol}, endpoints: [{{addr: \"{endpoint}\"{id}}}]}}\n")
    };
    let h2_service = if h2_protocol == "http1" { "up-h1" } else { "up-h2" };
    let mut s = format!(
        "  listeners:\n    - {{bind: \"{h1}\", service: up-h1}}\n\
         \x20   - {{bind: \"{h2}\", service: {h2_service}}}\nservices:\n"
    );
    s += &service("up-h1", "http1");
    if h2_service == "up-h2" {
        s += &service("up-h2", h2_protocol);
    }
    s
}

/// One Pillion hop: explicit listeners straight to the upstream.
pub fn pillion(bins: &Bins, upstream: SocketAddr) -> Result<Target> {
    let dir = tempfile::tempdir()?;
    let (h1, h2) = (free_addr(), free_addr());
    // HTTP/1.1 upstream on every row, as nginx and haproxy are configured: like with like.
    let config = pillion_base(free_addr(), None) + &outbound_listeners(h1, h2, upstream, None, "http1");
    let (p, _) = start_pillion(bins, "pillion", dir.path(), &config)?;
    Ok(Target {
        name: "pillion",
        h1,
        h2,
        procs: vec![p],
        note: "explicit listener; upstream HTTP/1.1 (service `http1`) on every row, as for nginx \
               and haproxy"
            .into(),
        tls_admin: None,
        _dir: Some(dir),
    })
}

/// Workload certificates for the mTLS two-hop row.
pub struct Certs {
    pub dir: tempfile::TempDir,
}

const ID_A: &str = "spiffe://cluster.local/ns/bench/sa/a";
const ID_B: &str = "spiffe://cluster.local/ns/bench/sa/b";

impl Certs {
    /// Makes a CA and certificates for workloads `a` and `b` with `pillion-certs`.
    pub fn make(bins: &Bins) -> Result<Self> {
        let dir = tempfile::tempdir()?;
        let ca = dir.path().join("ca");
        let run = |args: &[&str]| -> Result<()> {
            let out = procs::run_bounded(Command::new(&bins.certs).args(args), Duration::from_secs(30))?;
            if !out.status.success() {
                bail!("pillion-certs {args:?}: {}", String::from_utf8_lossy(&out.stderr));
            }
            Ok(())
        };
        run(&["ca", "init", "--out", &ca.display().to_string()])?;
        for (who, id) in [("a", ID_A), ("b", ID_B)] {
            let out = dir.path().join(who).display().to_string();
            run(&["issue", "--ca", &ca.display().to_string(), "--identity", id, "--out", &out])?;
        }
        Ok(Self { dir })
    }

    fn tls_section(&self, who: &str) -> String {
        let d = self.dir.path().join(who);
        format!(
            "workload: {{name: {who}, identity: \"spiffe://cluster.local/ns/bench/sa/{who}\"}}\n\
             tls: {{cert: \"{}\", key: \"{}\", trust: \"{}\"}}\n",
            d.join("cert.pem").display(),
            d.join("key.pem").display(),
            d.join("ca.pem").display()
        )
    }
}

/// The configs of a two-hop pair: A (explicit listeners to B's inbound) and B (inbound to the
/// upstream), with mTLS between them when `certs` is given.
fn two_hop_configs(upstream: SocketAddr, certs: Option<&Certs>) -> (String, String, SocketAddr, SocketAddr) {
    let (h1, h2, b_inbound) = (free_addr(), free_addr(), free_addr());
    let tls = |who| certs.map(|c| c.tls_section(who)).unwrap_or_default();
    let mut b = tls("b") + &pillion_base(b_inbound, Some(upstream));
    if certs.is_some() {
        b = b.replacen(&format!("app: \"{upstream}\""), &format!("app: \"{upstream}\", mtls: strict"), 1);
    }
    let a = tls("a")
        + &pillion_base(free_addr(), None)
        + &outbound_listeners(h1, h2, b_inbound, certs.map(|_| ID_B), "http2");
    (a, b, h1, h2)
}

/// Whether `pillion check` accepts a two-hop mTLS config; the error if not.
pub fn mtls_supported(bins: &Bins, certs: &Certs, upstream: SocketAddr) -> Result<(), String> {
    let (a, b, _, _) = two_hop_configs(upstream, Some(certs));
    for (name, config) in [("a", a), ("b", b)] {
        let path = certs.dir.path().join(format!("check-{name}.yaml"));
        std::fs::write(&path, config.replace("{admin}", "127.0.0.1:0")).map_err(|e| e.to_string())?;
        let out = procs::run_bounded(
            Command::new(&bins.pillion).arg("check").arg("--config").arg(&path),
            Duration::from_secs(30),
        )
        .map_err(|e| e.to_string())?;
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).trim().to_owned());
        }
    }
    Ok(())
}

/// Two Pillion hops: client -> A's explicit listener -> B's inbound listener -> upstream.
pub fn two_hop(bins: &Bins, upstream: SocketAddr, certs: Option<&Certs>) -> Result<Target> {
    let dir = tempfile::tempdir()?;
    let (a, b, h1, h2) = two_hop_configs(upstream, certs);
    let tag = if certs.is_some() { "mtls" } else { "plain" };
    let (b, b_admin) = start_pillion(bins, &format!("pillion-b-{tag}"), dir.path(), &b)?;
    let (a, _) = start_pillion(bins, &format!("pillion-a-{tag}"), dir.path(), &a)?;
    let (name, how) = match certs {
        Some(_) => ("pillion x2 mTLS", "mutual TLS (strict) between the hops"),
        None => ("pillion x2 plain", "plaintext between the hops"),
    };
    Ok(Target {
        name,
        h1,
        h2,
        procs: vec![a, b],
        note: format!(
            "A: explicit listener -> B: inbound listener -> upstream; {how} (HTTP/2 between them on \
             the HTTP/2 rows, HTTP/1.1 to the upstream); both on core {PROXY_CORE}"
        ),
        tls_admin: certs.map(|_| b_admin),
        _dir: Some(dir),
    })
}

/// nginx as a reverse proxy with upstream keep-alive, one worker, no access log.
pub fn nginx(upstream: SocketAddr) -> Result<Target> {
    let program = procs::find_program("nginx").context("nginx is not installed")?;
    let dir = tempfile::tempdir()?;
    let d = dir.path().display().to_string();
    let (h1, h2) = (free_addr(), free_addr());
    // nginx's master, running as root, would start its worker as `nobody`, which cannot write
    // to this root-owned temp dir.
    let user = if procs::is_root() { "user root;\n" } else { "" };
    let location = "location / { proxy_pass http://up; proxy_http_version 1.1; \
                    proxy_set_header Connection \"\"; }";
    let config = format!(
        "{user}worker_processes 1;\ndaemon off;\npid {d}/nginx.pid;\nerror_log {d}/error.log warn;\n\
         worker_rlimit_nofile 8192;\nevents {{ worker_connections 8192; }}\n\
         http {{\n  access_log off;\n  keepalive_requests 1000000;\n\
         \x20 client_body_temp_path {d}/body;\n  proxy_temp_path {d}/proxy;\n\
         \x20 fastcgi_temp_path {d}/fastcgi;\n  uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n\
         \x20 upstream up {{ server {upstream}; keepalive 64; keepalive_requests 1000000; }}\n\
         \x20 server {{ listen {h1}; {location} }}\n\
         \x20 server {{ listen {h2} http2; {location} }}\n}}\n"
    );
    let conf = dir.path().join("nginx.conf");
    std::fs::write(&conf, config)?;
    let args =
        ["-p", &d, "-e", &format!("{d}/error.log"), "-c", &conf.display().to_string()].map(String::from);
    let mut p = Pinned::spawn("nginx", PROXY_CORE, &program, &args, &[], &dir.path().join("nginx.out"))?;
    p.wait_for_port(h1, START_WAIT)?;
    p.wait_for_port(h2, START_WAIT)?;
    Ok(Target {
        name: "nginx",
        h1,
        h2,
        procs: vec![p],
        note: "proxy_pass to an upstream block with keepalive 64, proxy_http_version 1.1, \
               1 worker; upstream HTTP/1.1 for every row (nginx does not proxy HTTP/2 upstream)"
            .into(),
        tls_admin: None,
        _dir: Some(dir),
    })
}

/// haproxy in `mode http` with `http-reuse always`, one thread, no logging, in the foreground.
pub fn haproxy(upstream: SocketAddr) -> Result<Target> {
    let program = procs::find_program("haproxy").context("haproxy is not installed")?;
    let dir = tempfile::tempdir()?;
    let (h1, h2) = (free_addr(), free_addr());
    let config = format!(
        "global\n  nbthread 1\n  maxconn 8192\n\n\
         defaults\n  mode http\n  timeout connect 5s\n  timeout client 60s\n  timeout server 60s\n\
         \x20 timeout http-keep-alive 60s\n  http-reuse always\n\n\
         frontend h1\n  bind {h1}\n  default_backend up\n\n\
         frontend h2\n  bind {h2} proto h2\n  default_backend up\n\n\
         backend up\n  server up {upstream}\n"
    );
    let conf = dir.path().join("haproxy.cfg");
    std::fs::write(&conf, config)?;
    let args = ["-db", "-f", &conf.display().to_string()].map(String::from);
    let mut p = Pinned::spawn("haproxy", PROXY_CORE, &program, &args, &[], &dir.path().join("haproxy.out"))?;
    p.wait_for_port(h1, START_WAIT)?;
    p.wait_for_port(h2, START_WAIT)?;
    Ok(Target {
        name: "haproxy",
        h1,
        h2,
        procs: vec![p],
        note: "mode http, http-reuse always, nbthread 1; h2c frontend with `proto h2`; \
               upstream HTTP/1.1 for every row"
            .into(),
        tls_admin: None,
        _dir: Some(dir),
    })
}

/// Fails unless the proxy at `admin` has counted inbound requests that came over TLS, so that
/// an mTLS row really measures mTLS.
pub fn expect_inbound_tls(admin: SocketAddr) -> Result<()> {
    let metrics = client::get_text(admin, "/metrics").context("read /metrics")?;
    let n = pillion_e2e::process::metric_value(
        &metrics,
        "pillion_requests_total",
        &["direction=\"inbound\"", "tls=\"true\""],
    );
    if n.unwrap_or(0.0) < 1.0 {
        bail!("hop B counted no inbound request over TLS: the mTLS row would not measure mTLS");
    }
    Ok(())
}
