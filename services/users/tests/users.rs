//! users against the machine's PostgreSQL and Redis, over HTTP: cache-aside with
//! invalidation, Redis outages, idempotency keys, problem documents, metrics.

use std::time::{Duration, Instant};

use futures::future::join_all;
use serde_json::{Value, json};
use service_kit::testing::{self, CutProxy, TestServer};

async fn start(redis: Option<&str>) -> (TestServer, service_kit::Kit) {
    let db = testing::fresh_database().await;
    let kit = testing::kit(testing::config("users", &db, redis, &[]), &users::MIGRATOR).await;
    let server = TestServer::start("users", &[&kit], users::router(kit.clone())).await;
    (server, kit)
}

async fn create(http: &reqwest::Client, url: &str, email: &str) -> Value {
    let r = http
        .post(format!("{url}/users"))
        .json(&json!({"email": email, "name": "Ada"}))
        .send()
        .await
        .expect("create");
    assert_eq!(r.status(), 201);
    r.json().await.expect("json")
}

fn cache_count(metrics: &str, result: &str) -> f64 {
    metrics
        .lines()
        .find(|l| l.starts_with(&format!("cache_requests_total{{result=\"{result}\"}}")))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

async fn metrics(http: &reqwest::Client, url: &str) -> String {
    http.get(format!("{url}/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text")
}

#[tokio::test]
async fn a_cached_profile_is_invalidated_by_a_write() {
    let (server, _kit) = start(Some(&testing::redis_url())).await;
    let http = testing::http();
    let url = &server.url;
    let id = create(&http, url, "ada@example.org").await["id"]
        .as_i64()
        .expect("id");
    for _ in 0..3 {
        let u: Value = http
            .get(format!("{url}/users/{id}"))
            .send()
            .await
            .expect("get")
            .json()
            .await
            .expect("json");
        assert_eq!(u["name"], "Ada");
    }
    let m = metrics(&http, url).await;
    assert_eq!(cache_count(&m, "miss"), 1.0, "{m}");
    assert_eq!(cache_count(&m, "hit"), 2.0, "{m}");

    let r = http
        .patch(format!("{url}/users/{id}"))
        .json(&json!({"name": "Ada L."}))
        .send()
        .await
        .expect("patch");
    assert_eq!(r.status(), 200);
    let u: Value = http
        .get(format!("{url}/users/{id}"))
        .send()
        .await
        .expect("get")
        .json()
        .await
        .expect("json");
    assert_eq!(
        u["name"], "Ada L.",
        "the write invalidated the cached profile"
    );
    assert_eq!(u["version"], 2);
}

#[tokio::test]
async fn reads_succeed_from_postgres_while_redis_is_unreachable() {
    let down = testing::closed_port_url("redis").await;
    let (server, _kit) = start(Some(&down)).await;
    let http = testing::http();
    let url = &server.url;
    let id = create(&http, url, "bob@example.org").await["id"]
        .as_i64()
        .expect("id");
    let started = Instant::now();
    for _ in 0..20 {
        let r = http
            .get(format!("{url}/users/{id}"))
            .send()
            .await
            .expect("get");
        assert_eq!(r.status(), 200);
    }
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "bypass must not pay a timeout per request: {:?}",
        started.elapsed()
    );
    let ready = http
        .get(format!("{url}/readyz"))
        .send()
        .await
        .expect("readyz");
    assert_eq!(
        ready.status(),
        200,
        "a down cache does not make the service unready"
    );
    assert_eq!(cache_count(&metrics(&http, url).await, "bypass"), 20.0);
}

#[tokio::test]
async fn redis_stopped_mid_test_still_serves_reads_and_writes() {
    let redis = testing::redis_url();
    let upstream = redis
        .trim_start_matches("redis://")
        .trim_end_matches('/')
        .to_owned();
    let proxy = CutProxy::start(&upstream).await;
    let (server, _kit) = start(Some(&format!("redis://127.0.0.1:{}", proxy.port))).await;
    let http = testing::http();
    let url = &server.url;
    let id = create(&http, url, "cy@example.org").await["id"]
        .as_i64()
        .expect("id");
    for _ in 0..3 {
        assert_eq!(
            http.get(format!("{url}/users/{id}"))
                .send()
                .await
                .expect("get")
                .status(),
            200
        );
    }
    assert!(cache_count(&metrics(&http, url).await, "hit") >= 2.0);

    proxy.cut();
    for i in 0..10 {
        let r = http
            .get(format!("{url}/users/{id}"))
            .send()
            .await
            .expect("get");
        assert_eq!(r.status(), 200, "read {i} after Redis stopped");
    }
    let r = http
        .patch(format!("{url}/users/{id}"))
        .json(&json!({"name": "Cy"}))
        .send()
        .await
        .expect("patch");
    assert_eq!(r.status(), 200, "writes do not depend on Redis");
    let u: Value = http
        .get(format!("{url}/users/{id}"))
        .send()
        .await
        .expect("get")
        .json()
        .await
        .expect("json");
    assert_eq!(
        u["name"], "Cy",
        "reads come from PostgreSQL while Redis is down"
    );
}

#[tokio::test]
async fn a_stampede_on_one_key_costs_one_load() {
    let (server, kit) = start(Some(&testing::redis_url())).await;
    let http = testing::http();
    let url = server.url.clone();
    let id = create(&http, &url, "dee@example.org").await["id"]
        .as_i64()
        .expect("id");
    let loads = || kit.metrics.cache_loads.get();
    let before = loads();
    let reads = (0..50).map(|_| {
        let http = http.clone();
        let url = url.clone();
        async move {
            http.get(format!("{url}/users/{id}"))
                .send()
                .await
                .expect("get")
                .status()
        }
    });
    assert!(join_all(reads).await.iter().all(|s| *s == 200));
    assert_eq!(
        loads() - before,
        1,
        "single-flight: 50 concurrent reads of a cold key, one query"
    );
}

#[tokio::test]
async fn an_idempotency_key_replays_the_first_response() {
    let (server, kit) = start(None).await;
    let http = testing::http();
    let url = &server.url;
    let post = |email: &str| {
        http.post(format!("{url}/users"))
            .header("idempotency-key", "signup-1")
            .json(&json!({"email": email, "name": "Eve"}))
            .send()
    };
    let first = post("eve@example.org").await.expect("first");
    assert_eq!(first.status(), 201);
    let first: Value = first.json().await.expect("json");
    let second = post("eve@example.org").await.expect("retry");
    assert_eq!(second.status(), 201);
    assert_eq!(second.headers()["idempotent-replayed"], "true");
    assert_eq!(second.json::<Value>().await.expect("json"), first);
    let other = post("mallory@example.org").await.expect("other body");
    assert_eq!(other.status(), 422);
    let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM users")
        .fetch_one(&kit.db)
        .await
        .expect("count");
    assert_eq!(n, 1);
}

#[tokio::test]
async fn bad_input_gets_problem_documents() {
    let (server, _kit) = start(None).await;
    let http = testing::http();
    let url = &server.url;
    let send = |body: &'static str, ct: Option<&'static str>| {
        let mut r = http.post(format!("{url}/users")).body(body);
        if let Some(ct) = ct {
            r = r.header("content-type", ct);
        }
        r.send()
    };
    let problem = |r: reqwest::Response| async move {
        assert_eq!(r.headers()["content-type"], "application/problem+json");
        let status = r.status().as_u16();
        let p: Value = r.json().await.expect("problem json");
        assert_eq!(p["status"], status);
        (status, p)
    };
    let (s, _) = problem(
        send(r#"{"nonsense": ["#, Some("application/json"))
            .await
            .expect("send"),
    )
    .await;
    assert_eq!(s, 400);
    let (s, p) = problem(
        send(
            r#"{"email": "a@b.c", "name": "x", "admin": true}"#,
            Some("application/json"),
        )
        .await
        .expect("send"),
    )
    .await;
    assert_eq!((s, p["field"].as_str()), (422, Some("admin")));
    let (s, p) = problem(
        send(r#"{"email": "a@b.c", "name": 5}"#, Some("application/json"))
            .await
            .expect("send"),
    )
    .await;
    assert_eq!((s, p["field"].as_str()), (422, Some("name")));
    let (s, p) = problem(
        send(
            r#"{"email": "nope", "name": "x"}"#,
            Some("application/json"),
        )
        .await
        .expect("send"),
    )
    .await;
    assert_eq!((s, p["field"].as_str()), (422, Some("email")));
    let (s, _) = problem(
        send(r#"{"email": "a@b.c", "name": "x"}"#, None)
            .await
            .expect("send"),
    )
    .await;
    assert_eq!(s, 415);
    let huge = format!(r#"{{"email": "a@b.c", "name": "{}"}}"#, "x".repeat(200_000));
    let r = http
        .post(format!("{url}/users"))
        .header("content-type", "application/json")
        .body(huge)
        .send()
        .await
        .expect("send");
    let (s, _) = problem(r).await;
    assert_eq!(s, 413);
    let (s, _) = problem(
        http.get(format!("{url}/no/such/route"))
            .send()
            .await
            .expect("send"),
    )
    .await;
    assert_eq!(s, 404);
    let (s, _) = problem(
        http.delete(format!("{url}/users/1"))
            .send()
            .await
            .expect("send"),
    )
    .await;
    assert_eq!(s, 405);
}

#[tokio::test]
async fn metrics_are_labelled_by_route_template_and_request_ids_are_echoed() {
    let (server, _kit) = start(None).await;
    let http = testing::http();
    let url = &server.url;
    for id in [1, 2, 3] {
        let r = http
            .get(format!("{url}/users/{id}"))
            .header("x-request-id", format!("req-{id}"))
            .send()
            .await
            .expect("get");
        assert_eq!(r.headers()["x-request-id"], format!("req-{id}").as_str());
    }
    let r = http
        .get(format!("{url}/healthz"))
        .send()
        .await
        .expect("healthz");
    assert!(
        !r.headers()["x-request-id"].is_empty(),
        "an id is made up when none came"
    );
    let m = metrics(&http, url).await;
    assert!(
        m.contains(r#"http_requests_total{method="GET",route="/users/{id}",status="404"} 3"#),
        "{m}"
    );
    assert!(m.contains("http_request_duration_seconds_bucket{"), "{m}");
    assert!(m.contains("http_requests_in_flight{"), "{m}");
    assert!(!m.contains("/users/1\""), "no raw paths as labels: {m}");
}

#[tokio::test]
async fn the_openapi_document_is_3_1_and_lists_the_routes() {
    let (server, _kit) = start(None).await;
    let doc: Value = testing::http()
        .get(format!("{}/openapi.json", server.url))
        .send()
        .await
        .expect("get")
        .json()
        .await
        .expect("json");
    assert!(doc["openapi"].as_str().expect("version").starts_with("3.1"));
    for path in ["/users", "/users/{id}", "/healthz", "/readyz", "/metrics"] {
        assert!(doc["paths"][path].is_object(), "{path} missing");
    }
    assert!(doc["components"]["schemas"]["Problem"].is_object());
}

#[tokio::test]
async fn shutdown_drains_in_flight_requests() {
    let (mut server, kit) = start(None).await;
    let http = testing::http();
    let url = server.url.clone();
    let id = create(&http, &url, "fay@example.org").await["id"]
        .as_i64()
        .expect("id");
    // Hold a row lock so the PATCH below is in flight when shutdown begins.
    let mut tx = kit.db.begin().await.expect("tx");
    sqlx::query("SELECT id FROM users WHERE id = $1 FOR UPDATE")
        .bind(id)
        .execute(&mut *tx)
        .await
        .expect("lock");
    let in_flight = tokio::spawn({
        let http = http.clone();
        let url = url.clone();
        async move {
            http.patch(format!("{url}/users/{id}"))
                .json(&json!({"name": "Fay"}))
                .send()
                .await
                .map(|r| r.status())
        }
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let done = server.begin_shutdown().expect("running");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        !done.is_finished(),
        "the server waits for the in-flight request"
    );
    tx.commit().await.expect("unlock");
    let status = in_flight
        .await
        .expect("join")
        .expect("the in-flight request completed");
    assert_eq!(status, 200);
    done.await.expect("join").expect("clean shutdown");
}
