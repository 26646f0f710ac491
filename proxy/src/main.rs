//! The `pillion` command: `run` the proxy, `check` a config file, `init` the pod's iptables.

use std::{path::PathBuf, process::ExitCode};

use clap::{Parser, Subcommand, ValueEnum};
use pillion_proxy::{RunOptions, iptables};
use tracing_subscriber::EnvFilter;

/// Pillion: a lightweight sidecar proxy.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    /// Log format.
    #[arg(long, global = true, env = "PILLION_LOG_FORMAT", default_value = "text")]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Run the proxy.
    Run {
        /// Config file (YAML).
        #[arg(long, env = "PILLION_CONFIG")]
        config: PathBuf,
        /// Longest wait for in-flight requests after SIGTERM, e.g. `30s`.
        #[arg(long, env = "PILLION_DRAIN_TIMEOUT", default_value = "30s")]
        drain_timeout: pillion_config::duration::HumanDuration,
        /// Log one line per request (target `pillion::access`).
        #[arg(long, env = "PILLION_ACCESS_LOG")]
        access_log: bool,
    },
    /// Check a config file; print `FILE:LINE:COL: message` for each problem.
    Check {
        /// Config file (YAML).
        #[arg(long, env = "PILLION_CONFIG")]
        config: PathBuf,
    },
    /// Install the iptables rules that send the pod's TCP through the proxy (init container).
    Init(iptables::InitOptions),
}

/// The async runtime: one thread when the process may use one CPU (a sidecar with a CPU limit
/// of 1, or pinned), which saves the work-stealing scheduler's synchronisation; otherwise a
/// worker per CPU.
fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    let cpus = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    if cpus == 1 {
        tokio::runtime::Builder::new_current_thread().enable_all().build()
    } else {
        tokio::runtime::Builder::new_multi_thread().enable_all().build()
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_format);
    match cli.command {
        Command::Init(opts) => match iptables::run(&opts) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("pillion init: {e}");
                ExitCode::FAILURE
            }
        },
        Command::Check { config } => match pillion_config::load(&config) {
            Ok(_) => {
                println!("{}: ok", config.display());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{e}");
                ExitCode::FAILURE
            }
        },
        Command::Run { config, drain_timeout, access_log } => {
            let opts = RunOptions { config, drain_timeout: drain_timeout.0, access_log };
            let runtime = match runtime() {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("pillion: cannot start the async runtime: {e}");
                    return ExitCode::FAILURE;
                }
            };
            match runtime.block_on(pillion_proxy::run(opts)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!("{e:#}");
                    eprintln!("pillion: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

fn init_logging(format: LogFormat) {
    let filter = EnvFilter::try_from_env("PILLION_LOG")
        .or_else(|_| EnvFilter::try_from_default_env())
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
}
