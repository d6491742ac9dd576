//! `marketplace-operator dev`: the whole product offline, in one process. A devcluster with
//! simulated workloads, the CRDs, the sample marketplace (manifests/samples/), the
//! controllers, and traffic: a real trace split over the four domains and replayed `--speed`
//! times faster through a metrics source that sees only Ready pods, a scrape late.
//!
//! The same trace also goes through the simulator with the same service model, and the
//! summary puts the two side by side: where they differ, one of them is wrong.

mod cache_traffic;
mod world;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, ResourceExt};
use marketplace_crds::v1alpha1::{CacheTier, MarketplaceService, MetricType};

pub use self::world::{ServiceLoad, SimulatedMetrics};
use crate::cache::{Auth, Local};
use crate::controllers::cache_tier::CacheSettings;
use crate::controllers::marketplace_service::Autoscalers;
use crate::controllers::marketplace_service::build::NAME_LABEL;
use crate::controllers::{Clock, Context, Settings, Telemetry, run_all};
use crate::scaling::{Policy, SpecError};
use crate::simulate::{
    Accumulator, Bursts, Controller, Model, PolicyResult, Ratios, Results, Trace, TraceError,
    TraceInfo, replay, simulated_policy,
};

/// The sample marketplace `dev` runs (and `kubectl apply -f manifests/samples/` installs).
pub const SAMPLES: &str = include_str!("../../../manifests/samples/marketplace.yaml");
/// The bundled traffic: the 1998 World Cup web site, June 1998 (traces/README.md).
const BUNDLED_TRACE: &str = include_str!("../../../traces/worldcup98_1998-06_60s.csv");
/// The window of it `dev` replays: 25 June, 13:00 to 16:30 local time, a match-day flash
/// crowd (about 600 → 3,100 rps within three hours, then back down).
const BUNDLED_FROM: f64 = 24.0 * 86_400.0 + 13.0 * 3_600.0;
const BUNDLED_TO: f64 = 24.0 * 86_400.0 + 16.5 * 3_600.0;

/// Replicas each sample service needs at the trace's peak; the trace is scaled to that.
const PEAK_REPLICAS: &[(&str, f64)] = &[
    ("orders", 12.0),
    ("inventory", 18.0),
    ("users", 14.0),
    ("payments", 8.0),
];
const STARTUP_SECONDS: f64 = 30.0;
const SCRAPE_SECONDS: f64 = 15.0;
const UTILIZATION: f64 = 0.7;

/// Arguments of `marketplace-operator dev`.
#[derive(Clone, Debug, clap::Args)]
pub struct DevArgs {
    /// Keep the API server and controllers running until Ctrl-C (the traffic holds its last
    /// value once the trace ends).
    #[arg(long)]
    pub serve: bool,
    /// Where to write the kubeconfig of the embedded API server (written as soon as it
    /// listens).
    #[arg(long, default_value = "./devcluster.kubeconfig")]
    pub kubeconfig: PathBuf,
    /// How much faster than real time simulated time runs.
    #[arg(long, default_value_t = 200.0)]
    pub speed: f64,
    /// A trace CSV (`t_seconds,requests_per_second`) to replay instead of the bundled one.
    #[arg(long, value_name = "FILE.csv")]
    pub trace: Option<PathBuf>,
    /// Where to write the HTML report.
    #[arg(long, default_value = "dev-report.html")]
    pub report: PathBuf,
    /// Serve the controllers through the devcluster's fault injection: this share of API
    /// requests fails (500, 409, 429), is delayed or dropped, and watches are cut.
    #[arg(long, value_name = "RATE")]
    pub faults: Option<f64>,
    /// The Redis on this machine that stands in for every CacheTier: the operator
    /// administers it for real (CONFIG SET, INFO, flushes) and the services' cache traffic
    /// goes to it.
    #[arg(long, value_name = "HOST:PORT", default_value = "127.0.0.1:6379")]
    pub redis: String,
}

#[derive(Debug, thiserror::Error)]
pub enum DevError {
    #[error("--speed must be a positive number, got {0}")]
    Speed(f64),
    #[error("--faults must be between 0 and 1, got {0}")]
    Faults(f64),
    #[error("--redis must be HOST:PORT, got {0:?}")]
    Redis(String),
    #[error(transparent)]
    Trace(#[from] TraceError),
    #[error("the trace window has no data")]
    EmptyTrace,
    #[error("failed to start the devcluster")]
    Cluster(#[source] devcluster::Error),
    #[error("failed to print the CRDs")]
    Crds(#[source] marketplace_crds::SerializeCrd),
    #[error("the sample manifests are invalid: {0}")]
    Samples(String),
    #[error("sample service {name} has no RequestsPerSecond metric to drive")]
    SampleMetric { name: String },
    #[error("sample service {name}: {source}")]
    SamplePolicy {
        name: String,
        #[source]
        source: SpecError,
    },
    #[error(transparent)]
    Simulate(#[from] crate::simulate::SimulateError),
    #[error(transparent)]
    Model(#[from] crate::simulate::ModelError),
    #[error("failed to write the report {path}")]
    Write {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// What a run measured, per service: the controllers on the devcluster, and the simulator.
#[derive(Clone, Debug)]
pub struct Outcome {
    pub runs: Vec<Results>,
}

impl Outcome {
    /// (dev, simulate) figures of one service.
    pub fn pair(&self, service: &str) -> Option<(&PolicyResult, &PolicyResult)> {
        let r = self.runs.iter().find(|r| r.trace.name == service)?;
        Some((r.get("dev")?, r.get("simulate")?))
    }
}

/// A sample service with what `dev` needs of it.
struct Sample {
    name: String,
    namespace: String,
    policy: Policy,
    target_rps: f64,
    /// The key prefix of its cache, when it uses one.
    cache_prefix: Option<String>,
}

fn samples() -> Result<Vec<Sample>, DevError> {
    let docs: Vec<serde_json::Value> =
        serde_saphyr::from_str_multiple(SAMPLES).map_err(|e| DevError::Samples(e.to_string()))?;
    let mut out = Vec::new();
    for doc in docs {
        if doc.get("kind").and_then(|k| k.as_str()) != Some("MarketplaceService") {
            continue;
        }
        let msvc: MarketplaceService =
            serde_json::from_value(doc).map_err(|e| DevError::Samples(e.to_string()))?;
        let name = msvc.metadata.name.clone().unwrap_or_default();
        let namespace = msvc
            .metadata
            .namespace
            .clone()
            .unwrap_or_else(|| "default".to_owned());
        let Some(scaling) = &msvc.spec.scaling else {
            continue;
        };
        let target_rps = scaling
            .metrics
            .iter()
            .find(|m| m.type_ == MetricType::RequestsPerSecond)
            .map(|m| m.target)
            .ok_or_else(|| DevError::SampleMetric { name: name.clone() })?;
        let policy = Policy::from_spec(scaling).map_err(|source| DevError::SamplePolicy {
            name: name.clone(),
            source,
        })?;
        let cache_prefix = msvc.spec.cache.as_ref().map(|c| {
            c.key_prefix
                .clone()
                .unwrap_or_else(|| format!("{}:", msvc.spec.domain))
        });
        out.push(Sample {
            name,
            namespace,
            policy,
            target_rps,
            cache_prefix,
        });
    }
    Ok(out)
}

/// The traffic to replay, on a one-second grid.
fn base_trace(args: &DevArgs) -> Result<Trace, DevError> {
    let trace = match &args.trace {
        Some(path) => Trace::from_csv_file(path)?,
        None => {
            let full = Trace::from_csv(
                "worldcup98 1998-06-25 13:00-16:30",
                "traces/worldcup98_1998-06_60s.csv",
                BUNDLED_TRACE,
            )?;
            let (a, b) = (
                (BUNDLED_FROM / full.step) as usize,
                (BUNDLED_TO / full.step) as usize,
            );
            Trace {
                name: full.name,
                step: full.step,
                rates: full
                    .rates
                    .get(a..b.min(full.rates.len()))
                    .unwrap_or_default()
                    .to_vec(),
            }
        }
    };
    if trace.rates.is_empty() || trace.peak() <= 0.0 {
        return Err(DevError::EmptyTrace);
    }
    Ok(trace.resample(1.0)?)
}

/// Each service's share: the trace's shape, scaled so its peak needs the service's
/// `PEAK_REPLICAS` at its target.
fn split(trace: &Trace, samples: &[Sample]) -> Vec<ServiceLoad> {
    let peak = trace.peak().max(f64::MIN_POSITIVE);
    samples
        .iter()
        .map(|s| {
            let replicas = PEAK_REPLICAS
                .iter()
                .find(|(n, _)| *n == s.name)
                .map_or(10.0, |(_, r)| *r);
            let scale = replicas * s.target_rps / peak;
            ServiceLoad {
                namespace: s.namespace.clone(),
                name: s.name.clone(),
                target_rps: s.target_rps,
                trace: Trace {
                    name: s.name.clone(),
                    step: trace.step,
                    rates: trace.rates.iter().map(|r| r * scale).collect(),
                },
            }
        })
        .collect()
}

fn model_for(load: &ServiceLoad, policy: &Policy, origin: f64) -> Model {
    Model {
        capacity_rps: load.target_rps / UTILIZATION,
        target_utilization: UTILIZATION,
        startup_seconds: STARTUP_SECONDS,
        scrape_interval_seconds: SCRAPE_SECONDS,
        step_seconds: 1.0,
        min_replicas: policy.min_replicas,
        max_replicas: policy.max_replicas,
        start_unix_seconds: origin,
    }
}

/// The sample namespace's Deployments and Pods as the API server has them, kept by watches.
/// Serving capacity is counted in Ready Pods, as a Service's endpoints are: the Deployment's
/// `readyReplicas` trails them by two status updates.
struct Deployments {
    deployments: Store<Deployment>,
    pods: Store<Pod>,
    tiers: Store<CacheTier>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

fn mirror<K>(api: Api<K>) -> (Store<K>, tokio::task::JoinHandle<()>)
where
    K: kube::Resource<DynamicType = ()>
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned
        + Send
        + Sync
        + 'static,
{
    let (store, writer) = reflector::store();
    let stream = reflector::reflector(writer, watcher(api, watcher::Config::default()))
        .default_backoff()
        .applied_objects();
    (store, tokio::spawn(stream.for_each(|_| async {})))
}

impl Deployments {
    fn watch(client: Client, namespace: &str) -> Self {
        let (deployments, a) = mirror(Api::<Deployment>::namespaced(client.clone(), namespace));
        let (pods, b) = mirror(Api::<Pod>::namespaced(client.clone(), namespace));
        let (tiers, c) = mirror(Api::<CacheTier>::namespaced(client, namespace));
        Self {
            deployments,
            pods,
            tiers,
            tasks: vec![a, b, c],
        }
    }

    /// (spec replicas, Ready Pods) of a service, if its Deployment exists.
    fn replicas(&self, namespace: &str, name: &str) -> Option<(u32, u32)> {
        let d = self
            .deployments
            .get(&ObjectRef::new(name).within(namespace))?;
        let spec = u32::try_from(d.spec.replicas.unwrap_or(1)).unwrap_or(0);
        let ready = self
            .pods
            .state()
            .iter()
            .filter(|p| {
                p.metadata.deletion_timestamp.is_none()
                    && p.labels().get(NAME_LABEL).map(String::as_str) == Some(name)
                    && p.status
                        .as_ref()
                        .and_then(|s| s.conditions.as_ref())
                        .is_some_and(|cs| {
                            cs.iter().any(|c| c.type_ == "Ready" && c.status == "True")
                        })
            })
            .count();
        Some((spec, u32::try_from(ready).unwrap_or(u32::MAX)))
    }
}

impl Drop for Deployments {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

fn parse_redis(address: &str) -> Result<Local, DevError> {
    let bad = || DevError::Redis(address.to_owned());
    let (host, port) = address.rsplit_once(':').ok_or_else(bad)?;
    let port: u16 = port.parse().map_err(|_| bad())?;
    if host.is_empty() {
        return Err(bad());
    }
    Ok(Local {
        host: host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned(),
        port,
        auth: Auth::None,
    })
}

fn clock_text(seconds: f64) -> String {
    let s = seconds.max(0.0) as u64;
    format!("{:02}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
}

/// Runs the demo; returns what it measured. With `serve`, returns only after Ctrl-C.
pub async fn run(args: DevArgs) -> Result<Outcome, DevError> {
    if !(args.speed.is_finite() && args.speed > 0.0) {
        return Err(DevError::Speed(args.speed));
    }
    if let Some(rate) = args.faults
        && !(0.0..=1.0).contains(&rate)
    {
        return Err(DevError::Faults(rate));
    }
    let redis = parse_redis(&args.redis)?;
    let base = base_trace(&args)?;
    let samples = samples()?;
    let loads = split(&base, &samples);

    let mut config = devcluster::Config {
        kubeconfig: Some(args.kubeconfig.clone()),
        workloads: Some(devcluster::workloads::WorkloadConfig {
            pod_startup: Duration::from_secs_f64(STARTUP_SECONDS),
            speed: args.speed,
            ..devcluster::workloads::WorkloadConfig::default()
        }),
        ..devcluster::Config::default()
    };
    if let Some(rate) = args.faults {
        config.faults = Some(devcluster::FaultConfig::with_rate(rate));
    }
    let cluster = devcluster::DevCluster::start(config)
        .await
        .map_err(DevError::Cluster)?;
    let kubeconfig = args.kubeconfig.display();
    crate::say!("devcluster serving at {}", cluster.url());
    crate::say!("kubeconfig written to {kubeconfig}; watch the operator work with:");
    crate::say!("  KUBECONFIG={kubeconfig} kubectl get marketplace -A -w");
    cluster
        .apply_manifests(&crate::crd::all_crds_yaml().map_err(DevError::Crds)?)
        .map_err(DevError::Cluster)?;
    cluster
        .apply_manifests(SAMPLES)
        .map_err(DevError::Cluster)?;

    // The operator talks to the API server through the faults (when asked); the
    // simulation's own bookkeeping goes around them.
    let client = cluster.client().map_err(DevError::Cluster)?;
    let clock = Clock::scaled(crate::controllers::clock::unix_now(), args.speed);
    let metrics = Arc::new(SimulatedMetrics::new(clock, SCRAPE_SECONDS, &loads));
    let telemetry = Arc::new(Telemetry::new());
    let ctx = Arc::new(Context::new(
        client.clone(),
        clock,
        metrics.clone(),
        telemetry.clone(),
        Settings::default(),
    ));
    let autoscalers = Arc::new(Autoscalers::default());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    // Redis figures in status refresh every few real seconds, so the live table, which prints
    // every few real seconds, shows them moving.
    let cache = CacheSettings {
        stats_every: Duration::from_secs(2),
        ..CacheSettings::new(Arc::new(redis.clone()))
    };
    let controller = tokio::spawn(run_all(
        ctx.clone(),
        autoscalers.clone(),
        cache,
        async move {
            let _ = stopped.await;
        },
    ));
    let namespace = loads
        .first()
        .map_or_else(|| "marketplace".to_owned(), |l| l.namespace.clone());
    let deployments = Deployments::watch(
        cluster.spared_client().map_err(DevError::Cluster)?,
        &namespace,
    );

    let world = World {
        clock,
        loads: &loads,
        metrics: &metrics,
        deployments: &deployments,
        autoscalers: &autoscalers,
    };
    let traffic = cache_traffic::start(&redis, metrics.clone(), &loads, &samples).await;
    world.warm_up().await;
    let (origin, measured) = world.replay().await;
    let outcome = compare(&loads, &samples, origin, measured)?;
    print_summary(&outcome);
    let html = crate::simulate::services_html(
        "marketplace-operator dev",
        &format!(
            "The same traffic through the controllers on the devcluster (dev) and through the \
             simulator (simulate), per service, replayed {}× faster than real time. The trace: {}.",
            args.speed, base.name
        ),
        &outcome.runs,
    )?;
    std::fs::write(&args.report, html).map_err(|source| DevError::Write {
        path: args.report.display().to_string(),
        source,
    })?;
    crate::say!("report written to {}", args.report.display());

    if args.serve {
        crate::say!("serving until Ctrl-C: KUBECONFIG={kubeconfig} kubectl get marketplace -A");
        let serve = world.hold_traffic(origin);
        tokio::select! {
            _ = serve => {}
            _ = tokio::signal::ctrl_c() => {}
        }
    }
    drop(traffic);
    let _ = stop.send(());
    let _ = tokio::time::timeout(Duration::from_secs(10), controller).await;
    drop(deployments);
    cluster.shutdown().await;
    Ok(outcome)
}

/// The simulation's side of the demo.
struct World<'a> {
    clock: Clock,
    loads: &'a [ServiceLoad],
    metrics: &'a SimulatedMetrics,
    deployments: &'a Deployments,
    autoscalers: &'a Autoscalers,
}

/// One service's measurements during the replay.
struct Measured {
    ready: Vec<u32>,
    replicas: Vec<u32>,
}

impl World<'_> {
    /// Records every service's Ready Pods at trace time `t`, for the scrapes; returns
    /// (spec replicas, ready) per service.
    fn observe(&self, t: f64) -> Vec<(u32, u32)> {
        self.loads
            .iter()
            .map(|l| {
                let (spec, ready) = self
                    .deployments
                    .replicas(&l.namespace, &l.name)
                    .unwrap_or((0, 0));
                self.metrics.observe_ready(&l.namespace, &l.name, t, ready);
                (spec, ready)
            })
            .collect()
    }

    /// Runs the first minute's load until every service has what it needs, all ready, as
    /// `simulate` starts every policy in that steady state.
    async fn warm_up(&self) {
        crate::say!("warming up: every service scales to its starting load");
        let started = self.clock.now();
        self.metrics.start_at(started);
        let mut t = 0.0;
        loop {
            self.clock.sleep_until(started + t).await;
            let now = self.observe(t);
            let steady = self.loads.iter().zip(&now).all(|(l, &(spec, ready))| {
                let need = (l.at(0.0) / l.target_rps - 1e-9).ceil().max(1.0) as u32;
                spec >= need && ready == spec
            });
            if steady && t >= SCRAPE_SECONDS {
                return;
            }
            if t > 1_800.0 {
                crate::say!(
                    "warning: not every service reached its starting replicas in 30 simulated minutes; replaying anyway"
                );
                return;
            }
            t += 1.0;
        }
    }

    /// Replays the trace; returns its start (clock time) and what each service had.
    async fn replay(&self) -> (f64, Vec<Measured>) {
        // The trace starts on the autoscalers' poll grid, so a poll at trace time t sees
        // the scrape of t, as in `simulate`.
        let origin = (self.clock.now() / SCRAPE_SECONDS).ceil() * SCRAPE_SECONDS + SCRAPE_SECONDS;
        self.metrics.start_at(origin);
        let steps = self
            .loads
            .iter()
            .map(|l| l.trace.rates.len())
            .max()
            .unwrap_or(0);
        let mut measured: Vec<Measured> = self
            .loads
            .iter()
            .map(|_| Measured {
                ready: Vec::with_capacity(steps),
                replicas: Vec::with_capacity(steps),
            })
            .collect();
        crate::say!(
            "replaying {} of traffic at {}× ({} real seconds)",
            clock_text(steps as f64),
            self.clock.speed(),
            (steps as f64 / self.clock.speed()).round()
        );
        let table_every = 900usize;
        for i in 0..steps {
            // Mid-step: a Pod that turned Ready at any time in the step counts half the time,
            // the unbiased reading of a one-second step.
            let t = i as f64 + 0.5;
            self.clock.sleep_until(origin + t).await;
            for (m, (spec, ready)) in measured.iter_mut().zip(self.observe(t)) {
                m.ready.push(ready);
                m.replicas.push(spec);
            }
            if i % table_every == 0 || i + 1 == steps {
                self.print_table(i as f64, steps as f64);
            }
        }
        (origin, measured)
    }

    fn print_table(&self, t: f64, total: f64) {
        crate::say!(
            "t={} of {} ({:.0}%)",
            clock_text(t),
            clock_text(total),
            100.0 * t / total.max(1.0)
        );
        crate::say!(
            "  {:<10} {:>9} {:>8} {:>6}  mode",
            "service",
            "load rps",
            "desired",
            "ready"
        );
        for l in self.loads {
            let (spec, ready) = self
                .deployments
                .replicas(&l.namespace, &l.name)
                .unwrap_or((0, 0));
            let snapshot = self.autoscalers.snapshot(&l.namespace, &l.name);
            let last = snapshot.as_ref().and_then(|s| s.last);
            crate::say!(
                "  {:<10} {:>9.1} {:>8} {:>6}  {}",
                l.name,
                l.at(t),
                last.map_or(spec, |d| d.desired),
                ready,
                last.map_or_else(|| "-".to_owned(), |d| d.mode.to_string())
            );
        }
        for tier in self.deployments.tiers.state() {
            let status = tier.status.clone().unwrap_or_default();
            let ready = crate::controllers::cache_tier::readiness(&tier)
                .map_or_else(|| "-".to_owned(), |(s, r, _)| format!("Ready={s} ({r})"));
            crate::say!(
                "  cache {:<10} hit ratio {:>6}  memory {:>8}  {:>6} ops/s  {}",
                tier.name_any(),
                status
                    .hit_ratio
                    .map_or_else(|| "-".to_owned(), |h| format!("{:.1}%", 100.0 * h)),
                status.memory_used.unwrap_or_else(|| "-".to_owned()),
                status
                    .ops_per_second
                    .map_or_else(|| "-".to_owned(), |o| format!("{o:.0}")),
                ready
            );
        }
    }

    /// `--serve`: the last load holds, scraped as before, until the process is stopped.
    async fn hold_traffic(&self, origin: f64) {
        let mut t = (self.clock.now() - origin).ceil();
        loop {
            self.clock.sleep_until(origin + t).await;
            self.observe(t);
            t += 1.0;
        }
    }
}

/// Each service's figures on the devcluster, and the simulator's on the same trace and
/// model.
fn compare(
    loads: &[ServiceLoad],
    samples: &[Sample],
    origin: f64,
    measured: Vec<Measured>,
) -> Result<Outcome, DevError> {
    let mut runs = Vec::new();
    for ((load, sample), m) in loads.iter().zip(samples).zip(measured) {
        let model = model_for(load, &sample.policy, origin);
        model.validate()?;
        let trace = &load.trace;
        let bursts = Bursts::detect(trace, &model);
        let mut acc = Accumulator::new(trace, &model, &bursts);
        let mut previous: Option<u32> = None;
        for (i, (&ready, &replicas)) in m.ready.iter().zip(&m.replicas).enumerate() {
            if previous.is_some_and(|p| p != replicas) {
                acc.scale_event();
            }
            previous = Some(replicas);
            acc.step(i, load.at(i as f64), ready, replicas);
        }
        let (dev_figures, dev_series) = acc.finish();
        let policy = simulated_policy(sample.policy.clone(), &model);
        let sim = replay(
            &sample.name,
            trace,
            &model,
            &bursts,
            &Controller::Engine(Box::new(policy)),
            &mut |_| {},
        )?;
        let result = |name: &str, figures, series| PolicyResult {
            name: name.to_owned(),
            figures,
            vs_hpa: Ratios::default(),
            vs_oracle: Ratios::default(),
            modes: BTreeMap::new(),
            series,
        };
        runs.push(Results {
            trace: TraceInfo {
                name: sample.name.clone(),
                source: trace.name.clone(),
                step_seconds: trace.step,
                duration_seconds: trace.duration(),
                peak_rps: trace.peak(),
                mean_rps: trace.mean(),
            },
            model,
            policies: vec![
                result("dev", dev_figures, dev_series),
                result("simulate", sim.figures, sim.series),
            ],
        });
    }
    Ok(Outcome { runs })
}

fn print_summary(outcome: &Outcome) {
    crate::say!("");
    crate::say!(
        "summary: the controllers on the devcluster (dev) against the simulator (sim), same trace and model"
    );
    crate::say!(
        "  {:<10} {:>14} {:>14} {:>16} {:>16} {:>12}",
        "service",
        "under-cap s dev",
        "sim",
        "replica-s dev",
        "sim",
        "scale events"
    );
    let (mut uc, mut rs) = ((0.0, 0.0), (0.0, 0.0));
    for r in &outcome.runs {
        let (Some(d), Some(s)) = (r.get("dev"), r.get("simulate")) else {
            continue;
        };
        let (d, s) = (&d.figures, &s.figures);
        uc.0 += d.under_capacity_seconds;
        uc.1 += s.under_capacity_seconds;
        rs.0 += d.replica_seconds;
        rs.1 += s.replica_seconds;
        crate::say!(
            "  {:<10} {:>14.0} {:>14.0} {:>16.0} {:>16.0} {:>6} / {:<5}",
            r.trace.name,
            d.under_capacity_seconds,
            s.under_capacity_seconds,
            d.replica_seconds,
            s.replica_seconds,
            d.scale_events,
            s.scale_events
        );
    }
    let ratio = |a: f64, b: f64| {
        if b > 0.0 {
            a / b
        } else if a > 0.0 {
            f64::INFINITY
        } else {
            1.0
        }
    };
    crate::say!(
        "  {:<10} {:>14.0} {:>14.0} {:>16.0} {:>16.0}",
        "all",
        uc.0,
        uc.1,
        rs.0,
        rs.1
    );
    crate::say!(
        "  dev / sim: under-capacity {:.2}, replica-seconds {:.2}",
        ratio(uc.0, uc.1),
        ratio(rs.0, rs.1)
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_samples_parse_into_four_scaled_services() {
        let s = samples().expect("samples parse");
        let names: Vec<&str> = s.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["orders", "inventory", "users", "payments"]);
        assert!(
            s.iter()
                .all(|s| s.target_rps > 0.0 && s.namespace == "marketplace")
        );
    }

    #[test]
    fn the_bundled_window_is_three_and_a_half_hours_of_a_flash_crowd() {
        let args = DevArgs {
            serve: false,
            kubeconfig: "k".into(),
            speed: 1.0,
            trace: None,
            report: "r".into(),
            faults: None,
            redis: "127.0.0.1:6379".into(),
        };
        let t = base_trace(&args).expect("bundled trace");
        assert_eq!(t.rates.len(), 3 * 3600 + 1800);
        assert!(
            t.peak() > 4.0 * t.rates[0],
            "a flash crowd: {} vs {}",
            t.peak(),
            t.rates[0]
        );
    }

    #[test]
    fn each_service_peaks_at_its_replica_budget() {
        let trace = Trace {
            name: "t".into(),
            step: 1.0,
            rates: vec![10.0, 50.0, 100.0],
        };
        let loads = split(&trace, &samples().expect("samples"));
        let orders = &loads[0];
        assert!((orders.trace.peak() / orders.target_rps - 12.0).abs() < 1e-9);
    }
}
