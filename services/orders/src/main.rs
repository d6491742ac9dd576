use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    service_kit::install_crypto_provider();
    service_kit::init_tracing();
    let options = match orders::saga_options_from_env() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("{}", service_kit::report(&e));
            return ExitCode::FAILURE;
        }
    };
    let result = service_kit::run_service(
        orders::SERVICE,
        orders::PEERS,
        &orders::MIGRATOR,
        |kit| Ok(orders::router(orders::http_saga(kit, options)?)),
        // Once migrated: finish what a previous process left half-way, then keep watching.
        move |kit| async move {
            match orders::http_saga(&kit, options) {
                Ok(saga) => saga.resume_forever().await,
                Err(e) => tracing::error!("{}", service_kit::report(&e)),
            }
        },
    )
    .await;
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{}", service_kit::report(&e));
            ExitCode::FAILURE
        }
    }
}
