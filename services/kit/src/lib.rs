//! service-kit: what every marketplace domain service shares, so that each one is only its
//! domain. A service builds its routes as a `utoipa_axum` router over a [`Kit`]; [`app`]
//! adds the standard endpoints (`/healthz`, `/readyz`, `/metrics`, `/openapi.json`), the
//! request envelope (request id, RED metrics, problem+json) and the body limit; [`serve`]
//! runs it until SIGTERM and drains in-flight requests.

pub mod cache;
pub mod config;
pub mod error;
pub mod extract;
pub mod idempotency;
pub mod metrics;
pub mod middleware;
pub mod peer;
mod server;
#[cfg(feature = "testing")]
pub mod testing;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use sqlx::PgPool;
use sqlx::migrate::{MigrateError, Migrator};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

pub use cache::{Cache, CacheOptions};
pub use config::{Config, ConfigError};
pub use error::{ApiError, ApiResult, Problem};
pub use metrics::Metrics;
pub use server::{Health, app, serve, serve_on, shutdown_signal};

/// Re-exported so services name one version.
pub use sqlx;
pub use utoipa;
pub use utoipa_axum;

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("invalid DATABASE_URL")]
    DatabaseUrl(#[source] sqlx::Error),
    #[error(transparent)]
    Cache(#[from] cache::CacheError),
    #[error("failed to create the client for peer {0}")]
    Peer(String, #[source] Box<peer::PeerError>),
    #[error("failed to listen on port {port}")]
    Listen {
        port: u16,
        #[source]
        source: std::io::Error,
    },
    #[error("server failed")]
    Serve(#[source] std::io::Error),
}

/// One service's shared parts, cloned into its handlers' state.
#[derive(Clone)]
pub struct Kit {
    pub config: Arc<Config>,
    pub db: PgPool,
    pub cache: Arc<Cache>,
    pub metrics: Arc<Metrics>,
    migrated: Arc<AtomicBool>,
}

impl Kit {
    /// Sets up the pool and the cache without connecting to either: a service starts (and
    /// answers `/healthz`) while its database is still coming up.
    pub fn new(config: Config, metrics: Arc<Metrics>) -> Result<Self, StartError> {
        let mut options: PgConnectOptions = config
            .database_url
            .parse()
            .map_err(StartError::DatabaseUrl)?;
        if let Some(schema) = &config.database_schema {
            options = options.options([("search_path", schema.as_str())]);
        }
        let db = PgPoolOptions::new()
            .max_connections(config.database_max_connections)
            .acquire_timeout(Duration::from_secs(3))
            .connect_lazy_with(options);
        let cache = match &config.redis_url {
            Some(url) => Cache::new(
                url,
                &config.cache_key_prefix,
                CacheOptions {
                    ttl: config.cache_ttl,
                    ..CacheOptions::default()
                },
                metrics.clone(),
            )?,
            None => {
                tracing::warn!("REDIS_URL is not set: running without a cache");
                Cache::disabled(metrics.clone())
            }
        };
        Ok(Self {
            config: Arc::new(config),
            db,
            cache: Arc::new(cache),
            metrics,
            migrated: Arc::new(AtomicBool::new(false)),
        })
    }

    /// Applies the kit's migrations (idempotency keys), then the service's. Concurrent
    /// replicas serialize on sqlx's advisory lock.
    pub async fn migrate(&self, service: &Migrator) -> Result<(), MigrateError> {
        let mut kit = sqlx::migrate!("./migrations");
        // The service's own migrator owns the default table; the kit's versions live apart.
        kit.dangerous_set_table_name("_service_kit_migrations");
        if let Some(schema) = &self.config.database_schema {
            kit.create_schema(schema.clone());
        }
        kit.run(&self.db).await?;
        service.run(&self.db).await?;
        self.migrated.store(true, Ordering::Release);
        Ok(())
    }

    /// Retries [`Kit::migrate`] until it succeeds (the database may start after us); the
    /// service is not ready until then.
    pub async fn migrate_until_done(&self, service: &Migrator) {
        let mut delay = Duration::from_millis(200);
        loop {
            match self.migrate(service).await {
                Ok(()) => {
                    tracing::info!("migrations applied");
                    return;
                }
                Err(e) => {
                    tracing::warn!(error = %e, source = ?std::error::Error::source(&e), retry_ms = delay.as_millis() as u64, "failed to apply migrations");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(5));
                }
            }
        }
    }

    pub fn is_migrated(&self) -> bool {
        self.migrated.load(Ordering::Acquire)
    }

    pub fn idempotency(&self) -> idempotency::Idempotency {
        idempotency::Idempotency {
            pool: self.db.clone(),
            body_limit: self.config.body_limit_bytes,
        }
    }

    /// A client for peer `domain` at its configured URL.
    pub fn peer(
        &self,
        domain: &str,
        options: peer::PeerOptions,
    ) -> Result<peer::PeerClient, StartError> {
        let url = self
            .config
            .peer(domain)
            .map(str::to_owned)
            .unwrap_or_else(|| format!("http://{domain}:8080"));
        peer::PeerClient::new(domain, &url, options)
            .map_err(|e| StartError::Peer(domain.to_owned(), Box::new(e)))
    }
}

/// With reqwest's and sqlx's rustls on no default provider, the process picks ring once.
pub fn install_crypto_provider() {
    // Err means a provider is already installed, which is what we want.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Logs to stderr, filtered by `RUST_LOG` (default `info`); `LOG_FORMAT=json` for one JSON
/// object per line.
pub fn init_tracing() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let result = if std::env::var("LOG_FORMAT").is_ok_and(|v| v == "json") {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
    // Already initialised (tests): keep the first.
    let _ = result;
}

/// Runs a single-service binary: config from the environment, migrations in the
/// background (not ready until applied), then serving until SIGTERM. `routes` builds the
/// service's router; `started` runs once migrations are applied (orders resumes its sagas).
pub async fn run_service<R, S, Fut>(
    service: &str,
    peers: &[&str],
    migrator: &'static Migrator,
    routes: R,
    started: S,
) -> Result<(), StartError>
where
    R: FnOnce(&Kit) -> Result<utoipa_axum::router::OpenApiRouter, StartError>,
    S: FnOnce(Kit) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let config = Config::from_env(service, peers)?;
    let (port, grace, limit) = (config.port, config.shutdown_grace, config.body_limit_bytes);
    let kit = Kit::new(config, Arc::new(Metrics::new()))?;
    let router = routes(&kit)?;
    let background = kit.clone();
    tokio::spawn(async move {
        background.migrate_until_done(migrator).await;
        started(background).await;
    });
    let sweeper = kit.db.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(3600));
        loop {
            tick.tick().await;
            if let Err(e) = idempotency::sweep(&sweeper, Duration::from_secs(24 * 3600)).await {
                tracing::debug!(%e, "failed to sweep idempotency keys");
            }
        }
    });
    let health = Health::new(&[&kit]);
    let app = app(service, router, health.clone(), kit.metrics.clone(), limit);
    serve(app, port, health, grace).await
}

/// Prints an error and its causes, one per line, for `main`.
pub fn report(err: &dyn std::error::Error) -> String {
    let mut out = format!("error: {err}");
    let mut source = err.source();
    while let Some(cause) = source {
        out.push_str(&format!("\n  caused by: {cause}"));
        source = cause.source();
    }
    out
}
