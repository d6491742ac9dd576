//! The real `orders` binary killed with SIGKILL mid-saga (after payments charged, before
//! orders heard back) and started again: the restarted process finishes the saga, with one
//! charge and one stock decrement.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use serde_json::{Value, json};
use service_kit::testing::{self, TestServer};

/// Forwards every request to payments, then never answers: the charge happens, its
/// response is lost.
async fn swallowing_proxy(upstream: String) -> String {
    async fn forward(State(upstream): State<String>, req: Request) -> axum::response::Response {
        let (parts, body) = req.into_parts();
        let bytes = axum::body::to_bytes(body, 1 << 20)
            .await
            .unwrap_or_default();
        let mut r =
            testing::http().request(parts.method, format!("{upstream}{}", parts.uri.path()));
        for (k, v) in parts.headers.iter() {
            if k != "host" && k != "content-length" {
                r = r.header(k, v);
            }
        }
        let _ = r.body(bytes).send().await;
        std::future::pending::<()>().await;
        axum::response::Response::new(Body::empty())
    }
    let app = Router::new().fallback(forward).with_state(upstream);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(async move { axum::serve(listener, app).await });
    url
}

fn spawn_orders(port: u16, db: &str, inventory: &str, payments: &str) -> Child {
    Command::new(env!("CARGO_BIN_EXE_orders"))
        .env("PORT", port.to_string())
        .env("DATABASE_URL", db)
        .env_remove("REDIS_URL")
        .env("INVENTORY_URL", inventory)
        .env("PAYMENTS_URL", payments)
        .env("SAGA_LEASE_SECONDS", "1")
        .env("SAGA_RESUME_SECONDS", "0.5")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn orders")
}

async fn wait_for<F: AsyncFnMut() -> bool>(what: &str, secs: u64, mut f: F) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < deadline {
        if f().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("timed out waiting for {what}");
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_orders_process_finishes_the_saga_after_restart() {
    let inventory_kit = testing::kit(
        testing::config("inventory", &testing::fresh_database().await, None, &[]),
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
        .json(&json!({"sku": "K", "name": "K", "price_minor": 700, "currency": "EUR", "stock": 10}))
        .send()
        .await
        .expect("item")
        .json()
        .await
        .expect("json");
    let orders_db = testing::fresh_database().await;
    let proxy = swallowing_proxy(payments.url.clone()).await;

    let port = free_port();
    let mut first = spawn_orders(port, &orders_db, &inventory.url, &proxy);
    let orders_url = format!("http://127.0.0.1:{port}");
    wait_for("orders ready", 30, async || {
        http.get(format!("{orders_url}/readyz"))
            .send()
            .await
            .is_ok_and(|r| r.status() == 200)
    })
    .await;
    let placing = tokio::spawn({
        let http = http.clone();
        let url = orders_url.clone();
        let item = item["id"].clone();
        async move {
            http.post(format!("{url}/orders"))
                .json(&json!({"user_id": 9, "item_id": item, "quantity": 3}))
                .send()
                .await
        }
    });
    wait_for("the charge", 30, async || {
        sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM charges")
            .fetch_one(&payments_kit.db)
            .await
            .is_ok_and(|n| n == 1)
    })
    .await;
    first.kill().expect("SIGKILL orders");
    first.wait().expect("reap");
    assert!(
        placing.await.expect("join").is_err(),
        "the client saw the connection die"
    );

    let mut second = spawn_orders(port, &orders_db, &inventory.url, &payments.url);
    let db = sqlx::PgPool::connect(&orders_db).await.expect("orders db");
    wait_for("the saga to finish", 30, async || {
        sqlx::query_scalar::<_, String>("SELECT step FROM orders")
            .fetch_optional(&db)
            .await
            .is_ok_and(|s| s.as_deref() == Some("done"))
    })
    .await;
    second.kill().expect("stop");
    let _ = second.wait();

    let status: String = sqlx::query_scalar("SELECT status FROM orders")
        .fetch_one(&db)
        .await
        .expect("status");
    assert_eq!(status, "confirmed");
    let charges: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM ledger_entries")
        .fetch_one(&payments_kit.db)
        .await
        .expect("ledger");
    assert_eq!(charges, 1, "charged once");
    let stock: i64 = sqlx::query_scalar("SELECT stock FROM items")
        .fetch_one(&inventory_kit.db)
        .await
        .expect("stock");
    assert_eq!(stock, 7, "stock taken once");
}
