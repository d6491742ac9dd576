//! marketplace-monolith: users, inventory, payments and orders in one process, one port,
//! one database (a schema per domain), orders calling inventory and payments in-process.
//! The shape the marketplace moved away from, kept for the decomposition benchmark.

use std::sync::Arc;

use futures::future::BoxFuture;
use orders::peers::{InventoryApi, PaymentsApi, Reserved, StepError};
use service_kit::{ApiError, Config, ConfigError, Kit, Metrics, StartError};

/// A refusal (4xx) is a definite outcome for the saga; anything else may be retried.
fn step_error(e: ApiError) -> StepError {
    if e.status().is_client_error() {
        StepError::Definite {
            kind: e.to_problem().kind().to_owned(),
            detail: e.to_string(),
        }
    } else {
        StepError::Transient(e.to_string())
    }
}

pub struct LocalInventory(pub Kit);

impl InventoryApi for LocalInventory {
    fn reserve<'a>(
        &'a self,
        id: &'a str,
        item_id: i64,
        quantity: i64,
    ) -> BoxFuture<'a, Result<Reserved, StepError>> {
        Box::pin(async move {
            let new = inventory::NewReservation {
                id: id.to_owned(),
                item_id,
                quantity,
            };
            let (_, r) = inventory::reserve_stock(&self.0, &new)
                .await
                .map_err(step_error)?;
            match (r.unit_price_minor, r.currency) {
                (Some(unit_price_minor), Some(currency)) => Ok(Reserved {
                    unit_price_minor,
                    currency,
                }),
                _ => Err(StepError::Definite {
                    kind: "reservation-without-price".into(),
                    detail: format!("reservation {id} carries no price"),
                }),
            }
        })
    }

    fn commit<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<(), StepError>> {
        Box::pin(async move {
            inventory::commit_reservation(&self.0, id)
                .await
                .map(drop)
                .map_err(step_error)
        })
    }

    fn release<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<(), StepError>> {
        Box::pin(async move {
            inventory::release_stock(&self.0, id)
                .await
                .map(drop)
                .map_err(step_error)
        })
    }
}

pub struct LocalPayments(pub Kit);

impl PaymentsApi for LocalPayments {
    fn charge<'a>(
        &'a self,
        key: &'a str,
        user_id: i64,
        amount_minor: i64,
        currency: &'a str,
    ) -> BoxFuture<'a, Result<(), StepError>> {
        Box::pin(async move {
            let new = payments::NewCharge {
                user_id,
                amount_minor,
                currency: currency.to_owned(),
                description: None,
            };
            payments::make_charge(&self.0, key, &new)
                .await
                .map(drop)
                .map_err(step_error)
        })
    }

    fn refund<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<(), StepError>> {
        Box::pin(async move {
            payments::refund_charge(&self.0, key)
                .await
                .map(drop)
                .map_err(step_error)
        })
    }
}

/// The four kits, each on its own schema and cache prefix, sharing one metrics registry.
pub struct Kits {
    pub users: Kit,
    pub inventory: Kit,
    pub payments: Kit,
    pub orders: Kit,
}

impl Kits {
    pub fn new(base: &Config) -> Result<Self, StartError> {
        let metrics = Arc::new(Metrics::new());
        let kit = |service: &str| -> Result<Kit, StartError> {
            let mut c = base.clone();
            c.service = service.to_owned();
            c.database_schema = Some(service.to_owned());
            c.cache_key_prefix = format!("{}{service}:", base.cache_key_prefix);
            Kit::new(c, metrics.clone())
        };
        Ok(Self {
            users: kit(users::SERVICE)?,
            inventory: kit(inventory::SERVICE)?,
            payments: kit(payments::SERVICE)?,
            orders: kit(orders::SERVICE)?,
        })
    }

    pub fn all(&self) -> [&Kit; 4] {
        [&self.users, &self.inventory, &self.payments, &self.orders]
    }

    pub async fn migrate_until_done(&self) {
        self.users.migrate_until_done(&users::MIGRATOR).await;
        self.inventory
            .migrate_until_done(&inventory::MIGRATOR)
            .await;
        self.payments.migrate_until_done(&payments::MIGRATOR).await;
        self.orders.migrate_until_done(&orders::MIGRATOR).await;
    }

    pub fn saga(&self, options: orders::SagaOptions) -> Arc<orders::Saga> {
        Arc::new(orders::Saga {
            kit: self.orders.clone(),
            inventory: Arc::new(LocalInventory(self.inventory.clone())),
            payments: Arc::new(LocalPayments(self.payments.clone())),
            options,
        })
    }

    /// Every domain's routes in one router.
    pub fn routes(
        &self,
        saga: Arc<orders::Saga>,
    ) -> service_kit::utoipa_axum::router::OpenApiRouter {
        users::router(self.users.clone())
            .merge(inventory::router(self.inventory.clone()))
            .merge(payments::router(self.payments.clone()))
            .merge(orders::router(saga))
    }
}

/// The monolith's configuration: the single-service variables, read once.
pub fn config_from_env() -> Result<Config, ConfigError> {
    let mut c = Config::from_env("marketplace", &[])?;
    if std::env::var("CACHE_KEY_PREFIX").is_err() {
        c.cache_key_prefix = "marketplace:".to_owned();
    }
    Ok(c)
}
