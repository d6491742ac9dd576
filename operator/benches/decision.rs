//! Cost of one scaling decision with a week of one-minute history behind it.
//!
//! Each engine is first fed seven days of one-minute samples (a diurnal shape with noise),
//! then each measured iteration is one more tick 15 s later: the state the controller has
//! after a week of running. Run: `cargo bench -p marketplace-operator --bench decision`.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use marketplace_operator::scaling::{
    Engine, MetricReading, Observation, Policy, default_scaling_spec,
};

const WEEK_MINUTES: u32 = 7 * 1440;

/// Deterministic diurnal demand with ±20% noise, in requests/s.
fn load(minute: u32, seed: &mut u64) -> f64 {
    *seed = seed
        .wrapping_mul(6_364_136_223_846_793_005)
        .wrapping_add(1_442_695_040_888_963_407);
    let noise = ((*seed >> 33) as f64 / (1u64 << 31) as f64 - 0.5) * 0.4;
    let hour = f64::from(minute % 1440) / 60.0;
    let shape = 0.5 - 0.5 * ((hour - 3.0) / 24.0 * std::f64::consts::TAU).cos();
    (100.0 + 1900.0 * shape) * (1.0 + noise)
}

struct Run {
    engine: Engine,
    now: f64,
    current: u32,
    minute: u32,
    seed: u64,
}

impl Run {
    fn tick(&mut self, dt: f64) -> u32 {
        self.now += dt;
        if self.now >= f64::from(self.minute + 1) * 60.0 {
            self.minute += 1;
        }
        let rps = load(self.minute, &mut self.seed);
        let readings = [MetricReading::average(
            rps / f64::from(self.current),
            self.current,
        )];
        let d = self.engine.decide(&Observation {
            now: self.now,
            current_replicas: self.current,
            ready_replicas: self.current,
            metrics: &readings,
            pods: &[],
        });
        self.current = d.desired.max(1);
        d.desired
    }
}

/// An engine after a week of one-minute samples.
fn warmed(policy: Policy) -> Run {
    let engine = match Engine::new(policy) {
        Ok(e) => e,
        Err(e) => panic!("benchmark policy is invalid: {e}"),
    };
    let mut run = Run {
        engine,
        now: 0.0,
        current: 4,
        minute: 0,
        seed: 7,
    };
    while run.minute < WEEK_MINUTES {
        run.tick(60.0);
    }
    run
}

fn recommended(season: i32) -> Policy {
    let mut spec = default_scaling_spec(50.0, 200);
    if let Some(p) = spec.predictive.as_mut() {
        p.season_seconds = Some(season);
        p.seasons = Some(if season > 86_400 { 1 } else { 3 });
    }
    match Policy::from_spec(&spec) {
        Ok(p) => p,
        Err(e) => panic!("recommended block is invalid: {e}"),
    }
}

fn decision(c: &mut Criterion) {
    let mut g = c.benchmark_group("decision");
    let mut hpa = warmed(Policy::hpa(1, 200, 50.0));
    g.bench_function("hpa_defaults", |b| b.iter(|| black_box(hpa.tick(15.0))));
    let mut daily = warmed(recommended(86_400));
    g.bench_function("recommended_daily_season_week_of_history", |b| {
        b.iter(|| black_box(daily.tick(15.0)))
    });
    let mut weekly = warmed(recommended(604_800));
    g.bench_function("recommended_weekly_season_week_of_history", |b| {
        b.iter(|| black_box(weekly.tick(15.0)))
    });
    let mut long_windows = {
        let mut p = recommended(604_800);
        // The HPA's longest windows: a 3600 s scale-down window, polled every second.
        p.scale_down.stabilization_window = 3600.0;
        p.poll_interval = 1.0;
        warmed(p)
    };
    g.bench_function("recommended_weekly_season_3600s_window", |b| {
        b.iter(|| black_box(long_windows.tick(1.0)))
    });
    g.finish();
}

criterion_group!(benches, decision);
criterion_main!(benches);
