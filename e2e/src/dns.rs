//! A real DNS server for tests: Debian's dnsmasq (package dnsmasq-base) in the foreground on
//! `127.0.0.1:PORT`, answering for names under `mesh.test` from a hosts file only (no upstream,
//! no `/etc/hosts`), every record with the TTL it was started with. Records change by rewriting
//! the file and sending SIGHUP, which dnsmasq rereads it on; a name it lacks is NXDOMAIN. It can
//! be killed and started again on the same port. Killed when dropped.

use std::{
    fs,
    net::SocketAddr,
    path::PathBuf,
    process::{Child, Command, Stdio},
};

use crate::process::{find_program, free_addr, wait_for_port};

/// The zone dnsmasq answers for; a name in it without records is NXDOMAIN, not REFUSED.
pub const ZONE: &str = "mesh.test";

/// A running dnsmasq.
pub struct Dnsmasq {
    /// Where it answers, UDP and TCP.
    pub addr: SocketAddr,
    ttl: u32,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl Dnsmasq {
    /// Starts dnsmasq on a free port with `records` (`(name, IP)`, a name repeated for several
    /// addresses) at `ttl` seconds; `None` when dnsmasq is not installed.
    pub fn start(ttl: u32, records: &[(&str, &str)]) -> Option<Self> {
        find_program("dnsmasq")?;
        let mut d = Self { addr: free_addr(), ttl, dir: tempfile::tempdir().expect("temp dir"), child: None };
        d.write_hosts(records);
        d.spawn();
        Some(d)
    }

    fn hosts(&self) -> PathBuf {
        self.dir.path().join("hosts")
    }

    fn write_hosts(&self, records: &[(&str, &str)]) {
        let text: String = records.iter().map(|(name, ip)| format!("{ip} {name}\n")).collect();
        let tmp = self.dir.path().join("hosts.tmp");
        fs::write(&tmp, text).expect("write hosts");
        fs::rename(&tmp, self.hosts()).expect("replace hosts");
    }

    fn spawn(&mut self) {
        let program = find_program("dnsmasq").expect("dnsmasq");
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("dnsmasq.log"))
            .expect("log file");
        let mut cmd = Command::new(program);
        cmd.arg("--keep-in-foreground")
            .arg("--conf-file=/dev/null")
            .arg(format!("--port={}", self.addr.port()))
            .arg("--listen-address=127.0.0.1")
            .arg("--bind-interfaces")
            .arg("--no-resolv")
            .arg("--no-hosts")
            .arg(format!("--addn-hosts={}", self.hosts().display()))
            .arg(format!("--local=/{ZONE}/"))
            .arg(format!("--local-ttl={}", self.ttl))
            .arg(format!("--pid-file={}", self.dir.path().join("pid").display()))
            .arg("--log-queries")
            .arg("--log-facility=-");
        // As root it would drop to `nobody`, who cannot read the test's private directory.
        if is_root() {
            cmd.arg("--user=root");
        }
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log file"))
            .stderr(log)
            .spawn()
            .expect("spawn dnsmasq");
        wait_for_port(self.addr, &mut child, "dnsmasq");
        self.child = Some(child);
    }

    /// Replaces every record and has dnsmasq reread them (SIGHUP).
    pub fn set(&self, records: &[(&str, &str)]) {
        self.write_hosts(records);
        let pid = self.child.as_ref().expect("dnsmasq is running").id();
        let ok = Command::new("kill").args(["-HUP", &pid.to_string()]).status().expect("kill");
        assert!(ok.success(), "kill -HUP {pid}");
    }

    /// Kills it: queries to its port go unanswered.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts it again on the same port with `records`.
    pub fn restart(&mut self, records: &[(&str, &str)]) {
        self.kill();
        self.write_hosts(records);
        self.spawn();
    }

    /// Its log: every query and answer.
    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("dnsmasq.log")).unwrap_or_default()
    }
}

impl Drop for Dnsmasq {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            eprintln!("--- dnsmasq log ---\n{}", self.log());
        }
    }
}

fn is_root() -> bool {
    Command::new("id").arg("-u").output().is_ok_and(|o| o.stdout.starts_with(b"0\n"))
}
