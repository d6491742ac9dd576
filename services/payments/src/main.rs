use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    service_kit::install_crypto_provider();
    service_kit::init_tracing();
    let result = service_kit::run_service(
        payments::SERVICE,
        payments::PEERS,
        &payments::MIGRATOR,
        |kit| Ok(payments::router(kit.clone())),
        |_| async {},
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
