//! `pillion-e2e-backend --listen ADDR --name NAME [--delay-ms N]`: the test upstream.

use std::{net::SocketAddr, time::Duration};

use clap::Parser;

/// A test upstream for Pillion's tests, demo and benchmark.
#[derive(Parser)]
struct Args {
    /// Address to serve on.
    #[arg(long)]
    listen: SocketAddr,
    /// Name reported in `x-backend`.
    #[arg(long, default_value = "backend")]
    name: String,
    /// Added latency on every request, in milliseconds.
    #[arg(long, default_value_t = 0)]
    delay_ms: u64,
    /// Answer every request with this status (a sick endpoint).
    #[arg(long)]
    fail_status: Option<u16>,
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let a = Args::parse();
    let behaviour = pillion_e2e::backend::Behaviour {
        delay: Duration::from_millis(a.delay_ms),
        fail_status: a.fail_status,
    };
    pillion_e2e::backend::run(a.listen, a.name, behaviour).await
}
