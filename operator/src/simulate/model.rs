//! The service model and the replay loop: the same physics for every policy.
//!
//! - A replica saturates at `capacity_rps`; every policy targets `target_utilization` of it.
//! - A new replica serves only `startup` seconds after the decision that created it, and
//!   costs from the moment it is created. Removed replicas stop at once (starting ones first).
//! - Metrics: every `scrape_interval` a scrape records the mean load since the previous one,
//!   divided among the ready replicas (only ready replicas receive traffic and report). A
//!   policy polls at its own period and sees the latest scrape, taken at or before the poll
//!   (the instant it is taken, which favours no policy over another).
//! - Load above ready replicas × capacity is unserved; those seconds are under capacity.

use std::collections::VecDeque;

use crate::scaling::{Engine, MetricReading, Mode, Observation, Policy, PolicyError};

use super::figures::{Accumulator, Bursts, Figures, Series};
use super::trace::Trace;

#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Model {
    /// Requests/s at which one replica saturates.
    pub capacity_rps: f64,
    /// Fraction of capacity every policy targets per replica.
    pub target_utilization: f64,
    /// Seconds from a scale-up decision until the new replica serves.
    pub startup_seconds: f64,
    pub scrape_interval_seconds: f64,
    /// Simulation step.
    pub step_seconds: f64,
    /// Bounds given to every policy that does not bring its own.
    pub min_replicas: u32,
    pub max_replicas: u32,
    /// Unix time of the trace's t = 0 (only scheduled floors care).
    pub start_unix_seconds: f64,
}

#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("the service model is impossible: {field} must be positive and finite, got {value}")]
    NotPositive { field: &'static str, value: f64 },
    #[error("--target-utilization must be in (0, 1], got {0}")]
    Utilization(f64),
    #[error("--startup-seconds must be ≥ 0, got {0}")]
    Startup(f64),
    #[error("--max-replicas must be at least 1 (every policy and the oracle are bounded by it)")]
    MaxReplicas,
    #[error(
        "the trace carries no load (every rate is 0), so there is no peak to size a replica from; \
         pass --capacity-rps"
    )]
    NoLoad,
    #[error("a replay thread panicked")]
    Panicked,
    #[error("policy {name}: {error}")]
    Policy { name: String, error: PolicyError },
}

impl Model {
    /// The requests/s target per replica.
    pub fn target_rps(&self) -> f64 {
        self.capacity_rps * self.target_utilization
    }

    pub fn validate(&self) -> Result<(), ModelError> {
        for (field, value) in [
            ("--capacity-rps (capacity per replica)", self.capacity_rps),
            ("scrape interval", self.scrape_interval_seconds),
            ("--step-seconds", self.step_seconds),
        ] {
            if !(value.is_finite() && value > 0.0) {
                return Err(ModelError::NotPositive { field, value });
            }
        }
        if !(self.target_utilization > 0.0 && self.target_utilization <= 1.0) {
            return Err(ModelError::Utilization(self.target_utilization));
        }
        if !(self.startup_seconds.is_finite() && self.startup_seconds >= 0.0) {
            return Err(ModelError::Startup(self.startup_seconds));
        }
        if self.max_replicas == 0 {
            return Err(ModelError::MaxReplicas);
        }
        Ok(())
    }

    /// Replicas that run `load` exactly at target (at least the minimum).
    pub fn needed(&self, load: f64) -> u32 {
        let n = (load / self.target_rps() - 1e-9).ceil();
        (n.max(0.0) as u32).max(self.min_replicas)
    }

    fn steps(&self, seconds: f64) -> usize {
        ((seconds / self.step_seconds).round() as usize).max(1)
    }
}

/// Who decides the replicas in a replay.
#[derive(Clone, Debug)]
pub enum Controller {
    /// The scaling engine with a policy (ours and every baseline but the oracle).
    Engine(Box<Policy>),
    /// Perfect foresight: exactly the replicas the target asks for are ready at every
    /// instant, each started one start-up time ahead (and paid for meanwhile).
    Oracle,
}

/// One policy's replay.
#[derive(Clone, Debug)]
pub struct Replay {
    pub figures: Figures,
    pub series: Series,
    /// Decisions per mode, for the report.
    pub modes: Vec<(Mode, u64)>,
}

/// Replays a trace already on the model's step. `progress` is called with steps done.
pub fn replay(
    name: &str,
    trace: &Trace,
    model: &Model,
    bursts: &Bursts,
    controller: &Controller,
    progress: &mut dyn FnMut(u64),
) -> Result<Replay, ModelError> {
    match controller {
        Controller::Engine(policy) => replay_engine(name, trace, model, bursts, policy, progress),
        Controller::Oracle => Ok(replay_oracle(trace, model, bursts, progress)),
    }
}

const PROGRESS_EVERY: usize = 1 << 14;

fn replay_engine(
    name: &str,
    trace: &Trace,
    model: &Model,
    bursts: &Bursts,
    policy: &Policy,
    progress: &mut dyn FnMut(u64),
) -> Result<Replay, ModelError> {
    let mut engine = Engine::new(policy.clone()).map_err(|error| ModelError::Policy {
        name: name.to_string(),
        error,
    })?;
    let dt = model.step_seconds;
    let scrape_every = model.steps(model.scrape_interval_seconds);
    let poll_every = model.steps(policy.poll_interval);
    let startup = model.startup_seconds;
    let first = trace.rates.first().copied().unwrap_or(0.0);
    // Every policy starts in the steady state the first load asks for, all replicas ready.
    let mut ready: u32 = model
        .needed(first)
        .clamp(policy.min_replicas, policy.max_replicas);
    let mut starting: VecDeque<f64> = VecDeque::new();
    let mut scrape_sum = 0.0;
    let mut sample = first;
    let mut sample_ready = ready;
    let mut acc = Accumulator::new(trace, model, bursts);
    let mut modes: Vec<(Mode, u64)> = Vec::new();
    let metric_count = policy.metrics.len();
    let mut readings = vec![MetricReading::missing(); metric_count];

    for (i, &load) in trace.rates.iter().enumerate() {
        let t = i as f64 * dt;
        while starting.front().is_some_and(|&at| at <= t + 1e-9) {
            starting.pop_front();
            ready += 1;
        }
        if i > 0 && i % scrape_every == 0 {
            sample = scrape_sum / (scrape_every as f64 * dt);
            sample_ready = ready;
            scrape_sum = 0.0;
        }
        if i % poll_every == 0 {
            let current = ready + starting.len() as u32;
            // The simulator measures requests/s only; other metric kinds read as missing
            // (see `baselines::simulated_policy`, which keeps only requests/s metrics).
            for r in readings.iter_mut() {
                *r = if sample_ready > 0 {
                    MetricReading::average(sample / f64::from(sample_ready), sample_ready)
                } else {
                    MetricReading::missing()
                };
            }
            let obs = Observation {
                now: model.start_unix_seconds + t,
                current_replicas: current,
                ready_replicas: ready,
                metrics: &readings,
                pods: &[],
            };
            let d = engine.decide(&obs);
            match modes.iter_mut().find(|(m, _)| *m == d.mode) {
                Some((_, n)) => *n += 1,
                None => modes.push((d.mode, 1)),
            }
            if d.desired > current {
                for _ in 0..(d.desired - current) {
                    starting.push_back(t + startup);
                }
            } else {
                let mut remove = current - d.desired;
                // Starting replicas go first (newest first): they serve nobody yet.
                while remove > 0 && starting.pop_back().is_some() {
                    remove -= 1;
                }
                ready -= remove.min(ready);
            }
            if d.desired != current {
                acc.scale_event();
            }
            if startup <= 0.0 {
                ready += starting.len() as u32;
                starting.clear();
            }
        }
        let replicas = ready + starting.len() as u32;
        acc.step(i, load, ready, replicas);
        scrape_sum += load * dt;
        if i % PROGRESS_EVERY == PROGRESS_EVERY - 1 {
            progress(PROGRESS_EVERY as u64);
        }
    }
    progress((trace.rates.len() % PROGRESS_EVERY) as u64);
    let (figures, series) = acc.finish();
    modes.sort_by_key(|(m, _)| format!("{m:?}"));
    Ok(Replay {
        figures,
        series,
        modes,
    })
}

/// The maximum of `need` over [i, i + ahead] for increasing i, by a monotonic deque.
#[derive(Default)]
struct MaxAhead {
    window: VecDeque<(usize, u32)>,
    pushed: usize,
}

impl MaxAhead {
    fn max_over(&mut self, need: &[u32], i: usize, ahead: usize) -> u32 {
        while self.pushed < need.len() && self.pushed <= i + ahead {
            let v = need[self.pushed];
            while self.window.back().is_some_and(|&(_, w)| w <= v) {
                self.window.pop_back();
            }
            self.window.push_back((self.pushed, v));
            self.pushed += 1;
        }
        while self.window.front().is_some_and(|&(j, _)| j < i) {
            self.window.pop_front();
        }
        self.window.front().map_or(need[i], |&(_, v)| v)
    }
}

fn replay_oracle(
    trace: &Trace,
    model: &Model,
    bursts: &Bursts,
    progress: &mut dyn FnMut(u64),
) -> Replay {
    // A replica is paid from one start-up before it serves, at the real start-up time: the
    // whole steps of it by a look-ahead of `lead` steps, the remainder (`frac` of a step) by
    // paying that share of the step after, so a 30 s start-up on a 60 s step costs 30 s,
    // not a whole step.
    let ahead = (model.startup_seconds / model.step_seconds).max(0.0);
    let lead = (ahead + 1e-9).floor() as usize;
    let frac = (ahead - lead as f64).max(0.0);
    let frac = if frac < 1e-9 { 0.0 } else { frac };
    // Foresight, not more replicas: the oracle has the same maxReplicas as every policy.
    let need: Vec<u32> = trace
        .rates
        .iter()
        .map(|&r| model.needed(r).min(model.max_replicas))
        .collect();
    // Replicas alive at step i: the most any step in [i, i + lead] needs (and, for part of
    // the step, [i, i + lead + 1]). Monotonic deques keep both maxima.
    let mut whole = MaxAhead::default();
    let mut part = MaxAhead::default();
    let mut acc = Accumulator::new(trace, model, bursts);
    let mut previous: Option<u32> = None;
    for (i, &load) in trace.rates.iter().enumerate() {
        let alive = whole.max_over(&need, i, lead);
        let warming = if frac > 0.0 {
            part.max_over(&need, i, lead + 1)
        } else {
            alive
        };
        if previous.is_some_and(|p| p != alive) {
            acc.scale_event();
        }
        previous = Some(alive);
        let paid = f64::from(alive) + frac * f64::from(warming.saturating_sub(alive));
        // Exactly the needed replicas are ready (more exist, warming up for what comes).
        acc.step_paying(i, load, need[i], paid);
        if i % PROGRESS_EVERY == PROGRESS_EVERY - 1 {
            progress(PROGRESS_EVERY as u64);
        }
    }
    progress((trace.rates.len() % PROGRESS_EVERY) as u64);
    let (figures, series) = acc.finish();
    Replay {
        figures,
        series,
        modes: Vec::new(),
    }
}
