//! Cost of one scaling decision with a week of one-minute history behind it.
//!
//! Each engine is first fed seven days of one-minute samples (a diurnal shape with noise),
//! then each measured iteration is one more tick 15 s later: the state the controller has
//! after a week of running. Run: `cargo bench -p marketplace-operator --bench decision`.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use marketplace_operator::scaling::pods::{
    ConditionStatus, Container, ContainerKind, Pod, PodMetric, PodPhase, ReadyCondition, Sample,
};
use marketplace_operator::scaling::{
    Engine, MetricKind, MetricPolicy, MetricReading, Observation, Policy, TargetType,
    default_scaling_spec,
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
    pod_list(&mut g);
    g.finish();
}

/// The HPA's CPU utilization from a pod list of 100 pods (a tenth of them young, so the
/// initialization rules run), as a controller that lists pods would call it.
fn pod_list(g: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>) {
    const PODS: usize = 100;
    let mut policy = Policy::hpa(1, 200, 1.0);
    policy.metrics = vec![MetricPolicy {
        kind: MetricKind::Cpu,
        target_type: TargetType::Utilization,
        target: 60.0,
    }];
    let mut engine = match Engine::new(policy) {
        Ok(e) => e,
        Err(e) => panic!("benchmark policy is invalid: {e}"),
    };
    let names: Vec<String> = (0..PODS).map(|i| format!("orders-7d9f8-{i:05}")).collect();
    let containers = [
        Container {
            name: "app",
            kind: ContainerKind::Regular,
            request: Some(500),
        },
        Container {
            name: "proxy",
            kind: ContainerKind::Sidecar,
            request: Some(100),
        },
    ];
    let now = 1_000_000.0;
    let pods: Vec<Pod<'_>> = names
        .iter()
        .enumerate()
        .map(|(i, name)| {
            let start = if i % 10 == 0 { now - 60.0 } else { 0.0 };
            Pod {
                name,
                phase: PodPhase::Running,
                deleting: false,
                ready: Some(ReadyCondition {
                    status: ConditionStatus::True,
                    last_transition: start + 20.0,
                }),
                start_time: Some(start),
                containers: &containers,
                pod_request: None,
            }
        })
        .collect();
    let samples: Vec<Sample<'_>> = names
        .iter()
        .enumerate()
        .map(|(i, name)| Sample {
            pod: name,
            value: 300 + (i as i64 * 37) % 200,
            timestamp: now,
            window: 30.0,
        })
        .collect();
    let input = [Some(PodMetric {
        pods: &pods,
        samples: &samples,
        container: None,
        resource: "cpu",
    })];
    let mut t = now;
    g.bench_function("hpa_cpu_utilization_from_100_pods", |b| {
        b.iter(|| {
            t += 15.0;
            black_box(engine.decide(&Observation {
                now: t,
                current_replicas: PODS as u32,
                ready_replicas: PODS as u32,
                metrics: &[],
                pods: &input,
            }))
        })
    });
}

criterion_group!(benches, decision);
criterion_main!(benches);
