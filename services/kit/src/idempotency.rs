//! The `Idempotency-Key` layer for POST and PATCH routes: the first request with a key runs
//! and its response is stored; a retry with the same key and body replays it; a retry
//! while the first still runs gets 409; the same key with another body gets 422. The key's
//! row is claimed with `INSERT … ON CONFLICT DO NOTHING`, so concurrent retries race on the
//! primary key and exactly one runs. A 5xx is not remembered: the retry runs again.

use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderName, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sqlx::PgPool;

use crate::error::ApiError;

pub static IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("idempotency-key");
pub static REPLAYED: HeaderName = HeaderName::from_static("idempotent-replayed");

/// A first attempt that held its key this long without finishing is taken to have died
/// (its process crashed); a retry may then run.
const STALE_CLAIM: Duration = Duration::from_secs(30);

/// Largest response remembered.
const MAX_RESPONSE: usize = 1 << 20;

#[derive(Clone)]
pub struct Idempotency {
    pub pool: PgPool,
    pub body_limit: usize,
}

/// Validates an `Idempotency-Key` header value: 1 to 255 visible ASCII characters.
pub fn parse_key(value: &HeaderValue) -> Result<String, ApiError> {
    let key = value
        .to_str()
        .map_err(|_| ApiError::invalid("Idempotency-Key", "must be visible ASCII"))?;
    if key.is_empty() || key.len() > 255 || !key.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(ApiError::invalid(
            "Idempotency-Key",
            "must be 1 to 255 visible ASCII characters",
        ));
    }
    Ok(key.to_owned())
}

pub async fn layer(State(state): State<Idempotency>, req: Request, next: Next) -> Response {
    if !matches!(*req.method(), Method::POST | Method::PATCH) {
        return next.run(req).await;
    }
    let Some(value) = req.headers().get(&IDEMPOTENCY_KEY).cloned() else {
        return next.run(req).await;
    };
    match run(state, value, req, next).await {
        Ok(response) => response,
        Err(err) => err.into_response(),
    }
}

#[derive(sqlx::FromRow)]
struct Stored {
    method: String,
    path: String,
    request_body: Vec<u8>,
    status: Option<i16>,
    content_type: Option<String>,
    response_body: Option<Vec<u8>>,
    stale: bool,
}

async fn run(
    state: Idempotency,
    value: HeaderValue,
    req: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let key = parse_key(&value)?;
    let (parts, body) = req.into_parts();
    let bytes = axum::body::to_bytes(body, state.body_limit)
        .await
        .map_err(|_| ApiError::PayloadTooLarge)?;
    let method = parts.method.as_str().to_owned();
    let path = parts.uri.path().to_owned();

    let claimed = sqlx::query_scalar::<_, String>(
        "INSERT INTO idempotency_keys (key, method, path, request_body) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (key) DO NOTHING RETURNING key",
    )
    .bind(&key)
    .bind(&method)
    .bind(&path)
    .bind(bytes.as_ref())
    .fetch_optional(&state.pool)
    .await?
    .is_some();

    if !claimed {
        let stored = sqlx::query_as::<_, Stored>(
            "SELECT method, path, request_body, status, content_type, response_body, \
             locked_at < now() - make_interval(secs => $2) AS stale \
             FROM idempotency_keys WHERE key = $1",
        )
        .bind(&key)
        .bind(STALE_CLAIM.as_secs_f64())
        .fetch_optional(&state.pool)
        .await?;
        let Some(stored) = stored else {
            // Deleted in between (a 5xx released it): let the client retry.
            return Err(ApiError::conflict(
                "idempotency-in-progress",
                "a request with this Idempotency-Key is in progress; retry",
            ));
        };
        if stored.method != method || stored.path != path || stored.request_body != bytes.as_ref() {
            return Err(ApiError::invalid(
                "Idempotency-Key",
                "this key was used for a different request",
            ));
        }
        if let (Some(status), Some(body)) = (stored.status, stored.response_body) {
            let mut response = Response::new(Body::from(body));
            *response.status_mut() = StatusCode::from_u16(status as u16).unwrap_or(StatusCode::OK);
            if let Some(ct) = stored
                .content_type
                .and_then(|c| HeaderValue::from_str(&c).ok())
            {
                response.headers_mut().insert(header::CONTENT_TYPE, ct);
            }
            response
                .headers_mut()
                .insert(REPLAYED.clone(), HeaderValue::from_static("true"));
            return Ok(response);
        }
        let took_over = stored.stale
            && sqlx::query(
                "UPDATE idempotency_keys SET locked_at = now() \
                 WHERE key = $1 AND status IS NULL AND locked_at < now() - make_interval(secs => $2)",
            )
            .bind(&key)
            .bind(STALE_CLAIM.as_secs_f64())
            .execute(&state.pool)
            .await?
            .rows_affected()
                == 1;
        if !took_over {
            let mut response = ApiError::conflict(
                "idempotency-in-progress",
                "a request with this Idempotency-Key is in progress; retry",
            )
            .into_response();
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            return Ok(response);
        }
    }

    let response = next
        .run(Request::from_parts(parts, Body::from(bytes)))
        .await;
    let (parts, body) = response.into_parts();
    let body = match axum::body::to_bytes(body, MAX_RESPONSE).await {
        Ok(b) => b,
        Err(e) => {
            release(&state.pool, &key).await;
            return Err(ApiError::Internal(format!(
                "failed to buffer the response: {e}"
            )));
        }
    };
    if parts.status.is_server_error() {
        release(&state.pool, &key).await;
    } else {
        let content_type = parts
            .headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        sqlx::query(
            "UPDATE idempotency_keys SET status = $2, content_type = $3, response_body = $4 \
             WHERE key = $1",
        )
        .bind(&key)
        .bind(parts.status.as_u16() as i16)
        .bind(content_type)
        .bind(body.as_ref())
        .execute(&state.pool)
        .await?;
    }
    Ok(Response::from_parts(parts, Body::from(body)))
}

/// Forgets an unfinished claim so the client's retry runs the request again.
async fn release(pool: &PgPool, key: &str) {
    if let Err(e) = sqlx::query("DELETE FROM idempotency_keys WHERE key = $1 AND status IS NULL")
        .bind(key)
        .execute(pool)
        .await
    {
        tracing::warn!(%e, "failed to release an idempotency key");
    }
}

/// Deletes remembered keys older than `max_age` (clients retry within minutes, not days).
pub async fn sweep(pool: &PgPool, max_age: Duration) -> Result<u64, sqlx::Error> {
    Ok(sqlx::query(
        "DELETE FROM idempotency_keys WHERE created_at < now() - make_interval(secs => $1)",
    )
    .bind(max_age.as_secs_f64())
    .execute(pool)
    .await?
    .rows_affected())
}
