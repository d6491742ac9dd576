//! The peer client against real HTTP servers: retries only where a call is idempotent,
//! a circuit that opens on a dead peer, request ids forwarded.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use service_kit::peer::{CircuitState, PeerClient, PeerError, PeerOptions};

/// A server whose `/flaky` fails with 503 `failures` times, then answers; counts calls.
async fn flaky(failures: u32) -> (String, Arc<AtomicU32>) {
    let calls = Arc::new(AtomicU32::new(0));
    let counter = calls.clone();
    let handler = move |headers: HeaderMap| {
        let counter = counter.clone();
        async move {
            let n = counter.fetch_add(1, Ordering::SeqCst);
            if n < failures {
                (StatusCode::SERVICE_UNAVAILABLE, "{}".to_owned())
            } else {
                let id = headers
                    .get("x-request-id")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_owned();
                (
                    StatusCode::OK,
                    serde_json::json!({ "request_id": id }).to_string(),
                )
            }
        }
    };
    let app = Router::new().route("/flaky", get(handler.clone()).merge(post(handler)));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, calls)
}

fn options() -> PeerOptions {
    PeerOptions {
        base_delay: Duration::from_millis(5),
        max_delay: Duration::from_millis(20),
        ..PeerOptions::default()
    }
}

#[tokio::test]
async fn idempotent_calls_are_retried_and_carry_the_request_id() {
    let (url, calls) = flaky(2).await;
    let client = PeerClient::new("flaky", &url, options()).expect("client");
    let body: serde_json::Value =
        service_kit::middleware::with_request_id(Arc::from("abc-123"), client.get("/flaky"))
            .await
            .expect("third attempt succeeds");
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    assert_eq!(body["request_id"], "abc-123");
}

#[tokio::test]
async fn a_post_without_an_idempotency_key_is_not_retried() {
    let (url, calls) = flaky(1).await;
    let client = PeerClient::new("flaky", &url, options()).expect("client");
    let err = client
        .post::<_, serde_json::Value>("/flaky", &serde_json::json!({}), None)
        .await
        .expect_err("one attempt, 503");
    assert!(
        matches!(err, PeerError::Status { status, .. } if status == StatusCode::SERVICE_UNAVAILABLE)
    );
    assert_eq!(calls.load(Ordering::SeqCst), 1);

    let (url, calls) = flaky(1).await;
    let client = PeerClient::new("flaky", &url, options()).expect("client");
    client
        .post::<_, serde_json::Value>("/flaky", &serde_json::json!({}), Some("key-1"))
        .await
        .expect("retried with its key");
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn retries_are_bounded() {
    let (url, calls) = flaky(100).await;
    let client = PeerClient::new("flaky", &url, options()).expect("client");
    client
        .get::<serde_json::Value>("/flaky")
        .await
        .expect_err("always 503");
    assert_eq!(calls.load(Ordering::SeqCst), options().max_attempts);
}

#[tokio::test]
async fn the_circuit_opens_on_a_dead_peer_and_fails_fast() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    drop(listener);
    let opts = PeerOptions {
        failure_threshold: 3,
        open_for: Duration::from_millis(300),
        ..options()
    };
    let client = PeerClient::new("dead", &url, opts).expect("client");
    client
        .get::<serde_json::Value>("/x")
        .await
        .expect_err("refused");
    assert_eq!(client.circuit(), CircuitState::Open);
    let started = Instant::now();
    let err = client
        .get::<serde_json::Value>("/x")
        .await
        .expect_err("open");
    assert!(matches!(err, PeerError::CircuitOpen { .. }), "{err}");
    assert!(started.elapsed() < Duration::from_millis(50));
    tokio::time::sleep(Duration::from_millis(350)).await;
    assert_eq!(client.circuit(), CircuitState::HalfOpen);
}
