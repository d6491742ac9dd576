use std::process::ExitCode;

use marketplace_monolith::{Kits, config_from_env};
use service_kit::{Health, StartError};

async fn run() -> Result<(), StartError> {
    let config = config_from_env()?;
    let kits = Kits::new(&config)?;
    let options = orders::SagaOptions::default();
    let saga = kits.saga(options);
    let health = Health::new(&kits.all());
    let router = service_kit::app(
        "marketplace-monolith",
        kits.routes(saga.clone()),
        health.clone(),
        kits.users.metrics.clone(),
        config.body_limit_bytes,
    );
    tokio::spawn(async move {
        kits.migrate_until_done().await;
        saga.resume_forever().await;
    });
    service_kit::serve(router, config.port, health, config.shutdown_grace).await
}

#[tokio::main]
async fn main() -> ExitCode {
    service_kit::install_crypto_provider();
    service_kit::init_tracing();
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{}", service_kit::report(&e));
            ExitCode::FAILURE
        }
    }
}
