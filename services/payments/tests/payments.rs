//! payments against the machine's PostgreSQL, over HTTP.

use futures::future::join_all;
use serde_json::{Value, json};
use service_kit::testing::{self, TestServer};

async fn start() -> (TestServer, service_kit::Kit) {
    let db = testing::fresh_database().await;
    let kit = testing::kit(
        testing::config("payments", &db, Some(&testing::redis_url()), &[]),
        &payments::MIGRATOR,
    )
    .await;
    let server = TestServer::start("payments", &[&kit], payments::router(kit.clone())).await;
    (server, kit)
}

async fn ledger(http: &reqwest::Client, url: &str, user: i64) -> Value {
    http.get(format!("{url}/accounts/{user}/ledger"))
        .send()
        .await
        .expect("ledger")
        .json()
        .await
        .expect("json")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_concurrent_retries_of_one_key_make_one_charge() {
    let (server, kit) = start().await;
    let http = testing::http();
    let calls = (0..50).map(|_| {
        let http = http.clone();
        let url = server.url.clone();
        async move {
            let r = http
                .post(format!("{url}/charges"))
                .header("idempotency-key", "checkout-42")
                .json(&json!({"user_id": 7, "amount_minor": 1999, "currency": "EUR"}))
                .send()
                .await
                .expect("charge");
            let status = r.status().as_u16();
            let body: Value = r.json().await.expect("json");
            (status, body["id"].as_i64())
        }
    });
    let results = join_all(calls).await;
    let created = results.iter().filter(|(s, _)| *s == 201).count();
    let replayed = results.iter().filter(|(s, _)| *s == 200).count();
    assert_eq!((created, replayed), (1, 49), "{results:?}");
    let ids: std::collections::BTreeSet<_> = results.iter().map(|(_, id)| *id).collect();
    assert_eq!(ids.len(), 1, "every retry sees the same charge: {ids:?}");
    let rows: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM charges")
        .fetch_one(&kit.db)
        .await
        .expect("count");
    assert_eq!(rows, 1);
    let l = ledger(&http, &server.url, 7).await;
    assert_eq!(l["totals"][0]["entries"], 1);
    assert_eq!(l["totals"][0]["charged_minor"], 1999);
}

#[tokio::test]
async fn a_key_reused_for_another_amount_is_refused() {
    let (server, _kit) = start().await;
    let http = testing::http();
    let charge = |amount: i64| {
        http.post(format!("{}/charges", server.url))
            .header("idempotency-key", "k1")
            .json(&json!({"user_id": 1, "amount_minor": amount, "currency": "EUR"}))
            .send()
    };
    assert_eq!(charge(100).await.expect("first").status(), 201);
    let r = charge(200).await.expect("second");
    assert_eq!(r.status(), 422);
    assert_eq!(
        r.json::<Value>().await.expect("problem")["field"],
        "Idempotency-Key"
    );
}

#[tokio::test]
async fn declines_refunds_and_voids() {
    let (server, _kit) = start().await;
    let http = testing::http();
    let url = &server.url;
    let charge = |key: &'static str, amount: i64| {
        http.post(format!("{url}/charges"))
            .header("idempotency-key", key)
            .json(&json!({"user_id": 3, "amount_minor": amount, "currency": "EUR"}))
            .send()
    };
    let declined = charge("big", payments::DECLINE_ABOVE_MINOR + 1)
        .await
        .expect("charge");
    assert_eq!(declined.status(), 402);
    assert_eq!(
        declined.headers()["content-type"],
        "application/problem+json"
    );
    assert_eq!(
        charge("big", payments::DECLINE_ABOVE_MINOR + 1)
            .await
            .expect("retry")
            .status(),
        402
    );

    assert_eq!(charge("ok", 500).await.expect("charge").status(), 201);
    let refund = || {
        http.post(format!("{url}/refunds"))
            .json(&json!({"charge_key": "ok"}))
            .send()
    };
    let r: Value = refund().await.expect("refund").json().await.expect("json");
    assert_eq!(r["state"], "refunded");
    let r: Value = refund().await.expect("again").json().await.expect("json");
    assert_eq!(r["state"], "refunded");
    let l = ledger(&http, url, 3).await;
    assert_eq!(l["totals"][0]["charged_minor"], 500);
    assert_eq!(
        l["totals"][0]["refunded_minor"], 500,
        "refunded exactly once: {l}"
    );

    // Compensation that overtakes its charge voids the key.
    let r: Value = http
        .post(format!("{url}/refunds"))
        .json(&json!({"charge_key": "never"}))
        .send()
        .await
        .expect("void")
        .json()
        .await
        .expect("json");
    assert_eq!(r["state"], "voided");
    assert_eq!(charge("never", 500).await.expect("late").status(), 409);
}

#[tokio::test]
async fn bad_charges_name_the_field() {
    let (server, _kit) = start().await;
    let http = testing::http();
    let url = &server.url;
    let r = http
        .post(format!("{url}/charges"))
        .json(&json!({"user_id": 1, "amount_minor": 5, "currency": "EUR"}))
        .send()
        .await
        .expect("no key");
    assert_eq!(r.status(), 422);
    assert_eq!(
        r.json::<Value>().await.expect("problem")["field"],
        "Idempotency-Key"
    );
    for (body, field) in [
        (
            json!({"user_id": 1, "amount_minor": 0, "currency": "EUR"}),
            "amount_minor",
        ),
        (
            json!({"user_id": 1, "amount_minor": 1.5, "currency": "EUR"}),
            "amount_minor",
        ),
        (
            json!({"user_id": 0, "amount_minor": 1, "currency": "EUR"}),
            "user_id",
        ),
        (
            json!({"user_id": 1, "amount_minor": 1, "currency": "EURO"}),
            "currency",
        ),
        (json!({"user_id": 1, "amount_minor": 1}), "currency"),
    ] {
        let r = http
            .post(format!("{url}/charges"))
            .header("idempotency-key", "k")
            .json(&body)
            .send()
            .await
            .expect("post");
        assert_eq!(r.status(), 422, "{body}");
        assert_eq!(
            r.json::<Value>().await.expect("problem")["field"],
            field,
            "{body}"
        );
    }
}
