//! What the saga needs from inventory and payments, as traits: over HTTP in the decomposed
//! deployment (here), in-process in `marketplace-monolith`.

use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};
use service_kit::peer::{PeerClient, PeerError};

/// How a step failed. The saga compensates only definite failures; an unknown outcome is
/// retried (every step is idempotent) until the saga's deadline.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum StepError {
    /// The peer refused: the step did not and will not take effect.
    #[error("{kind}: {detail}")]
    Definite { kind: String, detail: String },
    /// Unreachable, timed out, 5xx: the step may or may not have taken effect.
    #[error("{0}")]
    Transient(String),
}

impl From<PeerError> for StepError {
    fn from(e: PeerError) -> Self {
        if e.is_definite() {
            StepError::Definite {
                kind: e
                    .problem()
                    .map_or_else(|| "refused".to_owned(), |p| p.kind().to_owned()),
                detail: e.to_string(),
            }
        } else {
            StepError::Transient(e.to_string())
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reserved {
    pub unit_price_minor: i64,
    pub currency: String,
}

pub trait InventoryApi: Send + Sync {
    fn reserve<'a>(
        &'a self,
        id: &'a str,
        item_id: i64,
        quantity: i64,
    ) -> BoxFuture<'a, Result<Reserved, StepError>>;
    fn commit<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<(), StepError>>;
    fn release<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<(), StepError>>;
}

pub trait PaymentsApi: Send + Sync {
    fn charge<'a>(
        &'a self,
        key: &'a str,
        user_id: i64,
        amount_minor: i64,
        currency: &'a str,
    ) -> BoxFuture<'a, Result<(), StepError>>;
    fn refund<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<(), StepError>>;
}

/// The wire shapes orders relies on (the peers' OpenAPI documents are the contract).
#[derive(Serialize)]
struct ReserveBody<'a> {
    id: &'a str,
    item_id: i64,
    quantity: i64,
}

#[derive(Deserialize)]
struct ReservationBody {
    unit_price_minor: Option<i64>,
    currency: Option<String>,
}

#[derive(Serialize)]
struct ChargeBody<'a> {
    user_id: i64,
    amount_minor: i64,
    currency: &'a str,
}

#[derive(Serialize)]
struct RefundBody<'a> {
    charge_key: &'a str,
}

#[derive(Deserialize)]
struct Ignored {}

pub struct HttpInventory(pub PeerClient);

impl InventoryApi for HttpInventory {
    fn reserve<'a>(
        &'a self,
        id: &'a str,
        item_id: i64,
        quantity: i64,
    ) -> BoxFuture<'a, Result<Reserved, StepError>> {
        Box::pin(async move {
            let body = ReserveBody {
                id,
                item_id,
                quantity,
            };
            // The reservation id makes the POST idempotent: pass it as the key so the
            // client may retry it.
            let r: ReservationBody = self.0.post("/reservations", &body, Some(id)).await?;
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
            self.0
                .post::<_, Ignored>(&format!("/reservations/{id}/commit"), &(), Some(id))
                .await?;
            Ok(())
        })
    }

    fn release<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<(), StepError>> {
        Box::pin(async move {
            self.0
                .post::<_, Ignored>(&format!("/reservations/{id}/release"), &(), Some(id))
                .await?;
            Ok(())
        })
    }
}

pub struct HttpPayments(pub PeerClient);

impl PaymentsApi for HttpPayments {
    fn charge<'a>(
        &'a self,
        key: &'a str,
        user_id: i64,
        amount_minor: i64,
        currency: &'a str,
    ) -> BoxFuture<'a, Result<(), StepError>> {
        Box::pin(async move {
            let body = ChargeBody {
                user_id,
                amount_minor,
                currency,
            };
            self.0
                .post::<_, Ignored>("/charges", &body, Some(key))
                .await?;
            Ok(())
        })
    }

    fn refund<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<(), StepError>> {
        Box::pin(async move {
            let body = RefundBody { charge_key: key };
            self.0
                .post::<_, Ignored>("/refunds", &body, Some(key))
                .await?;
            Ok(())
        })
    }
}
