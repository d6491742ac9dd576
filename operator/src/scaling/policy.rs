//! The engine's own, fully resolved policy: every default filled in, every value checked.
//!
//! The engine never reads the CRD types: `Policy::from_spec` (in `spec.rs`) resolves a
//! `ScalingSpec` into this shape once, so `decide` has no `Option`s to unwrap on the hot path.

use std::fmt;

use chrono_tz::Tz;
use croner::Cron;

/// Seconds, the engine's only unit of time.
pub type Seconds = f64;

/// What a metric measures. The kind only changes how a decision is explained; the
/// arithmetic depends on the target type, as in the HPA.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MetricKind {
    RequestsPerSecond,
    InFlight,
    LatencyP99,
    Cpu,
    Custom,
}

impl fmt::Display for MetricKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::RequestsPerSecond => "requests/s",
            Self::InFlight => "in-flight",
            Self::LatencyP99 => "p99 latency",
            Self::Cpu => "cpu",
            Self::Custom => "custom",
        })
    }
}

/// How the target is compared, with the HPA's meaning.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TargetType {
    /// One value for the whole service (an HPA Object/External `Value` target):
    /// desired = ceil(ready pods × value / target).
    Value,
    /// A per-pod average (HPA `AverageValue`): desired = ceil(pods × average / target).
    AverageValue,
    /// A per-pod percentage of the request (HPA `Utilization`), same arithmetic as AverageValue.
    Utilization,
}

#[derive(Clone, Debug, PartialEq)]
pub struct MetricPolicy {
    pub kind: MetricKind,
    pub target_type: TargetType,
    /// Always > 0 (checked by `Policy::validate`).
    pub target: f64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RateKind {
    Pods,
    Percent,
}

/// One HPA scaling policy: at most `value` pods (or percent) of change per `period`.
#[derive(Clone, Debug, PartialEq)]
pub struct RatePolicy {
    pub kind: RateKind,
    pub value: u32,
    pub period: Seconds,
}

/// HPA `selectPolicy`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Select {
    Max,
    Min,
    Disabled,
}

/// HPA `HPAScalingRules`, resolved.
#[derive(Clone, Debug, PartialEq)]
pub struct ScalingRules {
    pub stabilization_window: Seconds,
    pub select: Select,
    pub policies: Vec<RatePolicy>,
}

impl ScalingRules {
    /// The HPA's scale-up default: no stabilization, the larger of +100% and +4 pods per 15 s.
    pub fn hpa_scale_up() -> Self {
        Self {
            stabilization_window: 0.0,
            select: Select::Max,
            policies: vec![
                RatePolicy {
                    kind: RateKind::Percent,
                    value: 100,
                    period: 15.0,
                },
                RatePolicy {
                    kind: RateKind::Pods,
                    value: 4,
                    period: 15.0,
                },
            ],
        }
    }

    /// The HPA's scale-down default: a 300 s stabilization window, -100% per 15 s.
    pub fn hpa_scale_down() -> Self {
        Self {
            stabilization_window: 300.0,
            select: Select::Max,
            policies: vec![RatePolicy {
                kind: RateKind::Percent,
                value: 100,
                period: 15.0,
            }],
        }
    }

    /// The longest policy period: how long scale events must be remembered.
    pub fn longest_period(&self) -> Seconds {
        self.policies.iter().map(|p| p.period).fold(0.0, f64::max)
    }
}

/// Burst ("panic") mode, after Knative's KPA.
#[derive(Clone, Debug, PartialEq)]
pub struct Burst {
    /// The short window whose average demand is compared with ready replicas.
    pub window: Seconds,
    /// Enter burst when short-window demand ≥ threshold × ready replicas (2.0 = 200%).
    pub threshold: f64,
    /// Stay in burst this long after the last tick that met the threshold; no scale-down
    /// meanwhile (Knative leaves panic after one stable window).
    pub hold: Seconds,
}

/// A scheduled floor: from each cron occurrence, for `duration`, at least `min_replicas`.
#[derive(Clone, Debug)]
pub struct Schedule {
    pub name: String,
    pub cron: Cron,
    pub time_zone: Tz,
    pub duration: Seconds,
    pub min_replicas: u32,
}

impl PartialEq for Schedule {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name
            && self.cron.as_str() == other.cron.as_str()
            && self.time_zone == other.time_zone
            && self.duration == other.duration
            && self.min_replicas == other.min_replicas
    }
}

/// Predictive pre-scaling from recorded seasonality.
#[derive(Clone, Debug, PartialEq)]
pub struct Predictive {
    /// Season lengths to learn, e.g. a day and a week. History keeps `seasons_kept` of the
    /// longest one.
    pub seasons: Vec<Seconds>,
    /// How many past occurrences of each season are averaged into a forecast.
    pub seasons_kept: u32,
    /// Resolution of the recorded history.
    pub slot: Seconds,
    /// How far ahead to look: the pod start-up time plus the poll period, so a replica
    /// started now is ready when the forecast load arrives.
    pub lead: Seconds,
    /// Forecasts are ignored until this much history has been recorded.
    pub warmup: Seconds,
    /// The forecast quantile, in standard deviations of the load's noise above its mean
    /// (0 forecasts the mean).
    pub sigmas: f64,
    /// Time constant of the level (the weighted mean of recent demand).
    pub level_window: Seconds,
    /// Time constant over which the load's noise is learnt.
    pub noise_window: Seconds,
    /// Where a replica saturates, as a multiple of the per-replica target (1 / target
    /// utilization: 1.43 for a target at 70%). The forecast's upper quantile must stay
    /// below saturation; its mean must stay at target.
    pub saturation: f64,
    /// How the noise's spread grows with the level: spread ∝ level^`noise_exponent`. 0.5 is
    /// Poisson-like; 0 (one spread at every level) planned the NASA traces' spikes a little
    /// better (bench/RESULTS.md).
    pub noise_exponent: f64,
    /// The share of the latest sample's deviation from the level expected to last over the
    /// lead (0 = none, below 1). Bursts cluster (minute-to-minute correlation ≈ 0.25 on the
    /// NASA traces), so a high sample raises the forecast mean and leaves less unexplained
    /// noise: the spread shrinks by sqrt(1 − persistence²).
    pub persistence: f64,
}

/// Fallback when metrics fail.
#[derive(Clone, Debug, PartialEq)]
pub struct Fallback {
    /// Consecutive ticks without a usable metric before the fallback applies.
    pub after_failures: u32,
    /// Replicas to run meanwhile (never fewer than are running: no scale-down on missing data).
    pub replicas: u32,
}

/// The resolved scaling policy.
#[derive(Clone, Debug, PartialEq)]
pub struct Policy {
    pub min_replicas: u32,
    pub max_replicas: u32,
    pub metrics: Vec<MetricPolicy>,
    /// The HPA's tolerance: no change while |ratio - 1| ≤ tolerance.
    pub tolerance: f64,
    pub scale_up: ScalingRules,
    pub scale_down: ScalingRules,
    /// Average demand over this window before the HPA arithmetic (0 = the latest sample,
    /// as the HPA does; Knative's stable window is 60 s).
    pub metric_window: Seconds,
    pub burst: Option<Burst>,
    pub schedules: Vec<Schedule>,
    /// How long before a scheduled floor starts the replicas for it are asked for: a pod
    /// start-up plus a poll, so they are ready at the cron time.
    pub schedule_lead: Seconds,
    pub predictive: Option<Predictive>,
    pub fallback: Option<Fallback>,
    /// How often the controller (or simulator) asks the engine for a decision.
    pub poll_interval: Seconds,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum PolicyError {
    #[error("minReplicas ({min}) must not exceed maxReplicas ({max})")]
    MinAboveMax { min: u32, max: u32 },
    #[error("maxReplicas must be at least 1")]
    ZeroMax,
    #[error("at least one metric is required")]
    NoMetrics,
    #[error("metric {index}: target must be a positive number, got {target}")]
    BadTarget { index: usize, target: f64 },
    #[error("{field} must be a finite number ≥ 0, got {value}")]
    Negative { field: &'static str, value: f64 },
    #[error("{field}: periodSeconds must be positive")]
    BadPeriod { field: &'static str },
    #[error("schedule {name}: invalid cron expression {cron:?}: {message}")]
    BadCron {
        name: String,
        cron: String,
        message: String,
    },
    #[error("schedule {name}: unknown time zone {zone:?}")]
    BadTimeZone { name: String, zone: String },
    #[error("burst.threshold must be > 1, got {0}")]
    BadBurstThreshold(f64),
    #[error("predictive: {0}")]
    BadPredictive(&'static str),
}

impl Policy {
    /// A plain HPA: one per-pod requests/s target, every HPA default.
    pub fn hpa(min_replicas: u32, max_replicas: u32, target_rps: f64) -> Self {
        Self {
            min_replicas,
            max_replicas,
            metrics: vec![MetricPolicy {
                kind: MetricKind::RequestsPerSecond,
                target_type: TargetType::AverageValue,
                target: target_rps,
            }],
            tolerance: 0.1,
            scale_up: ScalingRules::hpa_scale_up(),
            scale_down: ScalingRules::hpa_scale_down(),
            metric_window: 0.0,
            burst: None,
            schedules: Vec::new(),
            schedule_lead: 45.0,
            predictive: None,
            fallback: None,
            poll_interval: 15.0,
        }
    }

    /// Checks what the types cannot say; the engine relies on it (no division by zero).
    pub fn validate(&self) -> Result<(), PolicyError> {
        if self.max_replicas == 0 {
            return Err(PolicyError::ZeroMax);
        }
        if self.min_replicas > self.max_replicas {
            return Err(PolicyError::MinAboveMax {
                min: self.min_replicas,
                max: self.max_replicas,
            });
        }
        if self.metrics.is_empty() {
            return Err(PolicyError::NoMetrics);
        }
        for (index, m) in self.metrics.iter().enumerate() {
            if !(m.target.is_finite() && m.target > 0.0) {
                return Err(PolicyError::BadTarget {
                    index,
                    target: m.target,
                });
            }
        }
        let non_negative = [
            ("tolerance", self.tolerance),
            ("metricWindowSeconds", self.metric_window),
            ("schedule lead", self.schedule_lead),
            (
                "behavior.scaleUp.stabilizationWindowSeconds",
                self.scale_up.stabilization_window,
            ),
            (
                "behavior.scaleDown.stabilizationWindowSeconds",
                self.scale_down.stabilization_window,
            ),
        ];
        for (field, value) in non_negative {
            if !(value.is_finite() && value >= 0.0) {
                return Err(PolicyError::Negative { field, value });
            }
        }
        if !(self.poll_interval.is_finite() && self.poll_interval > 0.0) {
            return Err(PolicyError::BadPeriod {
                field: "pollIntervalSeconds",
            });
        }
        for (field, rules) in [
            ("behavior.scaleUp", &self.scale_up),
            ("behavior.scaleDown", &self.scale_down),
        ] {
            if rules
                .policies
                .iter()
                .any(|p| !(p.period.is_finite() && p.period > 0.0))
            {
                return Err(PolicyError::BadPeriod { field });
            }
        }
        if let Some(b) = &self.burst {
            if !(b.threshold.is_finite() && b.threshold > 1.0) {
                return Err(PolicyError::BadBurstThreshold(b.threshold));
            }
            if !(b.window.is_finite() && b.window > 0.0) {
                return Err(PolicyError::BadPeriod {
                    field: "burst.windowSeconds",
                });
            }
        }
        if let Some(p) = &self.predictive {
            if !(p.slot.is_finite() && p.slot > 0.0) {
                return Err(PolicyError::BadPredictive("slot must be positive"));
            }
            if p.seasons.is_empty() || p.seasons.iter().any(|s| !(s.is_finite() && *s >= p.slot)) {
                return Err(PolicyError::BadPredictive(
                    "every season must be at least one slot long",
                ));
            }
            if p.seasons_kept == 0 {
                return Err(PolicyError::BadPredictive("seasonsKept must be at least 1"));
            }
            if !(p.lead.is_finite() && p.lead >= 0.0 && p.sigmas.is_finite() && p.sigmas >= 0.0) {
                return Err(PolicyError::BadPredictive("lead and sigmas must be ≥ 0"));
            }
            if !(p.noise_exponent.is_finite() && (0.0..=1.0).contains(&p.noise_exponent)) {
                return Err(PolicyError::BadPredictive(
                    "noise exponent must be in [0, 1]",
                ));
            }
            if !(p.persistence.is_finite() && (0.0..1.0).contains(&p.persistence)) {
                return Err(PolicyError::BadPredictive("persistence must be in [0, 1)"));
            }
            if !(p.saturation.is_finite() && p.saturation >= 1.0) {
                return Err(PolicyError::BadPredictive("saturation must be at least 1"));
            }
            if !(p.level_window > 0.0 && p.noise_window > 0.0) {
                return Err(PolicyError::BadPredictive(
                    "level and noise windows must be positive",
                ));
            }
        }
        Ok(())
    }
}
