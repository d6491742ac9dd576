//! Where the scaling engine's metric readings come from. A controller asks a
//! [`MetricsSource`] for one [`MetricReading`] per metric of a service; the engine does the
//! rest. [`PrometheusSource`] reads the services' RED metrics from Prometheus;
//! [`StaticSource`] answers from values set by the caller (simulations and tests).
//!
//! A failed read is a missing reading, never a zero: the engine must be able to tell "no
//! traffic" from "no data" to hold replicas on missing data.
//!
//! At scale, [`BatchedSource`] answers every service from one query per metric type and
//! poll tick. After a restart, [`MetricsSource::history`] and [`read_demand_history`] give
//! the engine back its recorded season (`scaling::Engine::backfill`).

mod batched;
mod history;
mod prometheus;
mod queries;

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};

use marketplace_crds::v1alpha1::{MetricSpec, MetricType, TargetType};

pub use self::batched::{Batch, BatchFetch, BatchedSource, DEFAULT_BATCH_MAX_AGE};
pub use self::history::{combine_demand, history_to_demand, read_demand_history};
pub use self::prometheus::PrometheusSource;
pub use self::queries::{
    Aggregation, MAX_POINTS_PER_QUERY, MetricQuery, build_batch_query, build_history_query,
    build_query, history_chunks,
};
use crate::scaling::MetricReading;

/// The service whose metrics are read.
#[derive(Clone, Copy, Debug)]
pub struct ServiceRef<'a> {
    pub namespace: &'a str,
    pub name: &'a str,
    /// Ready replicas now: the divisor of a service-wide total under an AverageValue target.
    pub ready_replicas: u32,
}

/// Why a metric could not be read.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    #[error("failed to query Prometheus for {metric:?} of {service}")]
    Query {
        metric: MetricType,
        service: String,
        #[source]
        source: prometheus_http_query::Error,
    },
    #[error("Prometheus has no samples for {metric:?} of {service} (query: {query})")]
    NoData {
        metric: MetricType,
        service: String,
        query: String,
    },
    #[error(
        "Prometheus returned a {kind} for {metric:?} of {service}; the query must return {expected}"
    )]
    UnexpectedResult {
        metric: MetricType,
        service: String,
        kind: &'static str,
        expected: &'static str,
    },
    #[error("failed to build the HTTP client for Prometheus")]
    HttpClient {
        #[source]
        source: reqwest::Error,
    },
    #[error("invalid Prometheus URL {url:?}")]
    Url {
        url: String,
        #[source]
        source: prometheus_http_query::Error,
    },
    #[error("{metric:?} cannot be read for every service in one query; it is read per service")]
    NotBatchable { metric: MetricType },
    /// One batch failed for every service that asked during its lifetime; the cause is shared.
    #[error("failed to read {metric:?} for every service in one query")]
    ReadBatch {
        metric: MetricType,
        #[source]
        source: Arc<MetricsError>,
    },
    #[error(
        "failed to query Prometheus for the history of {metric:?} of {service} ({start}..{end})"
    )]
    QueryRange {
        metric: MetricType,
        service: String,
        start: i64,
        end: i64,
        #[source]
        source: prometheus_http_query::Error,
    },
    #[error(
        "invalid history range for {metric:?} of {service}: start {start}, end {end}, step {step} (finite, start <= end, step >= 1 s)"
    )]
    HistoryRange {
        metric: MetricType,
        service: String,
        start: f64,
        end: f64,
        step: f64,
    },
}

impl MetricsError {
    /// A short, stable label for metrics and Events.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Query { .. } => "MetricQueryFailed",
            Self::NoData { .. } => "MetricNoData",
            Self::UnexpectedResult { .. } => "MetricUnexpectedResult",
            Self::Url { .. } | Self::HttpClient { .. } => "MetricSourceInvalid",
            Self::NotBatchable { .. } => "MetricNotBatchable",
            // What went wrong, not how the read was shared, is what an Event should say.
            Self::ReadBatch { source, .. } => source.reason(),
            Self::QueryRange { .. } => "MetricHistoryQueryFailed",
            Self::HistoryRange { .. } => "MetricHistoryRangeInvalid",
        }
    }
}

/// One service's value in a batch: enough to build the reading [`PrometheusSource`]'s
/// per-service query would give, once the target type and ready replicas are known.
#[derive(Clone, Debug, PartialEq)]
pub enum BatchValue {
    /// One value per pod that reported (requests/s, in-flight, CPU percent of the request).
    PerPod(Vec<f64>),
    /// One value for the whole service (p99 latency in ms).
    Service(f64),
}

impl BatchValue {
    /// The engine's reading under `target_type`, as the per-service query's aggregation
    /// would make it: per-pod values are averaged over the pods that reported, or summed for
    /// a `Value` target; a service-wide value is divided by the ready replicas for a per-pod
    /// target (the HPA's External AverageValue). `None` when no pod reported.
    pub fn reading(&self, target_type: TargetType, ready_replicas: u32) -> Option<MetricReading> {
        match (self, target_type) {
            (Self::PerPod(values), TargetType::AverageValue | TargetType::Utilization) => {
                reading_of(Aggregation::PerPod, values, ready_replicas)
            }
            (Self::PerPod(values), TargetType::Value) => {
                reading_of(Aggregation::Total, values, ready_replicas)
            }
            (Self::Service(value), TargetType::Value) => {
                reading_of(Aggregation::Total, &[*value], ready_replicas)
            }
            (Self::Service(value), TargetType::AverageValue | TargetType::Utilization) => {
                reading_of(Aggregation::TotalPerReadyReplica, &[*value], ready_replicas)
            }
        }
    }
}

/// A sample as the engine may use it: NaN is zero load where the query says so (an idle
/// latency quantile), and any other non-finite value is no sample at all.
fn usable(value: f64, nan_is_zero: bool) -> Option<f64> {
    if value.is_finite() {
        Some(value)
    } else if value.is_nan() && nan_is_zero {
        Some(0.0)
    } else {
        None
    }
}

/// The reading of a query's usable samples; `None` when there are none.
fn reading_of(
    aggregation: Aggregation,
    values: &[f64],
    ready_replicas: u32,
) -> Option<MetricReading> {
    if values.is_empty() {
        return None;
    }
    let total: f64 = values.iter().sum();
    Some(match aggregation {
        Aggregation::PerPod => {
            MetricReading::average(total / values.len() as f64, values.len() as u32)
        }
        Aggregation::Total => MetricReading::value(total),
        Aggregation::TotalPerReadyReplica => {
            let ready = ready_replicas.max(1);
            MetricReading::average(total / f64::from(ready), ready)
        }
    })
}

/// A source of metric readings for the scaling engine.
pub trait MetricsSource: Send + Sync {
    /// Reads one metric of a service.
    fn read(
        &self,
        service: &ServiceRef<'_>,
        metric: &MetricSpec,
    ) -> impl Future<Output = Result<MetricReading, MetricsError>> + Send;

    /// Reads every metric, in order; each failure becomes a missing reading beside its error,
    /// so one broken query never hides the others.
    fn read_all(
        &self,
        service: &ServiceRef<'_>,
        metrics: &[MetricSpec],
    ) -> impl Future<Output = Vec<(MetricReading, Option<MetricsError>)>> + Send {
        async move {
            let mut out = Vec::with_capacity(metrics.len());
            for metric in metrics {
                out.push(match self.read(service, metric).await {
                    Ok(reading) => (reading, None),
                    Err(e) => (MetricReading::missing(), Some(e)),
                });
            }
            out
        }
    }

    /// A metric's service-wide value per `step` seconds over `start..=end` (unix seconds),
    /// oldest first: for per-pod metrics the sum over pods (total requests/s, total requests
    /// in flight, the sum of the pods' CPU percents), so that demand = total / per-replica
    /// target; for service-wide ones the value itself (p99 in ms; a custom query's result).
    /// A source that records no history returns none, and the engine starts cold.
    fn history(
        &self,
        service: &ServiceRef<'_>,
        metric: &MetricSpec,
        start: f64,
        end: f64,
        step: f64,
    ) -> impl Future<Output = Result<Vec<(f64, f64)>, MetricsError>> + Send {
        let _ = (service, metric, start, end, step);
        async { Ok(Vec::new()) }
    }
}

/// Readings set by hand, per (namespace, service, metric type): for simulations, demos and
/// tests that need a metrics source without Prometheus. Unset metrics read as missing.
#[derive(Default)]
pub struct StaticSource {
    readings: Mutex<HashMap<(String, String, MetricType), MetricReading>>,
}

impl StaticSource {
    pub fn set(&self, namespace: &str, service: &str, metric: MetricType, reading: MetricReading) {
        let mut map = self.readings.lock().unwrap_or_else(|e| e.into_inner());
        map.insert((namespace.to_owned(), service.to_owned(), metric), reading);
    }
}

impl MetricsSource for StaticSource {
    async fn read(
        &self,
        service: &ServiceRef<'_>,
        metric: &MetricSpec,
    ) -> Result<MetricReading, MetricsError> {
        let map = self.readings.lock().unwrap_or_else(|e| e.into_inner());
        let key = (
            service.namespace.to_owned(),
            service.name.to_owned(),
            metric.type_,
        );
        map.get(&key).copied().ok_or_else(|| MetricsError::NoData {
            metric: metric.type_,
            service: format!("{}/{}", service.namespace, service.name),
            query: "static".to_owned(),
        })
    }
}
