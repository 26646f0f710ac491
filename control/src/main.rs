//! The `pillion-control` command: `serve` the control plane, `check` a config directory, or make
//! a bootstrap `token` for a workload.

use std::{net::SocketAddr, path::PathBuf, process::ExitCode, time::Duration};

use clap::{Parser, Subcommand, ValueEnum};
use pillion_config::duration::HumanDuration;
use pillion_control::{ServeOptions, source};
use tracing_subscriber::EnvFilter;

/// pillion-control: pushes routes, services and policies to Pillion proxies and signs their
/// certificates.
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
    /// Serve the control-plane API over HTTPS.
    Serve {
        /// Directory of YAML files with `services`, `routes` and `workloads`; with
        /// `--kubernetes`, laid over the cluster's model (it wins name clashes).
        #[arg(long, env = "PILLION_CONTROL_CONFIG_DIR", required_unless_present = "kubernetes")]
        config_dir: Option<PathBuf>,
        /// Build the mesh from the Kubernetes API (Services, EndpointSlices, Pods, Namespaces).
        #[arg(long, env = "PILLION_CONTROL_KUBERNETES")]
        kubernetes: bool,
        /// Kubeconfig for `--kubernetes`; without it, the in-cluster config.
        #[arg(long, env = "PILLION_CONTROL_KUBECONFIG", requires = "kubernetes")]
        kubeconfig: Option<PathBuf>,
        /// DNS suffix of Services, for their `NAME.NS.svc.DOMAIN` addresses.
        #[arg(long, env = "PILLION_CONTROL_CLUSTER_DOMAIN", default_value = "cluster.local")]
        cluster_domain: String,
        /// CA directory holding `ca.pem` and `ca-key.pem` (`pillion-certs ca init`).
        #[arg(long, env = "PILLION_CA_DIR")]
        ca: PathBuf,
        /// HTTPS address.
        #[arg(long, env = "PILLION_CONTROL_BIND", default_value = "0.0.0.0:15010")]
        bind: SocketAddr,
        /// Bootstrap tokens, one `WORKLOAD sha256:HEX` line each (see `token`); a token enrols
        /// only its workload. Without it, only a workload's own valid certificate can get it a
        /// new one.
        #[arg(long, env = "PILLION_CONTROL_TOKEN_FILE")]
        token_file: Option<PathBuf>,
        /// Lifetime of signed certificates, e.g. `24h`.
        #[arg(long, env = "PILLION_CONTROL_CERT_TTL", default_value = "24h")]
        cert_ttl: HumanDuration,
        /// Longest quiet time on a watch stream before a keep-alive line.
        #[arg(long, env = "PILLION_CONTROL_KEEPALIVE", default_value = "15s")]
        keepalive: HumanDuration,
    },
    /// Check a config directory; print `FILE:LINE:COL: message` for each problem.
    Check {
        /// Directory of YAML files.
        #[arg(long, env = "PILLION_CONTROL_CONFIG_DIR")]
        config_dir: PathBuf,
    },
    /// Make a bootstrap token for one workload: the token on stdout (for that workload's pods
    /// only), and on stderr its line for `serve --token-file`, after `#` comments, so that
    /// `pillion-control token --workload W >W.token 2>>tokens` files both.
    Token {
        /// The workload the token enrols (its `name` in the config directory).
        #[arg(long)]
        workload: String,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_format);
    match cli.command {
        Command::Check { config_dir } => match source::load_dir(&config_dir) {
            Ok(mesh) => {
                println!(
                    "{}: ok ({} services, {} routes, {} workloads)",
                    config_dir.display(),
                    mesh.services.len(),
                    mesh.routes.len(),
                    mesh.workloads.len()
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{e}");
                ExitCode::FAILURE
            }
        },
        Command::Token { workload } => match pillion_control::tokens::generate(&workload) {
            Ok(new) => {
                println!("{}", new.token);
                eprintln!("# bootstrap token for workload {workload:?}: the token is on stdout; give it to");
                eprintln!("# that workload only. Append this line to pillion-control's --token-file:");
                eprintln!("{}", new.line);
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("pillion-control: {e}");
                ExitCode::FAILURE
            }
        },
        Command::Serve {
            config_dir,
            kubernetes,
            kubeconfig,
            cluster_domain,
            ca,
            bind,
            token_file,
            cert_ttl,
            keepalive,
        } => {
            let opts = ServeOptions {
                config_dir,
                kubernetes: kubernetes
                    .then_some(pillion_control::kubernetes::Options { kubeconfig, cluster_domain }),
                ca_dir: ca,
                bind,
                token_file,
                cert_ttl: cert_ttl.0,
                keepalive: keepalive.0.max(Duration::from_millis(100)),
            };
            let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("pillion-control: cannot start the async runtime: {e}");
                    return ExitCode::FAILURE;
                }
            };
            let result = runtime.block_on(pillion_control::run(opts));
            // Open watch streams and the directory watcher need no goodbye: proxies reconnect.
            runtime.shutdown_background();
            match result {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!("{e:#}");
                    eprintln!("pillion-control: {e:#}");
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
