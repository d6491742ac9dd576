use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

/// The marketplace control plane: runs domain services as independently scaled Kubernetes
/// workloads, with their Redis cache tier and per-branch preview environments.
#[derive(Parser)]
#[command(name = "marketplace-operator", version, about)]
struct Cli {
    /// Log format on stderr: `text` for people, `json` for log pipelines.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
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
    /// Run the controllers against the cluster in KUBECONFIG (or the in-cluster config).
    Run(marketplace_operator::run::RunArgs),
    /// Run the whole demo offline: embedded API server, controllers, sample marketplace and
    /// simulated traffic; print a summary and write an HTML report.
    Dev(marketplace_operator::dev::DevArgs),
    /// Print every CustomResourceDefinition as YAML.
    Crd,
    /// Replay a traffic trace through a scaling policy and the hpa, keda, kpa and oracle
    /// baselines; print a table and write JSON and an HTML report.
    Simulate(marketplace_operator::simulate::SimulateArgs),
}

fn init_logs(format: LogFormat, default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init(),
    }
}

fn main() -> ExitCode {
    // One process-wide TLS provider (ring), installed before any client is built.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cli = Cli::parse();
    // `dev` prints its own progress on stdout; its logs would only interleave with it.
    let default_filter = match cli.command {
        Command::Dev(_) => "warn",
        _ => "info",
    };
    init_logs(cli.log_format, default_filter);
    match cli.command {
        Command::Crd => match marketplace_operator::crd::all_crds_yaml() {
            Ok(yaml) => match marketplace_operator::output::print(&yaml) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => report_error(&e),
            },
            Err(e) => report_error(&e),
        },
        Command::Simulate(args) => match marketplace_operator::simulate::run(args) {
            Ok(_) => ExitCode::SUCCESS,
            Err(e) => report_error(&e),
        },
        Command::Run(args) => match runtime() {
            Ok(rt) => match rt.block_on(marketplace_operator::run::run(args)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => report_error(&e),
            },
            Err(e) => report_error(&e),
        },
        Command::Dev(args) => match runtime() {
            Ok(rt) => match rt.block_on(marketplace_operator::dev::run(args)) {
                Ok(_) => ExitCode::SUCCESS,
                Err(e) => report_error(&e),
            },
            Err(e) => report_error(&e),
        },
    }
}

fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
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
