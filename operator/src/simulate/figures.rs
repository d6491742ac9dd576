//! Figures per replay, bursts, and the series the report plots.
//!
//! **Burst** (the unit of `replica_seconds_per_burst`), defined on the trace alone so
//! every policy is judged on the same bursts:
//! - the baseline at step i is the mean load over the hour before it (match-day crowds
//!   build over tens of minutes; a shorter baseline follows them and misses them);
//! - a burst starts where the load reaches 1.5 × the baseline *and* exceeds it by at least
//!   6 replicas' worth of target load (15% of the 40 the peak needs);
//! - it must stay above 1.2 × that baseline for at least 3 minutes (a one-minute spike of
//!   noise is no burst), and lasts until the load falls back under it, plus a 10-minute
//!   tail (where a slow scale-down keeps paying), cut short by the next burst.
//!
//! `replica_seconds_per_burst` is the replica-seconds a policy runs above what the
//! pre-burst baseline needs (ceil(baseline / target)), inside burst intervals, divided by
//! the number of bursts: what absorbing one burst costs.

use super::model::Model;
use super::trace::Trace;

#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct Figures {
    pub under_capacity_seconds: f64,
    pub unserved_requests: f64,
    pub replica_seconds: f64,
    pub replica_seconds_per_burst: f64,
    pub scale_events: u64,
    pub peak_replicas: u32,
    /// Extra: bursts found in the trace (same for every policy).
    pub bursts: u64,
    /// Extra: mean replicas over the run.
    pub mean_replicas: f64,
}

/// Burst intervals of a trace, in steps: (start, end of accounting, baseline replicas).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Bursts {
    pub intervals: Vec<(usize, usize, u32)>,
}

const BASELINE_SECONDS: f64 = 60.0 * 60.0;
const TAIL_SECONDS: f64 = 10.0 * 60.0;
const START_RATIO: f64 = 1.5;
const END_RATIO: f64 = 1.2;
const MIN_JUMP_REPLICAS: f64 = 6.0;
const MIN_BURST_SECONDS: f64 = 180.0;

impl Bursts {
    pub fn detect(trace: &Trace, model: &Model) -> Self {
        let dt = trace.step;
        let w = ((BASELINE_SECONDS / dt).round() as usize).max(1);
        let tail = (TAIL_SECONDS / dt).round() as usize;
        let min_len = ((MIN_BURST_SECONDS / dt).round() as usize).max(1);
        let min_jump = MIN_JUMP_REPLICAS * model.target_rps();
        let rates = &trace.rates;
        let mut intervals: Vec<(usize, usize, u32)> = Vec::new();
        let mut sum = 0.0;
        let mut i = 0;
        while i < rates.len() {
            let baseline = if i >= w {
                sum / w as f64
            } else if i > 0 {
                sum / i as f64
            } else {
                rates[0]
            };
            let load = rates[i];
            if i > 0 && load >= START_RATIO * baseline && load - baseline >= min_jump {
                let start = i;
                let mut j = i;
                while j < rates.len() && rates[j] >= END_RATIO * baseline {
                    j += 1;
                }
                if j - start < min_len {
                    sum += load;
                    if i >= w {
                        sum -= rates[i - w];
                    }
                    i += 1;
                    continue;
                }
                let end = (j + tail).min(rates.len());
                if let Some(last) = intervals.last_mut() {
                    last.1 = last.1.min(start);
                }
                intervals.push((start, end, model.needed(baseline)));
                // Keep the trailing sum right while skipping to the burst's end.
                let stop = j.max(i + 1);
                while i < stop {
                    sum += rates[i];
                    if i >= w {
                        sum -= rates[i - w];
                    }
                    i += 1;
                }
                continue;
            }
            sum += load;
            if i >= w {
                sum -= rates[i - w];
            }
            i += 1;
        }
        Self { intervals }
    }
}

/// Per-minute series for the charts (or per step when the step is longer): enough for a
/// zoom on any hour, and small enough (a month is 43,200 points) to keep for every policy.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Series {
    /// Seconds per point.
    pub resolution: f64,
    pub load_mean: Vec<f64>,
    pub load_max: Vec<f64>,
    pub capacity_mean: Vec<f64>,
    pub capacity_min: Vec<f64>,
    pub replicas_mean: Vec<f64>,
    /// Seconds under capacity within the point.
    pub under_seconds: Vec<f64>,
}

impl Series {
    pub fn len(&self) -> usize {
        self.load_mean.len()
    }

    pub fn is_empty(&self) -> bool {
        self.load_mean.is_empty()
    }
}

const SERIES_SECONDS: f64 = 60.0;

pub struct Accumulator<'a> {
    model: &'a Model,
    bursts: &'a Bursts,
    dt: f64,
    f: Figures,
    burst_excess: f64,
    next_burst: usize,
    bucket: usize,
    series: Series,
    b_load: f64,
    b_load_max: f64,
    b_cap: f64,
    b_cap_min: f64,
    b_rep: f64,
    b_uc: f64,
    b_n: usize,
    steps: usize,
}

impl<'a> Accumulator<'a> {
    pub fn new(trace: &Trace, model: &'a Model, bursts: &'a Bursts) -> Self {
        let bucket = ((SERIES_SECONDS / trace.step).round() as usize).max(1);
        let points = trace.rates.len().div_ceil(bucket);
        let series = Series {
            resolution: bucket as f64 * trace.step,
            load_mean: Vec::with_capacity(points),
            load_max: Vec::with_capacity(points),
            capacity_mean: Vec::with_capacity(points),
            capacity_min: Vec::with_capacity(points),
            replicas_mean: Vec::with_capacity(points),
            under_seconds: Vec::with_capacity(points),
        };
        Self {
            model,
            bursts,
            dt: trace.step,
            f: Figures {
                bursts: bursts.intervals.len() as u64,
                ..Figures::default()
            },
            burst_excess: 0.0,
            next_burst: 0,
            bucket,
            series,
            b_load: 0.0,
            b_load_max: 0.0,
            b_cap: 0.0,
            b_cap_min: f64::INFINITY,
            b_rep: 0.0,
            b_uc: 0.0,
            b_n: 0,
            steps: 0,
        }
    }

    pub fn scale_event(&mut self) {
        self.f.scale_events += 1;
    }

    /// One step: `load` over [i·dt, (i+1)·dt) against `ready` serving replicas, paying for `replicas`.
    pub fn step(&mut self, i: usize, load: f64, ready: u32, replicas: u32) {
        self.step_paying(i, load, ready, f64::from(replicas));
    }

    /// `step` where the replicas paid for may be fractional: a replica warming up for part
    /// of the step (the oracle's, when the start-up is not a whole number of steps).
    pub fn step_paying(&mut self, i: usize, load: f64, ready: u32, paid: f64) {
        let dt = self.dt;
        self.steps += 1;
        let capacity = f64::from(ready) * self.model.capacity_rps;
        let under = load > capacity * (1.0 + 1e-12);
        if under {
            self.f.under_capacity_seconds += dt;
            self.f.unserved_requests += (load - capacity) * dt;
            self.b_uc += dt;
        }
        self.f.replica_seconds += paid * dt;
        self.f.peak_replicas = self.f.peak_replicas.max(paid.ceil() as u32);
        while let Some(&(_, end, _)) = self.bursts.intervals.get(self.next_burst) {
            if i >= end {
                self.next_burst += 1;
            } else {
                break;
            }
        }
        if let Some(&(start, _, base)) = self.bursts.intervals.get(self.next_burst)
            && i >= start
        {
            self.burst_excess += (paid - f64::from(base)).max(0.0) * dt;
        }
        self.b_load += load;
        self.b_load_max = self.b_load_max.max(load);
        self.b_cap += capacity;
        self.b_cap_min = self.b_cap_min.min(capacity);
        self.b_rep += paid;
        self.b_n += 1;
        if self.b_n == self.bucket {
            self.flush();
        }
    }

    fn flush(&mut self) {
        if self.b_n == 0 {
            return;
        }
        let n = self.b_n as f64;
        let s = &mut self.series;
        s.load_mean.push(self.b_load / n);
        s.load_max.push(self.b_load_max);
        s.capacity_mean.push(self.b_cap / n);
        s.capacity_min.push(self.b_cap_min);
        s.replicas_mean.push(self.b_rep / n);
        s.under_seconds.push(self.b_uc);
        self.b_load = 0.0;
        self.b_load_max = 0.0;
        self.b_cap = 0.0;
        self.b_cap_min = f64::INFINITY;
        self.b_rep = 0.0;
        self.b_uc = 0.0;
        self.b_n = 0;
    }

    pub fn finish(mut self) -> (Figures, Series) {
        self.flush();
        self.f.mean_replicas = self.f.replica_seconds / (self.steps.max(1) as f64 * self.dt);
        if self.f.bursts > 0 {
            self.f.replica_seconds_per_burst = self.burst_excess / self.f.bursts as f64;
        }
        (self.f, self.series)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model() -> Model {
        Model {
            capacity_rps: 10.0,
            target_utilization: 0.7,
            startup_seconds: 30.0,
            scrape_interval_seconds: 15.0,
            step_seconds: 60.0,
            min_replicas: 1,
            max_replicas: 100,
            start_unix_seconds: 0.0,
        }
    }

    #[test]
    fn a_sustained_jump_of_half_again_and_six_replicas_is_a_burst() {
        let mut rates = vec![70.0; 30];
        rates.extend([140.0; 5]);
        rates.extend([70.0; 30]);
        let t = Trace {
            name: "x".into(),
            step: 60.0,
            rates,
        };
        let b = Bursts::detect(&t, &model());
        assert_eq!(b.intervals, vec![(30, 45, 10)]);
    }

    #[test]
    fn a_one_minute_spike_is_no_burst() {
        let mut rates = vec![70.0; 30];
        rates.push(300.0);
        rates.extend([70.0; 30]);
        let t = Trace {
            name: "x".into(),
            step: 60.0,
            rates,
        };
        assert!(Bursts::detect(&t, &model()).intervals.is_empty());
    }

    #[test]
    fn noise_on_a_quiet_service_is_no_burst() {
        let rates = (0..100)
            .map(|i| if i % 2 == 0 { 2.0 } else { 6.0 })
            .collect();
        let t = Trace {
            name: "x".into(),
            step: 60.0,
            rates,
        };
        assert!(Bursts::detect(&t, &model()).intervals.is_empty());
    }
}
