//! Decisions and their explanations.
//!
//! An explanation is a small `Copy` value with the numbers used; the sentence is written
//! only when someone displays it, so a decision allocates nothing (the simulator makes
//! millions of them).

use std::fmt;

use super::hpa::MetricProblem;
use super::policy::MetricKind;
use super::predictive::Forecast;

/// What kind of decision this was, most specific first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
pub enum Mode {
    /// Nothing to change.
    Stable,
    /// The reactive (HPA) path asked for more replicas.
    ScaleUp,
    /// The reactive (HPA) path asked for fewer replicas.
    ScaleDown,
    /// Load jumped past the burst threshold: scaled at once, no scale-down while it lasts.
    Burst,
    /// A scheduled floor raised the answer.
    Scheduled,
    /// The seasonal forecast raised the answer.
    Predictive,
    /// Metrics have failed long enough that the fallback replicas apply.
    Fallback,
    /// A rate policy or the min/max bounds cut the answer.
    Limited,
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// The metric that set the reactive answer.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MetricUse {
    pub kind: MetricKind,
    /// The HPA's current value: a utilization in percent, else the per-pod average or the
    /// service-wide value.
    pub value: f64,
    /// For a utilization decided from the pod list, the raw per-pod average (the HPA's
    /// `currentAverageValue`), in the resource's unit.
    pub raw_average: Option<f64>,
    pub target: f64,
    pub ratio: f64,
    pub replicas: u32,
}

/// Which bound cut the answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Limit {
    ScaleUpRate,
    ScaleDownRate,
    MaxReplicas,
    MinReplicas,
}

/// Why there is no metric-based answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hold {
    /// No metric could be read.
    AllMetricsMissing,
    /// Some metrics could not be read and the others ask for fewer replicas.
    SomeMetricsMissing,
    /// The target runs 0 replicas while minReplicas > 0: the HPA leaves it alone.
    ScaledToZero,
}

/// The numbers behind a decision.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Explanation {
    pub current: u32,
    pub ready: u32,
    pub metric: Option<MetricUse>,
    /// The reactive recommendation after stabilization.
    pub stabilized: Option<u32>,
    pub hold: Option<Hold>,
    /// The first metric that gave no proposal: its policy index, kind and why.
    pub problem: Option<(usize, MetricKind, MetricProblem)>,
    pub failures: u32,
    /// (short-window demand, ready replicas, threshold) while burst mode is on.
    pub burst: Option<(f64, u32, f64)>,
    pub forecast: Option<(Forecast, u32)>,
    /// (schedule index, floor) of the active floor that raised the answer.
    pub floor: Option<(usize, u32)>,
    /// (bound, the answer before it).
    pub limit: Option<(Limit, u32)>,
}

impl Explanation {
    pub fn new(current: u32, ready: u32) -> Self {
        Self {
            current,
            ready,
            metric: None,
            stabilized: None,
            hold: None,
            problem: None,
            failures: 0,
            burst: None,
            forecast: None,
            floor: None,
            limit: None,
        }
    }
}

/// One tick's output.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Decision {
    pub desired: u32,
    pub mode: Mode,
    pub explanation: Explanation,
}

/// One of the HPA's status conditions, as its controller would set it on this tick.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HpaCondition {
    /// `AbleToScale`, `ScalingActive` or `ScalingLimited`.
    pub type_: &'static str,
    pub status: bool,
    pub reason: &'static str,
    pub message: String,
}

impl HpaCondition {
    fn new(type_: &'static str, status: bool, reason: &'static str, message: String) -> Self {
        Self {
            type_,
            status,
            reason,
            message,
        }
    }
}

impl Decision {
    /// The human-readable reason (allocates; call it when the reason is shown).
    pub fn reason(&self) -> String {
        self.to_string()
    }

    /// The conditions the HPA controller sets on a sync that decided this, with its reasons
    /// and messages (`horizontal.go`), for a harness comparing the engine with the HPA. Only
    /// the conditions that sync would touch: the HPA leaves the others as they were (a
    /// target clamped to its bounds before any metric is read touches none but
    /// `AbleToScale`). `AbleToScale` assumes the caller applies a changed count.
    pub fn hpa_conditions(&self) -> Vec<HpaCondition> {
        const ABLE: &str = "AbleToScale";
        const ACTIVE: &str = "ScalingActive";
        const LIMITED: &str = "ScalingLimited";
        let e = &self.explanation;
        let mut out = Vec::with_capacity(3);
        if e.hold == Some(Hold::ScaledToZero) {
            out.push(HpaCondition::new(
                ACTIVE,
                false,
                "ScalingDisabled",
                "scaling is disabled since the replica count of the target is zero".into(),
            ));
            return out;
        }
        let failed = matches!(
            e.hold,
            Some(Hold::AllMetricsMissing | Hold::SomeMetricsMissing)
        );
        if failed {
            let (reason, message) = match e.problem {
                Some((index, kind, problem)) => {
                    let reason = match kind {
                        MetricKind::Cpu => "FailedGetResourceMetric",
                        _ => "FailedGetPodsMetric",
                    };
                    (
                        reason,
                        format!(
                            "the HPA was unable to compute the replica count: metric {index} \
                             ({kind}): {problem:?}"
                        ),
                    )
                }
                None => (
                    "FailedGetPodsMetric",
                    "the HPA was unable to compute the replica count: no metric".into(),
                ),
            };
            out.push(HpaCondition::new(ACTIVE, false, reason, message));
        } else if let Some(m) = e.metric {
            let source = match m.kind {
                MetricKind::Cpu => "cpu resource utilization (percentage of request)".into(),
                kind => format!("pods metric {kind}"),
            };
            out.push(HpaCondition::new(
                ACTIVE,
                true,
                "ValidMetricFound",
                format!("the HPA was able to successfully calculate a replica count from {source}"),
            ));
        }
        if self.desired != e.current {
            out.push(HpaCondition::new(
                ABLE,
                true,
                "SucceededRescale",
                format!(
                    "the HPA controller was able to update the target scale to {}",
                    self.desired
                ),
            ));
        } else if !failed && let (Some(m), Some(held)) = (e.metric, e.stabilized) {
            let (reason, message) = match held.cmp(&m.replicas) {
                std::cmp::Ordering::Greater => (
                    "ScaleDownStabilized",
                    "recent recommendations were higher than current one, applying the highest recent recommendation",
                ),
                std::cmp::Ordering::Less => (
                    "ScaleUpStabilized",
                    "recent recommendations were lower than current one, applying the lowest recent recommendation",
                ),
                std::cmp::Ordering::Equal => {
                    ("ReadyForNewScale", "recommended size matches current size")
                }
            };
            out.push(HpaCondition::new(ABLE, true, reason, message.into()));
        }
        if failed || e.metric.is_none() {
            return out;
        }
        let (status, reason, message) = match e.limit.map(|(l, _)| l) {
            None => (
                false,
                "DesiredWithinRange",
                "the desired count is within the acceptable range",
            ),
            Some(Limit::ScaleUpRate) => (
                true,
                "ScaleUpLimit",
                "the desired replica count is increasing faster than the maximum scale rate",
            ),
            Some(Limit::ScaleDownRate) => (
                true,
                "ScaleDownLimit",
                "the desired replica count is decreasing faster than the maximum scale rate",
            ),
            Some(Limit::MaxReplicas) => (
                true,
                "TooManyReplicas",
                "the desired replica count is more than the maximum replica count",
            ),
            Some(Limit::MinReplicas) => (
                true,
                "TooFewReplicas",
                "the desired replica count is less than the minimum replica count",
            ),
        };
        out.push(HpaCondition::new(LIMITED, status, reason, message.into()));
        out
    }
}

impl fmt::Display for Decision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let e = &self.explanation;
        write!(
            f,
            "{} → {} replicas ({}): ",
            e.current, self.desired, self.mode
        )?;
        match e.hold {
            Some(Hold::AllMetricsMissing) => {
                write!(f, "no metric available for {} tick(s); ", e.failures)?
            }
            Some(Hold::SomeMetricsMissing) => write!(f, "a metric is missing, so no scale-down; ")?,
            Some(Hold::ScaledToZero) => write!(f, "target is at 0 replicas, autoscaling is off; ")?,
            None => {}
        }
        if let Some(m) = e.metric {
            write!(
                f,
                "{} {:.3} vs target {:.3} (ratio {:.2}) asks for {}; ",
                m.kind, m.value, m.target, m.ratio, m.replicas
            )?;
        }
        if let Some(s) = e.stabilized {
            write!(f, "stabilized {s}; ")?;
        }
        if let Some((demand, ready, threshold)) = e.burst {
            write!(
                f,
                "burst: short-window demand {demand:.1} ≥ {threshold:.2} × {ready} ready; "
            )?;
        }
        if let Some((fc, want)) = e.forecast {
            write!(
                f,
                "forecast {:.1} (mean {:.1} from level {:.1} × seasonal {:.2} and the latest \
                 sample, noise {:.1}) asks for {want}; ",
                fc.demand, fc.mean, fc.level, fc.seasonal, fc.spread
            )?;
        }
        if let Some((index, floor)) = e.floor {
            write!(f, "schedule #{index} holds a floor of {floor}; ")?;
        }
        if let Some((limit, before)) = e.limit {
            let what = match limit {
                Limit::ScaleUpRate => "scale-up rate policy",
                Limit::ScaleDownRate => "scale-down rate policy",
                Limit::MaxReplicas => "maxReplicas",
                Limit::MinReplicas => "minReplicas",
            };
            write!(f, "{what} turned {before} into {}; ", self.desired)?;
        }
        write!(f, "{} ready", e.ready)
    }
}
