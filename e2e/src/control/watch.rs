//! Following a workload's snapshots as a proxy does: `GET /v1/watch/{workload}` read by curl
//! line by line, and waits for the control plane to publish a workload or a snapshot.

use std::{
    io::{BufRead, BufReader},
    path::Path,
    process::{Child, Command, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

use super::{Control, cert_args};

impl Control {
    /// Waits (up to `limit`) until the control plane publishes `workload`, then opens its watch
    /// with a certificate of `identity`.
    pub fn watch_published(&self, workload: &str, identity: &str, limit: Duration) -> WatchStream {
        self.until_published(workload, limit);
        let cert = self.pki.issue(workload, identity, &[]);
        self.watch(workload, "", &cert)
    }

    /// Waits (up to `limit`) until `/v1/status` lists `workload`; panics with the status and
    /// the log after that.
    pub fn until_published(&self, workload: &str, limit: Duration) {
        let deadline = Instant::now() + limit;
        loop {
            let status = self.status();
            let listed =
                status["proxies"].as_array().is_some_and(|l| l.iter().any(|p| p["workload"] == workload));
            if listed {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "workload {workload} never published: {status:#}\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Reads `stream`'s snapshots until one satisfies `done`; panics with the last one (and the
    /// control plane's log) after `limit`.
    pub fn until(
        &self,
        stream: &WatchStream,
        limit: Duration,
        what: &str,
        done: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        let deadline = Instant::now() + limit;
        let mut last = serde_json::Value::Null;
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match stream.next_snapshot(left) {
                Some(s) if done(&s) => return s,
                Some(s) => last = s,
                None => break,
            }
        }
        panic!("no snapshot with {what}; last: {last:#}\n{}", self.log());
    }

    /// Opens `GET /v1/watch/{workload}{query}` with a client certificate and follows its lines.
    pub fn watch(&self, workload: &str, query: &str, cert: &Path) -> WatchStream {
        let mut args = vec!["-sS".to_owned(), "-N".to_owned(), "-k".to_owned()];
        args.extend(cert_args(Some(cert)));
        args.push(self.url(&format!("/v1/watch/{workload}{query}")));
        let mut child = Command::new("curl")
            .args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("curl is installed");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        WatchStream { child, lines: rx }
    }
}

/// A watch stream read by curl, line by line; curl is killed when dropped.
pub struct WatchStream {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl WatchStream {
    /// The next snapshot line (keep-alives skipped) within `limit`, parsed.
    pub fn next_snapshot(&self, limit: Duration) -> Option<serde_json::Value> {
        let deadline = Instant::now() + limit;
        loop {
            let left = deadline.checked_duration_since(Instant::now())?;
            let line = self.lines.recv_timeout(left).ok()?;
            let value: serde_json::Value = serde_json::from_str(&line).expect("each line is JSON");
            if value.get("keepalive").is_none() {
                return Some(value);
            }
        }
    }

    /// Every line (keep-alives included) that arrives within `limit`.
    pub fn lines_for(&self, limit: Duration) -> Vec<String> {
        let deadline = Instant::now() + limit;
        let mut out = Vec::new();
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.lines.recv_timeout(left) {
                Ok(line) => out.push(line),
                Err(_) => break,
            }
        }
        out
    }
}

impl Drop for WatchStream {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
