//! Batched reads: one query per metric type and poll tick answers every service, instead of
//! one query per service (10,000 services polled every 15 s would otherwise be 667 queries/s
//! against Prometheus).
//!
//! [`BatchedSource`] keeps the latest batch of each metric type for a short `max_age`, so
//! the services whose ticks fall within it share one query; callers that arrive while a
//! batch is being fetched wait for that one query rather than sending their own.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use marketplace_crds::v1alpha1::{MetricSpec, MetricType};
use tokio::sync::Mutex;
use tokio::time::Instant;

use super::{BatchValue, MetricsError, MetricsSource, ServiceRef};
use crate::scaling::MetricReading;

/// Every service's value of one metric type, keyed by (namespace, service).
pub type Batch = HashMap<(String, String), BatchValue>;

/// A third of the default 15 s poll and scrape interval: services whose ticks land within
/// 5 s of each other share one query, and a shared reading is at most a third of a scrape
/// staler than one read at the tick itself.
pub const DEFAULT_BATCH_MAX_AGE: Duration = Duration::from_secs(5);

/// Where batches come from: [`super::PrometheusSource`] in the operator; anything in tests.
pub trait BatchFetch: Send + Sync {
    /// The query of a metric type's batch (for errors and logs); `None` when the type can
    /// only be read per service, as `Custom`.
    fn batch_query(&self, metric: MetricType) -> Option<String>;

    /// Every service's value of a batchable metric type.
    fn fetch_batch(
        &self,
        metric: MetricType,
    ) -> impl Future<Output = Result<Batch, MetricsError>> + Send;
}

struct Cached {
    /// When the fetch finished: a caller that arrived before this waited for this very
    /// fetch, so it uses the answer whatever the age.
    done: Instant,
    /// Errors are kept too: a failing Prometheus gets one query per metric type and max age,
    /// not one per waiting service, each after its own timeout.
    batch: Result<Arc<Batch>, Arc<MetricsError>>,
}

/// The batchable metric types, one cache slot each.
const SLOTS: usize = 4;

fn slot(metric: MetricType) -> Option<usize> {
    match metric {
        MetricType::RequestsPerSecond => Some(0),
        MetricType::InFlight => Some(1),
        MetricType::LatencyP99 => Some(2),
        MetricType::Cpu => Some(3),
        MetricType::Custom => None,
    }
}

/// A [`MetricsSource`] that reads built-in metric types from a shared, short-lived batch
/// per type and everything else (`Custom`) per service from the wrapped source.
pub struct BatchedSource<S> {
    inner: S,
    max_age: Duration,
    /// One async lock per metric type, held across the fetch: the single flight.
    slots: [Mutex<Option<Cached>>; SLOTS],
}

impl<S: BatchFetch> BatchedSource<S> {
    /// Batches from `inner`, each reused for `max_age` after it arrives.
    pub fn new(inner: S, max_age: Duration) -> Self {
        Self {
            inner,
            max_age,
            slots: std::array::from_fn(|_| Mutex::new(None)),
        }
    }

    pub fn inner(&self) -> &S {
        &self.inner
    }

    pub fn max_age(&self) -> Duration {
        self.max_age
    }

    /// The current batch of a metric type: the cached one while younger than `max_age`, the
    /// one in flight if a fetch is under way, otherwise a new fetch.
    pub async fn batch(&self, metric: MetricType) -> Result<Arc<Batch>, MetricsError> {
        let Some(i) = slot(metric).filter(|_| self.inner.batch_query(metric).is_some()) else {
            return Err(MetricsError::NotBatchable { metric });
        };
        let arrived = Instant::now();
        let mut cached = self.slots[i].lock().await;
        if let Some(c) = cached.as_ref()
            && (c.done >= arrived || c.done.elapsed() <= self.max_age)
        {
            return shared(metric, &c.batch);
        }
        let started = Instant::now();
        let batch = match self.inner.fetch_batch(metric).await {
            Ok(b) => {
                tracing::debug!(
                    ?metric,
                    services = b.len(),
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    "refreshed a metric batch"
                );
                Ok(Arc::new(b))
            }
            Err(e) => {
                tracing::warn!(?metric, error = %e, reason = e.reason(), "metric batch failed");
                Err(Arc::new(e))
            }
        };
        let out = shared(metric, &batch);
        *cached = Some(Cached {
            done: Instant::now(),
            batch,
        });
        out
    }
}

fn shared(
    metric: MetricType,
    batch: &Result<Arc<Batch>, Arc<MetricsError>>,
) -> Result<Arc<Batch>, MetricsError> {
    match batch {
        Ok(b) => Ok(Arc::clone(b)),
        Err(e) => Err(MetricsError::ReadBatch {
            metric,
            source: Arc::clone(e),
        }),
    }
}

impl<S: BatchFetch + MetricsSource> MetricsSource for BatchedSource<S> {
    async fn read(
        &self,
        service: &ServiceRef<'_>,
        metric: &MetricSpec,
    ) -> Result<MetricReading, MetricsError> {
        let query = match slot(metric.type_).and(self.inner.batch_query(metric.type_)) {
            Some(q) => q,
            None => return self.inner.read(service, metric).await,
        };
        let batch = self.batch(metric.type_).await?;
        let key = (service.namespace.to_owned(), service.name.to_owned());
        batch
            .get(&key)
            .and_then(|v| v.reading(metric.effective_target_type(), service.ready_replicas))
            .ok_or_else(|| MetricsError::NoData {
                metric: metric.type_,
                service: format!("{}/{}", service.namespace, service.name),
                query,
            })
    }

    async fn history(
        &self,
        service: &ServiceRef<'_>,
        metric: &MetricSpec,
        start: f64,
        end: f64,
        step: f64,
    ) -> Result<Vec<(f64, f64)>, MetricsError> {
        self.inner.history(service, metric, start, end, step).await
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use marketplace_crds::v1alpha1::TargetType;
    use tokio::sync::Semaphore;

    use super::*;

    /// Counts fetches per metric type; each fetch first waits for a permit of `gate`.
    struct Fake {
        fetches: [AtomicUsize; SLOTS],
        per_service_reads: AtomicUsize,
        gate: Semaphore,
        fail: bool,
    }

    impl Fake {
        fn new(open: bool, fail: bool) -> Self {
            Self {
                fetches: Default::default(),
                per_service_reads: AtomicUsize::new(0),
                gate: Semaphore::new(if open { Semaphore::MAX_PERMITS } else { 0 }),
                fail,
            }
        }

        fn fetches(&self, metric: MetricType) -> usize {
            slot(metric).map_or(0, |i| self.fetches[i].load(Ordering::SeqCst))
        }
    }

    impl BatchFetch for Fake {
        fn batch_query(&self, metric: MetricType) -> Option<String> {
            (metric != MetricType::Custom).then(|| format!("batch {metric:?}"))
        }

        async fn fetch_batch(&self, metric: MetricType) -> Result<Batch, MetricsError> {
            let _permit = self.gate.acquire().await;
            if let Some(i) = slot(metric) {
                self.fetches[i].fetch_add(1, Ordering::SeqCst);
            }
            if self.fail {
                return Err(MetricsError::NotBatchable { metric });
            }
            let value = match metric {
                MetricType::LatencyP99 => BatchValue::Service(75.0),
                _ => BatchValue::PerPod(vec![20.0, 10.0]),
            };
            Ok(HashMap::from([(
                ("shop".to_owned(), "orders".to_owned()),
                value,
            )]))
        }
    }

    impl MetricsSource for Fake {
        async fn read(
            &self,
            _service: &ServiceRef<'_>,
            _metric: &MetricSpec,
        ) -> Result<MetricReading, MetricsError> {
            self.per_service_reads.fetch_add(1, Ordering::SeqCst);
            Ok(MetricReading::value(1.0))
        }
    }

    fn metric(type_: MetricType) -> MetricSpec {
        MetricSpec {
            type_,
            target: 1.0,
            target_type: None,
            query: (type_ == MetricType::Custom).then(|| "sum(x)".to_owned()),
        }
    }

    const ORDERS: ServiceRef<'static> = ServiceRef {
        namespace: "shop",
        name: "orders",
        ready_replicas: 2,
    };

    /// Starts `n` concurrent reads, lets every one of them reach the cache while the first
    /// fetch is held at the gate, then opens it.
    async fn concurrent_reads(
        source: &Arc<BatchedSource<Fake>>,
        n: usize,
        type_: MetricType,
    ) -> Vec<Result<MetricReading, MetricsError>> {
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..n {
            let s = Arc::clone(source);
            tasks.spawn(async move { s.read(&ORDERS, &metric(type_)).await });
        }
        // On the test's single-threaded runtime, one yield polls every spawned task once:
        // one is then inside the fetch, the others queued on its lock.
        tokio::task::yield_now().await;
        source.inner().gate.add_permits(Semaphore::MAX_PERMITS);
        let mut out = Vec::new();
        while let Some(r) = tasks.join_next().await {
            out.push(r.expect("read task"));
        }
        out
    }

    #[tokio::test]
    async fn concurrent_callers_wait_for_the_one_query_in_flight() {
        // A zero max age: only waiting on the same flight can explain a single fetch.
        let source = Arc::new(BatchedSource::new(Fake::new(false, false), Duration::ZERO));
        let readings = concurrent_reads(&source, 20, MetricType::RequestsPerSecond).await;
        assert_eq!(readings.len(), 20);
        for r in readings {
            assert_eq!(r.expect("reading"), MetricReading::average(15.0, 2));
        }
        assert_eq!(source.inner().fetches(MetricType::RequestsPerSecond), 1);
    }

    #[tokio::test]
    async fn a_batch_is_reused_until_it_is_older_than_the_max_age() {
        let fresh = BatchedSource::new(Fake::new(true, false), Duration::from_secs(3600));
        for _ in 0..5 {
            fresh
                .read(&ORDERS, &metric(MetricType::InFlight))
                .await
                .expect("reading");
        }
        assert_eq!(fresh.inner().fetches(MetricType::InFlight), 1);
        // Each metric type has its own batch.
        let p99 = fresh
            .read(&ORDERS, &metric(MetricType::LatencyP99))
            .await
            .expect("reading");
        assert_eq!(p99, MetricReading::value(75.0));
        assert_eq!(fresh.inner().fetches(MetricType::LatencyP99), 1);
        assert_eq!(fresh.inner().fetches(MetricType::InFlight), 1);

        let stale = BatchedSource::new(Fake::new(true, false), Duration::from_millis(1));
        for _ in 0..3 {
            stale
                .read(&ORDERS, &metric(MetricType::Cpu))
                .await
                .expect("reading");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(stale.inner().fetches(MetricType::Cpu), 3);
    }

    #[tokio::test]
    async fn a_failed_batch_fails_every_waiting_caller_once() {
        let source = Arc::new(BatchedSource::new(Fake::new(false, true), Duration::ZERO));
        let readings = concurrent_reads(&source, 10, MetricType::RequestsPerSecond).await;
        for r in readings {
            let e = r.expect_err("the batch failed");
            // The cause's label, not the sharing's.
            assert_eq!(e.reason(), "MetricNotBatchable", "{e}");
            assert!(matches!(e, MetricsError::ReadBatch { .. }), "{e}");
        }
        assert_eq!(source.inner().fetches(MetricType::RequestsPerSecond), 1);
    }

    #[tokio::test]
    async fn custom_metrics_are_read_per_service_and_unknown_services_have_no_data() {
        let source = BatchedSource::new(Fake::new(true, false), DEFAULT_BATCH_MAX_AGE);
        source
            .read(&ORDERS, &metric(MetricType::Custom))
            .await
            .expect("per-service reading");
        assert_eq!(source.inner().per_service_reads.load(Ordering::SeqCst), 1);
        assert!(matches!(
            source.batch(MetricType::Custom).await,
            Err(MetricsError::NotBatchable { .. })
        ));

        let ghost = ServiceRef {
            name: "ghost",
            ..ORDERS
        };
        let e = source
            .read(&ghost, &metric(MetricType::InFlight))
            .await
            .expect_err("not in the batch");
        assert_eq!(e.reason(), "MetricNoData");
        assert!(e.to_string().contains("batch InFlight"), "{e}");
    }

    #[test]
    fn batch_values_become_the_readings_of_the_per_service_query() {
        let pods = BatchValue::PerPod(vec![20.0, 10.0]);
        assert_eq!(
            pods.reading(TargetType::AverageValue, 5),
            Some(MetricReading::average(15.0, 2))
        );
        assert_eq!(
            pods.reading(TargetType::Value, 5),
            Some(MetricReading::value(30.0))
        );
        let whole = BatchValue::Service(12.0);
        assert_eq!(
            whole.reading(TargetType::Value, 4),
            Some(MetricReading::value(12.0))
        );
        assert_eq!(
            whole.reading(TargetType::AverageValue, 4),
            Some(MetricReading::average(3.0, 4))
        );
        assert_eq!(
            BatchValue::PerPod(Vec::new()).reading(TargetType::Utilization, 2),
            None
        );
    }
}
