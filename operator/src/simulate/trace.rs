//! Load traces: CSV `t_seconds,requests_per_second`, resampled to the simulation step, and
//! synthetic shapes generated on demand.
//!
//! A row's rate holds from its time until the next row's (the shared traces are per-minute
//! counts divided by 60, so this is exactly what they measured); the last row holds for
//! the median row spacing. Resampling integrates that step function over each simulation
//! step, so the request volume is preserved at any step.

use std::path::Path;

/// A trace on a uniform grid: `rates[i]` holds over `[i × step, (i + 1) × step)`.
#[derive(Clone, Debug, PartialEq)]
pub struct Trace {
    pub name: String,
    pub step: f64,
    pub rates: Vec<f64>,
}

#[derive(Debug, thiserror::Error)]
pub enum TraceError {
    #[error("failed to read trace {path}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}:{line}: {message}")]
    Malformed {
        path: String,
        line: usize,
        message: String,
    },
    #[error(
        "{path}:{line}: t_seconds {t} is not after the previous row's {previous} (time must increase)"
    )]
    NonMonotonic {
        path: String,
        line: usize,
        t: f64,
        previous: f64,
    },
    #[error("{path}:{line}: requests_per_second is negative ({value})")]
    NegativeRate {
        path: String,
        line: usize,
        value: f64,
    },
    #[error("{path}: the trace has no data rows")]
    Empty { path: String },
    #[error("simulation step must be positive, got {0}")]
    BadStep(f64),
    #[error("the trace would need {0} simulation steps; use a larger --step-seconds")]
    TooLong(f64),
}

impl Trace {
    pub fn duration(&self) -> f64 {
        self.step * self.rates.len() as f64
    }

    pub fn peak(&self) -> f64 {
        self.rates.iter().copied().fold(0.0, f64::max)
    }

    pub fn mean(&self) -> f64 {
        if self.rates.is_empty() {
            0.0
        } else {
            self.rates.iter().sum::<f64>() / self.rates.len() as f64
        }
    }

    /// Reads a CSV trace; errors name the file, line and field.
    pub fn from_csv_file(path: &Path) -> Result<Self, TraceError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| TraceError::Read {
            path: shown.clone(),
            source,
        })?;
        let name = path
            .file_stem()
            .map_or_else(|| shown.clone(), |s| s.to_string_lossy().into_owned());
        Self::from_csv(&name, &shown, &text)
    }

    /// Parses CSV text. A first line that is not numeric is taken as the header.
    pub fn from_csv(name: &str, path: &str, text: &str) -> Result<Self, TraceError> {
        let mut times: Vec<f64> = Vec::new();
        let mut rates: Vec<f64> = Vec::new();
        for (i, raw) in text.lines().enumerate() {
            let line = i + 1;
            let row = raw.trim();
            if row.is_empty() || row.starts_with('#') {
                continue;
            }
            let malformed = |message: String| TraceError::Malformed {
                path: path.to_string(),
                line,
                message,
            };
            let mut fields = row.split(',').map(str::trim);
            let (Some(t), Some(r), None) = (fields.next(), fields.next(), fields.next()) else {
                return Err(malformed(format!(
                    "expected 2 fields `t_seconds,requests_per_second`, got {:?}",
                    row
                )));
            };
            let t_parsed = t.parse::<f64>();
            if times.is_empty() && rates.is_empty() && t_parsed.is_err() && i == 0 {
                if t != "t_seconds" || r != "requests_per_second" {
                    return Err(malformed(format!(
                        "header must be `t_seconds,requests_per_second`, got {:?}",
                        row
                    )));
                }
                continue;
            }
            let t = t_parsed
                .ok()
                .filter(|v| v.is_finite())
                .ok_or_else(|| malformed(format!("t_seconds {t:?} is not a number")))?;
            let r = r
                .parse::<f64>()
                .ok()
                .filter(|v| v.is_finite())
                .ok_or_else(|| malformed(format!("requests_per_second {r:?} is not a number")))?;
            if r < 0.0 {
                return Err(TraceError::NegativeRate {
                    path: path.to_string(),
                    line,
                    value: r,
                });
            }
            if let Some(&previous) = times.last()
                && t <= previous
            {
                return Err(TraceError::NonMonotonic {
                    path: path.to_string(),
                    line,
                    t,
                    previous,
                });
            }
            times.push(t);
            rates.push(r);
        }
        if rates.is_empty() {
            return Err(TraceError::Empty {
                path: path.to_string(),
            });
        }
        Ok(Self::from_points(name, &times, &rates))
    }

    /// Builds a uniform trace from increasing points (a step function); the grid is the
    /// median spacing, starting at the first time.
    fn from_points(name: &str, times: &[f64], rates: &[f64]) -> Self {
        let mut gaps: Vec<f64> = times.windows(2).map(|w| w[1] - w[0]).collect();
        gaps.sort_by(f64::total_cmp);
        let step = gaps.get(gaps.len() / 2).copied().unwrap_or(60.0);
        let uniform = gaps
            .first()
            .zip(gaps.last())
            .is_none_or(|(a, b)| (b - a).abs() < 1e-9);
        if uniform {
            return Self {
                name: name.to_string(),
                step,
                rates: rates.to_vec(),
            };
        }
        // Irregular rows: integrate the step function onto the median grid.
        let start = times[0];
        let end = times[times.len() - 1] + step;
        let n = ((end - start) / step).ceil() as usize;
        let mut out = vec![0.0; n];
        for (k, &r) in rates.iter().enumerate() {
            let a = times[k] - start;
            let b = times.get(k + 1).map_or(end - start, |t| t - start);
            spread(&mut out, step, a, b, r);
        }
        Self {
            name: name.to_string(),
            step,
            rates: out,
        }
    }

    /// The same trace on a grid of `step` seconds (volume preserved).
    pub fn resample(&self, step: f64) -> Result<Self, TraceError> {
        if !(step.is_finite() && step > 0.0) {
            return Err(TraceError::BadStep(step));
        }
        if (step - self.step).abs() < 1e-12 {
            return Ok(self.clone());
        }
        let n = (self.duration() / step).ceil();
        if n > 1e8 {
            return Err(TraceError::TooLong(n));
        }
        let mut out = vec![0.0; n as usize];
        for (k, &r) in self.rates.iter().enumerate() {
            let a = k as f64 * self.step;
            spread(&mut out, step, a, a + self.step, r);
        }
        Ok(Self {
            name: self.name.clone(),
            step,
            rates: out,
        })
    }
}

/// Adds rate `r` over [a, b) to a grid of cells of width `step`, as time-weighted averages.
fn spread(out: &mut [f64], step: f64, a: f64, b: f64, r: f64) {
    let first = (a / step).floor().max(0.0) as usize;
    let mut cell = first;
    while cell < out.len() {
        let lo = cell as f64 * step;
        let hi = lo + step;
        if lo >= b {
            break;
        }
        let overlap = hi.min(b) - lo.max(a);
        if overlap > 0.0 {
            out[cell] += r * overlap / step;
        }
        cell += 1;
    }
}

/// Synthetic shapes, for demos and tests.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Synthetic {
    /// 100 rps for an hour, then 400 rps for an hour.
    Step,
    /// 50 rps rising linearly to 500 rps over two hours, then back down.
    Ramp,
    /// 100 rps, then a jump to 800 rps within a minute that decays over 20 minutes, twice.
    FlashCrowd,
    /// A week of days: low at night, high in the afternoon, quieter weekends, some noise.
    Diurnal,
    /// A week of marketplace traffic (`--seed` picks the week): a diurnal cycle with an
    /// evening peak, a weekend lift, 5–10 flash sales at random times that multiply the
    /// load 3–8× within 1–3 minutes, and noise. Nothing in it is announced to the policy.
    Marketplace,
    /// Three weeks of a social-media API (`--seed` picks them): a diurnal cycle, noisier
    /// than the marketplace, 1–3 bots on cron that each add 0.2–1.3× the weekday peak
    /// for 1–4 minutes at a fixed minute past the hour (in 60–100% of hours), and a few
    /// viral surges of 2–4×.
    Social,
}

/// SplitMix64: a tiny deterministic generator, so a seed gives the same week everywhere.
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }

    fn between(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.unit()
    }

    /// Standard normal (Box–Muller).
    fn normal(&mut self) -> f64 {
        let u = self.unit().max(1e-300);
        let v = self.unit();
        (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
    }
}

/// One flash sale of the marketplace week, in minutes from the trace start.
struct Sale {
    start: f64,
    rise: f64,
    plateau: f64,
    decay: f64,
    /// Peak load over the base load at its start (3–8).
    factor: f64,
}

impl Sale {
    /// Extra load, as a multiple of the base, at minute `m` (the per-minute mean).
    fn extra(&self, m: f64) -> f64 {
        let peak = self.factor - 1.0;
        // The minute [m, m+1) averaged on a fine grid so a 1-minute rise stays a ramp.
        let at = |x: f64| {
            let dt = x - self.start;
            if dt < 0.0 {
                0.0
            } else if dt < self.rise {
                peak * dt / self.rise
            } else if dt < self.rise + self.plateau {
                peak
            } else {
                peak * (-(dt - self.rise - self.plateau) / self.decay).exp()
            }
        };
        (0..6)
            .map(|k| at(m + (f64::from(k) + 0.5) / 6.0))
            .sum::<f64>()
            / 6.0
    }
}

fn marketplace_week(seed: u64) -> Vec<f64> {
    const MINUTES: usize = 7 * 1440;
    let mut rng = SplitMix(seed ^ 0x6D61_726B_6574_706C);
    let sales: Vec<Sale> = (0..(5 + rng.next() % 6))
        .map(|_| Sale {
            start: rng.between(60.0, (MINUTES - 120) as f64).floor(),
            rise: rng.between(1.0, 3.0),
            plateau: rng.between(5.0, 30.0),
            decay: rng.between(10.0, 45.0),
            factor: rng.between(3.0, 8.0),
        })
        .collect();
    // Slow drift (an AR(1) on a ~2 h time constant) and per-minute noise, both multiplicative.
    let mut drift = 0.0;
    let scale = rng.between(150.0, 400.0);
    (0..MINUTES)
        .map(|m| {
            let day = m / 1440;
            let hour = (m % 1440) as f64 / 60.0;
            // Low at 04:00, a midday shoulder, the peak in the evening around 20:30.
            let tau = std::f64::consts::TAU;
            let shape = 0.55 - 0.35 * ((hour - 4.0) / 24.0 * tau).cos()
                + 0.12 * ((hour - 20.5) / 12.0 * tau).cos();
            // Saturday and Sunday carry more traffic in a marketplace.
            let weekend = if day >= 5 { 1.3 } else { 1.0 };
            drift = 0.992 * drift + 0.01 * rng.normal();
            let base = scale * shape.max(0.08) * weekend * drift.exp();
            let sales: f64 = sales.iter().map(|s| s.extra(m as f64)).sum();
            let noise = (0.06 * rng.normal()).exp();
            (base * (1.0 + sales) * noise).max(0.0)
        })
        .collect()
}

/// One cron bot of the social trace: fires at `minute` past the hour.
struct Bot {
    minute: f64,
    length: f64,
    factor: f64,
    /// Share of hours it runs in.
    duty: f64,
}

fn social_weeks(seed: u64) -> Vec<f64> {
    const MINUTES: usize = 22 * 1440;
    let mut rng = SplitMix(seed ^ 0x736F_6369_616C_6170);
    let bots: Vec<Bot> = (0..(1 + rng.next() % 3))
        .map(|_| Bot {
            minute: (rng.next() % 60) as f64,
            length: rng.between(1.0, 4.0),
            factor: rng.between(0.5, 3.0),
            duty: rng.between(0.6, 1.0),
        })
        .collect();
    let surges: Vec<Sale> = (0..(2 + rng.next() % 4))
        .map(|_| Sale {
            start: rng.between(60.0, (MINUTES - 240) as f64).floor(),
            rise: rng.between(3.0, 15.0),
            plateau: rng.between(10.0, 60.0),
            decay: rng.between(30.0, 120.0),
            factor: rng.between(2.0, 4.0),
        })
        .collect();
    let scale = rng.between(200.0, 600.0);
    let mut drift = 0.0;
    let mut running = vec![false; bots.len()];
    (0..MINUTES)
        .map(|m| {
            let day = m / 1440;
            let hour = (m % 1440) as f64 / 60.0;
            let minute = (m % 60) as f64;
            if m % 60 == 0 {
                for (on, bot) in running.iter_mut().zip(&bots) {
                    *on = rng.unit() < bot.duty;
                }
            }
            let tau = std::f64::consts::TAU;
            let shape = 0.5 - 0.4 * ((hour - 5.0) / 24.0 * tau).cos();
            let weekend = if day % 7 >= 5 { 0.85 } else { 1.0 };
            drift = 0.99 * drift + 0.015 * rng.normal();
            let base = scale * shape.max(0.05) * weekend * drift.exp();
            let bots: f64 = bots
                .iter()
                .zip(&running)
                .filter(|(bot, on)| {
                    **on && minute >= bot.minute && minute < bot.minute + bot.length
                })
                .map(|(bot, _)| bot.factor)
                .sum();
            let surges: f64 = surges.iter().map(|s| s.extra(m as f64)).sum();
            let noise = (0.12 * rng.normal()).exp();
            (base * (1.0 + surges) * noise + scale * 0.4 * bots).max(0.0)
        })
        .collect()
}

impl Synthetic {
    /// The shape with a seed (`marketplace` and `social` use it: the others are fixed).
    pub fn generate_seeded(self, seed: u64) -> Trace {
        match self {
            Self::Marketplace => Trace {
                name: format!("synthetic-marketplace-{seed}"),
                step: 60.0,
                rates: marketplace_week(seed),
            },
            Self::Social => Trace {
                name: format!("synthetic-social-{seed}"),
                step: 60.0,
                rates: social_weeks(seed),
            },
            other => other.generate(),
        }
    }

    pub fn generate(self) -> Trace {
        let (name, step, rates): (&str, f64, Vec<f64>) = match self {
            Self::Step => (
                "synthetic-step",
                60.0,
                (0..120)
                    .map(|m| if m < 60 { 100.0 } else { 400.0 })
                    .collect(),
            ),
            Self::Ramp => (
                "synthetic-ramp",
                60.0,
                (0..240)
                    .map(|m| {
                        let x = if m < 120 {
                            m as f64 / 120.0
                        } else {
                            (240 - m) as f64 / 120.0
                        };
                        50.0 + 450.0 * x
                    })
                    .collect(),
            ),
            Self::FlashCrowd => (
                "synthetic-flash-crowd",
                10.0,
                (0..(6 * 360))
                    .map(|i| {
                        let t = i as f64 * 10.0;
                        let crowd = |start: f64| {
                            if t < start {
                                0.0
                            } else if t < start + 60.0 {
                                700.0 * (t - start) / 60.0
                            } else {
                                700.0 * (-(t - start - 60.0) / 600.0).exp()
                            }
                        };
                        100.0 + crowd(3600.0) + crowd(4.0 * 3600.0)
                    })
                    .collect(),
            ),
            Self::Diurnal => {
                let mut seed: u64 = 0x9E37_79B9_7F4A_7C15;
                let rates = (0..(7 * 1440))
                    .map(|m| {
                        // A small deterministic LCG so the shape is the same on every run.
                        seed = seed
                            .wrapping_mul(6_364_136_223_846_793_005)
                            .wrapping_add(1_442_695_040_888_963_407);
                        let noise = ((seed >> 33) as f64 / (1u64 << 31) as f64 - 0.5) * 0.2;
                        let day = m / 1440;
                        let hour = (m % 1440) as f64 / 60.0;
                        let shape = 0.5 - 0.5 * ((hour - 3.0) / 24.0 * std::f64::consts::TAU).cos();
                        let weekend = if day >= 5 { 0.6 } else { 1.0 };
                        (40.0 + 360.0 * shape * weekend) * (1.0 + noise)
                    })
                    .collect();
                ("synthetic-diurnal", 60.0, rates)
            }
            Self::Marketplace | Self::Social => return self.generate_seeded(1),
        };
        Trace {
            name: name.to_string(),
            step,
            rates,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_social_weeks_have_bots_at_fixed_minutes_past_the_hour() {
        let t = Synthetic::Social.generate_seeded(7);
        assert_eq!(t.rates, Synthetic::Social.generate_seeded(7).rates);
        assert_ne!(t.rates, Synthetic::Social.generate_seeded(8).rates);
        assert_eq!(t.rates.len(), 22 * 1440);
        // The mean load at each minute of the hour: the bots' minutes stand out.
        let mut by_minute = [0.0f64; 60];
        for (m, r) in t.rates.iter().enumerate() {
            by_minute[m % 60] += r / 528.0;
        }
        let mut sorted = by_minute;
        sorted.sort_by(f64::total_cmp);
        let median = sorted[30];
        let peak = sorted[59];
        assert!(peak > 1.3 * median, "peak {peak:.0} vs median {median:.0}");
        assert!(t.rates.iter().all(|r| r.is_finite() && *r >= 0.0));
    }

    #[test]
    fn a_header_and_rows_parse_into_a_uniform_trace() {
        let t = Trace::from_csv(
            "x",
            "x.csv",
            "t_seconds,requests_per_second\n0,1.5\n60,2\n120,0\n",
        )
        .expect("valid trace");
        assert_eq!(t.step, 60.0);
        assert_eq!(t.rates, vec![1.5, 2.0, 0.0]);
    }

    #[test]
    fn a_malformed_line_is_reported_with_its_number() {
        let err = Trace::from_csv("x", "x.csv", "t_seconds,requests_per_second\n0,1\n60;2\n")
            .expect_err("line 3 is malformed");
        assert!(err.to_string().starts_with("x.csv:3:"), "{err}");
    }

    #[test]
    fn time_going_backwards_is_an_error_naming_the_line() {
        let err = Trace::from_csv("x", "x.csv", "0,1\n60,2\n30,2\n").expect_err("not monotonic");
        assert!(
            matches!(err, TraceError::NonMonotonic { line: 3, .. }),
            "{err}"
        );
    }

    #[test]
    fn a_negative_rate_is_an_error_naming_the_line() {
        let err = Trace::from_csv("x", "x.csv", "t_seconds,requests_per_second\n0,-1\n")
            .expect_err("negative");
        assert!(
            matches!(err, TraceError::NegativeRate { line: 2, .. }),
            "{err}"
        );
    }

    #[test]
    fn an_empty_trace_is_an_error() {
        let err =
            Trace::from_csv("x", "x.csv", "t_seconds,requests_per_second\n").expect_err("empty");
        assert!(matches!(err, TraceError::Empty { .. }));
    }

    #[test]
    fn a_wrong_header_is_an_error() {
        let err = Trace::from_csv("x", "x.csv", "time,rps\n0,1\n").expect_err("bad header");
        assert!(err.to_string().contains("header"), "{err}");
    }

    #[test]
    fn resampling_preserves_the_request_volume() {
        let t = Trace {
            name: "x".into(),
            step: 60.0,
            rates: vec![1.0, 3.0],
        };
        let r = t.resample(1.0).expect("valid step");
        assert_eq!(r.rates.len(), 120);
        let volume: f64 = r.rates.iter().sum();
        assert!((volume - 240.0).abs() < 1e-9);
        let coarse = t.resample(120.0).expect("valid step");
        assert_eq!(coarse.rates, vec![2.0]);
    }

    #[test]
    fn a_marketplace_week_has_sales_of_three_to_eight_times_within_three_minutes() {
        let a = Synthetic::Marketplace.generate_seeded(101);
        let b = Synthetic::Marketplace.generate_seeded(101);
        let c = Synthetic::Marketplace.generate_seeded(102);
        assert_eq!(a, b, "a seed gives the same week");
        assert_ne!(a.rates, c.rates);
        assert_eq!(a.rates.len(), 7 * 1440);
        // Somewhere the load more than doubles within three minutes (a sale's onset).
        let jumps = a.rates.windows(4).filter(|w| w[3] > 2.5 * w[0]).count();
        assert!(jumps >= 5, "{jumps}");
        assert!(a.peak() > 2.0 * a.mean());
    }

    #[test]
    fn irregular_rows_are_put_on_the_median_grid() {
        let t = Trace::from_csv("x", "x.csv", "0,1\n60,2\n120,3\n150,4\n").expect("valid");
        assert_eq!(t.step, 60.0);
        // 120..150 at 3 and 150..210 at 4 → cell 2 = 3.5, cell 3 = 2 (half of 4).
        assert_eq!(t.rates, vec![1.0, 2.0, 3.5, 2.0]);
    }
}
