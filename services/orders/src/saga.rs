//! The order saga: reserve stock → charge → confirm (commit the reservation), with
//! compensation: a definite charge failure releases the stock; a failed confirmation
//! refunds, then releases. Each transition is written to Postgres before the next call, and
//! each call is idempotent at the peer, so a driver that dies anywhere is replaced by one
//! that repeats at most the step in flight. A step whose outcome stays unknown past the
//! deadline is compensated (release and refund are safe on steps that never happened: they
//! leave tombstones that refuse a late reserve or charge). Confirmation is the pivot: it is
//! retried, never compensated on a mere timeout.

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use service_kit::utoipa::ToSchema;
use service_kit::{ApiError, ApiResult, Kit};

use crate::peers::{InventoryApi, PaymentsApi, StepError};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum OrderStatus {
    Pending,
    Confirmed,
    Failed,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Step {
    Reserve,
    Charge,
    Confirm,
    Refund,
    Release,
    Done,
}

impl Step {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Reserve => "reserve",
            Self::Charge => "charge",
            Self::Confirm => "confirm",
            Self::Refund => "refund",
            Self::Release => "release",
            Self::Done => "done",
        }
    }
    fn parse(s: &str) -> Result<Self, ApiError> {
        Ok(match s {
            "reserve" => Self::Reserve,
            "charge" => Self::Charge,
            "confirm" => Self::Confirm,
            "refund" => Self::Refund,
            "release" => Self::Release,
            "done" => Self::Done,
            other => return Err(ApiError::Internal(format!("unknown saga step {other}"))),
        })
    }
}

impl OrderStatus {
    fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Confirmed => "confirmed",
            Self::Failed => "failed",
        }
    }
    fn parse(s: &str) -> Result<Self, ApiError> {
        Ok(match s {
            "pending" => Self::Pending,
            "confirmed" => Self::Confirmed,
            "failed" => Self::Failed,
            other => return Err(ApiError::Internal(format!("unknown order status {other}"))),
        })
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Order {
    pub id: i64,
    pub user_id: i64,
    pub item_id: i64,
    pub quantity: i64,
    /// Known once stock is reserved (unit price × quantity).
    pub amount_minor: Option<i64>,
    pub currency: Option<String>,
    pub status: OrderStatus,
    /// The saga's next step (`done` when finished).
    pub step: Step,
    /// Why the order failed.
    pub failure: Option<String>,
}

#[derive(sqlx::FromRow)]
pub(crate) struct OrderRow {
    id: i64,
    user_id: i64,
    item_id: i64,
    quantity: i64,
    amount_minor: Option<i64>,
    currency: Option<String>,
    status: String,
    step: String,
    failure: Option<String>,
}

impl TryFrom<OrderRow> for Order {
    type Error = ApiError;
    fn try_from(r: OrderRow) -> Result<Self, ApiError> {
        Ok(Self {
            id: r.id,
            user_id: r.user_id,
            item_id: r.item_id,
            quantity: r.quantity,
            amount_minor: r.amount_minor,
            currency: r.currency,
            status: OrderStatus::parse(&r.status)?,
            step: Step::parse(&r.step)?,
            failure: r.failure,
        })
    }
}

macro_rules! order_columns {
    () => {
        "id, user_id, item_id, quantity, amount_minor, currency, status, step, failure"
    };
}
pub(crate) use order_columns;

#[derive(Clone, Copy, Debug)]
pub struct SagaOptions {
    /// How long a driver owns a saga before another may take it over.
    pub lease: Duration,
    /// Past this age a step with an unknown outcome is compensated instead of retried.
    pub deadline: Duration,
    /// How often unfinished sagas are looked for.
    pub resume_every: Duration,
}

impl Default for SagaOptions {
    fn default() -> Self {
        Self {
            lease: Duration::from_secs(30),
            deadline: Duration::from_secs(120),
            resume_every: Duration::from_secs(5),
        }
    }
}

pub struct Saga {
    pub kit: Kit,
    pub inventory: Arc<dyn InventoryApi>,
    pub payments: Arc<dyn PaymentsApi>,
    pub options: SagaOptions,
}

pub fn reservation_id(order: i64) -> String {
    format!("order-{order}")
}

pub fn charge_key(order: i64) -> String {
    format!("order-{order}")
}

pub fn cache_key(order: i64) -> String {
    format!("order:v1:{order}")
}

/// The row as claimed: the order and whether its deadline passed.
#[derive(sqlx::FromRow)]
struct Claimed {
    #[sqlx(flatten)]
    row: OrderRow,
    expired: bool,
}

struct Transition<'a> {
    to: Step,
    status: OrderStatus,
    amount: Option<(i64, &'a str)>,
    failure: Option<String>,
}

impl Saga {
    pub async fn load(&self, id: i64) -> ApiResult<Option<Order>> {
        sqlx::query_as::<_, OrderRow>(concat!(
            "SELECT ",
            order_columns!(),
            " FROM orders WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(&self.kit.db)
        .await?
        .map(Order::try_from)
        .transpose()
    }

    /// Takes the saga's lease, unless it is finished or another driver holds it.
    async fn claim(&self, id: i64) -> ApiResult<Option<(Order, bool)>> {
        let claimed = sqlx::query_as::<_, Claimed>(concat!(
            "UPDATE orders SET locked_until = now() + make_interval(secs => $2), \
             attempts = attempts + 1 \
             WHERE id = $1 AND step <> 'done' AND (locked_until IS NULL OR locked_until < now()) \
             RETURNING ",
            order_columns!(),
            ", created_at < now() - make_interval(secs => $3) AS expired"
        ))
        .bind(id)
        .bind(self.options.lease.as_secs_f64())
        .bind(self.options.deadline.as_secs_f64())
        .fetch_optional(&self.kit.db)
        .await?;
        claimed
            .map(|c| Ok((Order::try_from(c.row)?, c.expired)))
            .transpose()
    }

    /// Persists a step transition. Guarded on the current step so a driver whose lease was
    /// taken over cannot move the saga twice.
    async fn advance(&self, order: &Order, t: Transition<'_>) -> ApiResult<Order> {
        let mut tx = self.kit.db.begin().await?;
        let row = sqlx::query_as::<_, OrderRow>(concat!(
            "UPDATE orders SET step = $3, status = $4, \
             amount_minor = COALESCE($5, amount_minor), currency = COALESCE($6, currency), \
             failure = COALESCE($7, failure), updated_at = now(), \
             locked_until = CASE WHEN $3 = 'done' THEN NULL ELSE locked_until END \
             WHERE id = $1 AND step = $2 RETURNING ",
            order_columns!()
        ))
        .bind(order.id)
        .bind(order.step.as_str())
        .bind(t.to.as_str())
        .bind(t.status.as_str())
        .bind(t.amount.map(|a| a.0))
        .bind(t.amount.map(|a| a.1))
        .bind(&t.failure)
        .fetch_optional(&mut *tx)
        .await?
        .ok_or_else(|| {
            ApiError::conflict(
                "saga-moved",
                format!("order {} moved on under another driver", order.id),
            )
        })?;
        sqlx::query(
            "INSERT INTO order_events (order_id, from_step, to_step, detail) VALUES ($1, $2, $3, $4)",
        )
        .bind(order.id)
        .bind(order.step.as_str())
        .bind(t.to.as_str())
        .bind(&t.failure)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        self.kit.cache.invalidate(&cache_key(order.id)).await;
        tracing::debug!(
            order = order.id,
            from = order.step.as_str(),
            to = t.to.as_str(),
            "saga step"
        );
        row.try_into()
    }

    async fn unlock(&self, id: i64) {
        if let Err(e) = sqlx::query("UPDATE orders SET locked_until = NULL WHERE id = $1")
            .bind(id)
            .execute(&self.kit.db)
            .await
        {
            tracing::warn!(order = id, %e, "failed to release a saga lease");
        }
    }

    /// Runs the saga of order `id` as far as it can go now and returns the order.
    pub async fn drive(&self, id: i64) -> ApiResult<Order> {
        let Some((mut order, expired)) = self.claim(id).await? else {
            return self
                .load(id)
                .await?
                .ok_or_else(|| ApiError::not_found(format!("order {id}")));
        };
        let result = self.run_steps(&mut order, expired).await;
        if order.step != Step::Done {
            self.unlock(id).await;
        }
        result.map(|()| order)
    }

    async fn run_steps(&self, order: &mut Order, expired: bool) -> ApiResult<()> {
        let rid = reservation_id(order.id);
        let key = charge_key(order.id);
        let failed = |to: Step, failure: String| Transition {
            to,
            status: if to == Step::Done {
                OrderStatus::Failed
            } else {
                OrderStatus::Pending
            },
            amount: None,
            failure: Some(failure),
        };
        loop {
            let next = match order.step {
                Step::Done => return Ok(()),
                Step::Reserve => match self
                    .inventory
                    .reserve(&rid, order.item_id, order.quantity)
                    .await
                {
                    Ok(r) => match r.unit_price_minor.checked_mul(order.quantity) {
                        Some(amount) => Transition {
                            to: Step::Charge,
                            status: OrderStatus::Pending,
                            amount: Some((amount, &r.currency)),
                            failure: None,
                        }
                        .owned(),
                        None => failed(Step::Release, "amount overflows".into()).owned(),
                    },
                    // Nothing was reserved; the release leaves a tombstone all the same, in
                    // case an earlier attempt's reserve is still on its way.
                    Err(StepError::Definite { kind, detail }) => {
                        failed(Step::Release, format!("reserve: {kind}: {detail}")).owned()
                    }
                    Err(StepError::Transient(e)) if expired => {
                        failed(Step::Release, format!("reserve: gave up: {e}")).owned()
                    }
                    Err(StepError::Transient(e)) => return self.stalled(order, &e),
                },
                Step::Charge => {
                    let (Some(amount), Some(currency)) =
                        (order.amount_minor, order.currency.clone())
                    else {
                        return Err(ApiError::Internal(format!(
                            "order {} charges without an amount",
                            order.id
                        )));
                    };
                    match self
                        .payments
                        .charge(&key, order.user_id, amount, &currency)
                        .await
                    {
                        Ok(()) => Transition {
                            to: Step::Confirm,
                            status: OrderStatus::Pending,
                            amount: None,
                            failure: None,
                        }
                        .owned(),
                        // Declined charges hold no money: only the stock goes back.
                        Err(StepError::Definite { kind, detail }) => {
                            failed(Step::Release, format!("charge: {kind}: {detail}")).owned()
                        }
                        Err(StepError::Transient(e)) if expired => {
                            failed(Step::Refund, format!("charge: gave up: {e}")).owned()
                        }
                        Err(StepError::Transient(e)) => return self.stalled(order, &e),
                    }
                }
                Step::Confirm => match self.inventory.commit(&rid).await {
                    Ok(()) => Transition {
                        to: Step::Done,
                        status: OrderStatus::Confirmed,
                        amount: None,
                        failure: None,
                    }
                    .owned(),
                    Err(StepError::Definite { kind, detail }) => {
                        failed(Step::Refund, format!("confirm: {kind}: {detail}")).owned()
                    }
                    Err(StepError::Transient(e)) => return self.stalled(order, &e),
                },
                Step::Refund => match self.payments.refund(&key).await {
                    Ok(()) => failed(Step::Release, String::new()).owned(),
                    Err(e) => return self.stalled(order, &e.to_string()),
                },
                Step::Release => match self.inventory.release(&rid).await {
                    Ok(()) => failed(Step::Done, String::new()).owned(),
                    Err(e @ StepError::Definite { .. }) => {
                        // A committed reservation cannot be released; nothing else refuses.
                        tracing::error!(order = order.id, error = %e, "release refused");
                        failed(Step::Done, format!("release: {e}")).owned()
                    }
                    Err(StepError::Transient(e)) => return self.stalled(order, &e),
                },
            };
            let failure = next.failure.filter(|f| !f.is_empty());
            *order = self
                .advance(
                    order,
                    Transition {
                        to: next.to,
                        status: next.status,
                        amount: next.amount.as_ref().map(|(a, c)| (*a, c.as_str())),
                        failure,
                    },
                )
                .await?;
        }
    }

    fn stalled(&self, order: &Order, error: &str) -> ApiResult<()> {
        tracing::info!(order = order.id, step = order.step.as_str(), %error, "saga step stalled; will resume");
        Ok(())
    }

    /// Drives every unfinished saga whose lease is free; returns how many it touched.
    pub async fn resume_all(&self) -> ApiResult<usize> {
        // Orders untouched for a lease: a request that just created one is about to
        // drive it itself.
        let ids = sqlx::query_scalar::<_, i64>(
            "SELECT id FROM orders WHERE step <> 'done' \
             AND (locked_until IS NULL OR locked_until < now()) \
             AND updated_at < now() - make_interval(secs => $1) ORDER BY id LIMIT 500",
        )
        .bind(self.options.lease.as_secs_f64())
        .fetch_all(&self.kit.db)
        .await?;
        let n = ids.len();
        for id in ids {
            let request_id = service_kit::middleware::new_request_id();
            if let Err(e) =
                service_kit::middleware::with_request_id(request_id, self.drive(id)).await
            {
                tracing::warn!(order = id, error = %e, "failed to resume saga");
            }
        }
        Ok(n)
    }

    /// Resumes unfinished sagas now (those a crash left behind) and then periodically.
    pub async fn resume_forever(self: Arc<Self>) {
        loop {
            match self.resume_all().await {
                Ok(0) => {}
                Ok(n) => tracing::info!(sagas = n, "resumed unfinished sagas"),
                Err(e) => tracing::warn!(error = %e, "failed to look for unfinished sagas"),
            }
            tokio::time::sleep(self.options.resume_every).await;
        }
    }
}

/// A transition whose borrowed currency is owned, so it outlives the step's match.
struct OwnedTransition {
    to: Step,
    status: OrderStatus,
    amount: Option<(i64, String)>,
    failure: Option<String>,
}

impl Transition<'_> {
    fn owned(self) -> OwnedTransition {
        OwnedTransition {
            to: self.to,
            status: self.status,
            amount: self.amount.map(|(a, c)| (a, c.to_owned())),
            failure: self.failure,
        }
    }
}
