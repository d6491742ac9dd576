//! Metric readings from Prometheus's HTTP API.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use marketplace_crds::v1alpha1::{MetricSpec, MetricType};
use prometheus_http_query::response::Data;

use super::batched::{Batch, BatchFetch};
use super::queries::{
    Aggregation, build_batch_query, build_history_query, build_query, history_chunks,
};
use super::{BatchValue, MetricsError, MetricsSource, ServiceRef, reading_of, usable};
use crate::scaling::MetricReading;

/// Reads metrics with instant queries against one Prometheus server.
#[derive(Clone)]
pub struct PrometheusSource {
    client: prometheus_http_query::Client,
    window: String,
}

/// Names the services a batch answers for in errors.
const EVERY_SERVICE: &str = "every service";

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

    /// The rate window, a PromQL duration.
    pub fn window(&self) -> &str {
        &self.window
    }

    /// Every service's value of one built-in metric type in one instant query, keyed by
    /// (namespace, service). A service absent from the map had no usable sample. `Custom`
    /// metrics are per-service PromQL and fail with `NotBatchable`.
    pub async fn read_batch(
        &self,
        metric: MetricType,
    ) -> Result<HashMap<(String, String), BatchValue>, MetricsError> {
        let query =
            build_batch_query(metric, &self.window).ok_or(MetricsError::NotBatchable { metric })?;
        let result = self
            .client
            .query(&query.promql)
            .get()
            .await
            .map_err(|source| MetricsError::Query {
                metric,
                service: EVERY_SERVICE.to_owned(),
                source,
            })?;
        let samples = match result.data() {
            Data::Vector(v) => v,
            Data::Scalar(_) | Data::Matrix(_) => {
                return Err(MetricsError::UnexpectedResult {
                    metric,
                    service: EVERY_SERVICE.to_owned(),
                    kind: if matches!(result.data(), Data::Scalar(_)) {
                        "scalar"
                    } else {
                        "range vector"
                    },
                    expected: "an instant vector labelled by namespace and service",
                });
            }
        };
        let mut batch: HashMap<(String, String), BatchValue> = HashMap::new();
        for sample in samples {
            let labels = sample.metric();
            let (Some(namespace), Some(service)) = (labels.get("namespace"), labels.get("service"))
            else {
                continue;
            };
            let Some(value) = usable(sample.sample().value(), query.nan_is_zero) else {
                continue;
            };
            let key = (namespace.clone(), service.clone());
            match query.aggregation {
                Aggregation::PerPod => match batch
                    .entry(key)
                    .or_insert_with(|| BatchValue::PerPod(Vec::new()))
                {
                    BatchValue::PerPod(values) => values.push(value),
                    BatchValue::Service(total) => *total += value,
                },
                Aggregation::Total | Aggregation::TotalPerReadyReplica => {
                    match batch.entry(key).or_insert(BatchValue::Service(0.0)) {
                        BatchValue::Service(total) => *total += value,
                        BatchValue::PerPod(values) => values.push(value),
                    }
                }
            }
        }
        tracing::debug!(?metric, services = batch.len(), "read a metric batch");
        Ok(batch)
    }
}

impl BatchFetch for PrometheusSource {
    fn batch_query(&self, metric: MetricType) -> Option<String> {
        build_batch_query(metric, &self.window).map(|q| q.promql)
    }

    async fn fetch_batch(&self, metric: MetricType) -> Result<Batch, MetricsError> {
        self.read_batch(metric).await
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
                    expected: "an instant vector or a scalar",
                });
            }
        };
        let values: Vec<f64> = values
            .into_iter()
            .filter_map(|v| usable(v, query.nan_is_zero))
            .collect();
        reading_of(query.aggregation, &values, service.ready_replicas).ok_or_else(|| {
            MetricsError::NoData {
                metric: metric.type_,
                service: who(),
                query: query.promql,
            }
        })
    }

    /// Range queries of [`build_history_query`], chunked so that none asks for more than
    /// Prometheus's 11,000 points. `start` is rounded up and `end` down to whole seconds and
    /// `step` to whole seconds (the client takes whole-second timestamps, and whole steps
    /// keep every chunk on one grid). Steps without a usable sample are left out, so gaps
    /// stay gaps; a service Prometheus has no samples for has an empty history.
    async fn history(
        &self,
        service: &ServiceRef<'_>,
        metric: &MetricSpec,
        start: f64,
        end: f64,
        step: f64,
    ) -> Result<Vec<(f64, f64)>, MetricsError> {
        let who = || format!("{}/{}", service.namespace, service.name);
        let valid = start.is_finite() && end.is_finite() && step.is_finite();
        if !valid || end < start || step.round() < 1.0 {
            return Err(MetricsError::HistoryRange {
                metric: metric.type_,
                service: who(),
                start,
                end,
                step,
            });
        }
        let query = build_history_query(service.namespace, service.name, metric, &self.window);
        let (from, to, step) = (start.ceil() as i64, end.floor() as i64, step.round() as i64);
        // Keyed by whole milliseconds: every series of a range answer shares the step grid.
        let mut per_step: BTreeMap<i64, f64> = BTreeMap::new();
        for (chunk_start, chunk_end) in history_chunks(from, to, step) {
            tracing::debug!(
                service = %who(),
                metric = ?metric.type_,
                chunk_start,
                chunk_end,
                step,
                "querying metric history"
            );
            let result = self
                .client
                .query_range(&query.promql, chunk_start, chunk_end, step as f64)
                .get()
                .await
                .map_err(|source| MetricsError::QueryRange {
                    metric: metric.type_,
                    service: who(),
                    start: chunk_start,
                    end: chunk_end,
                    source,
                })?;
            let Data::Matrix(series) = result.data() else {
                return Err(MetricsError::UnexpectedResult {
                    metric: metric.type_,
                    service: who(),
                    kind: "instant result to a range query",
                    expected: "a range vector",
                });
            };
            for s in series {
                for sample in s.samples() {
                    if let Some(v) = usable(sample.value(), query.nan_is_zero) {
                        let t = (sample.timestamp() * 1000.0).round() as i64;
                        *per_step.entry(t).or_insert(0.0) += v;
                    }
                }
            }
        }
        Ok(per_step
            .into_iter()
            .map(|(ms, v)| (ms as f64 / 1000.0, v))
            .collect())
    }
}
