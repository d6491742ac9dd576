//! Predictive pre-scaling: a forecast of the load over the next start-up interval.
//!
//! The forecast is an upper quantile, not a mean: a replica started now serves in
//! `startup` seconds, so what matters is how high the load may go before then. It combines
//! - the *level*: an exponentially weighted mean of recent demand (time constant
//!   `level_window`);
//! - the *season*: what past days (or weeks) did next, relative to what they did over the
//!   level's window, which corrects the level's lag on recurring ramps;
//! - the *noise*: web traffic is bursty; the spread is sqrt(dispersion) × level^e, the
//!   dispersion learnt over `noise_window` (e = `noise_exponent`: 0.5 is Poisson-like, 0 one
//!   spread at every level);
//! - the *persistence*: bursts cluster, so a share (`persistence`) of the latest sample's
//!   deviation from the level is expected to last over the lead; that share is explained,
//!   so the spread left shrinks by sqrt(1 − persistence²).
//!
//! The forecast is mean + `sigmas` × spread.
//!
//! The engine asks for enough replicas to keep that upper quantile below saturation
//! (`saturation` × target per replica), never fewer than the reactive path, which runs the
//! current load at target: the target's headroom absorbs ordinary noise, and only noise
//! beyond it costs replicas.
//!
//! Demand (in replicas at target) is recorded per slot in a ring sized for `seasons_kept`
//! of the longest season: a week of one-minute slots is 10,080 × 8 bytes per week kept.
//! Recording is O(1) amortized; a forecast reads a handful of slots, never the whole ring.

use super::policy::{Predictive, Seconds};

#[derive(Clone, Debug)]
pub struct Seasonality {
    slot: Seconds,
    /// Per slot: sum of the demand samples recorded in it (f32 halves the memory).
    sums: Vec<f32>,
    counts: Vec<u32>,
    /// The newest slot recorded, and the first one (to know how much history exists).
    newest: Option<i64>,
    oldest: i64,
    seasons: Vec<i64>,
    kept: i64,
}

/// A forecast with the numbers that made it, for the decision's reason.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Forecast {
    /// The forecast upper quantile of demand over the lead interval, in replicas at target.
    pub demand: f64,
    /// The forecast mean (level × seasonal, plus the persisting share of the latest
    /// deviation from the level).
    pub mean: f64,
    /// The recent level (weighted mean demand).
    pub level: f64,
    /// What past seasons did next relative to the level's window (1 = no change, or no
    /// season recorded yet).
    pub seasonal: f64,
    /// The spread (one standard deviation) the quantile adds.
    pub spread: f64,
    /// What the minute-of-hour profile added to the mean (0 when it has not earned it).
    pub hourly: f64,
}

/// Deviations beyond this many standard deviations count as this many: 4 kept the real
/// traces' spikes (which are noise to plan for) and stopped synthetic steps and flash crowds
/// (which are level shifts) from inflating the spread; 3 under-estimated the real noise.
const WINSOR: f64 = 4.0;

/// Slots on each side averaged into a seasonal value: one-minute values of past days are
/// noise-dominated; ±15 minutes was the narrowest that helped on the shared traces.
const SMOOTH_SLOTS: i64 = 15;

impl Seasonality {
    pub fn new(p: &Predictive) -> Self {
        let slot = p.slot;
        let seasons: Vec<i64> = p
            .seasons
            .iter()
            .map(|s| (s / slot).round().max(1.0) as i64)
            .collect();
        let longest = seasons.iter().copied().max().unwrap_or(1);
        let kept = i64::from(p.seasons_kept.max(1));
        let len = (longest * kept + SMOOTH_SLOTS + 2) as usize;
        Self {
            slot,
            sums: vec![0.0; len],
            counts: vec![0; len],
            newest: None,
            oldest: 0,
            seasons,
            kept,
        }
    }

    fn index(&self, slot: i64) -> usize {
        slot.rem_euclid(self.sums.len() as i64) as usize
    }

    fn slot_of(&self, t: Seconds) -> i64 {
        (t / self.slot).floor() as i64
    }

    /// Seconds of history recorded so far.
    pub fn recorded(&self) -> Seconds {
        self.newest
            .map_or(0.0, |n| (n - self.oldest + 1) as f64 * self.slot)
    }

    pub fn record(&mut self, t: Seconds, demand: f64) {
        let s = self.slot_of(t);
        match self.newest {
            None => {
                self.newest = Some(s);
                self.oldest = s;
            }
            Some(n) if s > n => {
                // Clear the slots skipped since the last sample (at most one ring's worth).
                let gap = (s - n).min(self.sums.len() as i64);
                for k in 0..gap {
                    let i = self.index(s - k);
                    self.sums[i] = 0.0;
                    self.counts[i] = 0;
                }
                self.newest = Some(s);
            }
            // Samples for a slot already closed are dropped: time only goes forward.
            Some(n) if s < n => return,
            Some(_) => {}
        }
        let i = self.index(s);
        self.sums[i] += demand as f32;
        self.counts[i] += 1;
    }

    fn at(&self, slot: i64) -> Option<f64> {
        let newest = self.newest?;
        if slot > newest || slot < self.oldest || newest - slot >= self.sums.len() as i64 {
            return None;
        }
        let i = self.index(slot);
        (self.counts[i] > 0).then(|| f64::from(self.sums[i]) / f64::from(self.counts[i]))
    }

    /// Mean of what past seasons recorded around `slot` (±`SMOOTH_SLOTS`), each season up
    /// to `kept` cycles back. Only complete past seasons are read, never the current one.
    pub fn seasonal(&self, t: Seconds) -> Option<f64> {
        let slot = self.slot_of(t);
        let (mut sum, mut n) = (0.0, 0u32);
        for &season in &self.seasons {
            for k in 1..=self.kept {
                for d in -SMOOTH_SLOTS..=SMOOTH_SLOTS {
                    let past = slot - k * season + d;
                    // Stay strictly in the past: the newest slot is still being filled.
                    if self.newest.is_some_and(|n| past < n)
                        && let Some(v) = self.at(past)
                    {
                        sum += v;
                        n += 1;
                    }
                }
            }
        }
        (n > 0).then(|| sum / f64::from(n))
    }

    pub fn slots(&self) -> usize {
        self.sums.len()
    }

    pub fn slot(&self) -> Seconds {
        self.slot
    }
}

/// A forecast waiting for its outcome: the highest demand seen over its lead.
#[derive(Clone, Copy, Debug)]
struct Pending {
    due: Seconds,
    mean: f64,
    spread: f64,
    /// What persistence would have forecast: the latest sample when it was made.
    latest: f64,
    /// The minute-of-hour profile's share of `mean`, and what it would have added.
    hourly_used: f64,
    hourly_offer: f64,
    peak: f64,
}

/// The hourly profile must cut the realized squared error by 10% to join: on traffic
/// without an hourly pattern (the NASA traces) a smaller gain let noise in at a cost.
const HOURLY_EVIDENCE: f64 = 0.9;

/// Minute-of-hour slots of the hourly profile.
const HOUR_SLOTS: usize = 60;

/// Time constant of the realized-error averages, in outcomes: about a day at one forecast
/// per 15 s poll, long enough that a quiet night does not undo a day's evidence.
const SKILL_OUTCOMES: f64 = 2000.0;

/// How far the calibrated quantile moves per outcome: it settles on the target exceedance
/// over a few hours of forecasts.
const CALIBRATION_STEP: f64 = 0.05;

/// The calibrated quantile stays within these bounds (in spreads).
const Z_RANGE: (f64, f64) = (0.5, 6.0);

/// Level, noise and season together: everything `Predictive` needs, updated per sample.
#[derive(Clone, Debug)]
pub struct Predictor {
    /// Forecasts made and not yet scored, oldest first (a lead's worth of polls).
    pending: std::collections::VecDeque<Pending>,
    /// The calibrated quantile, in spreads (starts at `sigmas`).
    z: f64,
    /// Mean squared realized error of the forecast mean and of persistence.
    err_model: f64,
    err_persist: f64,
    outcomes: u32,
    /// Minute-of-hour profile: mean deviation of demand from the level, per minute.
    hourly: [f32; HOUR_SLOTS],
    hourly_seen: [u16; HOUR_SLOTS],
    /// Mean squared realized error of the forecast mean with and without the profile.
    err_hourly: f64,
    err_plain: f64,
    season: Seasonality,
    level: f64,
    /// The level's counterpart in past seasons: the same weighted mean of the seasonal values.
    season_level: Option<f64>,
    /// Variance of demand around the level, per unit of level^(2 × `noise_exponent`).
    dispersion: f64,
    /// The latest demand sample, whose deviation from the level may persist.
    latest: f64,
    last: Option<Seconds>,
    first: Seconds,
}

impl Predictor {
    pub fn new(p: &Predictive) -> Self {
        Self {
            pending: std::collections::VecDeque::new(),
            z: p.sigmas,
            err_model: 0.0,
            err_persist: 0.0,
            outcomes: 0,
            hourly: [0.0; HOUR_SLOTS],
            hourly_seen: [0; HOUR_SLOTS],
            err_hourly: 0.0,
            err_plain: 0.0,
            season: Seasonality::new(p),
            level: 0.0,
            season_level: None,
            dispersion: 0.0,
            latest: 0.0,
            last: None,
            first: 0.0,
        }
    }

    pub fn seasonality(&self) -> &Seasonality {
        &self.season
    }

    /// Feeds one demand sample (replicas at target) at time `t`; false when it was dropped
    /// for not being newer than the last one.
    pub fn observe(&mut self, p: &Predictive, t: Seconds, demand: f64) -> bool {
        let demand = demand.max(0.0);
        match self.last {
            None => {
                self.level = demand;
                self.first = t;
            }
            Some(last) if t > last => {
                // Time-weighted, so the poll period does not change what is learnt.
                let dt = t - last;
                let a = 1.0 - (-dt / p.level_window.max(1e-9)).exp();
                let b = 1.0 - (-dt / p.noise_window.max(1e-9)).exp();
                let d = demand - self.level;
                // Winsorized at WINSOR standard deviations: a level shift (a flash crowd, a
                // step) is not noise, and must not inflate the spread for an hour after it.
                let r = d * d / self.level.max(1.0).powf(2.0 * p.noise_exponent);
                let r = if self.dispersion > 0.0 {
                    r.min(WINSOR * WINSOR * self.dispersion)
                } else {
                    r
                };
                self.dispersion += b * (r - self.dispersion);
                if p.hourly {
                    // The deviation from the level, per minute of the hour, averaged over
                    // the last ~day of hours (so a profile a few hours old already counts).
                    let m = minute_of_hour(t);
                    let seen = &mut self.hourly_seen[m];
                    *seen = seen.saturating_add(1);
                    let w = 1.0 / f64::from((*seen).min(24));
                    let dev = d.clamp(
                        -WINSOR * self.dispersion.sqrt().max(1e-9) * 4.0,
                        WINSOR * self.dispersion.sqrt().max(1e-9) * 4.0,
                    );
                    self.hourly[m] += (w * (dev - f64::from(self.hourly[m]))) as f32;
                }
                self.level += a * d;
                if let Some(s) = self.season.seasonal(t) {
                    self.season_level = Some(self.season_level.map_or(s, |l| l + a * (s - l)));
                }
            }
            Some(_) => return false,
        }
        self.last = Some(t);
        self.latest = demand;
        self.season.record(t, demand);
        self.score(p, t, demand);
        true
    }

    /// Folds a new sample into the forecasts waiting for it, and learns from those whose
    /// lead has passed: their realized errors calibrate the quantile and measure the skill.
    fn score(&mut self, p: &Predictive, t: Seconds, demand: f64) {
        for f in self.pending.iter_mut() {
            f.peak = f.peak.max(demand);
        }
        while let Some(f) = self.pending.front().copied() {
            if f.due > t {
                break;
            }
            self.pending.pop_front();
            let k = 1.0 / (f64::from(self.outcomes) + 1.0).min(SKILL_OUTCOMES);
            self.outcomes = self.outcomes.saturating_add(1);
            let e_model = f.peak - f.mean;
            let e_persist = f.peak - f.latest;
            self.err_model += k * (e_model * e_model - self.err_model);
            self.err_persist += k * (e_persist * e_persist - self.err_persist);
            // The profile is judged on what it would have done, used or not.
            let base = f.mean - f.hourly_used;
            let with = f.peak - (base + f.hourly_offer).max(0.0);
            let without = f.peak - base;
            self.err_hourly += k * (with * with - self.err_hourly);
            self.err_plain += k * (without * without - self.err_plain);
            if p.exceedance > 0.0 && f.spread > 0.0 {
                // A stochastic-approximation quantile: up by (1 − α) on a miss, down by α
                // on a hit, so it settles where a share α of outcomes exceed it.
                let missed = f.peak > f.mean + self.z * f.spread;
                let step = if missed {
                    1.0 - p.exceedance
                } else {
                    -p.exceedance
                };
                self.z = (self.z + CALIBRATION_STEP * step).clamp(Z_RANGE.0, Z_RANGE.1);
            }
        }
    }

    /// Registers a forecast to be scored once its lead has passed.
    pub fn track(&mut self, p: &Predictive, now: Seconds, fc: &Forecast) {
        let offer = if p.hourly {
            self.hourly_offer(p, now)
        } else {
            0.0
        };
        // One outstanding forecast per lead is enough evidence and bounds the queue.
        if self.pending.len() > 64 {
            return;
        }
        self.pending.push_back(Pending {
            due: now + p.lead,
            mean: fc.mean,
            spread: fc.spread,
            latest: self.latest,
            hourly_used: fc.hourly,
            hourly_offer: offer,
            peak: f64::NEG_INFINITY,
        });
    }

    /// Whether the forecast has beaten persistence on the outcomes seen so far (by the
    /// policy's margin). Without outcomes yet, it has not.
    pub fn skilled(&self, p: &Predictive) -> bool {
        self.skilled_by(p.skill_margin)
    }

    /// Whether the forecast's realized error has been at most `1 − margin` times
    /// persistence's (a negative margin: always).
    pub fn skilled_by(&self, margin: f64) -> bool {
        if margin < 0.0 {
            return true;
        }
        self.outcomes >= 20 && self.err_model <= (1.0 - margin) * self.err_persist
    }

    /// The calibrated quantile, in spreads.
    pub fn quantile(&self) -> f64 {
        self.z
    }

    /// How many noise spreads `demand` stands above the level; `None` until the noise has
    /// been learnt.
    pub fn surprise(&self, p: &Predictive, demand: f64, now: Seconds) -> Option<f64> {
        let last = self.last?;
        if last - self.first < p.noise_window || self.dispersion <= 0.0 {
            return None;
        }
        let spread = self.dispersion.sqrt() * self.level.max(1.0).powf(p.noise_exponent);
        // Bots at a fixed minute are expected, not a surprise, once the profile has earned
        // its place in the forecast: bursting on each of them overshoots every hour.
        let expected = self.level + self.hourly_now(p, now);
        Some((demand - expected) / spread.max(1e-9))
    }

    /// The hourly profile's deviation at this minute, when it is in the forecast.
    fn hourly_now(&self, p: &Predictive, now: Seconds) -> f64 {
        if self.hourly_joined(p) && self.hourly_ready() {
            f64::from(self.hourly[minute_of_hour(now)]).max(0.0)
        } else {
            0.0
        }
    }

    fn hourly_joined(&self, p: &Predictive) -> bool {
        p.hourly && self.outcomes >= 20 && self.err_hourly < HOURLY_EVIDENCE * self.err_plain
    }

    /// The upper-quantile forecast of demand over (now, now + lead], once the noise has been
    /// learnt for `noise_window`; the seasonal correction joins after `warmup`.
    pub fn forecast(&self, p: &Predictive, now: Seconds) -> Option<Forecast> {
        let last = self.last?;
        if last - self.first < p.noise_window {
            return None;
        }
        let mut seasonal = 1.0;
        if self.season.recorded() >= p.warmup
            && let Some(base) = self.season_level.filter(|b| *b > 0.0)
        {
            // The highest seasonal value ahead, over the level's seasonal counterpart.
            let step = self.season.slot();
            let mut ahead: Option<f64> = None;
            let mut t = now + step.min(p.lead.max(0.0));
            while t <= now + p.lead + 1e-9 {
                if let Some(v) = self.season.seasonal(t) {
                    ahead = Some(ahead.map_or(v, |a: f64| a.max(v)));
                }
                t += step;
            }
            if let Some(a) = ahead {
                // Bounded so that one odd day in the record cannot double the answer.
                seasonal = (a / base).clamp(0.5, 2.0);
            }
        }
        let mut expected = self.level * seasonal;
        let mut hourly = 0.0;
        // The profile joins only once it has lowered the realized error.
        if self.hourly_joined(p) {
            hourly = self.hourly_offer(p, now);
            expected = (expected + hourly).max(0.0);
        }
        let phi = p.persistence;
        let mean = (expected + phi * (self.latest - self.level)).max(0.0);
        let spread = self.dispersion.sqrt()
            * expected.max(1.0).powf(p.noise_exponent)
            * (1.0 - phi * phi).max(0.0).sqrt();
        let z = if p.exceedance > 0.0 { self.z } else { p.sigmas };
        Some(Forecast {
            demand: mean + z * spread,
            mean,
            level: self.level,
            seasonal,
            spread,
            hourly,
        })
    }

    /// The profile's highest deviation over the lead (bots at fixed minutes), once every
    /// minute of the hour has been seen a few times.
    fn hourly_offer(&self, p: &Predictive, now: Seconds) -> f64 {
        if !self.hourly_ready() {
            return 0.0;
        }
        let mut dev = f64::NEG_INFINITY;
        let mut t = now + 1.0;
        while t <= now + p.lead + 1e-9 {
            dev = dev.max(f64::from(self.hourly[minute_of_hour(t)]));
            t += 60.0;
        }
        if dev.is_finite() { dev } else { 0.0 }
    }
}

fn minute_of_hour(t: Seconds) -> usize {
    ((t / 60.0).floor() as i64).rem_euclid(HOUR_SLOTS as i64) as usize
}

impl Predictor {
    /// The hourly profile counts once every minute of the hour was seen a few times.
    fn hourly_ready(&self) -> bool {
        self.hourly_seen.iter().all(|&n| n >= 3)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn daily() -> Predictive {
        Predictive {
            seasons: vec![86_400.0],
            seasons_kept: 2,
            slot: 60.0,
            lead: 60.0,
            warmup: 86_400.0,
            sigmas: 0.0,
            level_window: 600.0,
            noise_window: 3600.0,
            saturation: 1.0,
            noise_exponent: 0.5,
            persistence: 0.0,
            exceedance: 0.0,
            skill_margin: -1.0,
            hourly: false,
            floor_hold: 0.0,
            churn_sigmas: 0.0,
            down_step: 0.0,
            up_step: 0.0,
            down_every: 0.0,
            down_window: None,
            down_window_cv: 0.0,
            budget: 0.0,
            budget_window: 86_400.0,
        }
    }

    #[test]
    fn a_week_of_minutes_fits_in_a_bounded_ring() {
        let p = Predictive {
            seasons: vec![86_400.0, 604_800.0],
            seasons_kept: 1,
            ..daily()
        };
        let s = Seasonality::new(&p);
        assert!(s.slots() < 10_100, "{}", s.slots());
    }

    #[test]
    fn the_forecast_follows_the_recurring_ramp_ahead_of_the_level() {
        let p = daily();
        let mut f = Predictor::new(&p);
        // Every day: 10 replicas' worth, 30 from 12:00.
        let demand = |t: f64| {
            if (t % 86_400.0) >= 43_200.0 {
                30.0
            } else {
                10.0
            }
        };
        let mut t = 0.0;
        while t < 2.0 * 86_400.0 + 43_140.0 {
            f.observe(&p, t, demand(t));
            t += 15.0;
        }
        let fc = f.forecast(&p, t).expect("warmed up");
        assert!((fc.level - 10.0).abs() < 1e-6, "{fc:?}");
        // The seasonal factor anticipates (part of) the noon step, smoothed over ±15 slots.
        assert!(fc.seasonal > 1.2, "{fc:?}");
    }

    #[test]
    fn the_spread_grows_with_noisy_demand() {
        let p = Predictive {
            sigmas: 2.0,
            ..daily()
        };
        let mut f = Predictor::new(&p);
        for i in 0..2000 {
            let d = if i % 2 == 0 { 6.0 } else { 14.0 };
            f.observe(&p, f64::from(i) * 15.0, d);
        }
        let fc = f.forecast(&p, 30_000.0).expect("warmed up");
        assert!(fc.spread > 3.0 && fc.demand > fc.level + 6.0, "{fc:?}");
    }

    /// Two hours of demand alternating around `centre` by ±`swing`, then one `last` sample.
    fn trained(p: &Predictive, centre: f64, swing: f64, last: f64) -> Predictor {
        let mut f = Predictor::new(p);
        for i in 0..480 {
            let d = if i % 2 == 0 {
                centre - swing
            } else {
                centre + swing
            };
            f.observe(p, f64::from(i) * 15.0, d);
        }
        f.observe(p, 480.0 * 15.0, last);
        f
    }

    #[test]
    fn the_forecast_mean_leans_toward_a_persisting_deviation() {
        let none = daily();
        let half = Predictive {
            persistence: 0.5,
            ..daily()
        };
        let a = trained(&none, 10.0, 2.0, 30.0)
            .forecast(&none, 7200.0)
            .expect("warmed up");
        let b = trained(&half, 10.0, 2.0, 30.0)
            .forecast(&half, 7200.0)
            .expect("warmed up");
        // Without persistence the spike only moves the level; with it, half of the spike's
        // excess over the level is expected to last.
        assert!((a.mean - a.level).abs() < 1e-9, "{a:?}");
        assert!(
            (b.mean - (b.level + 0.5 * (30.0 - b.level))).abs() < 1e-9,
            "{b:?}"
        );
    }

    #[test]
    fn persistence_narrows_the_spread_by_what_it_explains() {
        let none = daily();
        let some = Predictive {
            persistence: 0.6,
            ..daily()
        };
        let a = trained(&none, 10.0, 2.0, 10.0)
            .forecast(&none, 7200.0)
            .expect("warmed up");
        let b = trained(&some, 10.0, 2.0, 10.0)
            .forecast(&some, 7200.0)
            .expect("warmed up");
        assert!((b.spread - 0.8 * a.spread).abs() < 1e-9, "{a:?} {b:?}");
    }

    #[test]
    fn a_zero_noise_exponent_gives_one_spread_at_every_level() {
        // The noise is learnt at a level of 10; then the level moves to 100.
        let spread_at = |p: &Predictive, level: f64| {
            let mut f = trained(p, 10.0, 2.0, 10.0);
            f.level = level;
            f.forecast(p, 7200.0).expect("warmed up").spread
        };
        let flat = Predictive {
            noise_exponent: 0.0,
            ..daily()
        };
        let (low, high) = (spread_at(&flat, 10.0), spread_at(&flat, 100.0));
        assert!((high - low).abs() < 1e-9, "{low} {high}");
        // Poisson-like (0.5): ten times the level, sqrt(10) times the spread.
        let poisson = daily();
        let (low, high) = (spread_at(&poisson, 10.0), spread_at(&poisson, 100.0));
        assert!((high - 10f64.sqrt() * low).abs() < 1e-9, "{low} {high}");
    }
}
