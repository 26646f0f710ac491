//! `kube-scale`: the control plane at scale against a real API server (see
//! [`pillion_e2e::scale`]), written into BENCHMARKS.md's "The control plane at scale" section.
//!
//! ```text
//! cargo build --release --workspace --bins && cargo run --release -p pillion-e2e --bin kube-scale
//! cargo run -p pillion-e2e --bin kube-scale -- --namespaces 3 --services 3 --watchers 6 --changes 2 --out /tmp/B.md
//! ```

use std::{path::PathBuf, process::ExitCode};

use clap::Parser;
use pillion_e2e::scale::{self, Options, mesh::Shape, report};

#[derive(Parser)]
#[command(about = "Measures pillion-control on a real API server holding a whole mesh")]
struct Args {
    /// Namespaces.
    #[arg(long, default_value_t = 200)]
    namespaces: usize,
    /// Services per namespace (each one workload).
    #[arg(long, default_value_t = 10)]
    services: usize,
    /// Endpoints (Pods) per Service.
    #[arg(long, default_value_t = 10)]
    endpoints: usize,
    /// Simulated proxies, one per workload.
    #[arg(long, default_value_t = 500)]
    watchers: usize,
    /// EndpointSlice changes, one after another.
    #[arg(long, default_value_t = 30)]
    changes: usize,
    /// The report to write the section into.
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/../BENCHMARKS.md"))]
    out: PathBuf,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    let shape = Shape { namespaces: args.namespaces, services: args.services, endpoints: args.endpoints };
    let opts = Options { shape, watchers: args.watchers, changes: args.changes };
    let results = match scale::run(opts).await {
        Ok(r) => r,
        Err(e) => {
            eprintln!("kube-scale: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    let when = std::process::Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M UTC"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    let command = std::env::args().skip(1).collect::<Vec<_>>().join(" ");
    let command = format!("cargo run --release -p pillion-e2e --bin kube-scale -- {command}");
    let section = report::section(&results, &when, command.trim_end_matches(" -- "));
    print!("{section}");
    match report::splice(&args.out, &section) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("kube-scale: {e:#}");
            ExitCode::FAILURE
        }
    }
}
