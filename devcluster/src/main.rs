//! `devcluster --addr 127.0.0.1:0 --kubeconfig PATH [--faults RATE --fault-seed N]
//! [--authz] [--audit PATH]`:
//! serve an empty API server and print `ready <url>` once it accepts requests (the
//! kubeconfig is written before).

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Parser;

#[derive(Parser, Debug)]
#[command(about = "In-process Kubernetes API server for tests and offline demos")]
struct Args {
    /// Address to listen on; port 0 picks a free port.
    #[arg(long, default_value = "127.0.0.1:0")]
    addr: SocketAddr,
    /// Kubeconfig to write for kubectl.
    #[arg(long, default_value = "devcluster.kubeconfig")]
    kubeconfig: PathBuf,
    /// Seconds from a Pod's creation until it reports Ready (simulated workloads).
    #[arg(long, default_value_t = 2.0)]
    pod_startup_seconds: f64,
    /// Serve the API only: no Deployment, ReplicaSet, StatefulSet or Pod controllers.
    #[arg(long)]
    no_workloads: bool,
    /// Inject API faults (errors, delays, dropped connections, cut watches) into this share
    /// of the resource requests, 0 to 1; discovery and OpenAPI never fault.
    #[arg(long, value_name = "RATE", value_parser = parse_rate)]
    faults: Option<f64>,
    /// Seed of the fault sequence (the same seed and requests give the same faults).
    #[arg(long, value_name = "N", default_value_t = 1)]
    fault_seed: u64,
    /// Require bearer tokens and authorize requests with RBAC (the kubeconfig's user is
    /// an all-powerful admin; TokenRequest issues ServiceAccount tokens).
    #[arg(long)]
    authz: bool,
    /// Append one JSON line per request to this file (user, verb, resource, namespace,
    /// name, code).
    #[arg(long, value_name = "PATH")]
    audit: Option<PathBuf>,
}

fn parse_rate(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(rate) if (0.0..=1.0).contains(&rate) => Ok(rate),
        Ok(_) => Err(format!("{s} is not between 0 and 1")),
        Err(e) => Err(format!("{s}: {e}")),
    }
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let _ = rustls::crypto::ring::default_provider().install_default();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "devcluster=info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let config = devcluster::Config {
        addr: args.addr,
        kubeconfig: Some(args.kubeconfig),
        workloads: (!args.no_workloads).then(|| devcluster::workloads::WorkloadConfig {
            pod_startup: std::time::Duration::from_secs_f64(
                args.pod_startup_seconds.clamp(0.0, 3600.0),
            ),
            ..Default::default()
        }),
        faults: args
            .faults
            .map(|rate| devcluster::FaultConfig::with_rate(rate).with_seed(args.fault_seed)),
        authz: args.authz,
        audit: args.audit,
        ..Default::default()
    };
    let cluster = match devcluster::DevCluster::start(config).await {
        Ok(c) => c,
        Err(e) => {
            eprintln!(
                "devcluster: {e}: {}",
                std::error::Error::source(&e)
                    .map(|s| s.to_string())
                    .unwrap_or_default()
            );
            return std::process::ExitCode::FAILURE;
        }
    };
    println!("ready {}", cluster.url());
    let _ = tokio::signal::ctrl_c().await;
    cluster.shutdown().await;
    std::process::ExitCode::SUCCESS
}
