//! `marketplace-operator run`: the controllers against a real cluster (KUBECONFIG or the
//! in-cluster config) and Prometheus. Of several replicas only the holder of a
//! coordination.k8s.io Lease runs the controllers; the others wait and take over within
//! the lease duration. `/metrics`, `/healthz` and `/readyz` are served throughout.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use kube::Client;
use kube_lease_manager::LeaseManagerBuilder;

use crate::cache::ClusterDns;
use crate::controllers::cache_tier::CacheSettings;
use crate::controllers::marketplace_service::Autoscalers;
use crate::controllers::{Clock, Context, Settings, Telemetry, run_all};
use crate::metrics::{BatchedSource, DEFAULT_BATCH_MAX_AGE, PrometheusSource};

/// Arguments of `marketplace-operator run`.
#[derive(Clone, Debug, clap::Args)]
pub struct RunArgs {
    /// Where to serve /metrics, /healthz and /readyz.
    #[arg(long, default_value = "0.0.0.0:8080")]
    pub metrics_addr: SocketAddr,
    /// The Prometheus that scrapes the domain services.
    #[arg(
        long,
        env = "PROMETHEUS_URL",
        default_value = "http://prometheus-operated.monitoring.svc:9090"
    )]
    pub prometheus_url: String,
    /// The window of the rates in metric queries (a PromQL duration).
    #[arg(long, default_value = "1m")]
    pub rate_window: String,
    /// Seconds before a Prometheus query is given up.
    #[arg(long, default_value_t = 5)]
    pub query_timeout_seconds: u64,
    /// The Lease that elects the active replica.
    #[arg(long, default_value = "marketplace-operator")]
    pub lease_name: String,
    /// The namespace of the Lease (the operator's own).
    #[arg(long, env = "POD_NAMESPACE", default_value = "default")]
    pub lease_namespace: String,
    /// Seconds a leader's Lease lasts without renewal: the longest a standby waits to take
    /// over from a leader that died.
    #[arg(long, default_value_t = 15)]
    pub lease_seconds: u64,
    /// This replica's identity in the Lease (the pod name in a cluster).
    #[arg(long, env = "POD_NAME")]
    pub identity: Option<String>,
    /// Reconciles running at once, per controller.
    #[arg(long, default_value_t = 32)]
    pub concurrency: u16,
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("failed to configure the Kubernetes client (KUBECONFIG or in-cluster)")]
    Client(#[source] kube::Error),
    #[error("failed to reach the Kubernetes API server")]
    ApiServer(#[source] kube::Error),
    #[error("failed to set up the metrics source")]
    Metrics(#[source] crate::metrics::MetricsError),
    #[error("failed to listen on {addr}")]
    Listen {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("failed to set up leader election on Lease {namespace}/{name}")]
    Lease {
        namespace: String,
        name: String,
        #[source]
        source: kube_lease_manager::LeaseManagerError,
    },
    #[error("--lease-seconds must be at least 2, got {0}")]
    LeaseSeconds(u64),
    #[error("failed to install the signal handler")]
    Signal(#[source] std::io::Error),
}

struct Health {
    telemetry: Arc<Telemetry>,
    ready: AtomicBool,
}

async fn metrics(State(h): State<Arc<Health>>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        h.telemetry.encode(),
    )
}

async fn healthz() -> &'static str {
    "ok"
}

async fn readyz(State(h): State<Arc<Health>>) -> (StatusCode, &'static str) {
    if h.ready.load(Ordering::Relaxed) {
        (StatusCode::OK, "ok")
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "not connected to the API server yet",
        )
    }
}

/// Resolves on SIGTERM or Ctrl-C.
async fn terminated() -> Result<(), RunError> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(RunError::Signal)?;
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    Ok(())
}

pub async fn run(args: RunArgs) -> Result<(), RunError> {
    if args.lease_seconds < 2 {
        return Err(RunError::LeaseSeconds(args.lease_seconds));
    }
    let client = Client::try_default().await.map_err(RunError::Client)?;
    let telemetry = Arc::new(Telemetry::new());
    let health = Arc::new(Health {
        telemetry: telemetry.clone(),
        ready: AtomicBool::new(false),
    });
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(health.clone());
    let listener = tokio::net::TcpListener::bind(args.metrics_addr)
        .await
        .map_err(|source| RunError::Listen {
            addr: args.metrics_addr,
            source,
        })?;
    tracing::info!(addr = %args.metrics_addr, "serving /metrics, /healthz, /readyz");
    let server = tokio::spawn(async move {
        if let Err(error) = axum::serve(listener, app).await {
            tracing::error!(%error, "metrics server stopped");
        }
    });

    let version = client
        .apiserver_version()
        .await
        .map_err(RunError::ApiServer)?;
    tracing::info!(version = %version.git_version, "connected to the API server");
    health.ready.store(true, Ordering::Relaxed);

    let source = PrometheusSource::new(
        &args.prometheus_url,
        &args.rate_window,
        Duration::from_secs(args.query_timeout_seconds),
    )
    .map_err(RunError::Metrics)?;
    // One query per metric type and tick serves every service (DESIGN.md: 10,000 services
    // polled one by one would be 667 queries/s).
    let source = BatchedSource::new(source, DEFAULT_BATCH_MAX_AGE);
    let ctx = Arc::new(Context::new(
        client.clone(),
        Clock::system(),
        Arc::new(source),
        telemetry,
        Settings {
            concurrency: args.concurrency,
            ..Settings::default()
        },
    ));

    let identity = args.identity.clone().unwrap_or_else(|| {
        format!(
            "{}-{}",
            std::env::var("HOSTNAME").unwrap_or_else(|_| "marketplace-operator".to_owned()),
            std::process::id()
        )
    });
    let lease_error = |source| RunError::Lease {
        namespace: args.lease_namespace.clone(),
        name: args.lease_name.clone(),
        source,
    };
    let manager = LeaseManagerBuilder::new(client, &args.lease_name)
        .with_namespace(&args.lease_namespace)
        .with_identity(&identity)
        .with_duration(args.lease_seconds)
        .with_grace((args.lease_seconds / 3).max(1))
        // One field manager per replica: the lease manager takes an orphaned Lease by
        // server-side apply without force, and only a conflict with the holder's own manager
        // stops a second replica that applies at the same instant. A shared manager owns the
        // holder field in both, so both applies succeed and both replicas lead.
        .with_field_manager(format!("marketplace-operator-leader-election-{identity}"))
        .build()
        .await
        .map_err(lease_error)?;
    let (mut leader, lease_task) = manager.watch().await;
    tracing::info!(%identity, lease = %args.lease_name, "waiting to lead");

    let terminate = terminated();
    tokio::pin!(terminate);
    loop {
        // Standby until this replica holds the Lease.
        while !*leader.borrow_and_update() {
            tokio::select! {
                changed = leader.changed() => if changed.is_err() {
                    tracing::error!("leader election stopped");
                    server.abort();
                    return Ok(());
                },
                result = &mut terminate => {
                    result?;
                    tracing::info!("terminating while standing by");
                    drop(leader);
                    let _ = lease_task.await;
                    server.abort();
                    return Ok(());
                }
            }
        }
        tracing::info!(%identity, "leading: starting the controllers");
        let mut lost = leader.clone();
        let (stop, mut stopping) = tokio::sync::watch::channel(false);
        let autoscalers = Arc::new(Autoscalers::default());
        let cache = CacheSettings::new(Arc::new(ClusterDns));
        let controllers = run_all(ctx.clone(), autoscalers, cache, async move {
            loop {
                if !*lost.borrow_and_update() || *stopping.borrow_and_update() {
                    return;
                }
                tokio::select! {
                    changed = lost.changed() => if changed.is_err() { return },
                    changed = stopping.changed() => if changed.is_err() { return },
                }
            }
        });
        tokio::pin!(controllers);
        tokio::select! {
            _ = &mut controllers => {
                tracing::warn!("lost the Lease: controllers stopped, standing by");
            }
            result = &mut terminate => {
                result?;
                tracing::info!("SIGTERM: finishing the reconciles in flight, then releasing the Lease");
                let _ = stop.send(true);
                let _ = tokio::time::timeout(Duration::from_secs(20), &mut controllers).await;
                // Dropping the receiver makes the lease task release the Lease, so a standby
                // takes over at once instead of after the lease duration.
                drop(leader);
                let _ = tokio::time::timeout(Duration::from_secs(10), lease_task).await;
                server.abort();
                return Ok(());
            }
        }
    }
}
