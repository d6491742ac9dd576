//! Where the scaling engine's metric readings come from. A controller asks a
//! [`MetricsSource`] for one [`MetricReading`] per metric of a service; the engine does the
//! rest. [`PrometheusSource`] reads the services' RED metrics from Prometheus;
//! [`StaticSource`] answers from values set by the caller (simulations and tests).
//!
//! A failed read is a missing reading, never a zero: the engine must be able to tell "no
//! traffic" from "no data" to hold replicas on missing data.

mod prometheus;
mod queries;

use std::collections::HashMap;
use std::future::Future;
use std::sync::Mutex;

use marketplace_crds::v1alpha1::{MetricSpec, MetricType};

pub use self::prometheus::PrometheusSource;
pub use self::queries::{Aggregation, MetricQuery, build_query};
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
        "Prometheus returned a {kind} for {metric:?} of {service}; the query must return an instant vector or a scalar"
    )]
    UnexpectedResult {
        metric: MetricType,
        service: String,
        kind: &'static str,
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
}

impl MetricsError {
    /// A short, stable label for metrics and Events.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Query { .. } => "MetricQueryFailed",
            Self::NoData { .. } => "MetricNoData",
            Self::UnexpectedResult { .. } => "MetricUnexpectedResult",
            Self::Url { .. } | Self::HttpClient { .. } => "MetricSourceInvalid",
        }
    }
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
