//! The per-request envelope: a request id (taken from `x-request-id` or made up), a tracing
//! span carrying it, RED metrics by route template, and the guarantee that every error
//! response is a problem document, whoever produced it (a handler, an axum rejection, 405).

use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use prometheus_client::metrics::gauge::Gauge;
use tracing::Instrument;

use crate::error::{PROBLEM_CONTENT_TYPE, Problem};
use crate::metrics::{Metrics, RequestLabels, RouteLabels, UNMATCHED_ROUTE};

pub static REQUEST_ID_HEADER: HeaderName = HeaderName::from_static("x-request-id");

tokio::task_local! {
    /// The id of the request this task serves, so the peer client forwards it without every
    /// call site passing it along.
    static REQUEST_ID: Arc<str>;
}

/// The request id of the request being served by this task, if any.
pub fn current_request_id() -> Option<Arc<str>> {
    REQUEST_ID.try_with(Arc::clone).ok()
}

/// Runs `fut` as if serving request `id` (background work such as saga resumption).
pub async fn with_request_id<F: Future>(id: Arc<str>, fut: F) -> F::Output {
    REQUEST_ID.scope(id, fut).await
}

pub fn new_request_id() -> Arc<str> {
    Arc::from(format!("{:016x}", fastrand::u64(..)))
}

/// An incoming id is trusted only if it is short printable ASCII: it lands in logs and
/// headers to peers.
fn incoming_request_id(req: &Request) -> Option<Arc<str>> {
    let v = req.headers().get(&REQUEST_ID_HEADER)?.to_str().ok()?;
    let ok = !v.is_empty()
        && v.len() <= 128
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b));
    ok.then(|| Arc::from(v))
}

/// Decrements the in-flight gauge even when the client goes away mid-request and the
/// handler future is dropped.
struct InFlight(Gauge);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.dec();
    }
}

pub async fn observe(
    State(metrics): State<Arc<Metrics>>,
    mut req: Request,
    next: Next,
) -> Response {
    let start = Instant::now();
    let method = req.method().as_str().to_owned();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| UNMATCHED_ROUTE.to_owned(), |p| p.as_str().to_owned());
    let id = incoming_request_id(&req).unwrap_or_else(new_request_id);
    req.extensions_mut().insert(RequestIdExt(id.clone()));

    let gauge = metrics
        .in_flight
        .get_or_create(&RouteLabels {
            method: method.clone(),
            route: route.clone(),
        })
        .clone();
    gauge.inc();
    let _in_flight = InFlight(gauge);

    let span = tracing::info_span!("request", request_id = %id, method = %method, route = %route);
    let response = REQUEST_ID
        .scope(id.clone(), next.run(req))
        .instrument(span.clone())
        .await;
    let mut response = as_problem(response).await;
    if let Ok(v) = HeaderValue::from_str(&id) {
        response.headers_mut().insert(REQUEST_ID_HEADER.clone(), v);
    }

    let status = response.status();
    let elapsed = start.elapsed().as_secs_f64();
    let labels = RequestLabels {
        method,
        route,
        status: status.as_u16(),
    };
    metrics.requests.get_or_create(&labels).inc();
    metrics.duration.get_or_create(&labels).observe(elapsed);
    span.in_scope(|| {
        if status.is_server_error() {
            tracing::warn!(
                status = status.as_u16(),
                elapsed_ms = elapsed * 1e3,
                "served"
            );
        } else {
            tracing::debug!(
                status = status.as_u16(),
                elapsed_ms = elapsed * 1e3,
                "served"
            );
        }
    });
    response
}

/// The request id as a request extension, for handlers that want it.
#[derive(Clone, Debug)]
pub struct RequestIdExt(pub Arc<str>);

/// Turns an error response that is not yet a problem document into one, keeping a short
/// plain-text body as its detail.
async fn as_problem(response: Response) -> Response {
    let status = response.status();
    if status.as_u16() < 400 {
        return response;
    }
    let is_problem = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with(PROBLEM_CONTENT_TYPE));
    if is_problem {
        return response;
    }
    let (parts, body) = response.into_parts();
    let detail = axum::body::to_bytes(body, 4096)
        .await
        .ok()
        .and_then(|b| String::from_utf8(b.to_vec()).ok())
        .filter(|s| !s.trim().is_empty());
    let mut problem = Problem::for_status(status);
    if status == StatusCode::PAYLOAD_TOO_LARGE {
        problem = Problem::new(status, "payload-too-large", "Payload too large");
    }
    if let Some(detail) = detail {
        problem = problem.detail(detail);
    }
    let mut out = problem.into_response();
    // Keep headers such as `Allow` on a 405 or `Retry-After`.
    for (name, value) in parts.headers.iter() {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            out.headers_mut().insert(name.clone(), value.clone());
        }
    }
    out
}

/// The 404 for paths no route knows.
pub async fn not_found(req: Request<Body>) -> Response {
    Problem::new(StatusCode::NOT_FOUND, "not-found", "Not found")
        .detail(format!(
            "no route for {} {}",
            req.method(),
            req.uri().path()
        ))
        .into_response()
}
