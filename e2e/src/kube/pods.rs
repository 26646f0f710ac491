//! A cluster whose Pods run: a real API server, `pillion-control serve --kubernetes` on the
//! host's address on a [`Network`]'s bridge, and network-namespace pods whose sidecars (UID 2102,
//! behind `pillion init`) enrol with the control plane by bootstrap token and watch their
//! workload `SA.NS`. The test plays the kubelet (it writes each Pod and its status, starts and
//! stops its processes) and the EndpointSlice controller (see [`objects`](super::objects)).
//!
//! Also a load client for a pod: keep-alive GETs in a loop, counting answers by backend and
//! every failure (a non-2xx status or a connection error), until told to stop.

use std::{
    collections::BTreeMap,
    fs,
    net::{IpAddr, SocketAddr},
    path::PathBuf,
    time::Duration,
};

use super::{KubeApi, objects::Cluster};
use crate::{
    control::Control,
    netns::{Network, Pod, PodProcess, give_to_proxy_user, is_root, skipped},
    process::free_addr,
    workspace_bin,
};

/// The port every app in these pods serves HTTP on (`pillion-e2e-backend`, `/` names it).
pub const APP_PORT: u16 = 8080;
/// How long an app, then a sidecar, gets to stop after SIGTERM.
const STOP_WAIT: Duration = Duration::from_secs(30);

/// The API server, the control plane and the pods' network. Pods made from it are dropped
/// before it (declare them after it).
pub struct KubeMesh {
    /// The control plane, reachable from the pods.
    pub control: Control,
    /// Writes the objects a kubelet and the EndpointSlice controller would.
    pub cluster: Cluster,
    pub kube: KubeApi,
    net: Network,
}

impl KubeMesh {
    /// Starts it, with bootstrap tokens for `enrolled` (`SA.NS` workloads), or says SKIPPED
    /// (which fails CI) without root or the Kubernetes tools.
    pub async fn start_or_skip(test: &str, enrolled: &[&str]) -> Option<KubeMesh> {
        if !is_root() {
            skipped(test);
            return None;
        }
        let kube = KubeApi::start_or_skip(test).await?;
        let cluster = Cluster::new(kube.client().await.expect("kube client"));
        let net = Network::new();
        let host = net.attach_host();
        let addr = SocketAddr::new(IpAddr::V4(host), free_addr().port());
        let control = Control::start_kubernetes_at(kube.kubeconfig(), &[], enrolled, addr);
        Some(KubeMesh { control, cluster, kube, net })
    }

    /// A pod of ServiceAccount `sa` in `ns`, named `name`: its Pod object, written and made
    /// Running and Ready with the netns pod's IP; with `app`, `pillion-e2e-backend --name NAME`
    /// on [`APP_PORT`]; then `pillion init` and a sidecar of workload `SA.NS`, once ready (it has
    /// its certificate and first snapshot).
    pub async fn pod(&self, ns: &str, name: &str, sa: &str, app: bool) -> MeshPod {
        let pod = self.net.pod(name);
        self.cluster.running_pod(ns, name, sa, IpAddr::V4(pod.ip)).await.expect("write the Pod");
        let app = app.then(|| {
            let backend = workspace_bin("pillion-e2e-backend");
            let listen = format!("0.0.0.0:{APP_PORT}");
            let cmd = pod.exec(backend.to_str().expect("utf-8"), &["--listen", &listen, "--name", name]);
            let mut proc = pod.spawn("app", cmd);
            pod.wait_listening(APP_PORT, &mut proc);
            proc
        });
        pod.pillion_init(&[]);
        let sidecar = pod.sidecar(&self.sidecar_config(&pod, ns, sa));
        MeshPod { sidecar: Some(sidecar), app, pod, name: name.to_owned() }
    }

    /// A sidecar config that takes everything from the control plane; its certificate, the
    /// trust bundle and its workload's token live in a directory it owns.
    fn sidecar_config(&self, pod: &Pod, ns: &str, sa: &str) -> String {
        let workload = format!("{sa}.{ns}");
        let dir = pod.path("identity");
        fs::create_dir_all(&dir).expect("identity dir");
        fs::copy(self.control.pki.ca_pem(), dir.join("ca.pem")).expect("copy the CA");
        fs::copy(self.control.token_file(&workload), dir.join("token")).expect("copy the token");
        give_to_proxy_user(&dir);
        format!(
            r#"
workload: {{name: "{workload}", identity: "spiffe://cluster.local/ns/{ns}/sa/{sa}"}}
tls: {{cert: "{d}/cert.pem", key: "{d}/key.pem", trust: "{d}/ca.pem"}}
control: {{address: "https://{control}", token_file: "{d}/token"}}
admin: {{bind: "0.0.0.0:15020"}}
inbound: {{bind: "0.0.0.0:15006", mtls: strict}}
outbound: {{bind: "127.0.0.1:15001"}}
"#,
            d = dir.display(),
            control = self.control.addr,
        )
    }
}

/// A running pod: its app (if any) and sidecar, which go before the pod.
pub struct MeshPod {
    sidecar: Option<PodProcess>,
    app: Option<PodProcess>,
    /// The network namespace.
    pub pod: Pod,
    /// Its name, as its Pod object and its app (`x-backend`) have it.
    pub name: String,
}

impl MeshPod {
    /// Its IP.
    pub fn ip(&self) -> IpAddr {
        IpAddr::V4(self.pod.ip)
    }

    /// Stops it as the kubelet stops a Pod with a native sidecar: SIGTERM to the app, which
    /// finishes what it has and closes its connections; once it has exited, SIGTERM to the
    /// sidecar, which drains. Panics if either is still running after 30 s.
    pub fn stop(&mut self) {
        if let Some(app) = self.app.as_mut() {
            app.terminate(STOP_WAIT);
        }
        if let Some(sidecar) = self.sidecar.as_mut() {
            sidecar.terminate(STOP_WAIT);
        }
    }

    /// `GET /` from the pod's app side to `to` (transparently through its sidecar): the backend
    /// that answered, or the status and error.
    pub fn backend_at(&self, to: SocketAddr) -> Result<String, String> {
        let url = format!("http://{to}/");
        let (code, body) = self.pod.curl(&["--max-time", "5", &url]);
        match body.strip_prefix("backend ") {
            Some(name) if code == 200 => Ok(name.trim().to_owned()),
            _ => Err(format!("{code}: {body}")),
        }
    }

    /// Starts keep-alive GET loops from the app side of this pod to `to`, one per path.
    pub fn load(&self, to: SocketAddr, paths: &[&str]) -> Load {
        let stop = self.pod.path("load.stop");
        let _ = fs::remove_file(&stop);
        let (ip, port, stop_file) = (to.ip().to_string(), to.port().to_string(), stop.display().to_string());
        let mut all = vec!["-u", "-c", LOAD_CLIENT, &ip, &port, &stop_file];
        all.extend_from_slice(paths);
        let process = self.pod.spawn("load", self.pod.exec("python3", &all));
        Load { process: Some(process), stop }
    }
}

/// A load client running in a pod.
pub struct Load {
    process: Option<PodProcess>,
    stop: PathBuf,
}

/// What a load client counted.
#[derive(Debug, Clone)]
pub struct LoadReport {
    /// 2xx answers, by the backend that gave them.
    pub ok: BTreeMap<String, u64>,
    /// Every failure: when (Unix seconds) and what (status and `x-pillion-error`, or the error).
    pub failures: Vec<String>,
}

impl Load {
    /// Stops the loops (each finishes the request it is on) and returns their counts.
    pub fn finish(mut self) -> LoadReport {
        fs::write(&self.stop, "").expect("write the stop file");
        let process = self.process.take().expect("finished once");
        let deadline = std::time::Instant::now() + STOP_WAIT;
        loop {
            let log = process.log();
            if let Some(line) = log.lines().find(|l| l.starts_with('{')) {
                let v: serde_json::Value =
                    serde_json::from_str(line).unwrap_or_else(|e| panic!("load report {line}: {e}"));
                let ok = v["ok"].as_object().into_iter().flatten();
                let failures = v["failures"].as_array().into_iter().flatten();
                return LoadReport {
                    ok: ok.map(|(k, n)| (k.clone(), n.as_u64().unwrap_or(0))).collect(),
                    failures: failures.filter_map(|f| f.as_str().map(str::to_owned)).collect(),
                };
            }
            assert!(std::time::Instant::now() < deadline, "no load report within {STOP_WAIT:?}:\n{log}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// `python3 -c LOAD_CLIENT HOST PORT STOP_FILE PATH...`: a thread per path, each with one
/// keep-alive connection
/// (a new one after an error or `connection: close`), a GET every 10 ms or so, until the stop
/// file exists; then one JSON line of counts.
const LOAD_CLIENT: &str = r#"
import http.client, json, os, sys, threading, time
host, port, stop, paths = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4:]
lock, ok, failures = threading.Lock(), {}, []
def fail(what):
    with lock:
        failures.append("%.3f %s" % (time.time(), what))
def run(path):
    conn = None
    while not os.path.exists(stop):
        try:
            if conn is None:
                conn = http.client.HTTPConnection(host, port, timeout=10)
            conn.request("GET", path)
            r = conn.getresponse()
            body = r.read()
            if 200 <= r.status < 300:
                with lock:
                    b = r.getheader("x-backend", "?")
                    ok[b] = ok.get(b, 0) + 1
            else:
                fail("status %d %s %r" % (r.status, r.getheader("x-pillion-error"), body[:200]))
            if r.getheader("connection", "").lower() == "close":
                conn.close()
                conn = None
        except Exception as e:
            fail("%s: %s" % (type(e).__name__, e))
            if conn is not None:
                conn.close()
            conn = None
        time.sleep(0.01)
ts = [threading.Thread(target=run, args=(p,)) for p in paths]
for t in ts:
    t.start()
for t in ts:
    t.join()
print(json.dumps({"ok": ok, "failures": failures}), flush=True)
"#;
