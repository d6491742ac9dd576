//! The standard endpoints, the assembled app and the server's lifecycle.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio::net::TcpListener;
use utoipa::openapi::{ContentBuilder, OpenApi, Ref, ResponseBuilder};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::error::{PROBLEM_CONTENT_TYPE, Problem};
use crate::metrics::Metrics;
use crate::{Kit, middleware};

/// What `/readyz` checks: every hosted service's database has its migrations and answers,
/// and shutdown has not begun. Redis is deliberately not checked: reads bypass a down cache.
#[derive(Clone)]
pub struct Health {
    kits: Vec<Kit>,
    shutting_down: Arc<AtomicBool>,
}

impl Health {
    pub fn new(kits: &[&Kit]) -> Self {
        Self {
            kits: kits.iter().map(|k| (*k).clone()).collect(),
            shutting_down: Arc::new(AtomicBool::new(false)),
        }
    }

    pub fn begin_shutdown(&self) {
        self.shutting_down.store(true, Ordering::Release);
    }

    /// `Err` says why the service is not ready.
    pub async fn check(&self) -> Result<(), String> {
        if self.shutting_down.load(Ordering::Acquire) {
            return Err("shutting down".into());
        }
        for kit in &self.kits {
            if !kit.is_migrated() {
                return Err(format!(
                    "{}: migrations not applied yet",
                    kit.config.service
                ));
            }
            let ping = sqlx::query("SELECT 1").execute(&kit.db);
            match tokio::time::timeout(Duration::from_secs(1), ping).await {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => return Err(format!("{}: database: {e}", kit.config.service)),
                Err(_) => return Err(format!("{}: database: timed out", kit.config.service)),
            }
        }
        Ok(())
    }
}

#[derive(Clone)]
struct Standard {
    health: Health,
    metrics: Arc<Metrics>,
}

/// Liveness: the process serves requests.
#[utoipa::path(get, path = "/healthz", tag = "operations",
    responses((status = 200, description = "Alive", body = String, content_type = "text/plain")))]
async fn healthz() -> &'static str {
    "ok"
}

/// Readiness: the database answers and migrations are applied.
#[utoipa::path(get, path = "/readyz", tag = "operations",
    responses(
        (status = 200, description = "Ready", body = String, content_type = "text/plain"),
        (status = 503, description = "Not ready", body = Problem, content_type = "application/problem+json")))]
async fn readyz(State(s): State<Standard>) -> Response {
    match s.health.check().await {
        Ok(()) => "ok".into_response(),
        Err(why) => Problem::new(StatusCode::SERVICE_UNAVAILABLE, "not-ready", "Not ready")
            .detail(why)
            .into_response(),
    }
}

/// Prometheus metrics (text exposition format).
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "Metrics", body = String, content_type = "text/plain")))]
async fn prometheus_metrics(State(s): State<Standard>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        s.metrics.encode(),
    )
        .into_response()
}

#[derive(utoipa::OpenApi)]
#[openapi(components(schemas(Problem)))]
struct BaseDoc;

/// Every operation may answer a problem document (bad input, overload, outage): said once
/// here as each operation's `default` response rather than on every handler.
fn add_problem_defaults(api: &mut OpenApi) {
    let problem = ResponseBuilder::new()
        .description("An error, as an RFC 9457 problem document")
        .content(
            PROBLEM_CONTENT_TYPE,
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name("Problem")))
                .build(),
        )
        .build();
    for item in api.paths.paths.values_mut() {
        for op in [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
            &mut item.patch,
        ]
        .into_iter()
        .flatten()
        {
            op.responses
                .responses
                .entry("default".to_owned())
                .or_insert_with(|| problem.clone().into());
        }
    }
}

/// The service's whole HTTP app: its routes (state already applied), the standard
/// endpoints, the OpenAPI document of both, the request envelope and the body limit.
pub fn app(
    title: &str,
    routes: OpenApiRouter,
    health: Health,
    metrics: Arc<Metrics>,
    body_limit: usize,
) -> Router {
    let standard: OpenApiRouter = OpenApiRouter::new()
        .routes(routes!(healthz))
        .routes(routes!(readyz))
        .routes(routes!(prometheus_metrics))
        .with_state(Standard {
            health,
            metrics: metrics.clone(),
        });
    let mut base = <BaseDoc as utoipa::OpenApi>::openapi();
    base.info.title = title.to_owned();
    base.info.version = env!("CARGO_PKG_VERSION").to_owned();
    base.info.description = None;
    base.info.license = None;
    let (router, mut api) = OpenApiRouter::with_openapi(base)
        .merge(routes)
        .merge(standard)
        .split_for_parts();
    add_problem_defaults(&mut api);
    let document = Arc::new(api);
    router
        .route(
            "/openapi.json",
            get(move || {
                let document = document.clone();
                async move { axum::Json(document.as_ref().clone()) }
            }),
        )
        .fallback(middleware::not_found)
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(axum::middleware::from_fn_with_state(
            metrics,
            middleware::observe,
        ))
}

/// Resolves on SIGTERM (Kubernetes) or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::warn!(%e, "failed to listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::warn!(%e, "failed to listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}

/// Serves on `0.0.0.0:port` until SIGTERM/Ctrl-C.
pub async fn serve(
    router: Router,
    port: u16,
    health: Health,
    grace: Duration,
) -> Result<(), crate::StartError> {
    let listener = TcpListener::bind(("0.0.0.0", port))
        .await
        .map_err(|source| crate::StartError::Listen { port, source })?;
    tracing::info!(port, "listening");
    serve_on(listener, router, health, shutdown_signal(), grace)
        .await
        .map_err(crate::StartError::Serve)
}

/// Serves until `signal`; then turns unready, stops accepting, and lets in-flight requests
/// finish for at most `grace`.
pub async fn serve_on(
    listener: TcpListener,
    router: Router,
    health: Health,
    signal: impl Future<Output = ()> + Send + 'static,
    grace: Duration,
) -> std::io::Result<()> {
    let (tx, mut rx) = tokio::sync::watch::channel(false);
    let server = axum::serve(listener, router).with_graceful_shutdown(async move {
        signal.await;
        tracing::info!(
            grace_s = grace.as_secs_f64(),
            "shutting down: draining in-flight requests"
        );
        health.begin_shutdown();
        let _ = tx.send(true);
    });
    tokio::select! {
        result = server => result,
        () = async {
            if rx.wait_for(|stopping| *stopping).await.is_err() {
                std::future::pending::<()>().await;
            }
            tokio::time::sleep(grace).await;
        } => {
            tracing::warn!("shutdown grace elapsed with requests still in flight");
            Ok(())
        }
    }
}
