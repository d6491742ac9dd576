use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    service_kit::install_crypto_provider();
    service_kit::init_tracing();
    let result = service_kit::run_service(
        inventory::SERVICE,
        inventory::PEERS,
        &inventory::MIGRATOR,
        |kit| Ok(inventory::router(kit.clone())),
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
