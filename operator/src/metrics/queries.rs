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

/// The pod names of a Deployment's pods: `<deployment>-<pod-template-hash>-<suffix>`. cAdvisor
/// and kube-state-metrics know pods, not services, so a pod's service is read from its name;
/// anchoring both generated parts keeps `orders-api-…` pods out of `orders`.
const DEPLOYMENT_POD_SUFFIX: &str = "-[a-z0-9]+-[a-z0-9]+";

/// Prometheus refuses a range query of more than 11,000 points per series.
pub const MAX_POINTS_PER_QUERY: i64 = 11_000;

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
        "namespace=\"{}\",pod=~\"{}{DEPLOYMENT_POD_SUFFIX}\"",
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

/// One query for every service's value of a built-in metric type, labelled by `namespace`
/// and `service` (and `pod` for per-pod types), so a poll tick costs one query per metric
/// type rather than one per service. Same units and aggregation as [`build_query`]; `None`
/// for `Custom`, whose PromQL is per service.
pub fn build_batch_query(metric: MetricType, window: &str) -> Option<MetricQuery> {
    // `service!=""` keeps series that no scrape config labelled out of an anonymous group.
    Some(match metric {
        MetricType::RequestsPerSecond => MetricQuery {
            promql: format!(
                "sum by (namespace, service, pod) (rate(http_requests_total{{service!=\"\"}}[{window}]))"
            ),
            aggregation: Aggregation::PerPod,
            nan_is_zero: false,
        },
        MetricType::InFlight => MetricQuery {
            promql: "sum by (namespace, service, pod) (http_requests_in_flight{service!=\"\"})"
                .to_owned(),
            aggregation: Aggregation::PerPod,
            nan_is_zero: false,
        },
        MetricType::LatencyP99 => MetricQuery {
            promql: format!(
                "1000 * histogram_quantile(0.99, sum by (namespace, service, le) (rate(http_request_duration_seconds_bucket{{service!=\"\"}}[{window}])))"
            ),
            aggregation: Aggregation::Total,
            nan_is_zero: true,
        },
        MetricType::Cpu => {
            // The service label is derived from the pod name, overwriting whatever `service`
            // the scrape gave cAdvisor's and kube-state-metrics' own series (e.g. "kubelet").
            let pods = format!("pod=~\".+{DEPLOYMENT_POD_SUFFIX}\"");
            let service_of = |series: String| {
                format!(
                    "label_replace({series}, \"service\", \"$1\", \"pod\", \"(.+){DEPLOYMENT_POD_SUFFIX}\")"
                )
            };
            let usage = service_of(format!(
                "rate(container_cpu_usage_seconds_total{{{pods},container!=\"\",container!=\"POD\"}}[{window}])"
            ));
            let requests = service_of(format!(
                "kube_pod_container_resource_requests{{{pods},resource=\"cpu\"}}"
            ));
            MetricQuery {
                promql: format!(
                    "100 * sum by (namespace, service, pod) ({usage}) / on (namespace, service, pod) sum by (namespace, service, pod) ({requests})"
                ),
                aggregation: Aggregation::PerPod,
                nan_is_zero: false,
            }
        }
        MetricType::Custom => return None,
    })
}

/// The query whose range is a metric's history: per step, the service-wide value. Per-pod
/// queries are summed over pods (the per-pod average times the pods reporting: total
/// requests/s, total requests in flight, the sum of the pods' CPU utilization percents);
/// service-wide ones are unchanged (p99 latency in ms; a custom query's result, whose series
/// the caller sums). `aggregation` and `nan_is_zero` are the instant query's.
pub fn build_history_query(
    namespace: &str,
    service: &str,
    metric: &MetricSpec,
    window: &str,
) -> MetricQuery {
    let mut q = build_query(namespace, service, metric, window);
    if q.aggregation == Aggregation::PerPod {
        q.promql = format!("sum({})", q.promql);
    }
    q
}

/// Splits `start..=end` (whole seconds) into ranges of at most [`MAX_POINTS_PER_QUERY`] points
/// on one grid of `step` seconds from `start`: each range starts one step after the previous
/// one ends, so no point is asked twice or skipped.
pub fn history_chunks(start: i64, end: i64, step: i64) -> Vec<(i64, i64)> {
    let mut chunks = Vec::new();
    if step <= 0 || end < start {
        return chunks;
    }
    let span = (MAX_POINTS_PER_QUERY - 1).saturating_mul(step);
    let mut from = start;
    while from <= end {
        let to = from.saturating_add(span).min(end);
        chunks.push((from, to));
        let Some(next) = from.checked_add(span).and_then(|t| t.checked_add(step)) else {
            break;
        };
        from = next;
    }
    chunks
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

    #[test]
    fn cpu_reads_only_the_deployment_pods_of_the_service() {
        let q = build_query("shop", "orders", &metric(MetricType::Cpu, None), "1m");
        assert_eq!(
            q.promql,
            r#"100 * sum by (pod) (rate(container_cpu_usage_seconds_total{namespace="shop",pod=~"orders-[a-z0-9]+-[a-z0-9]+",container!="",container!="POD"}[1m])) / on (pod) sum by (pod) (kube_pod_container_resource_requests{namespace="shop",pod=~"orders-[a-z0-9]+-[a-z0-9]+",resource="cpu"})"#
        );
    }

    #[test]
    fn batch_queries_group_every_service_in_one_answer() {
        let rps = build_batch_query(MetricType::RequestsPerSecond, "1m").expect("batchable");
        assert_eq!(
            rps.promql,
            r#"sum by (namespace, service, pod) (rate(http_requests_total{service!=""}[1m]))"#
        );
        assert_eq!(rps.aggregation, Aggregation::PerPod);

        let in_flight = build_batch_query(MetricType::InFlight, "1m").expect("batchable");
        assert_eq!(
            in_flight.promql,
            r#"sum by (namespace, service, pod) (http_requests_in_flight{service!=""})"#
        );
        assert_eq!(in_flight.aggregation, Aggregation::PerPod);

        let p99 = build_batch_query(MetricType::LatencyP99, "2m").expect("batchable");
        assert_eq!(
            p99.promql,
            r#"1000 * histogram_quantile(0.99, sum by (namespace, service, le) (rate(http_request_duration_seconds_bucket{service!=""}[2m])))"#
        );
        assert_eq!(p99.aggregation, Aggregation::Total);
        assert!(p99.nan_is_zero);

        let cpu = build_batch_query(MetricType::Cpu, "1m").expect("batchable");
        assert_eq!(
            cpu.promql,
            concat!(
                r#"100 * sum by (namespace, service, pod) (label_replace(rate(container_cpu_usage_seconds_total{pod=~".+-[a-z0-9]+-[a-z0-9]+",container!="",container!="POD"}[1m]), "service", "$1", "pod", "(.+)-[a-z0-9]+-[a-z0-9]+"))"#,
                r#" / on (namespace, service, pod) "#,
                r#"sum by (namespace, service, pod) (label_replace(kube_pod_container_resource_requests{pod=~".+-[a-z0-9]+-[a-z0-9]+",resource="cpu"}, "service", "$1", "pod", "(.+)-[a-z0-9]+-[a-z0-9]+"))"#,
            )
        );
        assert_eq!(cpu.aggregation, Aggregation::PerPod);

        assert_eq!(build_batch_query(MetricType::Custom, "1m"), None);
    }

    #[test]
    fn history_sums_per_pod_queries_and_keeps_service_wide_ones() {
        let rps = build_history_query(
            "shop",
            "orders",
            &metric(MetricType::RequestsPerSecond, None),
            "1m",
        );
        assert_eq!(
            rps.promql,
            r#"sum(sum by (pod) (rate(http_requests_total{namespace="shop",service="orders"}[1m])))"#
        );
        let p99 = build_history_query(
            "shop",
            "orders",
            &metric(MetricType::LatencyP99, None),
            "1m",
        );
        assert_eq!(
            p99.promql,
            build_query(
                "shop",
                "orders",
                &metric(MetricType::LatencyP99, None),
                "1m"
            )
            .promql
        );
    }

    #[test]
    fn history_chunks_stay_under_the_point_limit_on_one_grid() {
        // Three days of 15 s steps: 17,281 points, two queries.
        let chunks = history_chunks(0, 3 * 86_400, 15);
        assert_eq!(chunks, vec![(0, 164_985), (165_000, 259_200)]);
        for &(from, to) in &chunks {
            let points = (to - from) / 15 + 1;
            assert!(points <= MAX_POINTS_PER_QUERY, "{points}");
            assert_eq!(from % 15, 0);
        }
        assert_eq!(history_chunks(10, 10, 60), vec![(10, 10)]);
        assert_eq!(history_chunks(0, 109_990, 10), vec![(0, 109_990)]);
        assert_eq!(
            history_chunks(0, 110_000, 10),
            vec![(0, 109_990), (110_000, 110_000)]
        );
        assert!(history_chunks(10, 0, 60).is_empty());
        assert!(history_chunks(0, 10, 0).is_empty());
    }
}
