//! The PromQL behind each metric type, over the RED metrics every service exports
//! (`http_requests_total`, `http_request_duration_seconds`, `http_requests_in_flight`, with
//! `namespace` and `service` labels added by the scrape config) and cAdvisor/kube-state-metrics
//! for CPU. Pure, so the queries are unit-tested as text.

use marketplace_crds::v1alpha1::{MetricSpec, MetricType, TargetType};

/// How a query's result vector becomes one reading.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Aggregation {
    /// One sample per pod (`by (pod)`): the reading is their average, and the number of pods
    /// that reported is known, as the HPA's Pods metrics.
    PerPod,
    /// The service-wide value: the samples are summed, compared with the target whole.
    Total,
    /// A service-wide total that the target expects per replica: summed, then divided by the
    /// ready replicas (the HPA's External AverageValue).
    TotalPerReadyReplica,
}

/// A metric's PromQL and how to read its result.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MetricQuery {
    pub promql: String,
    pub aggregation: Aggregation,
    /// Whether NaN (e.g. a latency quantile with no requests in the window) means zero load
    /// rather than missing data.
    pub nan_is_zero: bool,
}

/// Label values are DNS labels in practice; escaping keeps a hostile name from changing the
/// query anyway.
fn escape(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"")
}

/// The query for one metric of service `service` in `namespace`, over a `window` such as `1m`.
pub fn build_query(
    namespace: &str,
    service: &str,
    metric: &MetricSpec,
    window: &str,
) -> MetricQuery {
    let sel = format!(
        "namespace=\"{}\",service=\"{}\"",
        escape(namespace),
        escape(service)
    );
    let pods = format!(
        "namespace=\"{}\",pod=~\"{}-.*\"",
        escape(namespace),
        escape(service)
    );
    match metric.type_ {
        MetricType::RequestsPerSecond => MetricQuery {
            promql: format!("sum by (pod) (rate(http_requests_total{{{sel}}}[{window}]))"),
            aggregation: Aggregation::PerPod,
            nan_is_zero: false,
        },
        MetricType::InFlight => MetricQuery {
            promql: format!("sum by (pod) (http_requests_in_flight{{{sel}}})"),
            aggregation: Aggregation::PerPod,
            nan_is_zero: false,
        },
        MetricType::LatencyP99 => MetricQuery {
            promql: format!(
                "1000 * histogram_quantile(0.99, sum by (le) (rate(http_request_duration_seconds_bucket{{{sel}}}[{window}])))"
            ),
            aggregation: Aggregation::Total,
            nan_is_zero: true,
        },
        MetricType::Cpu => MetricQuery {
            promql: format!(
                "100 * sum by (pod) (rate(container_cpu_usage_seconds_total{{{pods},container!=\"\",container!=\"POD\"}}[{window}])) / on (pod) sum by (pod) (kube_pod_container_resource_requests{{{pods},resource=\"cpu\"}})"
            ),
            aggregation: Aggregation::PerPod,
            nan_is_zero: false,
        },
        MetricType::Custom => MetricQuery {
            promql: metric
                .query
                .as_deref()
                .unwrap_or_default()
                .replace("{namespace}", &escape(namespace))
                .replace("{service}", &escape(service)),
            aggregation: match metric.effective_target_type() {
                TargetType::Value => Aggregation::Total,
                TargetType::AverageValue | TargetType::Utilization => {
                    Aggregation::TotalPerReadyReplica
                }
            },
            nan_is_zero: false,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metric(type_: MetricType, query: Option<&str>) -> MetricSpec {
        MetricSpec {
            type_,
            target: 1.0,
            target_type: None,
            query: query.map(str::to_owned),
        }
    }

    #[test]
    fn requests_per_second_is_read_per_pod() {
        let q = build_query(
            "shop",
            "orders",
            &metric(MetricType::RequestsPerSecond, None),
            "1m",
        );
        assert_eq!(
            q.promql,
            r#"sum by (pod) (rate(http_requests_total{namespace="shop",service="orders"}[1m]))"#
        );
        assert_eq!(q.aggregation, Aggregation::PerPod);
    }

    #[test]
    fn latency_is_a_service_wide_value_in_milliseconds_and_idle_means_zero() {
        let q = build_query(
            "shop",
            "orders",
            &metric(MetricType::LatencyP99, None),
            "2m",
        );
        assert!(
            q.promql.starts_with("1000 * histogram_quantile(0.99"),
            "{}",
            q.promql
        );
        assert!(q.promql.contains("[2m]"));
        assert_eq!(q.aggregation, Aggregation::Total);
        assert!(q.nan_is_zero);
    }

    #[test]
    fn custom_queries_get_their_placeholders_filled() {
        let q = build_query(
            "shop",
            "orders",
            &metric(
                MetricType::Custom,
                Some(r#"sum(queue_depth{ns="{namespace}",svc="{service}"})"#),
            ),
            "1m",
        );
        assert_eq!(q.promql, r#"sum(queue_depth{ns="shop",svc="orders"})"#);
        assert_eq!(q.aggregation, Aggregation::TotalPerReadyReplica);
    }

    #[test]
    fn a_quote_in_a_name_cannot_break_out_of_the_label_matcher() {
        let q = build_query(
            "shop",
            "x\"}or vector(1)",
            &metric(MetricType::InFlight, None),
            "1m",
        );
        assert!(
            q.promql.contains(r#"service="x\"}or vector(1)""#),
            "{}",
            q.promql
        );
    }
}
