use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// The marketplace control plane: runs domain services as independently scaled Kubernetes
/// workloads, with their Redis cache tier and per-branch preview environments.
#[derive(Parser)]
#[command(name = "marketplace-operator", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the controllers against the cluster in KUBECONFIG (or the in-cluster config).
    Run {
        /// Where to serve /metrics, /healthz and /readyz.
        #[arg(long, default_value = "0.0.0.0:8080")]
        metrics_addr: String,
    },
    /// Run the whole demo offline: embedded API server, controllers, sample marketplace and
    /// simulated traffic.
    Dev {
        /// Keep the API server and controllers running until Ctrl-C.
        #[arg(long)]
        serve: bool,
        /// Where to write the kubeconfig of the embedded API server.
        #[arg(long, default_value = "./devcluster.kubeconfig")]
        kubeconfig: PathBuf,
        /// How much faster than real time simulated time runs.
        #[arg(long, default_value_t = 1.0)]
        speed: f64,
        /// Where to write the HTML report.
        #[arg(long)]
        report: Option<PathBuf>,
    },
    /// Print every CustomResourceDefinition as YAML.
    Crd,
    /// Replay a traffic trace through a scaling policy and the hpa, keda, kpa and oracle
    /// baselines; print a table and write JSON and an HTML report.
    Simulate(marketplace_operator::simulate::SimulateArgs),
}

fn main() -> ExitCode {
    // One process-wide TLS provider (ring), installed before any client is built.
    let _ = rustls::crypto::ring::default_provider().install_default();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let cli = Cli::parse();
    match cli.command {
        Command::Crd => match marketplace_operator::crd::all_crds_yaml() {
            Ok(yaml) => {
                print!("{yaml}");
                ExitCode::SUCCESS
            }
            Err(e) => report_error(&e),
        },
        Command::Simulate(args) => match marketplace_operator::simulate::run(args) {
            Ok(_) => ExitCode::SUCCESS,
            Err(e) => report_error(&e),
        },
        Command::Run { .. } => not_built("run", "the controllers are not built yet"),
        Command::Dev { .. } => not_built(
            "dev",
            "the embedded devcluster demo is not built yet; `marketplace-operator simulate` works today",
        ),
    }
}

/// Prints an error with its chain of causes, one per line, as a user needs to act on it.
fn report_error(e: &dyn std::error::Error) -> ExitCode {
    eprintln!("error: {e}");
    let mut cause = e.source();
    while let Some(c) = cause {
        eprintln!("  caused by: {c}");
        cause = c.source();
    }
    ExitCode::FAILURE
}

fn not_built(command: &str, why: &str) -> ExitCode {
    eprintln!("error: `marketplace-operator {command}` is not available in this version: {why}");
    ExitCode::from(2)
}
