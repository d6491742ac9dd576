//! The controllers and the small runtime they share: the client, an Event recorder, the
//! field managers, the operator's metrics, the clock, and the metric source the
//! autoscalers read. One module per kind; each reconcile is staged
//! (observe → validate → build → apply → status).

pub mod cache_tier;
pub mod clock;
pub mod conditions;
pub mod marketplace_service;
pub mod preview_environment;
pub mod telemetry;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;
use kube::Client;
use kube::runtime::events::{Recorder, Reporter};
use marketplace_crds::v1alpha1::MetricSpec;

pub use self::clock::Clock;
pub use self::telemetry::Telemetry;
use crate::metrics::{MetricsError, MetricsSource, ServiceRef};
use crate::scaling::MetricReading;

/// The field manager of every write a reconcile makes (server-side apply).
pub const FIELD_MANAGER: &str = "marketplace-operator";
/// The field manager of the autoscaler's writes: a Deployment's `spec.replicas` and the
/// decision fields of a MarketplaceService's status. Apart from the reconcile's, so the two
/// never take each other's fields.
pub const AUTOSCALER_MANAGER: &str = "marketplace-operator-autoscaler";

/// The metric source as the controllers hold it: `MetricsSource` made object-safe, so one
/// runtime serves Prometheus, a simulation or a test source alike.
pub trait ReadMetrics: Send + Sync + 'static {
    fn read_all<'a>(
        &'a self,
        service: ServiceRef<'a>,
        metrics: &'a [MetricSpec],
    ) -> BoxFuture<'a, Vec<(MetricReading, Option<MetricsError>)>>;

    /// The service's recorded demand over [start, end] at `step`, in the engine's unit, to
    /// backfill seasonality after a restart. Sources without history answer empty.
    fn demand_history<'a>(
        &'a self,
        service: ServiceRef<'a>,
        metrics: &'a [MetricSpec],
        start: f64,
        end: f64,
        step: f64,
    ) -> BoxFuture<'a, Result<Vec<(f64, f64)>, MetricsError>>;
}

impl<M: MetricsSource + 'static> ReadMetrics for M {
    fn read_all<'a>(
        &'a self,
        service: ServiceRef<'a>,
        metrics: &'a [MetricSpec],
    ) -> BoxFuture<'a, Vec<(MetricReading, Option<MetricsError>)>> {
        Box::pin(async move { MetricsSource::read_all(self, &service, metrics).await })
    }

    fn demand_history<'a>(
        &'a self,
        service: ServiceRef<'a>,
        metrics: &'a [MetricSpec],
        start: f64,
        end: f64,
        step: f64,
    ) -> BoxFuture<'a, Result<Vec<(f64, f64)>, MetricsError>> {
        Box::pin(async move {
            crate::metrics::read_demand_history(self, &service, metrics, start, end, step).await
        })
    }
}

/// What every controller of the operator shares.
pub struct Context {
    pub client: Client,
    pub recorder: Recorder,
    pub clock: Clock,
    pub telemetry: Arc<Telemetry>,
    pub metrics: Arc<dyn ReadMetrics>,
    pub settings: Settings,
    /// Permits for the autoscalers' API writes. Every autoscaler ticks on the same grid; with
    /// 10,000 services, unbounded they would open thousands of connections at once and
    /// overflow the API server's accept queue, and the tail of them would wait on TCP's
    /// retransmission timers.
    pub autoscaler_writes: tokio::sync::Semaphore,
    backoff: Backoff,
}

/// Knobs of the controllers; the defaults suit a production cluster.
#[derive(Clone, Debug)]
pub struct Settings {
    /// How often a healthy object is reconciled again even if nothing changed.
    pub resync: Duration,
    /// Reconciles running at once, per controller.
    pub concurrency: u16,
    /// How long a reconcile waits for more triggers of the same object, on the controllers'
    /// clock: creating a service's three children raises three watch events, which this
    /// folds into one reconcile.
    pub debounce: Duration,
    /// API writes (replica patches, status writes) the autoscalers make at once, together.
    pub autoscaler_writes: usize,
    /// First retry delay after a transient error; doubles per failure up to `max_backoff`.
    pub min_backoff: Duration,
    pub max_backoff: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            resync: Duration::from_secs(300),
            concurrency: 32,
            debounce: Duration::from_millis(500),
            autoscaler_writes: 32,
            min_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(300),
        }
    }
}

impl Context {
    pub fn new(
        client: Client,
        clock: Clock,
        metrics: Arc<dyn ReadMetrics>,
        telemetry: Arc<Telemetry>,
        settings: Settings,
    ) -> Self {
        let reporter = Reporter {
            controller: FIELD_MANAGER.to_owned(),
            instance: std::env::var("POD_NAME").ok(),
        };
        Self {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            clock,
            telemetry,
            metrics,
            autoscaler_writes: tokio::sync::Semaphore::new(settings.autoscaler_writes.max(1)),
            settings,
            backoff: Backoff::default(),
        }
    }

    /// The delay before retrying `key` after a transient error: exponential in the
    /// consecutive failures, with ±25% jitter so that many objects failing together (an API
    /// server restart) do not retry in lockstep.
    pub fn retry_after(&self, key: &str) -> Duration {
        let failures = self.backoff.fail(key);
        let base = self.settings.min_backoff.as_secs_f64() * 2f64.powi(failures.min(30) as i32);
        let capped = base.min(self.settings.max_backoff.as_secs_f64());
        let jitter = 0.75 + 0.5 * unit_noise(key, failures);
        Duration::from_secs_f64(capped * jitter)
    }

    /// Forgets the failures of `key` after a successful reconcile.
    pub fn succeeded(&self, key: &str) {
        self.backoff.reset(key);
    }
}

/// The backoff of the controllers' watches. kube-runtime shares one among all of a
/// controller's watches; after an API server compaction each of them reports its 410 in turn,
/// and client-go's default (0.8 s, doubling) would stall the controller for 8–20 s before
/// the last one relists. This one starts at 100 ms and stops growing at 5 s, still kind to an
/// API server that is really struggling.
#[derive(Clone, Debug)]
pub struct WatchBackoff {
    next: Duration,
}

impl WatchBackoff {
    const FIRST: Duration = Duration::from_millis(100);
    const MAX: Duration = Duration::from_secs(5);
}

impl Default for WatchBackoff {
    fn default() -> Self {
        Self { next: Self::FIRST }
    }
}

impl Iterator for WatchBackoff {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        let now = self.next;
        self.next = (self.next * 2).min(Self::MAX);
        Some(now)
    }
}

impl kube::runtime::utils::Backoff for WatchBackoff {
    fn reset(&mut self) {
        self.next = Self::FIRST;
    }
}

#[derive(Default)]
struct Backoff {
    failures: Mutex<HashMap<String, u32>>,
}

impl Backoff {
    fn fail(&self, key: &str) -> u32 {
        let mut map = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        let n = map.entry(key.to_owned()).or_insert(0);
        let before = *n;
        *n = n.saturating_add(1);
        before
    }

    fn reset(&self, key: &str) {
        let mut map = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        map.remove(key);
    }
}

/// Runs every controller of the operator until `shutdown` resolves; returns once each has
/// finished its reconciles in flight.
pub async fn run_all(
    ctx: Arc<Context>,
    autoscalers: Arc<marketplace_service::Autoscalers>,
    cache: cache_tier::CacheSettings,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) {
    use futures::FutureExt;
    let shutdown = shutdown.boxed().shared();
    futures::join!(
        marketplace_service::run(ctx.clone(), autoscalers, shutdown.clone()),
        cache_tier::run(ctx.clone(), cache, shutdown.clone()),
        preview_environment::run(ctx, shutdown),
    );
}

/// Why an object cannot be reconciled, as a user fixes it: metadata the API server should
/// have set, or spec fields named one by one.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum Invalid {
    #[error("the object has no {0}; the API server always sets it")]
    Metadata(&'static str),
    #[error(transparent)]
    Spec(#[from] marketplace_crds::ValidationErrors),
}

/// The kube-runtime settings every controller runs with.
pub fn controller_config(ctx: &Context) -> kube::runtime::controller::Config {
    kube::runtime::controller::Config::default()
        .concurrency(ctx.settings.concurrency)
        // On the controllers' clock: at `dev`'s 200× a real half second would hold the
        // autoscalers' view of their Deployments 100 simulated seconds behind.
        .debounce(ctx.clock.real(ctx.settings.debounce.as_secs_f64()))
}

/// Whether the API server refused a write for good: the same request again will fail the
/// same way, so the user is told by an Event.
pub fn is_rejected(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if matches!(s.code, 400 | 403 | 422))
}

/// The shared end of every controller's error policy: the failure counted and logged, the
/// object retried with backoff and jitter, and, when the API server refused a write for good
/// (`tell`), the user told by a Warning Event, since retrying alone will not fix it.
pub fn retry_later(
    ctx: &Arc<Context>,
    controller: &'static str,
    key: &str,
    reason: &'static str,
    error: &dyn std::error::Error,
    tell: Option<k8s_openapi::api::core::v1::ObjectReference>,
) -> kube::runtime::controller::Action {
    ctx.telemetry.reconcile_failed(controller, reason);
    let delay = ctx.retry_after(key);
    let note = error_chain(error);
    tracing::warn!(controller, object = %key, error = %note, retry_in = ?delay, "reconcile failed");
    if let Some(reference) = tell {
        let ctx = ctx.clone();
        tokio::spawn(async move {
            publish(
                &ctx,
                &reference,
                kube::runtime::events::EventType::Warning,
                reason,
                note,
            )
            .await;
        });
    }
    kube::runtime::controller::Action::requeue(delay)
}

/// Publishes an Event about `reference`; failing to is logged, never fatal (Events are a
/// courtesy, the status is the record).
pub async fn publish(
    ctx: &Context,
    reference: &k8s_openapi::api::core::v1::ObjectReference,
    type_: kube::runtime::events::EventType,
    reason: &str,
    note: String,
) {
    let event = kube::runtime::events::Event {
        type_,
        reason: reason.to_owned(),
        note: Some(note.chars().take(1000).collect()),
        action: "Reconcile".to_owned(),
        secondary: None,
    };
    if let Err(error) = ctx.recorder.publish(&event, reference).await {
        tracing::debug!(%error, "failed to publish an Event");
    }
}

/// An object the operator cannot decode: the schema should make that impossible, so it was
/// written around it (or by a newer version of the CRD). It is reported as a Warning Event on
/// the object, never crashed on.
pub async fn report_malformed<K>(ctx: &Context, invalid: &kube::core::error_boundary::InvalidObject)
where
    K: kube::Resource<DynamicType = ()>,
{
    tracing::warn!(kind = %K::kind(&()), name = ?invalid.metadata.name, error = %invalid.error, "cannot decode object");
    let reference = k8s_openapi::api::core::v1::ObjectReference {
        api_version: Some(K::api_version(&()).into_owned()),
        kind: Some(K::kind(&()).into_owned()),
        name: invalid.metadata.name.clone(),
        namespace: invalid.metadata.namespace.clone(),
        uid: invalid.metadata.uid.clone(),
        ..Default::default()
    };
    publish(
        ctx,
        &reference,
        kube::runtime::events::EventType::Warning,
        "Malformed",
        format!("the operator cannot read this object: {}", invalid.error),
    )
    .await;
}

/// An error and its causes on one line, for logs, Events and conditions.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        out.push_str(": ");
        out.push_str(&c.to_string());
        cause = c.source();
    }
    out
}

/// A number in [0, 1) that differs between objects, attempts and processes.
fn unit_noise(key: &str, attempt: u32) -> f64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ u64::from(nanos) ^ (u64::from(attempt) << 32);
    for b in key.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    // splitmix64's finalizer spreads the bits before taking the top 53.
    h ^= h >> 30;
    h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h ^= h >> 27;
    (h >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_watch_backoff_starts_small_and_stops_at_five_seconds() {
        use kube::runtime::utils::Backoff as _;
        let mut b = WatchBackoff::default();
        let first: Vec<u128> = b.by_ref().take(8).map(|d| d.as_millis()).collect();
        assert_eq!(first, [100, 200, 400, 800, 1600, 3200, 5000, 5000]);
        b.reset();
        assert_eq!(b.next(), Some(Duration::from_millis(100)));
    }

    #[test]
    fn backoff_doubles_with_jitter_and_resets_on_success() {
        let b = Backoff::default();
        assert_eq!(b.fail("a"), 0);
        assert_eq!(b.fail("a"), 1);
        assert_eq!(b.fail("b"), 0);
        b.reset("a");
        assert_eq!(b.fail("a"), 0);
        for attempt in 0..100 {
            let u = unit_noise("ns/name", attempt);
            assert!((0.0..1.0).contains(&u));
        }
    }
}
