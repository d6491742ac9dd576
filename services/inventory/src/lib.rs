//! inventory: items and their stock. Reservations take stock with a conditional UPDATE
//! (`stock >= quantity`), so no interleaving of concurrent reservations sells more than
//! there is; reserve, release and commit are idempotent per reservation id, which is what
//! lets orders retry them and resume its sagas. Item reads are cache-aside.

use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use service_kit::cache::JsonBytes;
use service_kit::extract::{Json, Path, Validate, check_len, check_range};
use service_kit::sqlx::migrate::Migrator;
use service_kit::utoipa::ToSchema;
use service_kit::utoipa_axum::router::OpenApiRouter;
use service_kit::utoipa_axum::routes;
use service_kit::{ApiError, ApiResult, Kit, Problem, idempotency};

pub static MIGRATOR: Migrator = sqlx::migrate!();

pub const SERVICE: &str = "inventory";
pub const PEERS: &[&str] = &[];

pub const MAX_PRICE_MINOR: i64 = 100_000_000;
pub const MAX_STOCK: i64 = 1_000_000_000;
pub const MAX_RESERVE: i64 = 1_000;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema, sqlx::FromRow)]
pub struct Item {
    pub id: i64,
    pub sku: String,
    pub name: String,
    /// Unit price in minor units of `currency` (cents).
    pub price_minor: i64,
    pub currency: String,
    pub stock: i64,
    pub version: i64,
}

#[derive(Clone, Debug, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewItem {
    #[schema(min_length = 1, max_length = 64)]
    pub sku: String,
    #[schema(min_length = 1, max_length = 200)]
    pub name: String,
    #[schema(minimum = 0, maximum = 100_000_000)]
    pub price_minor: i64,
    /// ISO 4217 code, upper case.
    #[schema(pattern = "^[A-Z]{3}$")]
    pub currency: String,
    #[schema(minimum = 0, maximum = 1_000_000_000)]
    pub stock: i64,
}

impl Validate for NewItem {
    fn validate(&self) -> Result<(), ApiError> {
        check_len("sku", &self.sku, 1, 64)?;
        check_len("name", &self.name, 1, 200)?;
        check_range("price_minor", self.price_minor, 0, MAX_PRICE_MINOR)?;
        check_currency("currency", &self.currency)?;
        check_range("stock", self.stock, 0, MAX_STOCK)
    }
}

pub fn check_currency(field: &str, c: &str) -> Result<(), ApiError> {
    if c.len() == 3 && c.bytes().all(|b| b.is_ascii_uppercase()) {
        Ok(())
    } else {
        Err(ApiError::invalid(
            field,
            "must be an ISO 4217 code such as EUR",
        ))
    }
}

#[derive(Clone, Debug, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Restock {
    #[schema(minimum = 1, maximum = 1_000_000_000)]
    pub quantity: i64,
}

impl Validate for Restock {
    fn validate(&self) -> Result<(), ApiError> {
        check_range("quantity", self.quantity, 1, MAX_STOCK)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ReservationState {
    Reserved,
    Released,
    Committed,
}

impl ReservationState {
    fn parse(s: &str) -> Result<Self, ApiError> {
        match s {
            "reserved" => Ok(Self::Reserved),
            "released" => Ok(Self::Released),
            "committed" => Ok(Self::Committed),
            other => Err(ApiError::Internal(format!(
                "unknown reservation state {other}"
            ))),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Reservation {
    pub id: String,
    /// Absent on the tombstone of a release that came before any reserve.
    pub item_id: Option<i64>,
    pub quantity: i64,
    pub unit_price_minor: Option<i64>,
    pub currency: Option<String>,
    pub state: ReservationState,
}

#[derive(sqlx::FromRow)]
struct ReservationRow {
    id: String,
    item_id: Option<i64>,
    quantity: i64,
    unit_price_minor: Option<i64>,
    currency: Option<String>,
    state: String,
}

impl TryFrom<ReservationRow> for Reservation {
    type Error = ApiError;
    fn try_from(r: ReservationRow) -> Result<Self, ApiError> {
        Ok(Self {
            id: r.id,
            item_id: r.item_id,
            quantity: r.quantity,
            unit_price_minor: r.unit_price_minor,
            currency: r.currency,
            state: ReservationState::parse(&r.state)?,
        })
    }
}

#[derive(Clone, Debug, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewReservation {
    /// Chosen by the caller; retries with the same id are the same reservation.
    #[schema(min_length = 1, max_length = 128, pattern = "^[A-Za-z0-9._:-]+$")]
    pub id: String,
    #[schema(minimum = 1)]
    pub item_id: i64,
    #[schema(minimum = 1, maximum = 1000)]
    pub quantity: i64,
}

pub fn check_reservation_id(field: &str, id: &str) -> Result<(), ApiError> {
    check_len(field, id, 1, 128)?;
    if !id
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"._:-".contains(&b))
    {
        return Err(ApiError::invalid(
            field,
            "may contain only A-Z a-z 0-9 . _ : -",
        ));
    }
    Ok(())
}

impl Validate for NewReservation {
    fn validate(&self) -> Result<(), ApiError> {
        check_reservation_id("id", &self.id)?;
        check_range("item_id", self.item_id, 1, i64::MAX)?;
        check_range("quantity", self.quantity, 1, MAX_RESERVE)
    }
}

fn item_key(id: i64) -> String {
    format!("item:v1:{id}")
}

// Macros rather than consts so queries stay `&'static str` (sqlx refuses built strings).
macro_rules! item_columns {
    () => {
        "id, sku, name, price_minor, currency, stock, version"
    };
}
macro_rules! reservation_columns {
    () => {
        "id, item_id, quantity, unit_price_minor, currency, state"
    };
}

pub fn router(kit: Kit) -> OpenApiRouter {
    let create = OpenApiRouter::new()
        .routes(routes!(create_item))
        .routes(routes!(restock))
        .route_layer(axum::middleware::from_fn_with_state(
            kit.idempotency(),
            idempotency::layer,
        ));
    OpenApiRouter::new()
        .routes(routes!(get_item))
        .routes(routes!(reserve))
        .routes(routes!(get_reservation))
        .routes(routes!(release))
        .routes(routes!(commit))
        .merge(create)
        .with_state(kit)
}

/// Add an item to the catalogue.
#[utoipa::path(post, path = "/items", tag = "inventory", request_body = NewItem,
    params(("Idempotency-Key" = Option<String>, Header, description = "Replays the first response for retries")),
    responses(
        (status = 201, description = "Created", body = Item),
        (status = 409, description = "The SKU exists", body = Problem, content_type = "application/problem+json")))]
async fn create_item(
    State(kit): State<Kit>,
    Json(new): Json<NewItem>,
) -> ApiResult<(StatusCode, axum::Json<Item>)> {
    let item = sqlx::query_as::<_, Item>(concat!(
        "INSERT INTO items (sku, name, price_minor, currency, stock) VALUES ($1, $2, $3, $4, $5) \
         RETURNING ",
        item_columns!()
    ))
    .bind(&new.sku)
    .bind(&new.name)
    .bind(new.price_minor)
    .bind(&new.currency)
    .bind(new.stock)
    .fetch_one(&kit.db)
    .await
    .map_err(|e| match ApiError::from(e) {
        ApiError::Conflict { .. } => {
            ApiError::conflict("sku-taken", "an item with this SKU exists")
        }
        other => other,
    })?;
    Ok((StatusCode::CREATED, axum::Json(item)))
}

/// An item with its current stock (cached; invalidated when stock moves).
#[utoipa::path(get, path = "/items/{id}", tag = "inventory",
    params(("id" = i64, Path, description = "Item id")),
    responses(
        (status = 200, description = "The item", body = Item),
        (status = 404, description = "No such item", body = Problem, content_type = "application/problem+json")))]
async fn get_item(State(kit): State<Kit>, Path(id): Path<i64>) -> ApiResult<JsonBytes> {
    kit.cache
        .get_or_load_json(&item_key(id), || load_item(&kit, id))
        .await?
        .ok_or_else(|| ApiError::not_found(format!("item {id}")))
}

async fn load_item(kit: &Kit, id: i64) -> ApiResult<Option<Item>> {
    Ok(sqlx::query_as::<_, Item>(concat!(
        "SELECT ",
        item_columns!(),
        " FROM items WHERE id = $1"
    ))
    .bind(id)
    .fetch_optional(&kit.db)
    .await?)
}

pub async fn find_item(kit: &Kit, id: i64) -> ApiResult<Option<Item>> {
    kit.cache
        .get_or_load(&item_key(id), || load_item(kit, id))
        .await
}

/// Add stock to an item.
#[utoipa::path(post, path = "/items/{id}/restock", tag = "inventory", request_body = Restock,
    params(("id" = i64, Path, description = "Item id"),
           ("Idempotency-Key" = Option<String>, Header, description = "Replays the first response for retries")),
    responses(
        (status = 200, description = "The item after restocking", body = Item),
        (status = 404, description = "No such item", body = Problem, content_type = "application/problem+json")))]
async fn restock(
    State(kit): State<Kit>,
    Path(id): Path<i64>,
    Json(body): Json<Restock>,
) -> ApiResult<axum::Json<Item>> {
    let item = sqlx::query_as::<_, Item>(concat!(
        "UPDATE items SET stock = stock + $2, version = version + 1, updated_at = now() \
         WHERE id = $1 AND stock + $2 <= $3 RETURNING ",
        item_columns!()
    ))
    .bind(id)
    .bind(body.quantity)
    .bind(MAX_STOCK)
    .fetch_optional(&kit.db)
    .await?;
    kit.cache.invalidate(&item_key(id)).await;
    match item {
        Some(item) => Ok(axum::Json(item)),
        None if item_exists(&kit, id).await? => Err(ApiError::invalid(
            "quantity",
            format!("stock would exceed {MAX_STOCK}"),
        )),
        None => Err(ApiError::not_found(format!("item {id}"))),
    }
}

async fn item_exists(kit: &Kit, id: i64) -> ApiResult<bool> {
    Ok(
        sqlx::query_scalar::<_, i64>("SELECT id FROM items WHERE id = $1")
            .bind(id)
            .fetch_optional(&kit.db)
            .await?
            .is_some(),
    )
}

async fn load_reservation(kit: &Kit, id: &str) -> ApiResult<Option<Reservation>> {
    sqlx::query_as::<_, ReservationRow>(concat!(
        "SELECT ",
        reservation_columns!(),
        " FROM reservations WHERE id = $1"
    ))
    .bind(id)
    .fetch_optional(&kit.db)
    .await?
    .map(Reservation::try_from)
    .transpose()
}

/// Reserve stock. 201 when this call took it; 200 when the id was already reserved with the
/// same item and quantity (a retry); 409 when there is not enough stock or the id was
/// released.
#[utoipa::path(post, path = "/reservations", tag = "inventory", request_body = NewReservation,
    responses(
        (status = 201, description = "Reserved", body = Reservation),
        (status = 200, description = "Already reserved by this id", body = Reservation),
        (status = 404, description = "No such item", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Out of stock, or the id was released", body = Problem, content_type = "application/problem+json")))]
async fn reserve(
    State(kit): State<Kit>,
    Json(new): Json<NewReservation>,
) -> ApiResult<(StatusCode, axum::Json<Reservation>)> {
    let (status, reservation) = reserve_stock(&kit, &new).await?;
    Ok((status, axum::Json(reservation)))
}

/// The reservation itself, callable in-process (the monolith).
pub async fn reserve_stock(
    kit: &Kit,
    new: &NewReservation,
) -> ApiResult<(StatusCode, Reservation)> {
    new.validate()?;
    let mut tx = kit.db.begin().await?;
    // The row lock of this UPDATE serializes concurrent reservations of one item, and its
    // condition re-checks stock after the wait: never below zero, whatever the interleaving.
    let taken = sqlx::query_as::<_, (i64, String)>(
        "UPDATE items SET stock = stock - $2, version = version + 1, updated_at = now() \
         WHERE id = $1 AND stock >= $2 RETURNING price_minor, currency",
    )
    .bind(new.item_id)
    .bind(new.quantity)
    .fetch_optional(&mut *tx)
    .await?;
    let inserted = match &taken {
        Some((price, currency)) => sqlx::query_as::<_, ReservationRow>(concat!(
            "INSERT INTO reservations (id, item_id, quantity, unit_price_minor, currency, state) \
             VALUES ($1, $2, $3, $4, $5, 'reserved') ON CONFLICT (id) DO NOTHING \
             RETURNING ",
            reservation_columns!()
        ))
        .bind(&new.id)
        .bind(new.item_id)
        .bind(new.quantity)
        .bind(price)
        .bind(currency)
        .fetch_optional(&mut *tx)
        .await?,
        None => None,
    };
    if let Some(row) = inserted {
        tx.commit().await?;
        kit.cache.invalidate(&item_key(new.item_id)).await;
        return Ok((StatusCode::CREATED, row.try_into()?));
    }
    // Either no stock or a known id: give the stock back and look at what is there.
    tx.rollback().await?;
    if let Some(existing) = load_reservation(kit, &new.id).await? {
        return match existing.state {
            ReservationState::Released => Err(ApiError::conflict(
                "reservation-released",
                format!("reservation {} was released", new.id),
            )),
            _ if existing.item_id != Some(new.item_id) || existing.quantity != new.quantity => {
                Err(ApiError::invalid(
                    "id",
                    "this reservation id was used for another item or quantity",
                ))
            }
            _ => Ok((StatusCode::OK, existing)),
        };
    }
    if taken.is_some() {
        // The conflicting row vanished between our INSERT and SELECT: it cannot, rows are
        // never deleted; say so rather than guess.
        return Err(ApiError::Internal(format!(
            "reservation {} conflicted but is absent",
            new.id
        )));
    }
    let stock = sqlx::query_scalar::<_, i64>("SELECT stock FROM items WHERE id = $1")
        .bind(new.item_id)
        .fetch_optional(&kit.db)
        .await?;
    match stock {
        None => Err(ApiError::not_found(format!("item {}", new.item_id))),
        Some(stock) => Err(ApiError::conflict(
            "out-of-stock",
            format!(
                "item {} has {stock} in stock, {} requested",
                new.item_id, new.quantity
            ),
        )),
    }
}

/// A reservation.
#[utoipa::path(get, path = "/reservations/{id}", tag = "inventory",
    params(("id" = String, Path, description = "Reservation id")),
    responses(
        (status = 200, description = "The reservation", body = Reservation),
        (status = 404, description = "No such reservation", body = Problem, content_type = "application/problem+json")))]
async fn get_reservation(
    State(kit): State<Kit>,
    Path(id): Path<String>,
) -> ApiResult<axum::Json<Reservation>> {
    check_reservation_id("id", &id)?;
    load_reservation(&kit, &id)
        .await?
        .map(axum::Json)
        .ok_or_else(|| ApiError::not_found(format!("reservation {id}")))
}

/// Give reserved stock back (idempotent). Releasing an id never reserved records that, so
/// a late reserve with that id is refused; a committed reservation cannot be released.
#[utoipa::path(post, path = "/reservations/{id}/release", tag = "inventory",
    params(("id" = String, Path, description = "Reservation id")),
    responses(
        (status = 200, description = "Released", body = Reservation),
        (status = 409, description = "Already committed", body = Problem, content_type = "application/problem+json")))]
async fn release(
    State(kit): State<Kit>,
    Path(id): Path<String>,
) -> ApiResult<axum::Json<Reservation>> {
    Ok(axum::Json(release_stock(&kit, &id).await?))
}

pub async fn release_stock(kit: &Kit, id: &str) -> ApiResult<Reservation> {
    check_reservation_id("id", id)?;
    let mut tx = kit.db.begin().await?;
    let tombstone = sqlx::query_as::<_, ReservationRow>(concat!(
        "INSERT INTO reservations (id, quantity, state) VALUES ($1, 0, 'released') \
         ON CONFLICT (id) DO NOTHING RETURNING ",
        reservation_columns!()
    ))
    .bind(id)
    .fetch_optional(&mut *tx)
    .await?;
    if let Some(row) = tombstone {
        tx.commit().await?;
        return row.try_into();
    }
    let released = sqlx::query_as::<_, ReservationRow>(concat!(
        "UPDATE reservations SET state = 'released', updated_at = now() \
         WHERE id = $1 AND state = 'reserved' RETURNING ",
        reservation_columns!()
    ))
    .bind(id)
    .fetch_optional(&mut *tx)
    .await?;
    if let Some(row) = released {
        if let Some(item_id) = row.item_id {
            sqlx::query(
                "UPDATE items SET stock = stock + $2, version = version + 1, updated_at = now() \
                 WHERE id = $1",
            )
            .bind(item_id)
            .bind(row.quantity)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            kit.cache.invalidate(&item_key(item_id)).await;
        } else {
            tx.commit().await?;
        }
        return row.try_into();
    }
    tx.rollback().await?;
    let existing = load_reservation(kit, id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("reservation {id}")))?;
    match existing.state {
        ReservationState::Committed => Err(ApiError::conflict(
            "reservation-committed",
            format!("reservation {id} is committed"),
        )),
        _ => Ok(existing),
    }
}

/// Make a reservation final (the order is confirmed): it can no longer be released.
#[utoipa::path(post, path = "/reservations/{id}/commit", tag = "inventory",
    params(("id" = String, Path, description = "Reservation id")),
    responses(
        (status = 200, description = "Committed", body = Reservation),
        (status = 404, description = "No such reservation", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Already released", body = Problem, content_type = "application/problem+json")))]
async fn commit(
    State(kit): State<Kit>,
    Path(id): Path<String>,
) -> ApiResult<axum::Json<Reservation>> {
    Ok(axum::Json(commit_reservation(&kit, &id).await?))
}

pub async fn commit_reservation(kit: &Kit, id: &str) -> ApiResult<Reservation> {
    check_reservation_id("id", id)?;
    let committed = sqlx::query_as::<_, ReservationRow>(concat!(
        "UPDATE reservations SET state = 'committed', updated_at = now() \
         WHERE id = $1 AND state = 'reserved' RETURNING ",
        reservation_columns!()
    ))
    .bind(id)
    .fetch_optional(&kit.db)
    .await?;
    if let Some(row) = committed {
        return row.try_into();
    }
    let existing = load_reservation(kit, id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("reservation {id}")))?;
    match existing.state {
        ReservationState::Released => Err(ApiError::conflict(
            "reservation-released",
            format!("reservation {id} was released"),
        )),
        _ => Ok(existing),
    }
}
