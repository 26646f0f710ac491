//! The report's sections on how the figures were got: the cost of mTLS between two Pillion
//! hops, the correctness checks, and the machine and the method (pinning, layouts, rounds, and
//! how each configuration is set up).

use std::fmt::Write as _;

use super::{
    env::Machine,
    peers::{CLIENT_CORE, PROXY_CORE},
    report::{mib, or_dash, ratio, thousands, us},
    results::{Layout, Row, Settings},
};

/// Reads one figure of a row, and formats it.
type Figure = (&'static str, fn(&Row) -> Option<f64>, fn(f64) -> String);

pub fn mtls(out: &mut String, rows: &[Row], s: &Settings) {
    out.push_str("## The cost of mTLS between two Pillion hops\n\n");
    let find = |n: &str| rows.iter().find(|r| r.name == n && r.layout == Layout::Proxy);
    match (&s.mtls, find("pillion x2 plain"), find("pillion x2 mTLS")) {
        (Err(why), _, _) => {
            let _ = writeln!(
                out,
                "mTLS row: pending the mTLS issue (`pillion check` rejects a \
                                   config with `tls:` and `inbound.mtls: strict`: {why}).\n"
            );
        }
        (Ok(()), Some(plain), Some(tls)) => {
            let _ = writeln!(
                out,
                "| measure | two hops, plaintext | two hops, mTLS | mTLS vs plaintext |\n|---|---:|---:|---:|"
            );
            let lines: [Figure; 5] = [
                ("HTTP/1.1 req/s", Row::h1_rps, thousands),
                ("HTTP/2 req/s", Row::h2_rps, thousands),
                ("p99 latency", |r| r.lat_us(|l| l.p99), us),
                ("CPU s / 10k req (HTTP/1.1)", Row::h1_cpu, |v| format!("{v:.3} s")),
                ("RSS idle", |r| r.rss_idle_kib.map(|v| v as f64), mib),
            ];
            for (name, get, fmt) in lines {
                let (a, b) = (get(plain), get(tls));
                let _ =
                    writeln!(out, "| {name} | {} | {} | {} |", or_dash(a, fmt), or_dash(b, fmt), ratio(b, a));
            }
            out.push('\n');
        }
        _ => out.push_str("mTLS row: not measured.\n\n"),
    }
}

pub fn correctness(out: &mut String, rows: &[Row]) {
    let _ = writeln!(
        out,
        "## Correctness\n\nBefore each configuration's throughput runs, in every round: 20 GETs of \
         `/fixed` over HTTP/1.1 and 20 over h2c, each must answer 200 with a 1,024-byte body, \
         in each layout. For the mTLS row, hop B's metrics must also show that those requests \
         arrived over TLS.\n\n\
         | configuration | layout | check | errors under load |\n|---|---|---|---:|"
    );
    for r in rows {
        let check = match &r.failure {
            None => "passed".to_owned(),
            Some(e) => format!("FAILED: {}", e.replace('\n', " ").replace('|', "/")),
        };
        let _ = writeln!(out, "| {} | {} | {check} | {} |", r.name, r.layout.name(), r.errors());
    }
    out.push('\n');
}

pub fn method(out: &mut String, rows: &[Row], s: &Settings, m: &Machine) {
    let _ = writeln!(
        out,
        "## Machine and method\n\n| | |\n|---|---|\n| CPU | {} |\n| cores | {} |\n| kernel | {} |\n| date | {} |",
        m.cpu, m.cores, m.kernel, m.date
    );
    for (tool, v) in &m.tools {
        let _ = writeln!(out, "| {tool} | {v} |");
    }
    let _ = writeln!(
        out,
        "\n- Pinning (taskset), in two layouts measured in the same run, every configuration of \
         both interleaved in each round:\n  \
         - `proxy`: every proxy under test alone on core {PROXY_CORE}; the upstream \
         (`pillion-e2e-backend`, `/fixed` = 1 KiB over HTTP/1.1 and h2c), wrk (`-t1`), h2load \
         (`-t1`) and the bench's own latency and idle-connection clients on core {CLIENT_CORE}. \
         This machine has {} cores, so the client and the upstream share one core: absolute \
         numbers are bounded by that core, and `direct` pays for the client and the upstream \
         on one core too.\n  \
         - `pod`: the proxy and an upstream of its own (a second `pillion-e2e-backend`) share \
         core {PROXY_CORE}, as a sidecar shares its pod's CPU with the app it fronts; the \
         clients keep core {CLIENT_CORE}. Each proxy runs a second time, pointed at that \
         upstream; `direct` is client -> that upstream. The proxy's cost here shows as the \
         app's lost throughput, not only as the proxy's own CPU. The two-hop and tracing rows \
         run in the `proxy` layout only, to keep a full run near half an hour.\n\
         - Pillion sees one CPU under taskset and so runs a single-threaded runtime; nginx has \
         one worker, haproxy one thread, Envoy `--concurrency 1`.\n\
         - Each throughput run lasts {} s; rounds: {}. A round takes one measure at a time \
         (HTTP/1.1 throughput, then HTTP/2, then latency in one-second slices taken in turn) \
         over every configuration back to back, each round starting one configuration further \
         along the list: the runs compared with each other are seconds apart, so that this \
         machine's slow spells (tens of seconds in which the proxy core runs about a quarter \
         slower) and order effects hit all alike.\n\
         - Everything runs on 127.0.0.1.",
        m.cores, s.secs, s.rounds
    );
    let _ = writeln!(out, "- Load average (1, 5, 15 min) when the run started: {}.", m.loadavg);
    for note in &s.notes {
        let _ = writeln!(out, "- {note}");
    }
    out.push_str("\n| configuration | how it is set up |\n|---|---|\n");
    // One line per configuration: its pod-layout run is set up alike.
    for r in rows.iter().filter(|r| r.layout == Layout::Proxy) {
        let _ = writeln!(out, "| {} | {} |", r.name, r.note);
    }
}
