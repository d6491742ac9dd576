//! orders: creating an order runs its saga (reserve stock at inventory → charge at payments
//! → confirm), persisted step by step so that a crash resumes it; see [`saga`]. Order reads
//! are cache-aside.

pub mod peers;
pub mod saga;

use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use service_kit::cache::JsonBytes;
use service_kit::extract::{Json, Path, Validate, check_range};
use service_kit::idempotency::{IDEMPOTENCY_KEY, parse_key};
use service_kit::peer::PeerOptions;
use service_kit::sqlx::migrate::Migrator;
use service_kit::utoipa::ToSchema;
use service_kit::utoipa_axum::router::OpenApiRouter;
use service_kit::utoipa_axum::routes;
use service_kit::{ApiError, ApiResult, Kit, Problem, StartError};

pub use saga::{Order, OrderStatus, Saga, SagaOptions, Step};

use crate::peers::{HttpInventory, HttpPayments};
use crate::saga::{OrderRow, order_columns};

pub static MIGRATOR: Migrator = sqlx::migrate!();

pub const SERVICE: &str = "orders";
pub const PEERS: &[&str] = &["inventory", "payments"];

#[derive(Clone, Debug, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewOrder {
    #[schema(minimum = 1)]
    pub user_id: i64,
    #[schema(minimum = 1)]
    pub item_id: i64,
    #[schema(minimum = 1, maximum = 1000)]
    pub quantity: i64,
}

impl Validate for NewOrder {
    fn validate(&self) -> Result<(), ApiError> {
        check_range("user_id", self.user_id, 1, i64::MAX)?;
        check_range("item_id", self.item_id, 1, i64::MAX)?;
        check_range("quantity", self.quantity, 1, 1000)
    }
}

/// Saga timing from `SAGA_LEASE_SECONDS`, `SAGA_DEADLINE_SECONDS` and
/// `SAGA_RESUME_SECONDS` (defaults in [`SagaOptions::default`]).
pub fn saga_options_from_env() -> Result<SagaOptions, service_kit::ConfigError> {
    let mut o = SagaOptions::default();
    for (name, slot) in [
        ("SAGA_LEASE_SECONDS", &mut o.lease),
        ("SAGA_DEADLINE_SECONDS", &mut o.deadline),
        ("SAGA_RESUME_SECONDS", &mut o.resume_every),
    ] {
        if let Ok(value) = std::env::var(name) {
            let secs: f64 = value
                .trim()
                .parse()
                .ok()
                .filter(|v: &f64| v.is_finite() && *v >= 0.0 && *v < 1e9)
                .ok_or_else(|| service_kit::ConfigError::Invalid {
                    name: name.to_owned(),
                    value: value.clone(),
                    reason: "must be a number of seconds".to_owned(),
                })?;
            *slot = std::time::Duration::from_secs_f64(secs);
        }
    }
    Ok(o)
}

/// The saga over HTTP peers at the configured `INVENTORY_URL` and `PAYMENTS_URL`.
pub fn http_saga(kit: &Kit, options: SagaOptions) -> Result<Arc<Saga>, StartError> {
    Ok(Arc::new(Saga {
        kit: kit.clone(),
        inventory: Arc::new(HttpInventory(
            kit.peer("inventory", PeerOptions::default())?,
        )),
        payments: Arc::new(HttpPayments(kit.peer("payments", PeerOptions::default())?)),
        options,
    }))
}

pub fn router(saga: Arc<Saga>) -> OpenApiRouter {
    OpenApiRouter::new()
        .routes(routes!(create_order))
        .routes(routes!(get_order))
        .with_state(saga)
}

/// Place an order: reserve, charge, confirm. 201 when confirmed, 202 while a peer is
/// unreachable (the saga resumes in the background), 409 when it failed and was
/// compensated. With an `Idempotency-Key`, retries return the same order.
#[utoipa::path(post, path = "/orders", tag = "orders", request_body = NewOrder,
    params(("Idempotency-Key" = Option<String>, Header, description = "One order per key")),
    responses(
        (status = 201, description = "Confirmed", body = Order),
        (status = 202, description = "Pending: will complete or compensate", body = Order),
        (status = 409, description = "Failed (out of stock, payment declined, …) and compensated", body = Problem, content_type = "application/problem+json")))]
async fn create_order(
    State(saga): State<Arc<Saga>>,
    headers: HeaderMap,
    Json(new): Json<NewOrder>,
) -> ApiResult<Response> {
    let key = headers.get(&IDEMPOTENCY_KEY).map(parse_key).transpose()?;
    let order = place(&saga, key.as_deref(), &new).await?;
    Ok(respond(order))
}

fn respond(order: Order) -> Response {
    match order.status {
        OrderStatus::Confirmed => (StatusCode::CREATED, axum::Json(order)).into_response(),
        OrderStatus::Pending => (StatusCode::ACCEPTED, axum::Json(order)).into_response(),
        OrderStatus::Failed => ApiError::conflict(
            "order-failed",
            format!(
                "order {} failed: {}",
                order.id,
                order.failure.as_deref().unwrap_or("unknown")
            ),
        )
        .into_response(),
    }
}

/// Records the order (once per key) and drives its saga.
pub async fn place(saga: &Arc<Saga>, key: Option<&str>, new: &NewOrder) -> ApiResult<Order> {
    new.validate()?;
    let kit = &saga.kit;
    let inserted = sqlx::query_scalar::<_, i64>(
        "INSERT INTO orders (idempotency_key, user_id, item_id, quantity, status, step) \
         VALUES ($1, $2, $3, $4, 'pending', 'reserve') \
         ON CONFLICT (idempotency_key) DO NOTHING RETURNING id",
    )
    .bind(key)
    .bind(new.user_id)
    .bind(new.item_id)
    .bind(new.quantity)
    .fetch_optional(&kit.db)
    .await?;
    let id = match inserted {
        Some(id) => id,
        None => {
            let existing = sqlx::query_as::<_, OrderRow>(concat!(
                "SELECT ",
                order_columns!(),
                " FROM orders WHERE idempotency_key = $1"
            ))
            .bind(key)
            .fetch_optional(&kit.db)
            .await?
            .map(Order::try_from)
            .transpose()?
            .ok_or_else(|| ApiError::Internal("order key conflicted but is absent".into()))?;
            if existing.user_id != new.user_id
                || existing.item_id != new.item_id
                || existing.quantity != new.quantity
            {
                return Err(ApiError::invalid(
                    "Idempotency-Key",
                    "this key was used for a different order",
                ));
            }
            existing.id
        }
    };
    // On its own task: a client that hangs up does not stop the saga half-way.
    let driver = saga.clone();
    let request_id = service_kit::middleware::current_request_id()
        .unwrap_or_else(service_kit::middleware::new_request_id);
    tokio::spawn(service_kit::middleware::with_request_id(
        request_id,
        async move { driver.drive(id).await },
    ))
    .await
    .map_err(|e| ApiError::Internal(format!("saga task failed: {e}")))?
}

/// An order and where its saga stands (cached).
#[utoipa::path(get, path = "/orders/{id}", tag = "orders",
    params(("id" = i64, Path, description = "Order id")),
    responses(
        (status = 200, description = "The order", body = Order),
        (status = 404, description = "No such order", body = Problem, content_type = "application/problem+json")))]
async fn get_order(State(saga): State<Arc<Saga>>, Path(id): Path<i64>) -> ApiResult<JsonBytes> {
    saga.kit
        .cache
        .get_or_load_json(&saga::cache_key(id), || saga.load(id))
        .await?
        .ok_or_else(|| ApiError::not_found(format!("order {id}")))
}

pub async fn find(saga: &Saga, id: i64) -> ApiResult<Option<Order>> {
    saga.kit
        .cache
        .get_or_load(&saga::cache_key(id), || saga.load(id))
        .await
}
