//! Shared set-up of the controller tests: a devcluster with simulated workloads on an
//! accelerated clock, the CRDs, the MarketplaceService controller as `run` starts it, a
//! metric source the tests drive, and bounded waits.
#![allow(dead_code)] // each test binary uses a different part

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use devcluster::workloads::WorkloadConfig;
use devcluster::{Config, DevCluster, FaultConfig};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::api::{ListParams, Patch, PatchParams};
use kube::{Api, Client};
use marketplace_crds::v1alpha1::{MarketplaceService, MetricSpec, MetricType};
use marketplace_operator::cache::Local;
use marketplace_operator::controllers::cache_tier::CacheSettings;
use marketplace_operator::controllers::marketplace_service::Autoscalers;
use marketplace_operator::controllers::{
    Clock, Context, ReadMetrics, Settings, Telemetry, run_all,
};
use marketplace_operator::metrics::{MetricsError, MetricsSource, ServiceRef};
use marketplace_operator::scaling::MetricReading;
use serde_json::{Value, json};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub mod redis_server;

/// Every test runs in its own devcluster, so one namespace suffices.
pub const NS: &str = "default";
/// Simulated time from a Pod's creation until it is Ready.
pub const POD_STARTUP: Duration = Duration::from_secs(10);

/// A devcluster whose workloads and whose operator clock run `speed` times faster than real
/// time, with the CRDs installed.
pub struct Cluster {
    pub cluster: DevCluster,
    /// A client for the test's own reads and writes (through the faults, if any).
    pub client: Client,
    /// The clock the controller runs on; the tests read simulated time from it.
    pub clock: Clock,
}

pub async fn start(speed: f64, faults: Option<FaultConfig>) -> Cluster {
    init_tracing();
    let config = Config {
        bookmark_interval: Duration::from_millis(500),
        workloads: Some(WorkloadConfig {
            pod_startup: POD_STARTUP,
            speed,
            ..WorkloadConfig::default()
        }),
        faults,
        ..Config::default()
    };
    let cluster = DevCluster::start(config).await.expect("devcluster starts");
    let crds = marketplace_operator::crd::all_crds_yaml().expect("the CRDs serialize");
    cluster.apply_manifests(&crds).expect("the CRDs apply");
    let client = cluster.client().expect("a client for the devcluster");
    let clock = Clock::scaled(unix_now(), speed);
    Cluster {
        cluster,
        client,
        clock,
    }
}

fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("off")),
        )
        .with_test_writer()
        .try_init();
}

fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// The operator's controllers, running as `run` and `dev` run them, with their own Context
/// (client, Event recorder, telemetry) and autoscaler registry.
pub struct Operator {
    pub autoscalers: Arc<Autoscalers>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl Operator {
    /// The controllers, with every CacheTier at the Redis on this machine.
    pub fn start(cluster: &Cluster, metrics: Arc<dyn ReadMetrics>) -> Self {
        let cache = CacheSettings::new(Arc::new(Local::default_redis()));
        Self::start_with(cluster, metrics, cache)
    }

    pub fn start_with(
        cluster: &Cluster,
        metrics: Arc<dyn ReadMetrics>,
        cache: CacheSettings,
    ) -> Self {
        let client = cluster
            .cluster
            .client()
            .expect("a client for the controller");
        let settings = Settings {
            // Short backoffs so that injected faults cost milliseconds, not minutes.
            min_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(2),
            ..Settings::default()
        };
        let ctx = Arc::new(Context::new(
            client,
            cluster.clock,
            metrics,
            Arc::new(Telemetry::new()),
            settings,
        ));
        let autoscalers = Arc::new(Autoscalers::default());
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(run_all(ctx, autoscalers.clone(), cache, async move {
            let _ = stopped.await;
        }));
        Self {
            autoscalers,
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// Stops the controller the way a crash does: its task is aborted wherever it is, and its
    /// autoscaler tasks go with it.
    pub fn kill(mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }

    /// Stops the controller gracefully and waits (bounded) until it has.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            tokio::time::timeout(Duration::from_secs(10), task)
                .await
                .expect("the controller stops within 10 s of its shutdown signal")
                .expect("the controller task ends without panicking");
        }
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// Readings the test sets and clears, per (namespace, service, metric type); an unset one
/// reads as missing, with an error, as Prometheus without samples would.
#[derive(Default)]
pub struct Readings {
    map: Mutex<HashMap<(String, String, MetricType), MetricReading>>,
}

impl Readings {
    pub fn set(&self, service: &str, metric: MetricType, reading: MetricReading) {
        self.set_in(NS, service, metric, reading);
    }

    pub fn set_in(&self, ns: &str, service: &str, metric: MetricType, reading: MetricReading) {
        self.lock()
            .insert((ns.to_owned(), service.to_owned(), metric), reading);
    }

    pub fn clear(&self) {
        self.lock().clear();
    }

    fn lock(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<(String, String, MetricType), MetricReading>> {
        self.map.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl MetricsSource for Readings {
    async fn read(
        &self,
        service: &ServiceRef<'_>,
        metric: &MetricSpec,
    ) -> Result<MetricReading, MetricsError> {
        let key = (
            service.namespace.to_owned(),
            service.name.to_owned(),
            metric.type_,
        );
        self.lock()
            .get(&key)
            .copied()
            .ok_or_else(|| MetricsError::NoData {
                metric: metric.type_,
                service: format!("{}/{}", service.namespace, service.name),
                query: "test readings".to_owned(),
            })
    }
}

/// A metric source that remembers every read it answered, on the operator's clock: when
/// the autoscaler polled and what it saw, so that timing assertions can be made against the
/// ticks that really happened (a busy machine may skip some).
pub struct Recorded<S> {
    pub source: S,
    clock: Clock,
    reads: Mutex<Vec<Read>>,
}

/// One answered read: the simulated time and the value (`None` when it failed).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Read {
    pub at: f64,
    pub value: Option<f64>,
}

impl<S> Recorded<S> {
    pub fn new(source: S, clock: Clock) -> Self {
        Self {
            source,
            clock,
            reads: Mutex::new(Vec::new()),
        }
    }

    pub fn reads(&self) -> Vec<Read> {
        self.reads.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

impl<S: MetricsSource> MetricsSource for Recorded<S> {
    async fn read(
        &self,
        service: &ServiceRef<'_>,
        metric: &MetricSpec,
    ) -> Result<MetricReading, MetricsError> {
        let result = self.source.read(service, metric).await;
        let read = Read {
            at: self.clock.now(),
            value: result.as_ref().ok().and_then(|r| r.value),
        };
        self.reads
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(read);
        result
    }
}

/// Polls `check` every 50 ms until it returns `Ok`, and panics with what it last said once
/// `timeout` has passed.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let started = tokio::time::Instant::now();
    let deadline = started + timeout;
    let mut last = "the check never completed".to_owned();
    loop {
        match tokio::time::timeout_at(deadline, check()).await {
            Ok(Ok(value)) => return value,
            Ok(Err(why)) => last = why,
            Err(_) => {}
        }
        if tokio::time::Instant::now() >= deadline {
            panic!("timed out after {timeout:?} waiting for {what}; last check: {last}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub fn text(e: kube::Error) -> String {
    e.to_string()
}

/// A MarketplaceService in the test namespace.
pub fn service(name: &str, spec: Value) -> MarketplaceService {
    serde_json::from_value(json!({
        "apiVersion": "marketplace.dev/v1alpha1",
        "kind": "MarketplaceService",
        "metadata": {"name": name, "namespace": NS},
        "spec": spec,
    }))
    .expect("the fixture is a MarketplaceService")
}

pub fn services(client: &Client) -> Api<MarketplaceService> {
    Api::namespaced(client.clone(), NS)
}

/// Creates or updates `msvc` by server-side apply (idempotent, so it can be retried through
/// injected faults) until the API server accepts it.
pub async fn apply(client: &Client, msvc: &MarketplaceService) {
    let name = msvc.metadata.name.clone().unwrap_or_default();
    let pp = PatchParams::apply("controller-test").force();
    eventually(
        &format!("the API server to accept MarketplaceService {name}"),
        Duration::from_secs(10),
        || async {
            services(client)
                .patch(&name, &pp, &Patch::Apply(msvc))
                .await
                .map(|_| ())
                .map_err(text)
        },
    )
    .await;
}

/// The children of every service in the test namespace, by kind.
pub struct Children {
    pub deployments: Vec<Deployment>,
    pub services: Vec<Service>,
    pub budgets: Vec<PodDisruptionBudget>,
}

pub async fn children(client: &Client) -> Result<Children, String> {
    let lp = ListParams::default();
    Ok(Children {
        deployments: Api::<Deployment>::namespaced(client.clone(), NS)
            .list(&lp)
            .await
            .map_err(text)?
            .items,
        // `default` holds the API server's own `kubernetes` Service, as on a real cluster.
        services: Api::<Service>::namespaced(client.clone(), NS)
            .list(&lp)
            .await
            .map_err(text)?
            .items
            .into_iter()
            .filter(|s| s.metadata.name.as_deref() != Some("kubernetes"))
            .collect(),
        budgets: Api::<PodDisruptionBudget>::namespaced(client.clone(), NS)
            .list(&lp)
            .await
            .map_err(text)?
            .items,
    })
}

/// The Events about the service `name`, oldest first.
pub async fn events_of(client: &Client, name: &str) -> Result<Vec<Event>, String> {
    let mut events: Vec<Event> = Api::<Event>::namespaced(client.clone(), NS)
        .list(&ListParams::default())
        .await
        .map_err(text)?
        .items
        .into_iter()
        .filter(|e| {
            e.regarding.as_ref().is_some_and(|r| {
                r.kind.as_deref() == Some("MarketplaceService") && r.name.as_deref() == Some(name)
            })
        })
        .collect();
    events.sort_by_key(|e| e.metadata.creation_timestamp.clone().map(|t| t.0));
    Ok(events)
}

pub fn condition<'a>(msvc: &'a MarketplaceService, type_: &str) -> Option<&'a Condition> {
    msvc.status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
}

/// `type=status (reason: message)` of every condition, for failure messages.
pub fn conditions_text(msvc: &MarketplaceService) -> String {
    msvc.status
        .iter()
        .flat_map(|s| &s.conditions)
        .map(|c| format!("{}={} ({}: {})", c.type_, c.status, c.reason, c.message))
        .collect::<Vec<_>>()
        .join("; ")
}

/// Whether the condition `type_` has `status` (and `reason`, if given).
pub fn has_condition(
    msvc: &MarketplaceService,
    type_: &str,
    status: &str,
    reason: Option<&str>,
) -> bool {
    condition(msvc, type_)
        .is_some_and(|c| c.status == status && reason.is_none_or(|r| c.reason == r))
}

pub fn replicas_of(d: &Deployment) -> Option<i32> {
    d.spec.replicas
}

/// The value of the first container's environment variable `name`.
pub fn env_of(d: &Deployment, name: &str) -> Option<String> {
    d.spec
        .template
        .spec
        .as_ref()?
        .containers
        .first()?
        .env
        .iter()
        .flatten()
        .find(|e| e.name == name)?
        .value
        .clone()
}

pub fn image_of(d: &Deployment) -> Option<String> {
    d.spec
        .template
        .spec
        .as_ref()?
        .containers
        .first()?
        .image
        .clone()
}
