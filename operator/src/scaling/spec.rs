//! `Policy::from_spec`: the CRD's `ScalingSpec` resolved into the engine's `Policy`, every
//! absent field given its documented default. Nothing after this reads the raw spec.

use std::str::FromStr;

use marketplace_crds::ValidationErrors;
use marketplace_crds::v1alpha1 as api;

use super::policy::{
    Burst, Fallback, MetricKind, MetricPolicy, Policy, PolicyError, Predictive, RateKind,
    RatePolicy, ScalingRules, Schedule, Select, TargetType,
};

/// A `ScalingSpec` that cannot become a policy, naming the field.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum SpecError {
    #[error(transparent)]
    Invalid(#[from] ValidationErrors),
    #[error("invalid scaling spec: {0}")]
    Policy(#[from] PolicyError),
}

/// Defaults of the optional blocks, as the CRD documents them.
pub mod defaults {
    pub const TOLERANCE: f64 = 0.1;
    pub const POLL_INTERVAL_SECONDS: f64 = 15.0;
    pub const BURST_WINDOW_SECONDS: f64 = 6.0;
    pub const BURST_THRESHOLD_PERCENT: f64 = 200.0;
    pub const BURST_HOLD_SECONDS: f64 = 60.0;
    pub const PREDICTIVE_SEASON_SECONDS: f64 = 86_400.0;
    pub const PREDICTIVE_SEASONS: u32 = 3;
    pub const PREDICTIVE_STARTUP_SECONDS: f64 = 30.0;
    /// Resolution of recorded seasonality (not in the CRD: one-minute slots).
    pub const PREDICTIVE_SLOT_SECONDS: f64 = 60.0;
    /// Time constant of the forecast's level (not in the CRD).
    pub const PREDICTIVE_LEVEL_SECONDS: f64 = 600.0;
    /// Time constant over which the load's noise is learnt (not in the CRD).
    pub const PREDICTIVE_NOISE_SECONDS: f64 = 3600.0;
    /// The forecast quantile's starting point, in noise standard deviations (not in the CRD);
    /// calibration (`PREDICTIVE_EXCEEDANCE`) moves it to what the traffic shows.
    pub const PREDICTIVE_SIGMAS: f64 = 2.75;
    /// How the noise's spread grows with the level (not in the CRD): 0, one spread at every
    /// level, was about 0.5% cheaper than Poisson-like 0.5 at the same under-capacity.
    pub const PREDICTIVE_NOISE_EXPONENT: f64 = 0.0;
    /// Share of the latest deviation from the level that persists over the lead (not in the
    /// CRD): 0.3–0.5 were best on both NASA traces (about 1% fewer replica-seconds at the
    /// same under-capacity), 0.6 no better than none. The price is churn: the floor now
    /// follows each sample, about twice the scale events of 0 on the NASA traces.
    pub const PREDICTIVE_PERSISTENCE: f64 = 0.4;
    /// Share of forecasts whose realized peak may exceed the calibrated quantile (not in the
    /// CRD); chosen by the worst trace in bench/RESULTS.md.
    pub const PREDICTIVE_EXCEEDANCE: f64 = 0.04;
    /// How much better than persistence the forecast must have been to raise the answer
    /// (not in the CRD).
    pub const PREDICTIVE_SKILL_MARGIN: f64 = 0.0;
    /// Learn a minute-of-hour profile (not in the CRD).
    pub const PREDICTIVE_HOURLY: bool = true;
    /// The forecast floor's hold (not in the CRD): the HPA's scale-down window, so the floor
    /// changes no more often than the HPA's own answer.
    pub const PREDICTIVE_FLOOR_HOLD_SECONDS: f64 = 300.0;
    /// Scale-downs stop where noise this many spreads above the mean would not undo them
    /// (not in the CRD). Off: at 1–2 spreads it cost 2–7% more replica-seconds than the
    /// events it saved were worth (bench/RESULTS.md).
    pub const PREDICTIVE_CHURN_SIGMAS: f64 = 0.0;
    /// The scale-down window where the forecast floor covers it (not in the CRD).
    pub const PREDICTIVE_DOWN_WINDOW_SECONDS: Option<f64> = Some(30.0);
    /// The smallest scale-down taken, as a share of the replicas (not in the CRD).
    pub const PREDICTIVE_DOWN_STEP: f64 = 0.1;
    /// The noise (spread over mean) above which that shorter window applies (not in the CRD).
    pub const PREDICTIVE_DOWN_WINDOW_CV: f64 = 0.15;
    /// The smallest scale-up taken, as a share of the replicas (not in the CRD). Off: the
    /// extra events were not up-steps (bench/RESULTS.md).
    pub const PREDICTIVE_UP_STEP: f64 = 0.0;
    /// At most one scale-down per this many seconds (not in the CRD). Off: no effect once
    /// the shorter window needs noisy traffic.
    pub const PREDICTIVE_DOWN_EVERY_SECONDS: f64 = 0.0;
    /// A burst needs the short-window demand this many spreads above the level when a
    /// predictive block learns the noise (not in the CRD).
    pub const BURST_MIN_SURPRISE: f64 = 4.0;
    /// The extras may spend at most this share of replica-seconds over the HPA's core.
    pub const PREDICTIVE_BUDGET: f64 = 0.02;
    /// ... measured over about a day, so one sale's spend does not close the budget.
    pub const PREDICTIVE_BUDGET_WINDOW_SECONDS: f64 = 86_400.0;
    /// Saturation over target: the target is 70% of what a replica can serve (not in the CRD).
    pub const PREDICTIVE_SATURATION: f64 = 1.0 / 0.7;
    pub const FALLBACK_FAILURE_THRESHOLD: u32 = 3;
    /// Metrics are scraped this often; a forecast looks this much further ahead so a pod
    /// started on it is ready in time (not in the CRD).
    pub const SCRAPE_INTERVAL_SECONDS: f64 = 15.0;
}

fn u32_of(v: i32) -> u32 {
    u32::try_from(v).unwrap_or(0)
}

fn metric(m: &api::MetricSpec) -> MetricPolicy {
    let kind = match m.type_ {
        api::MetricType::RequestsPerSecond => MetricKind::RequestsPerSecond,
        api::MetricType::InFlight => MetricKind::InFlight,
        api::MetricType::LatencyP99 => MetricKind::LatencyP99,
        api::MetricType::Cpu => MetricKind::Cpu,
        api::MetricType::Custom => MetricKind::Custom,
    };
    let target_type = match m.effective_target_type() {
        api::TargetType::AverageValue => TargetType::AverageValue,
        api::TargetType::Value => TargetType::Value,
        api::TargetType::Utilization => TargetType::Utilization,
    };
    MetricPolicy {
        kind,
        target_type,
        target: m.target,
    }
}

fn rules(spec: Option<&api::ScalingRules>, hpa_default: ScalingRules) -> ScalingRules {
    let Some(spec) = spec else { return hpa_default };
    ScalingRules {
        tolerance: hpa_default.tolerance,
        stabilization_window: spec
            .stabilization_window_seconds
            .map_or(hpa_default.stabilization_window, f64::from),
        select: match spec.select_policy {
            Some(api::SelectPolicy::Min) => Select::Min,
            Some(api::SelectPolicy::Disabled) => Select::Disabled,
            Some(api::SelectPolicy::Max) | None => Select::Max,
        },
        policies: match &spec.policies {
            Some(ps) => ps
                .iter()
                .map(|p| RatePolicy {
                    kind: match p.type_ {
                        api::ScalingPolicyType::Pods => RateKind::Pods,
                        api::ScalingPolicyType::Percent => RateKind::Percent,
                    },
                    value: u32_of(p.value),
                    period: f64::from(p.period_seconds),
                })
                .collect(),
            None => hpa_default.policies,
        },
    }
}

impl Policy {
    /// Resolves a `spec.scaling` block (validated first, with the CRD's own field names).
    pub fn from_spec(spec: &api::ScalingSpec) -> Result<Self, SpecError> {
        spec.validate()?;
        let poll_interval = spec
            .poll_interval_seconds
            .map_or(defaults::POLL_INTERVAL_SECONDS, f64::from);
        let legacy = spec.behavior.is_none();
        let behavior = spec.behavior.clone().unwrap_or_default();
        let startup = spec
            .predictive
            .as_ref()
            .and_then(|p| p.startup_seconds)
            .map_or(defaults::PREDICTIVE_STARTUP_SECONDS, f64::from);
        let burst = spec.burst.as_ref().map(|b| Burst {
            window: b
                .window_seconds
                .map_or(defaults::BURST_WINDOW_SECONDS, f64::from),
            threshold: b
                .threshold_percent
                .map_or(defaults::BURST_THRESHOLD_PERCENT, f64::from)
                / 100.0,
            hold: b
                .hold_seconds
                .map_or(defaults::BURST_HOLD_SECONDS, f64::from),
            // One start-up of slope, projected to when the replicas asked for now serve.
            slope_window: startup,
            horizon: startup + poll_interval,
            min_surprise: defaults::BURST_MIN_SURPRISE,
        });
        let mut schedules = Vec::new();
        for (i, s) in spec.schedules.iter().flatten().enumerate() {
            let field = |message: String| {
                ValidationErrors(vec![marketplace_crds::FieldError {
                    field: format!("spec.scaling.schedules[{i}]"),
                    message,
                }])
            };
            let cron = croner::Cron::from_str(&s.cron).map_err(|e| field(format!("cron: {e}")))?;
            let zone = s.time_zone.as_deref().unwrap_or("UTC");
            let time_zone = zone
                .parse::<chrono_tz::Tz>()
                .map_err(|_| field(format!("timeZone: unknown IANA time zone {zone:?}")))?;
            schedules.push(Schedule {
                name: s.name.clone(),
                cron,
                time_zone,
                duration: f64::from(s.duration_seconds),
                min_replicas: u32_of(s.min_replicas),
            });
        }
        let predictive = spec.predictive.as_ref().map(|p| {
            let season = p
                .season_seconds
                .map_or(defaults::PREDICTIVE_SEASON_SECONDS, f64::from);
            let startup = p
                .startup_seconds
                .map_or(defaults::PREDICTIVE_STARTUP_SECONDS, f64::from);
            Predictive {
                seasons: vec![season],
                seasons_kept: p.seasons.map_or(defaults::PREDICTIVE_SEASONS, u32_of),
                slot: defaults::PREDICTIVE_SLOT_SECONDS,
                // A decision reaches a pod that is ready `startup` later, and the next chance
                // to correct it is a poll plus a scrape away.
                lead: startup + poll_interval + defaults::SCRAPE_INTERVAL_SECONDS,
                warmup: season,
                sigmas: p.headroom_sigmas.unwrap_or(defaults::PREDICTIVE_SIGMAS),
                level_window: defaults::PREDICTIVE_LEVEL_SECONDS,
                noise_window: defaults::PREDICTIVE_NOISE_SECONDS,
                saturation: defaults::PREDICTIVE_SATURATION,
                noise_exponent: defaults::PREDICTIVE_NOISE_EXPONENT,
                persistence: defaults::PREDICTIVE_PERSISTENCE,
                exceedance: defaults::PREDICTIVE_EXCEEDANCE,
                skill_margin: defaults::PREDICTIVE_SKILL_MARGIN,
                hourly: defaults::PREDICTIVE_HOURLY,
                floor_hold: defaults::PREDICTIVE_FLOOR_HOLD_SECONDS,
                churn_sigmas: defaults::PREDICTIVE_CHURN_SIGMAS,
                down_step: defaults::PREDICTIVE_DOWN_STEP,
                up_step: defaults::PREDICTIVE_UP_STEP,
                down_every: defaults::PREDICTIVE_DOWN_EVERY_SECONDS,
                down_window: defaults::PREDICTIVE_DOWN_WINDOW_SECONDS,
                down_window_cv: defaults::PREDICTIVE_DOWN_WINDOW_CV,
                budget: defaults::PREDICTIVE_BUDGET,
                budget_window: defaults::PREDICTIVE_BUDGET_WINDOW_SECONDS,
            }
        });
        let fallback = spec.fallback.as_ref().map(|f| Fallback {
            after_failures: f
                .failure_threshold
                .map_or(defaults::FALLBACK_FAILURE_THRESHOLD, u32_of),
            replicas: u32_of(f.replicas),
        });
        let policy = Policy {
            min_replicas: u32_of(spec.min_replicas),
            max_replicas: u32_of(spec.max_replicas),
            metrics: spec.metrics.iter().map(metric).collect(),
            tolerance: spec.tolerance.unwrap_or(defaults::TOLERANCE),
            scale_up: rules(behavior.scale_up.as_ref(), ScalingRules::hpa_scale_up()),
            scale_down: rules(behavior.scale_down.as_ref(), ScalingRules::hpa_scale_down()),
            metric_window: 0.0,
            burst,
            schedules,
            schedule_lead: startup + poll_interval,
            predictive,
            fallback,
            poll_interval,
            legacy,
            pod_rules: super::pods::PodRules::default(),
        };
        policy.validate()?;
        Ok(policy)
    }
}
