//! The scaling engine: pure, deterministic, no I/O and no clock.
//!
//! `Engine::decide` is one tick: (policy, metric readings, current and ready replicas,
//! the engine's own bounded history, the time) → a decision with its reason. The stages run
//! in this order, each only able to *raise* the reactive answer except the HPA bounds:
//! 1. reactive: the HPA v2 arithmetic per metric, combined by max (`hpa.rs`);
//! 2. stabilization windows (HPA `behavior`);
//! 3. predictive floor: the forecast upper quantile of the load over the next start-up
//!    interval must fit below saturation (`predictive.rs`);
//! 4. burst mode (Knative's panic mode);
//! 5. scheduled floors (`schedule.rs`);
//! 6. the HPA rate policies and min/max clamps (burst and scheduled floors skip the
//!    scale-up rate).
//!
//! Missing metrics never cause a scale-down; after `fallback.after_failures` ticks without
//! any metric the fallback replicas apply. With no extras configured the engine decides
//! exactly as the HPA.

mod explain;
mod hpa;
pub mod pods;
mod policy;
mod predictive;
mod recommended;
mod schedule;
mod spec;
mod window;

#[cfg(test)]
mod tests;

pub use explain::{Decision, Explanation, Hold, HpaCondition, Limit, MetricUse, Mode};
pub use hpa::{
    MetricProblem, MetricProposal, MetricReading, Tolerances, replicas_for_metric,
    replicas_for_metric_within,
};
pub use policy::{
    Burst, Fallback, MetricKind, MetricPolicy, Policy, PolicyError, Predictive, RateKind,
    RatePolicy, ScalingRules, Schedule, Seconds, Select, TargetType,
};
pub use predictive::{Forecast, Predictor, Seasonality};
pub use recommended::default_scaling_spec;
pub use spec::{SpecError, defaults};

use hpa::PeriodChanges;
use schedule::ScheduleState;
use window::{Events, Extremum, Mean};

/// One tick's input.
#[derive(Clone, Copy, Debug)]
pub struct Observation<'a> {
    /// Seconds since the Unix epoch (the simulator starts its trace at a chosen instant).
    pub now: Seconds,
    /// The scale target's replicas (spec), which the HPA treats as the pod count.
    pub current_replicas: u32,
    pub ready_replicas: u32,
    /// One reading per policy metric, in the policy's order; absent entries are missing.
    pub metrics: &'a [MetricReading],
    /// Optional, per policy metric in the same order: the pod list and the pods' samples,
    /// from which the engine decides exactly as the HPA's replica calculator would (pod
    /// grouping, requests, the CPU readiness rules). An absent or `None` entry uses
    /// `metrics`; empty for a caller without pods (`simulate`).
    pub pods: &'a [pods::PodInput<'a>],
}

/// The engine: a resolved policy and the history its windows need.
#[derive(Clone, Debug)]
pub struct Engine {
    policy: Policy,
    up_window: Extremum,
    down_window: Extremum,
    /// The predictive block's shorter scale-down window (`Predictive::down_window`).
    short_down: Extremum,
    up_events: Events,
    down_events: Events,
    metric_windows: Vec<Mean>,
    burst_window: Mean,
    burst_until: Seconds,
    /// Recent (time, demand) samples over the burst's slope window, for onset sizing.
    onset: std::collections::VecDeque<(Seconds, f64)>,
    /// The forecast floors asked for over the predictive `floor_hold`.
    floor_window: Extremum,
    predictor: Option<Predictor>,
    schedules: Vec<ScheduleState>,
    failures: u32,
    started: bool,
    /// Every reactive recommendation within the longer stabilization window, as the HPA
    /// keeps them (the windows above keep only what can still win).
    recommendations: std::collections::VecDeque<(Seconds, u32)>,
    /// The HPA's reactive core run beside the engine on the same demand, and the
    /// replica-seconds both ran (`Predictive::budget`).
    shadow: Option<Box<Shadow>>,
    /// The latest tick's demand (replicas at target), for the shadow.
    demand: Option<f64>,
}

/// The short scale-down window stands down while the engine's scale events exceed the
/// shadow HPA's by this factor: the window trades churn for replica-seconds, and the goal
/// allows 1.5 × the HPA's events.
const CHURN_BUDGET: f64 = 1.25;
/// ... and while the engine's time short of capacity exceeds this share of the shadow's.
const SHORT_BUDGET: f64 = 0.9;
/// ... once the shadow has made this many (weighted) events.
const CHURN_MIN_EVENTS: f64 = 10.0;

/// What the HPA alone would have run, for the extras' budget.
#[derive(Clone, Debug)]
struct Shadow {
    engine: Engine,
    replicas: Option<u32>,
    /// Replica-seconds, exponentially weighted over the budget window: the engine's, the
    /// shadow's.
    ours: f64,
    hpa: f64,
    /// Scale events, weighted the same way: the engine's, the shadow's.
    our_events: f64,
    hpa_events: f64,
    /// Seconds the demand stood above what the replicas serve (past saturation), weighted
    /// the same way: the engine's, the shadow's.
    our_short: f64,
    hpa_short: f64,
    last: Option<Seconds>,
    /// The budget is spent: the extras stand down.
    closed: bool,
}

impl Shadow {
    fn for_policy(policy: &Policy) -> Option<Box<Self>> {
        let budget = policy.predictive.as_ref().map_or(0.0, |p| p.budget);
        if budget <= 0.0 {
            return None;
        }
        // One metric on the demand itself: the engine's reactive answer is the largest
        // metric's, so the demand (replicas at target) carries it.
        let core = Policy {
            metrics: vec![MetricPolicy {
                kind: MetricKind::Custom,
                target_type: TargetType::AverageValue,
                target: 1.0,
            }],
            metric_window: 0.0,
            burst: None,
            predictive: None,
            fallback: None,
            ..policy.clone()
        };
        let engine = Engine::new(core).ok()?;
        Some(Box::new(Self {
            engine,
            replicas: None,
            ours: 0.0,
            hpa: 0.0,
            our_events: 0.0,
            hpa_events: 0.0,
            our_short: 0.0,
            hpa_short: 0.0,
            last: None,
            closed: false,
        }))
    }

    /// Past the budget the extras stand down until the spend is back under half of it, so
    /// the ledger does not hover at the limit (its lag would carry the total past it).
    fn over(&mut self, budget: f64) -> bool {
        let limit = if self.closed { budget / 2.0 } else { budget };
        self.closed = self.spent(limit);
        self.closed
    }

    fn spent(&self, share: f64) -> bool {
        self.hpa > 0.0 && self.ours > (1.0 + share) * self.hpa
    }

    /// More scale events than `CHURN_BUDGET` times the HPA's (after a few of its own), or
    /// more time short of capacity than the HPA: the short window trades both for cost.
    fn churning(&self) -> bool {
        self.our_events > CHURN_BUDGET * self.hpa_events.max(CHURN_MIN_EVENTS)
            || self.our_short > SHORT_BUDGET * self.hpa_short
    }
}

/// A replica change the engine asked for, as the HPA records it for its rate policies.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ScaleEvent {
    pub at: Seconds,
    /// Positive for a scale-up.
    pub change: i64,
}

struct EventHistory<'a> {
    up: &'a Events,
    down: &'a Events,
    now: Seconds,
}

impl PeriodChanges for EventHistory<'_> {
    fn changes(&self, period: f64) -> (u32, u32) {
        let cutoff = self.now - period;
        (self.up.change_since(cutoff), self.down.change_since(cutoff))
    }
}

fn ceil_replicas(x: f64) -> u32 {
    if x.is_nan() || x <= 0.0 {
        0
    } else if x >= f64::from(u32::MAX) {
        u32::MAX
    } else {
        x.ceil() as u32
    }
}

impl Engine {
    /// Builds an engine for a policy, after checking it.
    pub fn new(policy: Policy) -> Result<Self, PolicyError> {
        policy.validate()?;
        let predictor = policy.predictive.as_ref().map(Predictor::new);
        Ok(Self {
            up_window: Extremum::min(),
            down_window: Extremum::max(),
            short_down: Extremum::max(),
            up_events: Events::default(),
            down_events: Events::default(),
            metric_windows: vec![Mean::default(); policy.metrics.len()],
            burst_window: Mean::default(),
            burst_until: f64::NEG_INFINITY,
            onset: std::collections::VecDeque::new(),
            floor_window: Extremum::max(),
            predictor,
            schedules: vec![ScheduleState::default(); policy.schedules.len()],
            failures: 0,
            started: false,
            recommendations: std::collections::VecDeque::new(),
            shadow: Shadow::for_policy(&policy),
            demand: None,
            policy,
        })
    }

    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// Swaps in an edited policy, keeping the history that still means the same thing: a
    /// spec edit must not throw away a week of recorded seasonality. Recorded demand is kept
    /// unless the predictive block's seasons or slot changed; windows and scale events are
    /// kept; per-metric and per-schedule state is reset when those lists change.
    pub fn update_policy(&mut self, policy: Policy) -> Result<(), PolicyError> {
        policy.validate()?;
        let same_season = |a: &Predictive, b: &Predictive| {
            a.seasons == b.seasons && a.seasons_kept == b.seasons_kept && a.slot == b.slot
        };
        match (&self.policy.predictive, &policy.predictive) {
            (Some(old), Some(new)) if same_season(old, new) => {}
            (_, new) => self.predictor = new.as_ref().map(Predictor::new),
        }
        if policy.metrics != self.policy.metrics {
            self.metric_windows = vec![Mean::default(); policy.metrics.len()];
        }
        if policy.schedules != self.policy.schedules {
            self.schedules = vec![ScheduleState::default(); policy.schedules.len()];
        }
        if self.shadow.is_none() != Shadow::for_policy(&policy).is_none() {
            self.shadow = Shadow::for_policy(&policy);
        } else if let Some(shadow) = self.shadow.as_mut()
            && let Some(fresh) = Shadow::for_policy(&policy)
        {
            shadow.engine.update_policy(fresh.engine.policy.clone())?;
        }
        self.policy = policy;
        Ok(())
    }

    /// The reactive recommendations (time, replicas) within the longer stabilization window,
    /// oldest first: the HPA's recommendation history, for a harness that compares with it.
    pub fn recommendations(&self) -> impl Iterator<Item = (Seconds, u32)> + '_ {
        self.recommendations.iter().copied()
    }

    /// The scale events within the longest rate-policy period, oldest first (a tick that
    /// changed nothing is no event).
    pub fn scale_events(&self) -> Vec<ScaleEvent> {
        let up = self.up_events.iter().map(|(at, c)| ScaleEvent {
            at,
            change: i64::from(c),
        });
        let down = self.down_events.iter().map(|(at, c)| ScaleEvent {
            at,
            change: -i64::from(c),
        });
        let mut events: Vec<ScaleEvent> = up.chain(down).collect();
        events.sort_by(|a, b| a.at.total_cmp(&b.at));
        events
    }

    /// Feeds recorded demand (unix time, replicas at target: `MetricProposal::demand`, the
    /// largest over the policy's metrics) into the predictor, so an operator restart does not
    /// forget the season: a forecast after a backfill is the one the engine would make had it
    /// observed those samples live. Call it before the first decision with history that ends
    /// before that decision's `now`; samples at or before the newest already observed are
    /// dropped, as the predictor only moves forward. Non-finite samples are skipped (a gap
    /// in the record, not zero load). Without a predictive block this does nothing.
    /// Returns how many samples were recorded.
    pub fn backfill(&mut self, samples: &[(Seconds, f64)]) -> usize {
        let (Some(p), Some(pr)) = (&self.policy.predictive, &mut self.predictor) else {
            return 0;
        };
        let mut ordered: Vec<(Seconds, f64)> = samples
            .iter()
            .copied()
            .filter(|(t, d)| t.is_finite() && d.is_finite())
            .collect();
        // Live observations arrive in time order; a range query's chunks may not.
        ordered.sort_by(|a, b| a.0.total_cmp(&b.0));
        let mut fed = 0;
        for (t, demand) in ordered {
            if pr.observe(p, t, demand) {
                fed += 1;
            }
        }
        fed
    }

    /// One decision. The caller is expected to apply `desired`: the engine records it as a
    /// scale event for the rate policies, as the HPA does after it rescales.
    pub fn decide(&mut self, obs: &Observation<'_>) -> Decision {
        let decision = self.decide_inner(obs);
        let (now, current) = (obs.now, obs.current_replicas);
        if decision.desired > current {
            self.up_events.push(now, decision.desired - current);
        } else if decision.desired < current {
            self.down_events.push(now, current - decision.desired);
        }
        self.account(obs, decision.desired);
        decision
    }

    /// Whether the engine has made more scale events than its churn budget allows.
    fn churning(&self) -> bool {
        self.shadow.as_ref().is_some_and(|s| s.churning())
    }

    /// Whether the extras have spent past their budget over the HPA's core.
    fn over_budget(&mut self) -> bool {
        match (&mut self.shadow, &self.policy.predictive) {
            (Some(s), Some(p)) => s.over(p.budget),
            _ => false,
        }
    }

    /// The budget without the hysteresis: a burst onset (a sale the forecast could not
    /// plan) may spend up to the budget itself, the forecast floor only while it reopens.
    fn burst_over_budget(&self) -> bool {
        match (&self.shadow, &self.policy.predictive) {
            (Some(s), Some(p)) => s.spent(p.budget),
            _ => false,
        }
    }

    /// Adds this interval's replica-seconds to the budget's ledger and moves the shadow HPA
    /// one tick on the same demand.
    fn account(&mut self, obs: &Observation<'_>, desired: u32) {
        let window = self
            .policy
            .predictive
            .as_ref()
            .map_or(86_400.0, |p| p.budget_window.max(1.0));
        let demand = self.demand.take();
        let saturation = self
            .policy
            .predictive
            .as_ref()
            .map_or(1.0, |p| p.saturation);
        let Some(shadow) = self.shadow.as_mut() else {
            return;
        };
        let mine = *shadow.replicas.get_or_insert(obs.current_replicas);
        if let Some(last) = shadow.last {
            let dt = (obs.now - last).max(0.0);
            let keep = (-dt / window).exp();
            shadow.ours = shadow.ours * keep + f64::from(obs.current_replicas) * dt;
            shadow.hpa = shadow.hpa * keep + f64::from(mine) * dt;
            shadow.our_events *= keep;
            shadow.hpa_events *= keep;
            shadow.our_short *= keep;
            shadow.hpa_short *= keep;
            if let Some(d) = demand {
                if d > f64::from(obs.current_replicas) * saturation {
                    shadow.our_short += dt;
                }
                if d > f64::from(mine) * saturation {
                    shadow.hpa_short += dt;
                }
            }
        }
        if desired != obs.current_replicas {
            shadow.our_events += 1.0;
        }
        shadow.last = Some(obs.now);
        if let Some(demand) = demand {
            let readings = [MetricReading::average(
                demand / f64::from(mine.max(1)),
                mine,
            )];
            let d = shadow.engine.decide(&Observation {
                now: obs.now,
                current_replicas: mine,
                ready_replicas: mine,
                metrics: &readings,
                pods: &[],
            });
            if d.desired != mine {
                shadow.hpa_events += 1.0;
            }
            shadow.replicas = Some(d.desired);
        }
    }

    fn decide_inner(&mut self, obs: &Observation<'_>) -> Decision {
        let now = obs.now;
        let current = obs.current_replicas;
        let (min, max) = (self.policy.min_replicas, self.policy.max_replicas);
        let mut why = Explanation::new(current, obs.ready_replicas);
        let keep = self
            .policy
            .scale_up
            .longest_period()
            .max(self.policy.scale_down.longest_period())
            .max(
                self.policy
                    .predictive
                    .as_ref()
                    .map_or(0.0, |p| p.down_every),
            );
        self.up_events.evict(now - keep);
        self.down_events.evict(now - keep);

        // The HPA's guards come before any metric.
        if current == 0 && min > 0 {
            why.hold = Some(Hold::ScaledToZero);
            return Decision {
                desired: 0,
                mode: Mode::Stable,
                explanation: why,
            };
        }
        if current > max {
            why.limit = Some((Limit::MaxReplicas, current));
            return Decision {
                desired: max,
                mode: Mode::Limited,
                explanation: why,
            };
        }
        if current < min {
            why.limit = Some((Limit::MinReplicas, current));
            return Decision {
                desired: min,
                mode: Mode::Limited,
                explanation: why,
            };
        }
        // The HPA seeds the scale-down window with the current count, so a restarted
        // controller does not scale down before a full window of evidence.
        if !self.started {
            self.started = true;
            if self.policy.scale_down.stabilization_window > 0.0 {
                self.down_window.push(now, current);
            }
        }

        let floor = self.schedule_floor(now);
        let Some((metric_desired, demand, missing_any)) = self.reactive(obs, &mut why) else {
            return self.without_metrics(current, floor, why);
        };
        self.demand = Some(demand);
        let spend = !self.over_budget();
        if missing_any && metric_desired < current {
            // The HPA returns an error here and keeps the replicas; so do we.
            why.hold = Some(Hold::SomeMetricsMissing);
            return self.finish(current, current, Mode::Stable, floor, why, false, obs);
        }

        // Stabilization: the answer is held between the lowest recommendation of the
        // scale-up window and the highest of the scale-down window.
        let up_w = self.policy.scale_up.stabilization_window;
        let down_w = self.policy.scale_down.stabilization_window;
        self.up_window.evict(now - up_w);
        self.down_window.evict(now - down_w);
        let up_rec = self.up_window.get(metric_desired);
        let down_rec = self.down_window.get(metric_desired);
        let stabilized = if self.policy.legacy {
            // The HPA's `stabilizeRecommendation`: the highest recommendation of the window,
            // this one included, whatever the current count.
            down_rec
        } else {
            current.max(up_rec).min(down_rec)
        };
        self.up_window.push(now, metric_desired);
        self.down_window.push(now, metric_desired);
        let kept = up_w.max(down_w);
        while self
            .recommendations
            .front()
            .is_some_and(|(t, _)| *t <= now - kept)
        {
            self.recommendations.pop_front();
        }
        self.recommendations.push_back((now, metric_desired));
        // The same recommendation held over the predictive block's shorter window: used
        // where the forecast floor already covers it (below).
        let short_stabilized = match self.policy.predictive.as_ref().and_then(|p| p.down_window) {
            Some(w) if !self.policy.legacy && !self.churning() => {
                self.short_down.evict(now - w);
                let held = self.short_down.get(metric_desired);
                self.short_down.push(now, metric_desired);
                current.max(up_rec).min(held)
            }
            _ => stabilized,
        };
        why.stabilized = Some(stabilized);
        let mut target = stabilized;
        let mut mode = match stabilized.cmp(&current) {
            std::cmp::Ordering::Greater => Mode::ScaleUp,
            std::cmp::Ordering::Less => Mode::ScaleDown,
            std::cmp::Ordering::Equal => Mode::Stable,
        };

        if let (Some(p), Some(pr)) = (&self.policy.predictive, &mut self.predictor) {
            pr.observe(p, now, demand);
            let forecast = pr.forecast(p, now);
            if let Some(fc) = &forecast {
                pr.track(p, now, fc);
            }
            // Only a forecast that has earned it (beats persistence) raises the answer.
            let earned = forecast.filter(|_| pr.skilled(p));
            // The reactive path already runs the current load at target; the forecast
            // only has to keep its upper quantile below saturation.
            let asked = earned.map_or(0, |fc| ceil_replicas(fc.demand / p.saturation));
            self.floor_window.evict(now - p.floor_hold);
            let held = self.floor_window.get(asked);
            self.floor_window.push(now, asked);
            let noisy = forecast.is_some_and(|fc| fc.spread >= p.down_window_cv * fc.mean);
            if noisy && held >= short_stabilized && short_stabilized < target {
                // The window holds replicas through noisy dips; where the forecast floor
                // already covers what the shorter window asks for, it is that hold, and
                // the longer window would only keep a past spike's replicas.
                target = short_stabilized;
                why.stabilized = Some(short_stabilized);
                mode = match target.cmp(&current) {
                    std::cmp::Ordering::Greater => Mode::ScaleUp,
                    std::cmp::Ordering::Less => Mode::ScaleDown,
                    std::cmp::Ordering::Equal => Mode::Stable,
                };
            }
            if spend && held > target {
                if let Some(fc) = earned.or(forecast) {
                    why.forecast = Some((fc, held));
                }
                target = held;
                mode = Mode::Predictive;
            }
            let small =
                f64::from(current.saturating_sub(target)) < p.down_step * f64::from(current);
            let recent =
                p.down_every > 0.0 && self.down_events.change_since(now - p.down_every) > 0;
            if spend && target < current && forecast.is_some() && (small || recent) {
                // Too small a step down to be worth a rollout (noise would likely undo it),
                // or too soon after the last one. Only with a noise model: before it, the
                // engine is the HPA's core plus burst.
                target = current;
                mode = Mode::Stable;
            }
            if spend && target > current && p.up_step > 0.0 {
                // Going up anyway: go far enough that the next poll's noise does not ask
                // for one more replica again.
                target = target.max(ceil_replicas(f64::from(current) * (1.0 + p.up_step)));
            }
            if target < current
                && p.churn_sigmas > 0.0
                && let Some(fc) = forecast
            {
                // A step down that ordinary noise would undo is churn: stop where noise
                // `churn_sigmas` above the mean stays within the scale-up tolerance.
                let up_tol = self
                    .policy
                    .scale_up
                    .tolerance
                    .unwrap_or(self.policy.tolerance);
                let noisy = fc.mean + p.churn_sigmas * fc.spread;
                let guard = ceil_replicas(noisy / (1.0 + up_tol)).min(current);
                if guard > target {
                    target = guard;
                    if guard == current {
                        mode = Mode::Stable;
                    }
                }
            }
        }

        let mut bursting = false;
        if let Some(b) = &self.policy.burst {
            self.burst_window.push(now, demand);
            self.burst_window.evict(now - b.window);
            let short = self.burst_window.mean().unwrap_or(demand);
            // The demand one slope window ago (the oldest sample kept within it).
            while self
                .onset
                .get(1)
                .is_some_and(|(t, _)| *t <= now - b.slope_window)
            {
                self.onset.pop_front();
            }
            let before = self.onset.front().copied();
            self.onset.push_back((now, demand));
            let ready = obs.ready_replicas.max(1);
            // With a noise model, only a jump beyond the noise is a burst.
            let surprise = match (&self.policy.predictive, &self.predictor) {
                (Some(p), Some(pr)) => Some(pr.surprise(p, short, now)),
                _ => None,
            };
            let surprising = match surprise {
                Some(Some(z)) if b.min_surprise > 0.0 => z >= b.min_surprise,
                _ => true,
            };
            // With a predictive block, a slope is only projected once the noise is known
            // (a slope within the noise is no onset); without one, always.
            let project = !matches!(surprise, Some(None));
            if !self.burst_over_budget() && surprising && short >= b.threshold * f64::from(ready) {
                self.burst_until = now + b.hold;
            }
            if now < self.burst_until {
                bursting = true;
                why.burst = Some((short, obs.ready_replicas, b.threshold));
                // A sale's onset keeps rising while the replicas asked for now start: size
                // them for where the slope over one start-up puts the load when they serve.
                let projected = match before {
                    Some((t0, d0))
                        if project && b.slope_window > 0.0 && now - t0 > 0.0 && short > d0 =>
                    {
                        short + (short - d0) / (now - t0) * b.horizon
                    }
                    _ => short,
                };
                // No scale-down while bursting; scale straight to what the onset needs.
                let want = ceil_replicas(projected).max(current);
                if want >= target {
                    target = want;
                    mode = Mode::Burst;
                }
            }
        }
        self.finish(current, target, mode, floor, why, bursting, obs)
    }

    /// The HPA's per-metric replica counts, combined by max. `None` when no metric gave one.
    fn reactive(
        &mut self,
        obs: &Observation<'_>,
        why: &mut Explanation,
    ) -> Option<(u32, f64, bool)> {
        let p = &self.policy;
        let current = obs.current_replicas;
        let mut best: Option<(u32, MetricUse)> = None;
        let mut demand = 0.0f64;
        let mut missing_any = false;
        let tol = Tolerances {
            up: p.scale_up.tolerance.unwrap_or(p.tolerance),
            down: p.scale_down.tolerance.unwrap_or(p.tolerance),
        };
        for (i, metric) in p.metrics.iter().enumerate() {
            let reading = obs
                .metrics
                .get(i)
                .copied()
                .unwrap_or_else(MetricReading::missing);
            let from_pods = obs.pods.get(i).copied().flatten();
            let computed = match &from_pods {
                Some(input) => {
                    from_pod_list(metric, input, &reading, current, tol, &p.pod_rules, obs.now)
                }
                None => {
                    replicas_for_metric_within(metric, &reading, current, obs.ready_replicas, tol)
                        .map(|proposal| (proposal, reading.value.unwrap_or(0.0), None))
                }
            };
            let (mut proposal, value, raw_average) = match computed {
                Ok(found) => found,
                Err(problem) => {
                    missing_any = true;
                    why.problem.get_or_insert((i, metric.kind, problem));
                    continue;
                }
            };
            if p.metric_window > 0.0 {
                // Knative-style: the windowed demand replaces the instantaneous arithmetic.
                let w = &mut self.metric_windows[i];
                w.push(obs.now, proposal.demand);
                w.evict(obs.now - p.metric_window);
                let mean = w.mean().unwrap_or(proposal.demand);
                let ratio = if current > 0 {
                    mean / f64::from(current)
                } else {
                    f64::INFINITY
                };
                let t = if ratio > 1.0 { tol.up } else { tol.down };
                proposal.replicas = if (1.0 - ratio).abs() <= t {
                    current
                } else {
                    ceil_replicas(mean)
                };
            }
            demand = demand.max(proposal.demand);
            let used = MetricUse {
                kind: metric.kind,
                value,
                raw_average,
                target: metric.target,
                ratio: proposal.ratio,
                replicas: proposal.replicas,
            };
            if best.is_none_or(|(r, _)| proposal.replicas > r) {
                best = Some((proposal.replicas, used));
            }
        }
        let (replicas, used) = best?;
        why.metric = Some(used);
        Some((replicas, demand, missing_any))
    }

    fn without_metrics(
        &mut self,
        current: u32,
        floor: Option<(usize, u32)>,
        mut why: Explanation,
    ) -> Decision {
        self.failures = self.failures.saturating_add(1);
        why.failures = self.failures;
        why.hold = Some(Hold::AllMetricsMissing);
        let (min, max) = (self.policy.min_replicas, self.policy.max_replicas);
        let mut desired = current;
        let mut mode = Mode::Stable;
        if let Some(fb) = &self.policy.fallback {
            if self.failures >= fb.after_failures && fb.replicas > desired {
                desired = fb.replicas;
                mode = Mode::Fallback;
            } else if self.failures >= fb.after_failures {
                mode = Mode::Fallback;
            }
        }
        if let Some((i, f)) = floor
            && f > desired
        {
            desired = f;
            mode = Mode::Scheduled;
            why.floor = Some((i, f));
        }
        Decision {
            desired: desired.clamp(min, max),
            mode,
            explanation: why,
        }
    }

    /// Active scheduled floor (the highest), if any.
    fn schedule_floor(&mut self, now: Seconds) -> Option<(usize, u32)> {
        let mut best: Option<(usize, u32)> = None;
        for (i, (s, st)) in self
            .policy
            .schedules
            .iter()
            .zip(self.schedules.iter_mut())
            .enumerate()
        {
            if st.active(s, now, self.policy.schedule_lead)
                && best.is_none_or(|(_, f)| s.min_replicas > f)
            {
                best = Some((i, s.min_replicas));
            }
        }
        best
    }

    /// Scheduled floor, then the HPA's rate policies and bounds.
    #[allow(clippy::too_many_arguments)]
    fn finish(
        &mut self,
        current: u32,
        mut target: u32,
        mut mode: Mode,
        floor: Option<(usize, u32)>,
        mut why: Explanation,
        bursting: bool,
        obs: &Observation<'_>,
    ) -> Decision {
        self.failures = 0;
        let (min, max) = (self.policy.min_replicas, self.policy.max_replicas);
        if let Some((i, f)) = floor
            && f > target
        {
            target = f;
            mode = Mode::Scheduled;
            why.floor = Some((i, f));
        }
        let history = EventHistory {
            up: &self.up_events,
            down: &self.down_events,
            now: obs.now,
        };
        let before = target;
        // A burst, and a floor the user scheduled, are not metric noise to damp: neither
        // waits for the scale-up rate policies.
        let unlimited = bursting || mode == Mode::Scheduled;
        if target > current {
            let (allowed, bound) = if unlimited {
                (max, Limit::MaxReplicas)
            } else if self.policy.legacy {
                // `calculateScaleUpLimit`: max(2 × current, 4) per sync.
                let limit = current.saturating_mul(2).max(4);
                if max > limit {
                    (limit, Limit::ScaleUpRate)
                } else {
                    (max, Limit::MaxReplicas)
                }
            } else {
                let limit =
                    hpa::scale_up_limit(current, &self.policy.scale_up, &history).max(current);
                if max > limit {
                    (limit, Limit::ScaleUpRate)
                } else {
                    (max, Limit::MaxReplicas)
                }
            };
            if target > allowed {
                target = allowed;
                why.limit = Some((bound, before));
                mode = Mode::Limited;
            }
        } else if target < current {
            // The legacy path has no scale-down rate: the window alone holds it.
            let limit = if self.policy.legacy {
                0
            } else {
                hpa::scale_down_limit(current, &self.policy.scale_down, &history).min(current)
            };
            let (allowed, bound) = if min < limit {
                (limit, Limit::ScaleDownRate)
            } else {
                (min, Limit::MinReplicas)
            };
            if target < allowed {
                target = allowed;
                why.limit = Some((bound, before));
                mode = Mode::Limited;
            }
        }
        if target == current && matches!(mode, Mode::ScaleUp | Mode::ScaleDown) {
            mode = Mode::Stable;
        }
        Decision {
            desired: target,
            mode,
            explanation: why,
        }
    }
}

/// One metric's proposal from the pod list, with the value the HPA reports for it
/// (utilization in percent, or the average in the metric's unit) and, for a utilization,
/// the raw per-pod average.
fn from_pod_list(
    metric: &MetricPolicy,
    input: &pods::PodMetric<'_>,
    reading: &MetricReading,
    current: u32,
    tol: Tolerances,
    rules: &pods::PodRules,
    now: Seconds,
) -> Result<(MetricProposal, f64, Option<f64>), MetricProblem> {
    let milli = |x: f64| (x * 1000.0).round() as i64;
    match metric.target_type {
        TargetType::Utilization => {
            let target = metric.target.round().clamp(1.0, f64::from(i32::MAX)) as i32;
            let calc = pods::resource_replicas(input, current, target, tol, rules, now)
                .map_err(MetricProblem::from)?;
            let proposal = MetricProposal {
                replicas: calc.replicas,
                ratio: calc.ratio,
                demand: calc.ratio * calc.ready as f64,
            };
            Ok((
                proposal,
                f64::from(calc.utilization),
                Some(calc.raw_average as f64 / 1000.0),
            ))
        }
        TargetType::AverageValue => {
            let calc = pods::plain_replicas(input, current, milli(metric.target), tol, rules, now)
                .map_err(MetricProblem::from)?;
            let proposal = MetricProposal {
                replicas: calc.replicas,
                ratio: calc.ratio,
                demand: calc.ratio * calc.ready as f64,
            };
            Ok((proposal, calc.usage as f64 / 1000.0, None))
        }
        TargetType::Value => {
            let value = reading.value.ok_or(MetricProblem::Unavailable)?;
            if !value.is_finite() || value < 0.0 {
                return Err(MetricProblem::Unavailable);
            }
            let (usage, target) = (milli(value), milli(metric.target));
            let replicas = pods::value_replicas(current, usage, target, tol, input.pods)
                .map_err(MetricProblem::from)?;
            let ratio = usage as f64 / target as f64;
            let ready = pods::ready_pods(input.pods);
            let demand = if current == 0 {
                ratio
            } else {
                ratio * f64::from(ready)
            };
            Ok((
                MetricProposal {
                    replicas,
                    ratio,
                    demand,
                },
                value,
                None,
            ))
        }
    }
}
