//! Closed-loop throughput runs with the standard tools, pinned to the client core: `wrk` for
//! HTTP/1.1 keep-alive and `h2load` for HTTP/2 (h2c with prior knowledge), with the proxy's CPU
//! time read from `/proc` around each run.

use std::{net::SocketAddr, process::Command, time::Duration};

use anyhow::{Context, Result, bail};

use super::{peers::CLIENT_CORE, procs};

/// What one throughput run measured.
#[derive(Clone, Debug)]
pub struct Throughput {
    pub rps: f64,
    pub requests: u64,
    /// Non-2xx responses plus socket errors, failed and timed-out requests.
    pub errors: u64,
    /// Proxy CPU seconds per 10,000 requests; `None` without a proxy.
    pub cpu_per_10k: Option<f64>,
}

/// `wrk -t1 -c50 -dSECS` against `http://addr/fixed`.
pub fn wrk(addr: SocketAddr, secs: u64, proxy_pids: &[u32]) -> Result<Throughput> {
    let mut cmd = Command::new("taskset");
    cmd.args(["-c", &CLIENT_CORE.to_string(), "wrk", "-t1", "-c50"])
        .arg(format!("-d{secs}s"))
        .arg(format!("http://{addr}/fixed"));
    let (out, cpu) = run_measured(&mut cmd, secs, proxy_pids)?;
    let mut t = parse_wrk(&out).with_context(|| format!("unexpected wrk output:\n{out}"))?;
    t.cpu_per_10k = per_10k(cpu, t.requests);
    Ok(t)
}

/// `h2load -t1 -c10 -m10 -D SECS` against `http://addr/fixed`.
pub fn h2load(addr: SocketAddr, secs: u64, proxy_pids: &[u32]) -> Result<Throughput> {
    let mut cmd = Command::new("taskset");
    cmd.args(["-c", &CLIENT_CORE.to_string(), "h2load", "-t1", "-c10", "-m10", "-D"])
        .arg(secs.to_string())
        .arg(format!("http://{addr}/fixed"));
    let (out, cpu) = run_measured(&mut cmd, secs, proxy_pids)?;
    let mut t = parse_h2load(&out).with_context(|| format!("unexpected h2load output:\n{out}"))?;
    t.cpu_per_10k = per_10k(cpu, t.requests);
    Ok(t)
}

/// Runs a load tool and returns its stdout and the proxies' CPU seconds during the run.
fn run_measured(cmd: &mut Command, secs: u64, pids: &[u32]) -> Result<(String, Option<f64>)> {
    let before = procs::cpu_seconds(pids);
    let out = procs::run_bounded(cmd, Duration::from_secs(secs + 30))?;
    let after = procs::cpu_seconds(pids);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        bail!("{cmd:?} failed ({}): {}{}", out.status, stdout, String::from_utf8_lossy(&out.stderr));
    }
    let cpu = (!pids.is_empty()).then_some(after - before);
    Ok((stdout, cpu))
}

fn per_10k(cpu: Option<f64>, requests: u64) -> Option<f64> {
    cpu.filter(|_| requests > 0).map(|c| c / requests as f64 * 10_000.0)
}

/// Numbers of the line starting with `prefix` (after trimming), in order.
fn numbers_after(text: &str, prefix: &str) -> Option<Vec<f64>> {
    let line = text.lines().map(str::trim).find(|l| l.starts_with(prefix))?;
    Some(
        line[prefix.len()..]
            .split(|c: char| !(c.is_ascii_digit() || c == '.'))
            .filter_map(|w| w.parse().ok())
            .collect(),
    )
}

/// Parses wrk's summary: `N requests in`, `Requests/sec:`, `Non-2xx or 3xx responses:` and
/// `Socket errors: connect A, read B, write C, timeout D`.
fn parse_wrk(out: &str) -> Option<Throughput> {
    let requests =
        out.lines().find(|l| l.contains(" requests in "))?.split_whitespace().next()?.parse().ok()?;
    let rps = *numbers_after(out, "Requests/sec:")?.first()?;
    let non2xx =
        numbers_after(out, "Non-2xx or 3xx responses:").and_then(|n| n.first().copied()).unwrap_or(0.0);
    let socket: f64 = numbers_after(out, "Socket errors:").map(|n| n.iter().sum()).unwrap_or(0.0);
    Some(Throughput { rps, requests, errors: (non2xx + socket) as u64, cpu_per_10k: None })
}

/// Parses h2load's summary: `finished in Xs, R req/s`, `requests: N total, N started, N done,
/// S succeeded, F failed, E errored, T timeout` and `status codes: A 2xx, B 3xx, C 4xx, D 5xx`.
fn parse_h2load(out: &str) -> Option<Throughput> {
    let finished = numbers_after(out, "finished in")?;
    let rps = *finished.get(1)?;
    let req = numbers_after(out, "requests:")?;
    // `failed` counts non-2xx/3xx answers as well as errored and timed-out requests.
    let (done, failed) = (*req.get(2)?, *req.get(4)?);
    let redirects = *numbers_after(out, "status codes:")?.get(2)?;
    Some(Throughput { rps, requests: done as u64, errors: (failed + redirects) as u64, cpu_per_10k: None })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrk_summary_with_errors_is_parsed() {
        let out = "Running 1s test @ http://127.0.0.1:1/fixed\n  1 threads and 50 connections\n\
                   \x20 52000 requests in 1.00s, 60.00MB read\n  Socket errors: connect 0, read 2, write 0, timeout 1\n\
                   \x20 Non-2xx or 3xx responses: 4\nRequests/sec:  51990.12\nTransfer/sec:     60.00MB\n";
        let t = parse_wrk(out).unwrap();
        assert_eq!((t.requests, t.errors), (52000, 7));
        assert!((t.rps - 51990.12).abs() < 1e-6);
    }

    #[test]
    fn h2load_summary_counts_non_2xx_as_errors() {
        let out = "finished in 1.00s, 45000.50 req/s, 47.00MB/s\n\
                   requests: 45000 total, 45010 started, 45000 done, 44990 succeeded, 10 failed, 0 errored, 0 timeout\n\
                   status codes: 44990 2xx, 0 3xx, 0 4xx, 10 5xx\n";
        let t = parse_h2load(out).unwrap();
        assert_eq!((t.requests, t.errors), (45000, 10));
        assert!((t.rps - 45000.5).abs() < 1e-6);
    }
}
