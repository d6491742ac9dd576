//! The monolith hosts the four domains on one database (a schema each) and runs the order
//! saga in-process.

use serde_json::{Value, json};
use service_kit::testing::{self, TestServer};

#[tokio::test]
async fn one_process_serves_every_domain_and_places_orders_in_process() {
    let db = testing::fresh_database().await;
    let base = testing::config("marketplace", &db, Some(&testing::redis_url()), &[]);
    let kits = marketplace_monolith::Kits::new(&base).expect("kits");
    kits.migrate_until_done().await;
    let saga = kits.saga(orders::SagaOptions::default());
    let server = TestServer::start("marketplace-monolith", &kits.all(), kits.routes(saga)).await;
    let http = testing::http();
    let url = &server.url;

    let user: Value = http
        .post(format!("{url}/users"))
        .json(&json!({"email": "m@x.org", "name": "M"}))
        .send()
        .await
        .expect("user")
        .json()
        .await
        .expect("json");
    let item: Value = http
        .post(format!("{url}/items"))
        .json(&json!({"sku": "M1", "name": "M", "price_minor": 300, "currency": "EUR", "stock": 5}))
        .send()
        .await
        .expect("item")
        .json()
        .await
        .expect("json");
    let r = http
        .post(format!("{url}/orders"))
        .json(&json!({"user_id": user["id"], "item_id": item["id"], "quantity": 2}))
        .send()
        .await
        .expect("order");
    assert_eq!(r.status(), 201);
    let item: Value = http
        .get(format!("{url}/items/{}", item["id"]))
        .send()
        .await
        .expect("get")
        .json()
        .await
        .expect("json");
    assert_eq!(item["stock"], 3);
    let ledger: Value = http
        .get(format!("{url}/accounts/{}/ledger", user["id"]))
        .send()
        .await
        .expect("ledger")
        .json()
        .await
        .expect("json");
    assert_eq!(ledger["totals"][0]["charged_minor"], 600);

    // The domains keep their tables apart, as the decomposed services do.
    let schemas: Vec<String> = sqlx::query_scalar(
        "SELECT DISTINCT table_schema::TEXT FROM information_schema.tables WHERE table_name IN ('users', 'items', 'charges', 'orders') ORDER BY 1",
    )
    .fetch_all(&kits.orders.db)
    .await
    .expect("schemas");
    assert_eq!(schemas, ["inventory", "orders", "payments", "users"]);
    let doc: Value = http
        .get(format!("{url}/openapi.json"))
        .send()
        .await
        .expect("doc")
        .json()
        .await
        .expect("json");
    for path in ["/users", "/items", "/charges", "/orders"] {
        assert!(doc["paths"][path].is_object(), "{path}");
    }
}
