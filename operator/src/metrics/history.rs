//! From a metric's recorded history to the demand the scaling engine records
//! (`MetricProposal::demand`: unrounded replicas that would run the load at target), so that
//! `scaling::Engine::backfill` can give a restarted operator its season back.

use std::collections::BTreeMap;

use marketplace_crds::v1alpha1::{MetricSpec, TargetType};

use super::{MetricsError, MetricsSource, ServiceRef};
use crate::scaling::Seconds;

/// A metric's history ([`MetricsSource::history`]: the service-wide value per step) as demand
/// samples, following the HPA arithmetic in `scaling::hpa`:
/// - `AverageValue` and `Utilization` (requests/s, in-flight, CPU, custom per-replica
///   targets): demand = average × pods reporting / target = service-wide total / target;
/// - `Value` (p99 latency, custom whole-service targets): demand = value / target × ready
///   replicas, and the history does not hold the ready replicas of each step, so these are
///   not converted: `None`, and the metric is left out of the backfill.
///
/// `None` too for a target that is not a positive number (the policy would refuse it).
pub fn history_to_demand(
    metric: &MetricSpec,
    history: &[(f64, f64)],
) -> Option<Vec<(Seconds, f64)>> {
    let target = metric.target;
    if !(target.is_finite() && target > 0.0) {
        return None;
    }
    match metric.effective_target_type() {
        TargetType::AverageValue | TargetType::Utilization => {
            Some(history.iter().map(|&(t, v)| (t, v / target)).collect())
        }
        TargetType::Value => None,
    }
}

/// Several metrics' demand combined as the engine combines them live: the largest at each
/// instant, oldest first.
pub fn combine_demand(series: &[Vec<(Seconds, f64)>]) -> Vec<(Seconds, f64)> {
    // Keyed by whole milliseconds: range answers for one step share a grid.
    let mut max: BTreeMap<i64, f64> = BTreeMap::new();
    for &(t, d) in series.iter().flatten() {
        if !(t.is_finite() && d.is_finite()) {
            continue;
        }
        let slot = max.entry((t * 1000.0).round() as i64).or_insert(d);
        *slot = slot.max(d);
    }
    max.into_iter()
        .map(|(ms, d)| (ms as f64 / 1000.0, d))
        .collect()
}

/// The demand history of a service over `start..=end` every `step` seconds, ready for
/// `Engine::backfill`: each metric [`history_to_demand`] can convert, read and combined by
/// max. Metrics with a `Value` target are skipped (logged), so the backfill may under-state
/// demand where such a metric was the binding one. The first failed read is returned: a
/// partial max would under-state demand without saying so.
pub async fn read_demand_history<S: MetricsSource>(
    source: &S,
    service: &ServiceRef<'_>,
    metrics: &[MetricSpec],
    start: f64,
    end: f64,
    step: f64,
) -> Result<Vec<(Seconds, f64)>, MetricsError> {
    let mut series = Vec::with_capacity(metrics.len());
    for metric in metrics {
        if history_to_demand(metric, &[]).is_none() {
            tracing::debug!(
                service = %format!("{}/{}", service.namespace, service.name),
                metric = ?metric.type_,
                "not backfilled: a Value target's demand needs the ready replicas of each step"
            );
            continue;
        }
        let history = source.history(service, metric, start, end, step).await?;
        series.extend(history_to_demand(metric, &history));
    }
    Ok(combine_demand(&series))
}

#[cfg(test)]
mod tests {
    use marketplace_crds::v1alpha1::MetricType;

    use super::*;
    use crate::scaling::{MetricKind, MetricPolicy, MetricReading, replicas_for_metric};

    fn spec(type_: MetricType, target: f64, target_type: Option<TargetType>) -> MetricSpec {
        MetricSpec {
            type_,
            target,
            target_type,
            query: (type_ == MetricType::Custom).then(|| "sum(x)".to_owned()),
        }
    }

    #[test]
    fn per_replica_targets_convert_as_the_engine_computes_demand() {
        // 3 pods at 40 requests/s each: the history holds the total, 120.
        let m = spec(MetricType::RequestsPerSecond, 50.0, None);
        let demand = history_to_demand(&m, &[(60.0, 120.0)]).expect("convertible");
        let live = replicas_for_metric(
            &MetricPolicy {
                kind: MetricKind::RequestsPerSecond,
                target_type: crate::scaling::TargetType::AverageValue,
                target: 50.0,
            },
            &MetricReading::average(40.0, 3),
            3,
            3,
            0.1,
        )
        .expect("reading");
        assert_eq!(demand.len(), 1);
        assert!(
            (demand[0].1 - live.demand).abs() < 1e-12,
            "{demand:?} {live:?}"
        );
        // CPU: the sum of the pods' percents over the per-pod percent target.
        let cpu = spec(MetricType::Cpu, 60.0, None);
        assert_eq!(
            history_to_demand(&cpu, &[(0.0, 150.0)]),
            Some(vec![(0.0, 2.5)])
        );
        let custom = spec(MetricType::Custom, 10.0, Some(TargetType::AverageValue));
        assert_eq!(
            history_to_demand(&custom, &[(0.0, 35.0)]),
            Some(vec![(0.0, 3.5)])
        );
    }

    #[test]
    fn value_targets_need_the_replica_count_and_are_skipped() {
        let p99 = spec(MetricType::LatencyP99, 200.0, None);
        assert_eq!(history_to_demand(&p99, &[(0.0, 300.0)]), None);
        let custom = spec(MetricType::Custom, 10.0, Some(TargetType::Value));
        assert_eq!(history_to_demand(&custom, &[(0.0, 30.0)]), None);
    }

    #[test]
    fn demand_combines_by_max_in_time_order() {
        let a = vec![(60.0, 2.0), (0.0, 5.0)];
        let b = vec![(0.0, 3.0), (60.0, 4.0), (120.0, f64::NAN)];
        assert_eq!(combine_demand(&[a, b]), vec![(0.0, 5.0), (60.0, 4.0)]);
    }
}
