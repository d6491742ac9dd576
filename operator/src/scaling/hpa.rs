//! Kubernetes HPA v2 arithmetic, transcribed from the documented algorithm (and the
//! controller's `replica_calculator.go` / `horizontal.go` it describes) so that a policy
//! with no extras decides exactly as the HPA would.

use super::policy::{MetricKind, MetricPolicy, RateKind, ScalingRules, Select, TargetType};

/// One metric's reading at a tick.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MetricReading {
    /// `None` when the metric could not be fetched. For `AverageValue`/`Utilization` targets
    /// the average over the pods that reported; for `Value` targets the service-wide value.
    pub value: Option<f64>,
    /// Pods that contributed a sample (ignored for `Value` targets). Pods that exist but did
    /// not report are "missing", as in the HPA.
    pub pods_reporting: u32,
}

impl MetricReading {
    pub fn average(value: f64, pods_reporting: u32) -> Self {
        Self {
            value: Some(value),
            pods_reporting,
        }
    }

    pub fn value(value: f64) -> Self {
        Self {
            value: Some(value),
            pods_reporting: 0,
        }
    }

    pub fn missing() -> Self {
        Self {
            value: None,
            pods_reporting: 0,
        }
    }
}

/// What one metric asks for.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MetricProposal {
    pub replicas: u32,
    /// The usage ratio (value / target) before any missing-pod correction.
    pub ratio: f64,
    /// The unrounded replicas that would run the measured load exactly at target: the
    /// signal the windows, burst and seasonality work on.
    pub demand: f64,
}

/// Why a metric gave no proposal (the HPA then refuses to scale down).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MetricProblem {
    Unavailable,
    NoPodsReporting,
    NoReadyPods,
    /// From the pod list: no pods matched the selector.
    NoPods,
    /// From the pod list: a counted pod (or the named container) has no request.
    MissingRequest,
    /// From the pod list: no sample of a pod that counts (all unready, ignored or unknown).
    NoTargetedMetrics,
}

impl From<super::pods::PodError> for MetricProblem {
    fn from(e: super::pods::PodError) -> Self {
        use super::pods::PodError as E;
        match e {
            E::NoMetrics => Self::Unavailable,
            E::NoPods => Self::NoPods,
            E::MissingRequest { .. }
            | E::MissingPodRequest { .. }
            | E::ContainerNotFound { .. } => Self::MissingRequest,
            E::NoTargetedMetrics | E::NoMatchingPods => Self::NoTargetedMetrics,
        }
    }
}

/// The HPA's tolerance band, which may differ per direction (k8s 1.33
/// `behavior.scaleUp/scaleDown.tolerance`): no change while the ratio is within `up` above
/// 1 or `down` below it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Tolerances {
    pub up: f64,
    pub down: f64,
}

impl Tolerances {
    pub fn symmetric(t: f64) -> Self {
        Self { up: t, down: t }
    }

    /// The HPA's test since k8s 1.33 (`Tolerances.isWithin`): 1 − down ≤ ratio ≤ 1 + up.
    /// Before 1.33 it was |1 − ratio| ≤ t, which in float64 differs at the upper edge only
    /// (1.1 against 0.1: |1 − 1.1| is 0.10000000000000009, outside; 1 + 0.1 is 1.1, within).
    pub(super) fn within(self, ratio: f64) -> bool {
        1.0 - self.down <= ratio && ratio <= 1.0 + self.up
    }
}

fn ceil_u32(x: f64) -> u32 {
    // Saturating: a runaway metric asks for u32::MAX and the max clamp handles it.
    if x.is_nan() || x <= 0.0 {
        0
    } else if x >= u32::MAX as f64 {
        u32::MAX
    } else {
        x.ceil() as u32
    }
}

/// The HPA's replica count for one metric.
///
/// `current` is the scale target's replicas (the HPA's pod count), `ready` the ready pods.
/// For per-pod targets, pods that did not report are missing: on a scale-up they count as
/// using nothing, on a scale-down as using exactly the target, and if that flips the
/// direction or lands within tolerance the HPA keeps `current`. CPU is the one metric where
/// unready pods are set aside (the HPA's CPU initialization handling): `pods_reporting`
/// then counts only ready pods and the unready ones count as using nothing on a scale-up.
pub fn replicas_for_metric(
    metric: &MetricPolicy,
    reading: &MetricReading,
    current: u32,
    ready: u32,
    tolerance: f64,
) -> Result<MetricProposal, MetricProblem> {
    replicas_for_metric_within(
        metric,
        reading,
        current,
        ready,
        Tolerances::symmetric(tolerance),
    )
}

/// `replicas_for_metric` with a tolerance per direction.
pub fn replicas_for_metric_within(
    metric: &MetricPolicy,
    reading: &MetricReading,
    current: u32,
    ready: u32,
    tol: Tolerances,
) -> Result<MetricProposal, MetricProblem> {
    let within = |ratio: f64| tol.within(ratio);
    let value = reading.value.ok_or(MetricProblem::Unavailable)?;
    if !value.is_finite() || value < 0.0 {
        return Err(MetricProblem::Unavailable);
    }
    let target = metric.target;
    match metric.target_type {
        TargetType::Value => {
            // HPA Object/External metric with a Value target (`getUsageRatioReplicaCount`):
            // ceil(ratio × ready pods) outside tolerance; from zero replicas, ceil(ratio)
            // with no tolerance, so a scaled-to-zero target can come back up.
            let ratio = value / target;
            let demand = if current == 0 {
                ratio
            } else {
                ratio * f64::from(ready)
            };
            let replicas = if current == 0 {
                ceil_u32(ratio)
            } else if within(ratio) {
                current
            } else {
                ceil_u32(demand)
            };
            Ok(MetricProposal {
                replicas,
                ratio,
                demand,
            })
        }
        TargetType::AverageValue | TargetType::Utilization => {
            let reporting = reading.pods_reporting;
            if reporting == 0 {
                return Err(MetricProblem::NoPodsReporting);
            }
            let ratio = value / target;
            let demand = value * f64::from(reporting) / target;
            let unready = if metric.kind == MetricKind::Cpu {
                current.saturating_sub(ready.max(reporting))
            } else {
                0
            };
            let missing = current.saturating_sub(reporting + unready);
            let scale_up_with_unready = unready > 0 && ratio > 1.0;
            if !scale_up_with_unready && missing == 0 {
                let replicas = if within(ratio) {
                    current
                } else {
                    ceil_u32(ratio * f64::from(reporting))
                };
                return Ok(MetricProposal {
                    replicas,
                    ratio,
                    demand,
                });
            }
            let mut sum = value * f64::from(reporting);
            let mut count = reporting;
            if missing > 0 && ratio != 1.0 {
                // Scale-down: missing pods at the target (for a Utilization target, at
                // max(100%, target) of their request: a pod that stopped reporting may be
                // busy); scale-up: at 0%. At exactly 1 the HPA leaves them out.
                if ratio < 1.0 {
                    let fill = match metric.target_type {
                        TargetType::Utilization => target.max(100.0),
                        _ => target,
                    };
                    sum += fill * f64::from(missing);
                }
                count += missing;
            }
            if scale_up_with_unready {
                count += unready;
            }
            let new_ratio = sum / f64::from(count) / target;
            let flipped = (ratio > 1.0 && new_ratio < 1.0) || (ratio < 1.0 && new_ratio > 1.0);
            if within(new_ratio) || flipped {
                return Ok(MetricProposal {
                    replicas: current,
                    ratio,
                    demand,
                });
            }
            let new = ceil_u32(new_ratio * f64::from(count));
            let replicas =
                if (new_ratio < 1.0 && new > current) || (new_ratio > 1.0 && new < current) {
                    current
                } else {
                    new
                };
            Ok(MetricProposal {
                replicas,
                ratio,
                demand,
            })
        }
    }
}

/// Replicas changed within each policy's period, supplied by the caller's event history.
pub trait PeriodChanges {
    /// (added, removed) in the `period` seconds before now.
    fn changes(&self, period: f64) -> (u32, u32);
}

/// The HPA's `calculateScaleUpLimitWithScalingRules`.
pub fn scale_up_limit(current: u32, rules: &ScalingRules, history: &impl PeriodChanges) -> u32 {
    let mut result: Option<i64> = None;
    let pick = |a: i64, b: i64| match rules.select {
        Select::Min => a.min(b),
        _ => a.max(b),
    };
    if rules.select == Select::Disabled {
        return current;
    }
    for p in &rules.policies {
        let (added, removed) = history.changes(p.period);
        let start = i64::from(current) - i64::from(added) + i64::from(removed);
        let proposed = match p.kind {
            RateKind::Pods => start + i64::from(p.value),
            // Rounded up so a small deployment can always grow.
            RateKind::Percent => (start as f64 * (1.0 + f64::from(p.value) / 100.0)).ceil() as i64,
        };
        result = Some(result.map_or(proposed, |r| pick(r, proposed)));
    }
    // No policies: the HPA's fold starts at MinInt32/MaxInt32; treat as "no limit".
    clamp_i64(result.unwrap_or(i64::from(u32::MAX)))
}

/// The HPA's `calculateScaleDownLimitWithBehaviors`.
pub fn scale_down_limit(current: u32, rules: &ScalingRules, history: &impl PeriodChanges) -> u32 {
    let mut result: Option<i64> = None;
    // For a scale-down, the policy allowing the biggest change gives the smallest count.
    let pick = |a: i64, b: i64| match rules.select {
        Select::Min => a.max(b),
        _ => a.min(b),
    };
    if rules.select == Select::Disabled {
        return current;
    }
    for p in &rules.policies {
        let (added, removed) = history.changes(p.period);
        let start = i64::from(current) - i64::from(added) + i64::from(removed);
        let proposed = match p.kind {
            RateKind::Pods => start - i64::from(p.value),
            // Truncated, as the HPA's int32 conversion does.
            RateKind::Percent => (start as f64 * (1.0 - f64::from(p.value) / 100.0)) as i64,
        };
        result = Some(result.map_or(proposed, |r| pick(r, proposed)));
    }
    clamp_i64(result.unwrap_or(0))
}

fn clamp_i64(x: i64) -> u32 {
    x.clamp(0, i64::from(u32::MAX)) as u32
}
