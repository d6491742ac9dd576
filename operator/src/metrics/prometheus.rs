//! Metric readings from Prometheus's HTTP API.

use std::time::Duration;

use marketplace_crds::v1alpha1::MetricSpec;
use prometheus_http_query::response::Data;

use super::queries::{Aggregation, build_query};
use super::{MetricsError, MetricsSource, ServiceRef};
use crate::scaling::MetricReading;

/// Reads metrics with instant queries against one Prometheus server.
#[derive(Clone)]
pub struct PrometheusSource {
    client: prometheus_http_query::Client,
    window: String,
}

impl PrometheusSource {
    /// A source for the Prometheus at `url` (e.g. `http://prometheus.monitoring:9090`), with
    /// rates taken over `window` (a PromQL duration such as `1m`) and a per-query timeout.
    pub fn new(url: &str, window: &str, timeout: Duration) -> Result<Self, MetricsError> {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .build()
            .map_err(|source| MetricsError::HttpClient { source })?;
        let client =
            prometheus_http_query::Client::from(http, url).map_err(|source| MetricsError::Url {
                url: url.to_owned(),
                source,
            })?;
        Ok(Self {
            client,
            window: window.to_owned(),
        })
    }
}

impl MetricsSource for PrometheusSource {
    async fn read(
        &self,
        service: &ServiceRef<'_>,
        metric: &MetricSpec,
    ) -> Result<MetricReading, MetricsError> {
        let query = build_query(service.namespace, service.name, metric, &self.window);
        let who = || format!("{}/{}", service.namespace, service.name);
        let result = self
            .client
            .query(&query.promql)
            .get()
            .await
            .map_err(|source| MetricsError::Query {
                metric: metric.type_,
                service: who(),
                source,
            })?;
        let values: Vec<f64> = match result.data() {
            Data::Vector(v) => v.iter().map(|s| s.sample().value()).collect(),
            Data::Scalar(s) => vec![s.value()],
            Data::Matrix(_) => {
                return Err(MetricsError::UnexpectedResult {
                    metric: metric.type_,
                    service: who(),
                    kind: "range vector",
                });
            }
        };
        let values: Vec<f64> = values
            .into_iter()
            .filter_map(|v| match v {
                v if v.is_finite() => Some(v),
                v if v.is_nan() && query.nan_is_zero => Some(0.0),
                _ => None,
            })
            .collect();
        if values.is_empty() {
            return Err(MetricsError::NoData {
                metric: metric.type_,
                service: who(),
                query: query.promql,
            });
        }
        let total: f64 = values.iter().sum();
        Ok(match query.aggregation {
            Aggregation::PerPod => {
                MetricReading::average(total / values.len() as f64, values.len() as u32)
            }
            Aggregation::Total => MetricReading::value(total),
            Aggregation::TotalPerReadyReplica => {
                let ready = service.ready_replicas.max(1);
                MetricReading::average(total / f64::from(ready), ready)
            }
        })
    }
}
