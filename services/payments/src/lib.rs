//! payments: micro-transaction charges and refunds on a ledger, amounts in integer minor
//! units. A charge needs an `Idempotency-Key`; the key is unique in Postgres, so any number
//! of concurrent retries make exactly one charge and all see it.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use serde::{Deserialize, Serialize};
use service_kit::extract::{Json, Path, Validate, check_len, check_range};
use service_kit::idempotency::{IDEMPOTENCY_KEY, parse_key};
use service_kit::sqlx::migrate::Migrator;
use service_kit::utoipa::ToSchema;
use service_kit::utoipa_axum::router::OpenApiRouter;
use service_kit::utoipa_axum::routes;
use service_kit::{ApiError, ApiResult, Kit, Problem};

pub static MIGRATOR: Migrator = sqlx::migrate!();

pub const SERVICE: &str = "payments";
pub const PEERS: &[&str] = &[];

pub const MAX_AMOUNT_MINOR: i64 = 10_000_000;
/// A stand-in for a risk rule: charges above this are declined (and remembered as such).
pub const DECLINE_ABOVE_MINOR: i64 = 1_000_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ChargeState {
    Succeeded,
    Declined,
    Refunded,
    /// Refunded before it was ever charged: the key can no longer charge.
    Voided,
}

impl ChargeState {
    fn parse(s: &str) -> Result<Self, ApiError> {
        match s {
            "succeeded" => Ok(Self::Succeeded),
            "declined" => Ok(Self::Declined),
            "refunded" => Ok(Self::Refunded),
            "voided" => Ok(Self::Voided),
            other => Err(ApiError::Internal(format!("unknown charge state {other}"))),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Charge {
    pub id: i64,
    pub idempotency_key: String,
    pub user_id: i64,
    pub amount_minor: i64,
    pub currency: String,
    pub description: Option<String>,
    pub state: ChargeState,
}

#[derive(sqlx::FromRow)]
struct ChargeRow {
    id: i64,
    idempotency_key: String,
    user_id: i64,
    amount_minor: i64,
    currency: String,
    description: Option<String>,
    state: String,
}

impl TryFrom<ChargeRow> for Charge {
    type Error = ApiError;
    fn try_from(r: ChargeRow) -> Result<Self, ApiError> {
        Ok(Self {
            id: r.id,
            idempotency_key: r.idempotency_key,
            user_id: r.user_id,
            amount_minor: r.amount_minor,
            currency: r.currency,
            description: r.description,
            state: ChargeState::parse(&r.state)?,
        })
    }
}

macro_rules! charge_columns {
    () => {
        "id, idempotency_key, user_id, amount_minor, currency, description, state"
    };
}

#[derive(Clone, Debug, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewCharge {
    #[schema(minimum = 1)]
    pub user_id: i64,
    /// In minor units of `currency` (cents).
    #[schema(minimum = 1, maximum = 10_000_000)]
    pub amount_minor: i64,
    #[schema(pattern = "^[A-Z]{3}$")]
    pub currency: String,
    #[schema(max_length = 200)]
    pub description: Option<String>,
}

impl Validate for NewCharge {
    fn validate(&self) -> Result<(), ApiError> {
        check_range("user_id", self.user_id, 1, i64::MAX)?;
        check_range("amount_minor", self.amount_minor, 1, MAX_AMOUNT_MINOR)?;
        if !(self.currency.len() == 3 && self.currency.bytes().all(|b| b.is_ascii_uppercase())) {
            return Err(ApiError::invalid(
                "currency",
                "must be an ISO 4217 code such as EUR",
            ));
        }
        if let Some(d) = &self.description {
            check_len("description", d, 0, 200)?;
        }
        Ok(())
    }
}

#[derive(Clone, Debug, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewRefund {
    /// The idempotency key the charge was (or would have been) made with.
    #[schema(min_length = 1, max_length = 255)]
    pub charge_key: String,
}

impl Validate for NewRefund {
    fn validate(&self) -> Result<(), ApiError> {
        check_len("charge_key", &self.charge_key, 1, 255)?;
        if !self.charge_key.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(ApiError::invalid("charge_key", "must be visible ASCII"));
        }
        Ok(())
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema, sqlx::FromRow)]
pub struct LedgerTotal {
    pub currency: String,
    pub charged_minor: i64,
    pub refunded_minor: i64,
    pub entries: i64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Ledger {
    pub user_id: i64,
    pub totals: Vec<LedgerTotal>,
}

pub fn router(kit: Kit) -> OpenApiRouter {
    OpenApiRouter::new()
        .routes(routes!(charge))
        .routes(routes!(get_charge))
        .routes(routes!(refund))
        .routes(routes!(ledger))
        .with_state(kit)
}

/// Charge a user. Requires `Idempotency-Key`: 201 for the call that charged, 200 for a
/// retry of a successful charge, 402 when declined (again on retries).
#[utoipa::path(post, path = "/charges", tag = "payments", request_body = NewCharge,
    params(("Idempotency-Key" = String, Header, description = "Charges at most once per key")),
    responses(
        (status = 201, description = "Charged", body = Charge),
        (status = 200, description = "Already charged with this key", body = Charge),
        (status = 402, description = "Declined", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The key was voided by a refund", body = Problem, content_type = "application/problem+json")))]
async fn charge(
    State(kit): State<Kit>,
    headers: HeaderMap,
    Json(new): Json<NewCharge>,
) -> ApiResult<(StatusCode, axum::Json<Charge>)> {
    let key = headers
        .get(&IDEMPOTENCY_KEY)
        .ok_or_else(|| ApiError::invalid("Idempotency-Key", "required for charges"))
        .and_then(parse_key)?;
    let (status, charge) = make_charge(&kit, &key, &new).await?;
    Ok((status, axum::Json(charge)))
}

fn declined(charge: &Charge) -> ApiError {
    ApiError::Refused {
        kind: "payment-declined",
        status: StatusCode::PAYMENT_REQUIRED,
        detail: format!(
            "charge {} of {} {} declined",
            charge.id, charge.amount_minor, charge.currency
        ),
    }
}

/// The charge itself, callable in-process (the monolith).
pub async fn make_charge(kit: &Kit, key: &str, new: &NewCharge) -> ApiResult<(StatusCode, Charge)> {
    new.validate()?;
    let state = if new.amount_minor > DECLINE_ABOVE_MINOR {
        "declined"
    } else {
        "succeeded"
    };
    let mut tx = kit.db.begin().await?;
    // A racing insert of the same key makes this wait for that transaction, then do nothing.
    let inserted = sqlx::query_as::<_, ChargeRow>(concat!(
        "INSERT INTO charges (idempotency_key, user_id, amount_minor, currency, description, state) \
         VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (idempotency_key) DO NOTHING RETURNING ",
        charge_columns!()
    ))
    .bind(key)
    .bind(new.user_id)
    .bind(new.amount_minor)
    .bind(&new.currency)
    .bind(&new.description)
    .bind(state)
    .fetch_optional(&mut *tx)
    .await?;
    if let Some(row) = inserted {
        let charge = Charge::try_from(row)?;
        if charge.state == ChargeState::Succeeded {
            sqlx::query(
                "INSERT INTO ledger_entries (charge_id, user_id, kind, amount_minor, currency) \
                 VALUES ($1, $2, 'charge', $3, $4)",
            )
            .bind(charge.id)
            .bind(charge.user_id)
            .bind(charge.amount_minor)
            .bind(&charge.currency)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        return match charge.state {
            ChargeState::Declined => Err(declined(&charge)),
            _ => Ok((StatusCode::CREATED, charge)),
        };
    }
    tx.rollback().await?;
    let existing = find_by_key(kit, key)
        .await?
        .ok_or_else(|| ApiError::Internal(format!("charge key {key} conflicted but is absent")))?;
    if existing.state == ChargeState::Voided {
        return Err(ApiError::conflict(
            "charge-voided",
            format!("the key {key} was refunded before any charge"),
        ));
    }
    if existing.user_id != new.user_id
        || existing.amount_minor != new.amount_minor
        || existing.currency != new.currency
    {
        return Err(ApiError::invalid(
            "Idempotency-Key",
            "this key was used for a different charge",
        ));
    }
    match existing.state {
        ChargeState::Declined => Err(declined(&existing)),
        _ => Ok((StatusCode::OK, existing)),
    }
}

async fn find_by_key(kit: &Kit, key: &str) -> ApiResult<Option<Charge>> {
    sqlx::query_as::<_, ChargeRow>(concat!(
        "SELECT ",
        charge_columns!(),
        " FROM charges WHERE idempotency_key = $1"
    ))
    .bind(key)
    .fetch_optional(&kit.db)
    .await?
    .map(Charge::try_from)
    .transpose()
}

/// A charge.
#[utoipa::path(get, path = "/charges/{id}", tag = "payments",
    params(("id" = i64, Path, description = "Charge id")),
    responses(
        (status = 200, description = "The charge", body = Charge),
        (status = 404, description = "No such charge", body = Problem, content_type = "application/problem+json")))]
async fn get_charge(State(kit): State<Kit>, Path(id): Path<i64>) -> ApiResult<axum::Json<Charge>> {
    sqlx::query_as::<_, ChargeRow>(concat!(
        "SELECT ",
        charge_columns!(),
        " FROM charges WHERE id = $1"
    ))
    .bind(id)
    .fetch_optional(&kit.db)
    .await?
    .map(Charge::try_from)
    .transpose()?
    .map(axum::Json)
    .ok_or_else(|| ApiError::not_found(format!("charge {id}")))
}

/// Refund the charge made with `charge_key` (idempotent). If no charge was made with that
/// key, the key is voided so that a late charge with it is refused.
#[utoipa::path(post, path = "/refunds", tag = "payments", request_body = NewRefund,
    responses((status = 200, description = "The charge after the refund", body = Charge)))]
async fn refund(
    State(kit): State<Kit>,
    Json(body): Json<NewRefund>,
) -> ApiResult<axum::Json<Charge>> {
    Ok(axum::Json(refund_charge(&kit, &body.charge_key).await?))
}

pub async fn refund_charge(kit: &Kit, key: &str) -> ApiResult<Charge> {
    NewRefund {
        charge_key: key.to_owned(),
    }
    .validate()?;
    let mut tx = kit.db.begin().await?;
    let voided = sqlx::query_as::<_, ChargeRow>(concat!(
        "INSERT INTO charges (idempotency_key, user_id, amount_minor, currency, state) \
         VALUES ($1, 0, 0, 'XXX', 'voided') ON CONFLICT (idempotency_key) DO NOTHING RETURNING ",
        charge_columns!()
    ))
    .bind(key)
    .fetch_optional(&mut *tx)
    .await?;
    if let Some(row) = voided {
        tx.commit().await?;
        return row.try_into();
    }
    let refunded = sqlx::query_as::<_, ChargeRow>(concat!(
        "UPDATE charges SET state = 'refunded', updated_at = now() \
         WHERE idempotency_key = $1 AND state = 'succeeded' RETURNING ",
        charge_columns!()
    ))
    .bind(key)
    .fetch_optional(&mut *tx)
    .await?;
    if let Some(row) = refunded {
        let charge = Charge::try_from(row)?;
        sqlx::query(
            "INSERT INTO ledger_entries (charge_id, user_id, kind, amount_minor, currency) \
             VALUES ($1, $2, 'refund', $3, $4)",
        )
        .bind(charge.id)
        .bind(charge.user_id)
        .bind(-charge.amount_minor)
        .bind(&charge.currency)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        return Ok(charge);
    }
    tx.rollback().await?;
    find_by_key(kit, key)
        .await?
        .ok_or_else(|| ApiError::Internal(format!("charge key {key} conflicted but is absent")))
}

/// A user's ledger totals per currency.
#[utoipa::path(get, path = "/accounts/{user_id}/ledger", tag = "payments",
    params(("user_id" = i64, Path, description = "User id")),
    responses((status = 200, description = "Totals per currency", body = Ledger)))]
async fn ledger(State(kit): State<Kit>, Path(user_id): Path<i64>) -> ApiResult<axum::Json<Ledger>> {
    let totals = sqlx::query_as::<_, LedgerTotal>(
        "SELECT currency, \
           COALESCE(SUM(amount_minor) FILTER (WHERE kind = 'charge'), 0)::BIGINT AS charged_minor, \
           COALESCE(-SUM(amount_minor) FILTER (WHERE kind = 'refund'), 0)::BIGINT AS refunded_minor, \
           COUNT(*) AS entries \
         FROM ledger_entries WHERE user_id = $1 GROUP BY currency ORDER BY currency",
    )
    .bind(user_id)
    .fetch_all(&kit.db)
    .await?;
    Ok(axum::Json(Ledger { user_id, totals }))
}
