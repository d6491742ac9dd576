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

/// Level, noise and season together: everything `Predictive` needs, updated per sample.
#[derive(Clone, Debug)]
pub struct Predictor {
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
        true
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
        let expected = self.level * seasonal;
        let phi = p.persistence;
        let mean = (expected + phi * (self.latest - self.level)).max(0.0);
        let spread = self.dispersion.sqrt()
            * expected.max(1.0).powf(p.noise_exponent)
            * (1.0 - phi * phi).max(0.0).sqrt();
        Some(Forecast {
            demand: mean + p.sigmas * spread,
            mean,
            level: self.level,
            seasonal,
            spread,
        })
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
