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
    /// This direction's tolerance (HPA `behavior.scaleUp/scaleDown.tolerance`); `None` uses
    /// the policy's.
    pub tolerance: Option<f64>,
    pub stabilization_window: Seconds,
    pub select: Select,
    pub policies: Vec<RatePolicy>,
}

impl ScalingRules {
    /// The HPA's scale-up default: no stabilization, the larger of +100% and +4 pods per 15 s.
    pub fn hpa_scale_up() -> Self {
        Self {
            tolerance: None,
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
            tolerance: None,
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
    /// Onset sizing: on entering a burst, the demand is extrapolated along its slope over
    /// the last `slope_window` seconds, `horizon` seconds ahead (a pod start-up plus a poll:
    /// when the replicas asked for now serve and can next be corrected). 0 turns it off.
    pub slope_window: Seconds,
    pub horizon: Seconds,
    /// Evidence: with a predictive block, a burst starts only where the short-window demand
    /// stands this many noise spreads above the level, so the noise of a small, bursty
    /// service is not taken for a sale (0 = off).
    pub min_surprise: f64,
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
    /// Calibration: the share of forecasts whose realized peak over the lead may exceed the
    /// forecast quantile. When > 0, `sigmas` is only the starting point: the quantile is
    /// moved online from the policy's own realized errors until that share holds, so the
    /// headroom is what the traffic has shown it needs (0 = `sigmas` as given).
    pub exceedance: f64,
    /// Evidence: the forecast raises the answer only while its realized error over the lead
    /// is at most `1 − skill_margin` times that of persistence (the latest sample held);
    /// otherwise the engine decides as its reactive core plus burst. Negative turns the
    /// check off.
    pub skill_margin: f64,
    /// Learn a minute-of-hour profile (periodic jobs, bots at fixed minutes) next to the
    /// recorded seasons; it joins the forecast only while it lowers the realized error.
    pub hourly: bool,
    /// The forecast floor is held at the highest it asked for over this window, so noise in
    /// the forecast does not turn into a scale event every poll.
    pub floor_hold: Seconds,
    /// Less churn: a scale-down stops where the load's noise (this many spreads above the
    /// forecast mean) would not ask for a scale-up again past the tolerance; a step down
    /// that noise would undo is not taken (0 = off).
    pub churn_sigmas: f64,
    /// Less churn: a scale-down smaller than this share of the current replicas is not
    /// taken (the HPA's tolerance, applied to the final answer rather than to one metric).
    pub down_step: f64,
    /// Less churn: a scale-up goes at least this share above the current replicas, so a
    /// slowly rising floor is followed in a few steps rather than one replica per poll.
    pub up_step: f64,
    /// Less churn: at most one scale-down per this many seconds, so a decline (a sale
    /// ending) is followed in a few larger steps instead of one per poll.
    pub down_every: Seconds,
    /// A shorter scale-down stabilization window, used wherever the forecast floor covers
    /// what it asks for: the floor then holds replicas through noisy dips, which is what the
    /// window is for. `None` keeps `behavior.scaleDown.stabilizationWindowSeconds` always.
    pub down_window: Option<Seconds>,
    /// `down_window` applies only where the load's noise spread is at least this share of
    /// its mean: there the long window mostly holds past spikes' replicas, which the
    /// calibrated floor already plans for; on smooth traffic the long window is what keeps
    /// a dip from becoming a scale-down undone a minute later.
    pub down_window_cv: f64,
    /// Never worse than the HPA on cost: the engine keeps a shadow of the HPA's reactive
    /// core (same metrics, bounds and behavior, no extras) and the replica-seconds both ran
    /// over `budget_window`; while the engine's exceed the shadow's by more than this share,
    /// the extras that spend (the forecast floor, burst, the churn holds) stand down and the
    /// engine decides as that core (0 = no budget).
    pub budget: f64,
    /// Time constant of the replica-seconds the budget compares.
    pub budget_window: Seconds,
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
    /// No `behavior` in the spec: the HPA's legacy normalization (scale-up at most
    /// max(2 × current, 4) per sync, scale-down held by the stabilization window alone, no
    /// rate policies), not the autoscaling/v2 default behavior.
    pub legacy: bool,
    /// The HPA controller's CPU initialization period and initial readiness delay, used
    /// when a decision is given the pod list (`Observation::pods`).
    pub pod_rules: super::pods::PodRules,
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
    /// A plain HPA: one per-pod requests/s target, every HPA default, no `behavior` (so the
    /// legacy normalization, as the HPA controller does for a spec without one).
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
            legacy: true,
            pod_rules: super::pods::PodRules::default(),
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
            (
                "behavior.scaleUp.tolerance",
                self.scale_up.tolerance.unwrap_or(0.0),
            ),
            (
                "behavior.scaleDown.tolerance",
                self.scale_down.tolerance.unwrap_or(0.0),
            ),
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
            if !(b.slope_window.is_finite()
                && b.slope_window >= 0.0
                && b.horizon.is_finite()
                && b.horizon >= 0.0)
            {
                return Err(PolicyError::Negative {
                    field: "burst slope window and horizon",
                    value: b.slope_window.min(b.horizon),
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
            if !(p.exceedance.is_finite() && (0.0..0.5).contains(&p.exceedance)) {
                return Err(PolicyError::BadPredictive("exceedance must be in [0, 0.5)"));
            }
            if !(p.skill_margin.is_finite() && p.skill_margin < 1.0) {
                return Err(PolicyError::BadPredictive("skill margin must be below 1"));
            }
            if p.down_window.is_some_and(|w| !(w.is_finite() && w >= 0.0)) {
                return Err(PolicyError::BadPredictive("down window must be ≥ 0"));
            }
            if !(p.down_every.is_finite() && p.down_every >= 0.0) {
                return Err(PolicyError::BadPredictive("down interval must be ≥ 0"));
            }
            if !(p.up_step.is_finite() && (0.0..1.0).contains(&p.up_step)) {
                return Err(PolicyError::BadPredictive("up step must be in [0, 1)"));
            }
            if !(p.down_step.is_finite() && (0.0..1.0).contains(&p.down_step)) {
                return Err(PolicyError::BadPredictive("down step must be in [0, 1)"));
            }
            if !(p.churn_sigmas.is_finite() && p.churn_sigmas >= 0.0) {
                return Err(PolicyError::BadPredictive("churn sigmas must be ≥ 0"));
            }
            if !(p.floor_hold.is_finite() && p.floor_hold >= 0.0) {
                return Err(PolicyError::BadPredictive("floor hold must be ≥ 0"));
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
