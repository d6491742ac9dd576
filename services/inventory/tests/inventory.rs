//! inventory against the machine's PostgreSQL and Redis, over HTTP.

use futures::future::join_all;
use serde_json::{Value, json};
use service_kit::testing::{self, TestServer};

async fn start() -> (TestServer, service_kit::Kit) {
    let db = testing::fresh_database().await;
    let redis = testing::redis_url();
    let kit = testing::kit(
        testing::config("inventory", &db, Some(&redis), &[]),
        &inventory::MIGRATOR,
    )
    .await;
    let server = TestServer::start("inventory", &[&kit], inventory::router(kit.clone())).await;
    (server, kit)
}

async fn create_item(http: &reqwest::Client, url: &str, sku: &str, stock: i64) -> i64 {
    let r = http
        .post(format!("{url}/items"))
        .json(&json!({"sku": sku, "name": "Widget", "price_minor": 250, "currency": "EUR", "stock": stock}))
        .send()
        .await
        .expect("create item");
    assert_eq!(r.status(), 201);
    r.json::<Value>().await.expect("json")["id"]
        .as_i64()
        .expect("id")
}

async fn stock(http: &reqwest::Client, url: &str, id: i64) -> i64 {
    http.get(format!("{url}/items/{id}"))
        .send()
        .await
        .expect("get")
        .json::<Value>()
        .await
        .expect("json")["stock"]
        .as_i64()
        .expect("stock")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_concurrent_reservations_on_stock_100_sell_exactly_100() {
    let (server, kit) = start().await;
    let http = testing::http();
    let item = create_item(&http, &server.url, "SKU-RACE", 100).await;
    let calls = (0..200).map(|i| {
        let http = http.clone();
        let url = server.url.clone();
        async move {
            http.post(format!("{url}/reservations"))
                .json(&json!({"id": format!("r-{i}"), "item_id": item, "quantity": 1}))
                .send()
                .await
                .expect("reserve")
                .status()
                .as_u16()
        }
    });
    let statuses = join_all(calls).await;
    let ok = statuses.iter().filter(|s| **s == 201).count();
    let out = statuses.iter().filter(|s| **s == 409).count();
    assert_eq!((ok, out), (100, 100), "statuses: {statuses:?}");
    assert_eq!(stock(&http, &server.url, item).await, 0);
    let reserved: i64 = sqlx::query_scalar(
        "SELECT COALESCE(SUM(quantity), 0)::BIGINT FROM reservations WHERE state = 'reserved'",
    )
    .fetch_one(&kit.db)
    .await
    .expect("sum");
    assert_eq!(reserved, 100);
}

#[tokio::test]
async fn reserve_release_and_commit_are_idempotent() {
    let (server, _kit) = start().await;
    let http = testing::http();
    let url = &server.url;
    let item = create_item(&http, url, "SKU-1", 10).await;
    let reserve = || {
        http.post(format!("{url}/reservations"))
            .json(&json!({"id": "order-1", "item_id": item, "quantity": 3}))
            .send()
    };
    assert_eq!(reserve().await.expect("reserve").status(), 201);
    assert_eq!(
        reserve().await.expect("retry").status(),
        200,
        "a retry is the same reservation"
    );
    assert_eq!(
        stock(&http, url, item).await,
        7,
        "the retry took no more stock"
    );

    let release = || {
        http.post(format!("{url}/reservations/order-1/release"))
            .send()
    };
    assert_eq!(release().await.expect("release").status(), 200);
    assert_eq!(release().await.expect("again").status(), 200);
    assert_eq!(stock(&http, url, item).await, 10, "released once");
    assert_eq!(
        reserve().await.expect("late").status(),
        409,
        "a released id cannot reserve again"
    );

    // A release that arrives before its reserve leaves a tombstone.
    assert_eq!(
        http.post(format!("{url}/reservations/order-2/release"))
            .send()
            .await
            .expect("early")
            .status(),
        200
    );
    let late = http
        .post(format!("{url}/reservations"))
        .json(&json!({"id": "order-2", "item_id": item, "quantity": 1}))
        .send()
        .await
        .expect("late reserve");
    assert_eq!(late.status(), 409);
    assert_eq!(stock(&http, url, item).await, 10);

    // Committed stock stays sold.
    http.post(format!("{url}/reservations"))
        .json(&json!({"id": "order-3", "item_id": item, "quantity": 2}))
        .send()
        .await
        .expect("reserve 3");
    assert_eq!(
        http.post(format!("{url}/reservations/order-3/commit"))
            .send()
            .await
            .expect("commit")
            .status(),
        200
    );
    assert_eq!(
        http.post(format!("{url}/reservations/order-3/commit"))
            .send()
            .await
            .expect("commit")
            .status(),
        200
    );
    assert_eq!(
        http.post(format!("{url}/reservations/order-3/release"))
            .send()
            .await
            .expect("release")
            .status(),
        409
    );
    assert_eq!(stock(&http, url, item).await, 8);
}

#[tokio::test]
async fn bad_input_is_a_problem_naming_the_field() {
    let (server, _kit) = start().await;
    let http = testing::http();
    let url = &server.url;
    let cases = [
        (
            json!({"sku": "", "name": "x", "price_minor": 1, "currency": "EUR", "stock": 1}),
            "sku",
        ),
        (
            json!({"sku": "a", "name": "x", "price_minor": -1, "currency": "EUR", "stock": 1}),
            "price_minor",
        ),
        (
            json!({"sku": "a", "name": "x", "price_minor": 1, "currency": "eur", "stock": 1}),
            "currency",
        ),
        (
            json!({"sku": "a", "name": "x", "price_minor": 1, "currency": "EUR", "stock": "lots"}),
            "stock",
        ),
        (
            json!({"sku": "a", "name": "x", "price_minor": 1, "currency": "EUR", "stock": 1, "colour": "red"}),
            "colour",
        ),
    ];
    for (body, field) in cases {
        let r = http
            .post(format!("{url}/items"))
            .json(&body)
            .send()
            .await
            .expect("post");
        assert_eq!(r.status(), 422, "{body}");
        assert_eq!(r.headers()["content-type"], "application/problem+json");
        let p: Value = r.json().await.expect("problem");
        assert_eq!(p["field"], field, "{p}");
        assert_eq!(p["status"], 422);
    }
    let r = http
        .post(format!("{url}/reservations"))
        .json(&json!({"id": "x; DROP TABLE items", "item_id": 1, "quantity": 1}))
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), 422);
    let r = http
        .get(format!("{url}/items/not-a-number"))
        .send()
        .await
        .expect("get");
    assert_eq!(r.status(), 422);
    assert_eq!(r.json::<Value>().await.expect("problem")["field"], "id");
    let r = http
        .get(format!("{url}/items/999"))
        .send()
        .await
        .expect("get");
    assert_eq!(r.status(), 404);
}
