//! The order saga against real inventory and payments services (each on its own fresh
//! database, served over HTTP in-process) and the machine's PostgreSQL and Redis.
//! A crash is simulated by dropping a saga driver's future at a chosen point, after a
//! peer call took effect but before orders recorded it: the worst place to die.

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use serde_json::{Value, json};
use service_kit::Kit;
use service_kit::peer::{PeerClient, PeerOptions};
use service_kit::testing::{self, TestServer};

use orders::peers::{HttpInventory, HttpPayments, InventoryApi, PaymentsApi, Reserved, StepError};
use orders::{OrderStatus, Saga, SagaOptions, Step};

const PRICE: i64 = 2_000;

struct Env {
    inventory: TestServer,
    payments: TestServer,
    inventory_kit: Kit,
    payments_kit: Kit,
    orders_db: String,
    http: reqwest::Client,
    item: i64,
}

impl Env {
    async fn start(stock: i64) -> Self {
        let redis = testing::redis_url();
        let inventory_kit = testing::kit(
            testing::config(
                "inventory",
                &testing::fresh_database().await,
                Some(&redis),
                &[],
            ),
            &inventory::MIGRATOR,
        )
        .await;
        let payments_kit = testing::kit(
            testing::config("payments", &testing::fresh_database().await, None, &[]),
            &payments::MIGRATOR,
        )
        .await;
        let inventory = TestServer::start(
            "inventory",
            &[&inventory_kit],
            inventory::router(inventory_kit.clone()),
        )
        .await;
        let payments = TestServer::start(
            "payments",
            &[&payments_kit],
            payments::router(payments_kit.clone()),
        )
        .await;
        let http = testing::http();
        let item: Value = http
            .post(format!("{}/items", inventory.url))
            .json(&json!({"sku": "SAGA", "name": "Saga", "price_minor": PRICE, "currency": "EUR", "stock": stock}))
            .send()
            .await
            .expect("item")
            .json()
            .await
            .expect("json");
        Self {
            inventory,
            payments,
            inventory_kit,
            payments_kit,
            orders_db: testing::fresh_database().await,
            http,
            item: item["id"].as_i64().expect("id"),
        }
    }

    /// An orders process: its kit on the shared orders database, peers at the given URLs.
    async fn orders(&self, payments_url: &str, options: SagaOptions) -> Arc<Saga> {
        let kit = testing::kit(
            testing::config(
                "orders",
                &self.orders_db,
                Some(&testing::redis_url()),
                &[
                    ("inventory", &self.inventory.url),
                    ("payments", payments_url),
                ],
            ),
            &orders::MIGRATOR,
        )
        .await;
        orders::http_saga(&kit, options).expect("saga")
    }

    async fn stock(&self) -> i64 {
        sqlx::query_scalar("SELECT stock FROM items WHERE id = $1")
            .bind(self.item)
            .fetch_one(&self.inventory_kit.db)
            .await
            .expect("stock")
    }

    /// (charged, refunded) in minor units over the whole ledger.
    async fn ledger(&self) -> (i64, i64) {
        sqlx::query_as(
            "SELECT COALESCE(SUM(amount_minor) FILTER (WHERE kind = 'charge'), 0)::BIGINT, \
             COALESCE(-SUM(amount_minor) FILTER (WHERE kind = 'refund'), 0)::BIGINT FROM ledger_entries",
        )
        .fetch_one(&self.payments_kit.db)
        .await
        .expect("ledger")
    }
}

fn quick() -> SagaOptions {
    SagaOptions {
        lease: Duration::from_millis(500),
        deadline: Duration::from_secs(600),
        resume_every: Duration::from_secs(3600),
    }
}

async fn serve_orders(saga: Arc<Saga>) -> TestServer {
    let kit = saga.kit.clone();
    TestServer::start("orders", &[&kit], orders::router(saga)).await
}

#[tokio::test]
async fn an_order_reserves_charges_and_confirms() {
    let env = Env::start(10).await;
    let saga = env.orders(&env.payments.url, quick()).await;
    let server = serve_orders(saga).await;
    let r = env
        .http
        .post(format!("{}/orders", server.url))
        .json(&json!({"user_id": 1, "item_id": env.item, "quantity": 3}))
        .send()
        .await
        .expect("order");
    assert_eq!(r.status(), 201);
    let order: Value = r.json().await.expect("json");
    assert_eq!(order["status"], "confirmed");
    assert_eq!(order["amount_minor"], 3 * PRICE);
    assert_eq!(env.stock().await, 7);
    assert_eq!(env.ledger().await, (3 * PRICE, 0));
    let got: Value = env
        .http
        .get(format!("{}/orders/{}", server.url, order["id"]))
        .send()
        .await
        .expect("get")
        .json()
        .await
        .expect("json");
    assert_eq!(got["status"], "confirmed");
}

#[tokio::test]
async fn a_saga_whose_charge_fails_leaves_stock_unchanged() {
    let env = Env::start(10_000).await;
    let saga = env.orders(&env.payments.url, quick()).await;
    let server = serve_orders(saga).await;
    // 501 × 20 EUR is above the payments decline threshold.
    let quantity = payments::DECLINE_ABOVE_MINOR / PRICE + 1;
    assert!(quantity <= 1000);
    let r = env
        .http
        .post(format!("{}/orders", server.url))
        .json(&json!({"user_id": 1, "item_id": env.item, "quantity": quantity}))
        .send()
        .await
        .expect("order");
    assert_eq!(r.status(), 409);
    let p: Value = r.json().await.expect("problem");
    assert!(
        p["detail"]
            .as_str()
            .expect("detail")
            .contains("payment-declined"),
        "{p}"
    );
    assert_eq!(env.stock().await, 10_000, "the reservation was released");
    assert_eq!(env.ledger().await, (0, 0));
    let state: String = sqlx::query_scalar("SELECT state FROM reservations WHERE id = 'order-1'")
        .fetch_one(&env.inventory_kit.db)
        .await
        .expect("reservation");
    assert_eq!(state, "released");
}

#[tokio::test]
async fn out_of_stock_fails_without_charging() {
    let env = Env::start(1).await;
    let server = serve_orders(env.orders(&env.payments.url, quick()).await).await;
    let r = env
        .http
        .post(format!("{}/orders", server.url))
        .json(&json!({"user_id": 1, "item_id": env.item, "quantity": 2}))
        .send()
        .await
        .expect("order");
    assert_eq!(r.status(), 409);
    assert_eq!(env.stock().await, 1);
    assert_eq!(env.ledger().await, (0, 0));
}

#[tokio::test]
async fn an_order_waits_out_a_payments_outage_and_completes_on_resume() {
    let env = Env::start(10).await;
    let down = testing::closed_port_url("http").await;
    let first = env.orders(&down, quick()).await;
    let server = serve_orders(first).await;
    let r = env
        .http
        .post(format!("{}/orders", server.url))
        .header("idempotency-key", "cart-9")
        .json(&json!({"user_id": 1, "item_id": env.item, "quantity": 2}))
        .send()
        .await
        .expect("order");
    assert_eq!(r.status(), 202, "pending while payments is unreachable");
    let order: Value = r.json().await.expect("json");
    assert_eq!(order["step"], "charge");
    assert_eq!(env.stock().await, 8, "stock is held for the pending order");

    let second = env.orders(&env.payments.url, quick()).await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(second.resume_all().await.expect("resume"), 1);
    let done = second
        .load(order["id"].as_i64().expect("id"))
        .await
        .expect("load")
        .expect("order");
    assert_eq!(
        (done.status, done.step),
        (OrderStatus::Confirmed, Step::Done)
    );
    assert_eq!(env.ledger().await, (2 * PRICE, 0));
    assert_eq!(env.stock().await, 8);
}

#[tokio::test]
async fn an_outage_past_the_deadline_is_compensated_and_a_late_charge_refused() {
    let env = Env::start(10).await;
    let down = testing::closed_port_url("http").await;
    let expired = SagaOptions {
        deadline: Duration::ZERO,
        ..quick()
    };
    let saga = env.orders(&down, expired).await;
    let order = orders::place(
        &saga,
        None,
        &orders::NewOrder {
            user_id: 1,
            item_id: env.item,
            quantity: 4,
        },
    )
    .await
    .expect("place");
    assert_eq!(
        order.step,
        Step::Refund,
        "charge outcome unknown past the deadline: refund first"
    );

    let back = env.orders(&env.payments.url, expired).await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    back.resume_all().await.expect("resume");
    let done = back.load(order.id).await.expect("load").expect("order");
    assert_eq!((done.status, done.step), (OrderStatus::Failed, Step::Done));
    assert_eq!(env.stock().await, 10, "stock released");
    assert_eq!(env.ledger().await, (0, 0));
    let late = env
        .http
        .post(format!("{}/charges", env.payments.url))
        .header("idempotency-key", orders::saga::charge_key(order.id))
        .json(&json!({"user_id": 1, "amount_minor": 4 * PRICE, "currency": "EUR"}))
        .send()
        .await
        .expect("late charge");
    assert_eq!(late.status(), 409, "the refund voided the key");
}

/// Where a driver dies: right after a peer call took effect, before orders recorded it.
#[derive(Clone, Copy, Debug)]
enum CrashAfter {
    Reserve,
    Charge,
    Commit,
    Release,
}

struct Dying<T: ?Sized> {
    inner: Arc<T>,
    at: CrashAfter,
}

async fn die<T>(result: T, at: CrashAfter, here: CrashAfter) -> T {
    if std::mem::discriminant(&at) == std::mem::discriminant(&here) {
        std::future::pending::<()>().await;
    }
    result
}

impl InventoryApi for Dying<dyn InventoryApi> {
    fn reserve<'a>(
        &'a self,
        id: &'a str,
        item: i64,
        q: i64,
    ) -> BoxFuture<'a, Result<Reserved, StepError>> {
        Box::pin(async move {
            die(
                self.inner.reserve(id, item, q).await,
                self.at,
                CrashAfter::Reserve,
            )
            .await
        })
    }
    fn commit<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<(), StepError>> {
        Box::pin(async move { die(self.inner.commit(id).await, self.at, CrashAfter::Commit).await })
    }
    fn release<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<(), StepError>> {
        Box::pin(
            async move { die(self.inner.release(id).await, self.at, CrashAfter::Release).await },
        )
    }
}

impl PaymentsApi for Dying<dyn PaymentsApi> {
    fn charge<'a>(
        &'a self,
        key: &'a str,
        user: i64,
        amount: i64,
        currency: &'a str,
    ) -> BoxFuture<'a, Result<(), StepError>> {
        Box::pin(async move {
            die(
                self.inner.charge(key, user, amount, currency).await,
                self.at,
                CrashAfter::Charge,
            )
            .await
        })
    }
    fn refund<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<(), StepError>> {
        Box::pin(async move { self.inner.refund(key).await })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orders_killed_mid_saga_complete_or_compensate_every_saga_on_restart() {
    let env = Env::start(10_000).await;
    let healthy = env.orders(&env.payments.url, quick()).await;
    let inventory: Arc<dyn InventoryApi> = Arc::new(HttpInventory(
        PeerClient::new("inventory", &env.inventory.url, PeerOptions::default()).expect("client"),
    ));
    let payments: Arc<dyn PaymentsApi> = Arc::new(HttpPayments(
        PeerClient::new("payments", &env.payments.url, PeerOptions::default()).expect("client"),
    ));
    let declined_quantity = payments::DECLINE_ABOVE_MINOR / PRICE + 1;
    let mut placed = Vec::new();
    for (i, at) in [
        CrashAfter::Reserve,
        CrashAfter::Charge,
        CrashAfter::Commit,
        CrashAfter::Release,
    ]
    .into_iter()
    .cycle()
    .take(12)
    .enumerate()
    {
        let dying = Arc::new(Saga {
            kit: healthy.kit.clone(),
            inventory: Arc::new(Dying {
                inner: inventory.clone(),
                at,
            }),
            payments: Arc::new(Dying {
                inner: payments.clone(),
                at,
            }),
            options: quick(),
        });
        // Every third order is declined, so compensation is interrupted too.
        let quantity = if i % 3 == 2 {
            declined_quantity
        } else {
            1 + i as i64
        };
        let new = orders::NewOrder {
            user_id: 1 + i as i64,
            item_id: env.item,
            quantity,
        };
        let crashed = tokio::time::timeout(
            Duration::from_millis(500),
            orders::place(&dying, None, &new),
        )
        .await;
        placed.push((quantity, crashed.is_err()));
    }
    assert!(
        placed.iter().filter(|(_, crashed)| *crashed).count() >= 6,
        "most drivers died mid-saga: {placed:?}"
    );
    let unfinished: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM orders WHERE step <> 'done'")
        .fetch_one(&healthy.kit.db)
        .await
        .expect("count");
    assert!(unfinished >= 6);

    // The restarted process: the dead drivers' leases run out, then it resumes them all.
    tokio::time::sleep(Duration::from_millis(600)).await;
    healthy.resume_all().await.expect("resume");

    let rows: Vec<(i64, String, String, i64, Option<i64>)> =
        sqlx::query_as("SELECT id, status, step, quantity, amount_minor FROM orders ORDER BY id")
            .fetch_all(&healthy.kit.db)
            .await
            .expect("orders");
    assert_eq!(rows.len(), 12);
    let mut sold = 0;
    let mut charged = 0;
    for (id, status, step, quantity, amount) in &rows {
        assert_eq!(step, "done", "order {id} unfinished");
        let reservation: String =
            sqlx::query_scalar("SELECT state FROM reservations WHERE id = $1")
                .bind(orders::saga::reservation_id(*id))
                .fetch_one(&env.inventory_kit.db)
                .await
                .expect("reservation");
        let charge: Option<String> =
            sqlx::query_scalar("SELECT state FROM charges WHERE idempotency_key = $1")
                .bind(orders::saga::charge_key(*id))
                .fetch_optional(&env.payments_kit.db)
                .await
                .expect("charge");
        match status.as_str() {
            "confirmed" => {
                assert_eq!(reservation, "committed", "order {id}");
                assert_eq!(charge.as_deref(), Some("succeeded"), "order {id}");
                sold += quantity;
                charged += amount.expect("amount");
            }
            "failed" => {
                assert_eq!(reservation, "released", "order {id}");
                assert!(
                    matches!(
                        charge.as_deref(),
                        None | Some("declined" | "refunded" | "voided")
                    ),
                    "order {id}: {charge:?}"
                );
            }
            other => panic!("order {id} is {other}"),
        }
    }
    assert!(sold > 0);
    assert_eq!(
        env.stock().await,
        10_000 - sold,
        "stock matches the confirmed orders exactly"
    );
    let (ledger_charged, refunded) = env.ledger().await;
    assert_eq!(
        ledger_charged - refunded,
        charged,
        "money matches the confirmed orders exactly"
    );
}
