//! Pods made of network namespaces, as close to Kubernetes as one machine allows.
//!
//! A [`Network`] is a private namespace holding a bridge (`br0`, the pods' gateway). Each
//! [`Pod`] is a namespace `pl-<pid>-<net>-<name>` with `lo` up and `eth0`, one end of a veth pair
//! whose other end is a port of the bridge, addressed in `10.231.<net>.0/24` with a default route
//! via the bridge. Both ends of every veth live in namespaces of our own, so nothing is added to
//! the host's namespace and addresses never leave the test's namespaces. Names carry the test
//! process's pid and a per-process counter, so parallel tests never collide; namespaces left by
//! a killed run (whose pid is gone) are swept on first use. Everything is deleted on drop, also
//! when a test panics: the namespace's processes are killed first, which removes its veths too.
//!
//! Processes run in a pod with `ip netns exec`, as root or (like a sidecar) as [`PROXY_UID`]
//! through `setpriv`, and are killed when their [`PodProcess`] is dropped.
//!
//! Also home to what every root-only test shares: [`is_root`] and the loud [`skipped`].

use std::{
    fs,
    net::{Ipv4Addr, SocketAddr},
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    sync::atomic::{AtomicU8, AtomicU32, Ordering},
    time::{Duration, Instant},
};

use crate::workspace_bin;

/// The UID (and GID) sidecars run as; `pillion init` exempts its traffic from redirection.
pub const PROXY_UID: u32 = 2102;
/// The sidecar's admin port, reachable at `127.0.0.1` inside its pod.
pub const ADMIN_PORT: u16 = 15020;
/// How long anything gets to come up before the test gives up on it.
const START_WAIT: Duration = Duration::from_secs(30);

/// Whether this process runs as root, read from the kernel rather than trusted from `$USER`.
pub fn is_root() -> bool {
    fs::read_to_string("/proc/self/status").is_ok_and(|s| {
        s.lines().find_map(|l| l.strip_prefix("Uid:")).and_then(|ids| ids.split_whitespace().nth(1))
            == Some("0")
    })
}

/// Says loudly that a root-only test did not run, and records it for CI (see `crate::skip`).
pub fn skipped(test: &str) {
    crate::skip("needs root", test);
}

/// Runs `cmd` to completion and panics with its output unless it succeeded.
pub fn must(cmd: &mut Command) -> Output {
    let out = cmd.output().unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn ip(args: &[&str]) -> Output {
    must(Command::new("ip").args(args))
}

/// A network namespace, deleted with everything running in it when dropped, failed test or not.
pub struct Netns(String);

impl Netns {
    /// Creates namespace `name`, replacing one an earlier, killed run may have left.
    pub fn new(name: String) -> Netns {
        delete_netns(&name);
        ip(&["netns", "add", &name]);
        Netns(name)
    }

    /// Its name.
    pub fn name(&self) -> &str {
        &self.0
    }

    /// `ip netns exec NAME program args...`, as root.
    pub fn exec(&self, program: &str, args: &[&str]) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.0, program]).args(args);
        cmd
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        delete_netns(&self.0);
    }
}

/// Kills what runs in namespace `name` (a process would keep it, and its veths, alive), then
/// deletes it. Quiet when there is no such namespace.
fn delete_netns(name: &str) {
    if let Ok(out) = Command::new("ip").args(["netns", "pids", name]).output() {
        for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
            let _ = Command::new("kill").args(["-KILL", pid]).output();
        }
    }
    let _ = Command::new("ip").args(["netns", "del", name]).output();
}

/// Deletes `pl-<pid>-...` namespaces whose test process is gone; once per process.
fn sweep_leftovers() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let Ok(out) = Command::new("ip").args(["netns", "list"]).output() else { return };
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            let name = line.split_whitespace().next().unwrap_or_default();
            let pid = name.strip_prefix("pl-").and_then(|r| r.split('-').next());
            if pid.is_some_and(|p| p.parse::<u32>().is_ok() && !Path::new("/proc").join(p).exists()) {
                delete_netns(name);
            }
        }
    });
}

/// Makes `path` readable and traversable by anyone (temp dirs are created `0700`).
pub fn open_dir(path: &Path) {
    fs::set_permissions(path, fs::Permissions::from_mode(0o755)).expect("chmod");
}

/// Hands `path` (recursively) to [`PROXY_UID`], e.g. an issued cert directory and its key.
pub fn give_to_proxy_user(path: &Path) {
    let owner = format!("{PROXY_UID}:{PROXY_UID}");
    must(Command::new("chown").args(["-R", &owner]).arg(path));
}

/// The pods' network: a private namespace with a bridge, in `10.231.<index>.0/24`.
pub struct Network {
    ns: Netns,
    prefix: String,
    index: u8,
    next_host: AtomicU8,
}

impl Network {
    /// A new, empty network; the bridge has `.1`.
    #[allow(clippy::new_without_default)] // each call makes namespaces: not a default value
    pub fn new() -> Network {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        sweep_leftovers();
        let index = (NEXT.fetch_add(1, Ordering::SeqCst) % 256) as u8;
        let prefix = format!("pl-{}-{index}", std::process::id());
        let ns = Netns::new(format!("{prefix}-net"));
        let n = ns.name().to_owned();
        ip(&["-n", &n, "link", "set", "lo", "up"]);
        ip(&["-n", &n, "link", "add", "br0", "type", "bridge"]);
        ip(&["-n", &n, "addr", "add", &format!("10.231.{index}.1/24"), "dev", "br0"]);
        ip(&["-n", &n, "link", "set", "br0", "up"]);
        Network { ns, prefix, index, next_host: AtomicU8::new(2) }
    }

    /// Gives this process's own namespace (the host's) the address `.254` on the bridge, over a
    /// veth pair, so that a process run on the host (a control plane) and the pods reach each
    /// other. The host end goes with the network: deleting its namespace destroys the pair.
    pub fn attach_host(&self) -> Ipv4Addr {
        let addr = Ipv4Addr::new(10, 231, self.index, 254);
        let host = format!("plh{}-{}", std::process::id(), self.index);
        ip(&["link", "add", &host, "type", "veth", "peer", "name", "host0", "netns", self.ns.name()]);
        ip(&["-n", self.ns.name(), "link", "set", "host0", "master", "br0", "up"]);
        ip(&["addr", "add", &format!("{addr}/24"), "dev", &host]);
        ip(&["link", "set", &host, "up"]);
        addr
    }

    /// Adds pod `name` (a short word) with the next free address.
    pub fn pod(&self, name: &str) -> Pod {
        let host = self.next_host.fetch_add(1, Ordering::SeqCst);
        assert!(host < 255, "too many pods");
        let ns = Netns::new(format!("{}-{name}", self.prefix));
        let ip_addr = Ipv4Addr::new(10, 231, self.index, host);
        let (net, pod, port) = (self.ns.name(), ns.name().to_owned(), format!("veth{host}"));
        ip(&["-n", net, "link", "add", &port, "type", "veth", "peer", "name", "eth0", "netns", &pod]);
        ip(&["-n", net, "link", "set", &port, "master", "br0", "up"]);
        ip(&["-n", &pod, "addr", "add", &format!("{ip_addr}/24"), "dev", "eth0"]);
        ip(&["-n", &pod, "link", "set", "eth0", "up"]);
        ip(&["-n", &pod, "link", "set", "lo", "up"]);
        ip(&["-n", &pod, "route", "add", "default", "via", &format!("10.231.{}.1", self.index)]);
        let dir = tempfile::tempdir().expect("temp dir");
        open_dir(dir.path()); // the sidecar, as PROXY_UID, reads its config here
        Pod { ns, ip: ip_addr, dir }
    }
}

/// A pod: a network namespace on the [`Network`], with a directory for its logs and files.
pub struct Pod {
    ns: Netns,
    /// Its address on `eth0`.
    pub ip: Ipv4Addr,
    dir: tempfile::TempDir,
}

impl Pod {
    /// Its namespace's name.
    pub fn name(&self) -> &str {
        self.ns.name()
    }

    /// `ip:port` on this pod.
    pub fn addr(&self, port: u16) -> SocketAddr {
        SocketAddr::from((self.ip, port))
    }

    /// A file in the pod's directory (readable by [`PROXY_UID`]).
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// A command run in the pod as root.
    pub fn exec(&self, program: &str, args: &[&str]) -> Command {
        self.ns.exec(program, args)
    }

    /// A command run in the pod as `uid` (GID the same, no supplementary groups).
    pub fn exec_as(&self, uid: u32, program: &str, args: &[&str]) -> Command {
        let id = uid.to_string();
        let mut cmd = self.ns.exec("setpriv", &["--reuid", &id, "--regid", &id, "--clear-groups", "--"]);
        cmd.arg(program).args(args);
        cmd
    }

    /// Starts `cmd` (from [`Pod::exec`] or [`Pod::exec_as`]), logging to `<what>.log`.
    pub fn spawn(&self, what: &str, mut cmd: Command) -> PodProcess {
        let log = self.path(&format!("{what}.log"));
        let file = fs::File::create(&log).expect("log file");
        let child = cmd
            .stdin(Stdio::null())
            .stdout(file.try_clone().expect("log file"))
            .stderr(file)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot spawn {what} in {}: {e}", self.name()));
        PodProcess { child, what: format!("{what} in {}", self.name()), log }
    }

    /// Waits until something in the pod listens on TCP `port` (asked of `ss`, which opens no
    /// connection), failing early if `process` exits.
    pub fn wait_listening(&self, port: u16, process: &mut PodProcess) {
        let filter = format!("sport = :{port}");
        wait_until(&format!("{} listening on {port}", process.what), process, || {
            let out = self.exec("ss", &["-Hltn", &filter]).output().expect("ss");
            !out.stdout.is_empty()
        });
    }

    /// Runs curl in the pod as root (so its traffic is intercepted); returns the status code
    /// (0 when there was none) and the body, or curl's error.
    pub fn curl(&self, args: &[&str]) -> (u16, String) {
        let mut all = vec!["-sS", "--max-time", "20", "-o", "-", "-w", "\n%{http_code}"];
        all.extend_from_slice(args);
        let out = self.exec("curl", &all).output().expect("curl is installed");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
        match code.trim().parse() {
            Ok(c) if c != 0 => (c, body.to_owned()),
            _ => (0, format!("{body}{}", String::from_utf8_lossy(&out.stderr))),
        }
    }

    /// The sidecar's `/metrics` text, fetched inside the pod (empty when it does not answer).
    pub fn metrics(&self) -> String {
        let (code, body) = self.curl(&[&format!("http://127.0.0.1:{ADMIN_PORT}/metrics")]);
        if code == 200 { body } else { String::new() }
    }

    /// Runs `pillion init` in the pod as root, with any extra flags.
    pub fn pillion_init(&self, args: &[&str]) -> Output {
        let pillion = workspace_bin("pillion");
        let mut all = vec!["init"];
        all.extend_from_slice(args);
        must(&mut self.exec(pillion.to_str().expect("utf-8 path"), &all))
    }

    /// Writes `config` to the pod's directory and starts `pillion run` on it as [`PROXY_UID`],
    /// waiting until its `/ready` answers 200.
    pub fn sidecar(&self, config: &str) -> PodProcess {
        let path = self.path("pillion.yaml");
        fs::write(&path, config).expect("write config");
        let pillion = workspace_bin("pillion");
        let mut cmd = self.exec_as(
            PROXY_UID,
            pillion.to_str().expect("utf-8 path"),
            &["run", "--config", path.to_str().expect("utf-8 path")],
        );
        cmd.env("PILLION_LOG", "info,pillion_proxy=debug").env("NO_COLOR", "1");
        let mut proc = self.spawn("pillion", cmd);
        wait_until(&format!("{} ready", proc.what), &mut proc, || {
            self.curl(&[&format!("http://127.0.0.1:{ADMIN_PORT}/ready")]).0 == 200
        });
        // `setpriv` really dropped root: the kernel's view of the running proxy.
        let status = fs::read_to_string(format!("/proc/{}/status", proc.child.id())).unwrap_or_default();
        let uids = status.lines().find_map(|l| l.strip_prefix("Uid:")).unwrap_or_default();
        assert!(uids.split_whitespace().all(|u| u == PROXY_UID.to_string()), "sidecar UIDs: {uids}");
        proc
    }

    /// A TCP echo server on `0.0.0.0:port`; with a `greeting`, it sends that line first, as
    /// soon as it accepts (a server-first protocol such as SMTP). Logs `peer IP` per connection.
    pub fn tcp_echo(&self, port: u16, greeting: Option<&str>) -> PodProcess {
        self.python_server("echo", port, ECHO_SERVER, greeting.unwrap_or(""))
    }

    /// An HTTP/1.1 server on `0.0.0.0:port` answering every GET with `peer IP` of the client.
    pub fn http_whoami(&self, port: u16) -> PodProcess {
        self.python_server("whoami", port, WHOAMI_SERVER, "")
    }

    fn python_server(&self, what: &str, port: u16, script: &str, arg: &str) -> PodProcess {
        let cmd = self.exec("python3", &["-u", "-c", script, &port.to_string(), arg]);
        let mut proc = self.spawn(&format!("{what}-{port}"), cmd);
        self.wait_listening(port, &mut proc);
        proc
    }

    /// Connects from the pod (as root) to `to`; if `greeted`, first reads one line the server
    /// sends unasked; then sends `line` and reads one line back. Returns what was read, or the
    /// client's error.
    pub fn tcp_talk(&self, to: SocketAddr, greeted: bool, line: &str) -> Result<String, String> {
        let mut cmd = self.exec("python3", &["-c", TCP_CLIENT, &to.ip().to_string(), &to.port().to_string()]);
        let out = cmd.args([if greeted { "1" } else { "0" }, line]).output().expect("python3 is installed");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        if out.status.success() {
            Ok(text)
        } else {
            Err(format!("{text}{}", String::from_utf8_lossy(&out.stderr)))
        }
    }
}

/// A process running in a pod, killed when dropped; its log is printed if the test panicked.
pub struct PodProcess {
    child: Child,
    what: String,
    log: PathBuf,
}

impl PodProcess {
    /// Everything it wrote so far (stdout and stderr).
    pub fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl PodProcess {
    /// Sends SIGTERM, as the kubelet stops a container, and waits up to `limit` for it to exit.
    pub fn terminate(&mut self, limit: Duration) -> std::process::ExitStatus {
        // `ip netns exec` and `setpriv` exec what they run: the child is the program itself.
        must(Command::new("kill").args(["-TERM", &self.child.id().to_string()]));
        let deadline = Instant::now() + limit;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status;
            }
            assert!(Instant::now() < deadline, "{} still running {limit:?} after SIGTERM", self.what);
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for PodProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("--- log of {} ---\n{}", self.what, self.log());
        }
    }
}

/// Polls `ready` until it holds, up to [`START_WAIT`], failing early if `process` exits.
fn wait_until(what: &str, process: &mut PodProcess, mut ready: impl FnMut() -> bool) {
    let deadline = Instant::now() + START_WAIT;
    while Instant::now() < deadline {
        if ready() {
            return;
        }
        if let Ok(Some(status)) = process.child.try_wait() {
            panic!("{} exited ({status}) before {what}; log:\n{}", process.what, process.log());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("no {what} within {START_WAIT:?}; log:\n{}", process.log());
}

/// `python3 -c ECHO_SERVER PORT GREETING`.
const ECHO_SERVER: &str = r#"
import socket, sys, threading
port, greeting = int(sys.argv[1]), sys.argv[2]
srv = socket.create_server(("0.0.0.0", port), backlog=64)
def serve(c, peer):
    print("peer", peer[0], flush=True)
    with c:
        if greeting:
            c.sendall(greeting.encode() + b"\n")
        while data := c.recv(65536):
            c.sendall(data)
while True:
    threading.Thread(target=serve, args=srv.accept(), daemon=True).start()
"#;

/// `python3 -c WHOAMI_SERVER PORT`.
const WHOAMI_SERVER: &str = r#"
import http.server, sys
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        body = ("peer " + self.client_address[0] + "\n").encode()
        self.send_response(200)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
http.server.ThreadingHTTPServer(("0.0.0.0", int(sys.argv[1])), H).serve_forever()
"#;

/// `python3 -c TCP_CLIENT HOST PORT GREETED LINE`.
const TCP_CLIENT: &str = r#"
import socket, sys
host, port, greeted, line = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "1", sys.argv[4]
s = socket.create_connection((host, port), timeout=15)
f = s.makefile("rb")
got = f.readline() if greeted else b""
s.sendall(line.encode() + b"\n")
got += f.readline()
sys.stdout.write(got.decode())
"#;
