//! Processes the benchmark starts, and what it reads about them from `/proc`.
//!
//! Every long-lived process (upstream, proxies) runs under `taskset -c CORE` in its own process
//! group, so that the whole group (nginx's master and worker alike) is killed when its guard is
//! dropped, on error paths too, or when the bench itself is interrupted (Ctrl-C, SIGTERM).
//! Short-lived tools (wrk, h2load, gnuplot, the setup script) run with a deadline.

pub use pillion_e2e::{
    netns::is_root,
    process::find_program,
    procstat::{cpu_seconds, rss_kib},
};
use std::{
    io::Read,
    net::{SocketAddr, TcpStream},
    os::unix::process::CommandExt,
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Output, Stdio},
    sync::Mutex,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};

/// Process groups still alive, killed by the interrupt handler.
static LIVE_GROUPS: Mutex<Vec<u32>> = Mutex::new(Vec::new());

/// A process pinned to one core, killed with its whole process group when dropped.
pub struct Pinned {
    name: String,
    child: Child,
    log: PathBuf,
}

impl Pinned {
    /// Starts `program args` under `taskset -c core`, output to `log`.
    pub fn spawn(
        name: &str,
        core: usize,
        program: &Path,
        args: &[String],
        env: &[(&str, &str)],
        log: &Path,
    ) -> Result<Self> {
        let out = std::fs::File::create(log).with_context(|| format!("create {}", log.display()))?;
        let child = Command::new("taskset")
            .arg("-c")
            .arg(core.to_string())
            .arg(program)
            .args(args)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .process_group(0)
            .spawn()
            .with_context(|| format!("start {name} ({})", program.display()))?;
        LIVE_GROUPS.lock().expect("lock").push(child.id());
        Ok(Self { name: name.to_owned(), child, log: log.to_owned() })
    }

    /// Process id (taskset execs the program, so this is the program's pid).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Its name, for messages.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The last lines of its log, for error messages.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(15)..].join("\n")
    }

    /// Its exit status if it has exited.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Waits until `addr` accepts connections, failing if the process exits first.
    pub fn wait_for_port(&mut self, addr: SocketAddr, limit: Duration) -> Result<()> {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                return Ok(());
            }
            if let Some(status) = self.exited() {
                bail!(
                    "{} exited ({status}) before listening on {addr}; log:\n{}",
                    self.name,
                    self.log_tail()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        bail!("{} did not listen on {addr} within {limit:?}; log:\n{}", self.name, self.log_tail())
    }
}

impl Drop for Pinned {
    fn drop(&mut self) {
        let group = self.child.id();
        // TERM first so that nginx and haproxy stop their workers, then KILL whatever is left.
        signal_group(group, "TERM");
        let deadline = Instant::now() + Duration::from_secs(3);
        while Instant::now() < deadline && self.exited().is_none() {
            std::thread::sleep(Duration::from_millis(20));
        }
        signal_group(group, "KILL");
        let _ = self.child.wait();
        LIVE_GROUPS.lock().expect("lock").retain(|g| *g != group);
    }
}

fn signal_group(group: u32, sig: &str) {
    let _ = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg("--")
        .arg(format!("-{group}"))
        .stderr(Stdio::null())
        .status();
}

/// On SIGINT or SIGTERM, kills every process group still alive and exits 130.
pub fn kill_children_on_interrupt() {
    std::thread::spawn(|| {
        let Ok(rt) = tokio::runtime::Builder::new_current_thread().enable_all().build() else {
            return;
        };
        rt.block_on(async {
            use tokio::signal::unix::{SignalKind, signal};
            let (Ok(mut int), Ok(mut term)) =
                (signal(SignalKind::interrupt()), signal(SignalKind::terminate()))
            else {
                return;
            };
            tokio::select! {
                _ = int.recv() => {}
                _ = term.recv() => {}
            }
            for group in LIVE_GROUPS.lock().expect("lock").iter() {
                signal_group(*group, "KILL");
            }
            eprintln!("bench: interrupted; stopped every process it started");
            std::process::exit(130);
        });
    });
}

/// Runs a short-lived command to completion, killing it after `limit`.
pub fn run_bounded(cmd: &mut Command, limit: Duration) -> Result<Output> {
    let what = format!("{cmd:?}");
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("run {what}"))?;
    let stdout = read_in_background(child.stdout.take());
    let stderr = read_in_background(child.stderr.take());
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(s) = child.try_wait()? {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            bail!("{what} did not finish within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Ok(Output {
        status,
        stdout: stdout.join().unwrap_or_default(),
        stderr: stderr.join().unwrap_or_default(),
    })
}

fn read_in_background<R: Read + Send + 'static>(pipe: Option<R>) -> std::thread::JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        if let Some(mut p) = pipe {
            let _ = p.read_to_end(&mut buf);
        }
        buf
    })
}


/// Pins the bench process itself (the load generators it runs in-process) to `core`. Threads
/// started afterwards inherit it.
pub fn pin_self(core: usize) -> Result<()> {
    let out = Command::new("taskset")
        .args(["-a", "-p", "-c", &core.to_string(), &std::process::id().to_string()])
        .output()
        .context("run taskset")?;
    if !out.status.success() {
        bail!("taskset -p failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(())
}

/// Raises this process's open-file soft limit to `limit` if it is lower, so that it can hold
/// many idle connections (needs a hard limit at least as high, or root).
pub fn raise_nofile(limit: u64) {
    let soft = std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|s| {
            let line = s.lines().find(|l| l.starts_with("Max open files"))?.to_owned();
            line.split_whitespace().nth(3)?.parse::<u64>().ok()
        })
        .unwrap_or(0u64);
    if soft >= limit {
        return;
    }
    let value = if is_root() { format!("{limit}:{limit}") } else { format!("{limit}:") };
    let _ = Command::new("prlimit")
        .args(["--pid", &std::process::id().to_string(), &format!("--nofile={value}")])
        .stderr(Stdio::null())
        .status();
}

/// On a panic (the release profile aborts, so no destructor runs), kills every process group
/// still alive before the default report.
pub fn kill_children_on_panic() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if let Ok(groups) = LIVE_GROUPS.try_lock() {
            for group in groups.iter() {
                signal_group(*group, "KILL");
            }
        }
        default(info);
    }));
}
