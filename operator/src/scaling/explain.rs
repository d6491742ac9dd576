//! Decisions and their explanations.
//!
//! An explanation is a small `Copy` value with the numbers used; the sentence is written
//! only when someone displays it, so a decision allocates nothing (the simulator makes
//! millions of them).

use std::fmt;

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
    pub value: f64,
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

impl Decision {
    /// The human-readable reason (allocates; call it when the reason is shown).
    pub fn reason(&self) -> String {
        self.to_string()
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
