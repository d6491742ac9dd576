//! The operator at scale on the devcluster (DESIGN.md, "Benchmarks and their goals"): N
//! MarketplaceServices with scaling blocks brought to steady state, the operator's peak RSS,
//! and the metric-sample → replica-patch latency.
//!
//! `cargo run --release -p marketplace-operator --example operator_scale -- --services 10000
//! [--kubeconfig PATH --server-pid PID]` (bench/operator-scale.sh starts the devcluster
//! binary and passes both).
//!
//! Three processes, so that each figure belongs to one of them:
//! - the API server: the `devcluster` binary given by `--kubeconfig` (or, without it, a
//!   devcluster inside this driver process);
//! - this driver: applies the CRDs, creates the services, watches them and measures;
//! - the operator: this same executable re-run with `--role operator`. It runs the real
//!   MarketplaceService controller (`controllers::marketplace_service::run`, speed-1 clock)
//!   with a `StaticSource` behind a thin wrapper that notes when each service's metrics are
//!   read. Its peak RSS (VmHWM) is the controller's alone.
//!
//! Phase 1: the operator starts with N services it has never seen; every reading asks for 2
//! replicas (20 rps per pod against a 10 rps target, one pod reporting). Steady state, per
//! service: `status.observedGeneration == metadata.generation`, `status.desiredReplicas == 2`
//! and the Deployment's `spec.replicas == 2`. The time is from the operator's spawn until
//! every service is there. Phase 2: the readings change to ask for 3 replicas (15 rps over 2
//! pods); every autoscaler picks it up at its next tick. The sample → patch latency of a
//! service is from the wrapper's first read of the new reading to the driver's watch seeing
//! the Deployment's new `spec.replicas` (so it includes the watch's delivery; the operator's
//! own `scale_latency_seconds` histogram, which stops at the accepted patch, is printed too).

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clap::Parser;
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::watcher;
use kube::{Api, Client};
use marketplace_crds::v1alpha1::{MarketplaceService, MetricSpec, MetricType};
use marketplace_operator::controllers::marketplace_service::{self, Autoscalers};
use marketplace_operator::controllers::{Clock, Context, Settings, Telemetry};
use marketplace_operator::metrics::{MetricsError, MetricsSource, ServiceRef, StaticSource};
use marketplace_operator::scaling::MetricReading;
use serde_json::json;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

#[derive(Parser, Debug, Clone)]
#[command(about = "MarketplaceServices to steady state on a devcluster: time, RSS, latency")]
struct Args {
    /// MarketplaceServices to create.
    #[arg(long, default_value_t = 1000)]
    services: usize,
    /// Namespaces to spread them over.
    #[arg(long, default_value_t = 10)]
    namespaces: usize,
    /// The controller's reconciles in flight (`Settings::concurrency`).
    #[arg(long, default_value_t = 32)]
    concurrency: u16,
    /// Every service's `scaling.pollIntervalSeconds` (15 is the HPA's and the samples').
    #[arg(long, default_value_t = 15)]
    poll_seconds: u32,
    /// Creates in flight while setting up.
    #[arg(long, default_value_t = 64)]
    create_concurrency: usize,
    /// The API server to use; without it, a devcluster runs inside this driver.
    #[arg(long)]
    kubeconfig: Option<PathBuf>,
    /// The API server's pid, to report its RSS and CPU time beside the operator's.
    #[arg(long)]
    server_pid: Option<u32>,
    /// Give up on a phase after this many seconds.
    #[arg(long, default_value_t = 600)]
    timeout_seconds: u64,
    /// Internal: `operator` runs the controller (spawned by the driver).
    #[arg(long, default_value = "driver", hide = true)]
    role: String,
}

/// Phase 1 asks every service for 2 replicas, phase 2 for 3.
const WANT: [i32; 2] = [2, 3];

fn reading(phase: usize) -> MetricReading {
    if phase == 0 {
        MetricReading::average(20.0, 1)
    } else {
        MetricReading::average(15.0, 2)
    }
}

fn namespace_of(i: usize, namespaces: usize) -> String {
    format!("scale-{}", i % namespaces.max(1))
}

fn name_of(i: usize) -> String {
    format!("svc-{i:05}")
}

fn index_of(name: &str) -> Option<usize> {
    name.strip_prefix("svc-")?.parse().ok()
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

fn main() -> Result<(), BoxError> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    if args.role == "operator" {
        runtime.block_on(operator(args))
    } else {
        runtime.block_on(driver(args))
    }
}

// ---- The operator process ------------------------------------------------------------------

/// A StaticSource that notes, per phase and service, the first time a reading of that phase
/// was handed out. The phase switch holds the gate so no read sees a half-switched source.
struct TimedSource {
    inner: StaticSource,
    gate: tokio::sync::RwLock<usize>,
    /// Unix seconds of the first read per (phase, service index); NaN until read.
    first_read: Mutex<[Vec<f64>; 2]>,
    reads: AtomicUsize,
}

impl TimedSource {
    fn new(services: usize, namespaces: usize) -> Self {
        let inner = StaticSource::default();
        for i in 0..services {
            inner.set(
                &namespace_of(i, namespaces),
                &name_of(i),
                MetricType::RequestsPerSecond,
                reading(0),
            );
        }
        TimedSource {
            inner,
            gate: tokio::sync::RwLock::new(0),
            first_read: Mutex::new([vec![f64::NAN; services], vec![f64::NAN; services]]),
            reads: AtomicUsize::new(0),
        }
    }

    async fn switch_to_phase_2(&self, services: usize, namespaces: usize) {
        let mut phase = self.gate.write().await;
        for i in 0..services {
            self.inner.set(
                &namespace_of(i, namespaces),
                &name_of(i),
                MetricType::RequestsPerSecond,
                reading(1),
            );
        }
        *phase = 1;
    }
}

impl MetricsSource for TimedSource {
    async fn read(
        &self,
        service: &ServiceRef<'_>,
        metric: &MetricSpec,
    ) -> Result<MetricReading, MetricsError> {
        let phase = self.gate.read().await;
        let at = unix_now();
        let result = self.inner.read(service, metric).await;
        self.reads.fetch_add(1, Ordering::Relaxed);
        if let Some(i) = index_of(service.name) {
            let mut first = self.first_read.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(slot) = first.get_mut(*phase).and_then(|v| v.get_mut(i))
                && slot.is_nan()
            {
                *slot = at;
            }
        }
        result
    }
}

/// Runs the controller until stdin closes. Commands on stdin: `phase2` switches the
/// readings; `report` prints one JSON line (`report {...}`) with the first-read times and the
/// operator's own metrics.
async fn operator(args: Args) -> Result<(), BoxError> {
    let client = Client::try_default().await?;
    let source = Arc::new(TimedSource::new(args.services, args.namespaces));
    let telemetry = Arc::new(Telemetry::new());
    let ctx = Arc::new(Context::new(
        client,
        Clock::system(),
        source.clone(),
        telemetry.clone(),
        Settings {
            concurrency: args.concurrency,
            ..Settings::default()
        },
    ));
    let autoscalers = Arc::new(Autoscalers::default());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let controller = tokio::spawn(marketplace_service::run(
        ctx,
        autoscalers.clone(),
        async move {
            let _ = stopped.await;
        },
    ));
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    let mut stdout = tokio::io::stdout();
    while let Some(line) = lines.next_line().await? {
        match line.trim() {
            "phase2" => {
                source
                    .switch_to_phase_2(args.services, args.namespaces)
                    .await;
                stdout.write_all(b"switched\n").await?;
            }
            "report" => {
                let first_read = source
                    .first_read
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .clone();
                let report = json!({
                    "first_read": first_read.iter().map(|v| v.iter().map(|t| if t.is_nan() { json!(null) } else { json!(t) }).collect::<Vec<_>>()).collect::<Vec<_>>(),
                    "reads": source.reads.load(Ordering::Relaxed),
                    "autoscalers": autoscalers.len(),
                    "telemetry": telemetry.encode(),
                });
                stdout
                    .write_all(format!("report {report}\n").as_bytes())
                    .await?;
            }
            _ => {}
        }
        stdout.flush().await?;
    }
    let _ = stop.send(());
    let _ = tokio::time::timeout(Duration::from_secs(10), controller).await;
    Ok(())
}

// ---- The driver process --------------------------------------------------------------------

/// (generation, observedGeneration, desiredReplicas) of a service.
type ServiceState = (i64, Option<i64>, Option<i32>);

/// What the driver's watches saw, by service index.
struct Seen {
    services: Vec<Option<ServiceState>>,
    /// The Deployment's spec.replicas of each service.
    replicas: Vec<Option<i32>>,
    /// Unix seconds at which the watch first saw the Deployment with WANT[p] replicas.
    reached: [Vec<f64>; 2],
    deployments_seen: usize,
    events: usize,
}

impl Seen {
    fn new(n: usize) -> Self {
        Seen {
            services: vec![None; n],
            replicas: vec![None; n],
            reached: [vec![f64::NAN; n], vec![f64::NAN; n]],
            deployments_seen: 0,
            events: 0,
        }
    }

    /// (children applied, reconciled at the current generation, at steady state for `want`).
    fn progress(&self, want: i32) -> (usize, usize, usize) {
        let mut applied = 0;
        let mut current = 0;
        let mut steady = 0;
        for (s, r) in self.services.iter().zip(&self.replicas) {
            applied += usize::from(r.is_some());
            let Some((generation, observed, desired)) = s else {
                continue;
            };
            let is_current = *observed == Some(*generation);
            current += usize::from(is_current);
            steady += usize::from(is_current && *desired == Some(want) && *r == Some(want));
        }
        (applied, current, steady)
    }
}

type Shared = Arc<Mutex<Seen>>;

fn lock(seen: &Shared) -> std::sync::MutexGuard<'_, Seen> {
    seen.lock().unwrap_or_else(|e| e.into_inner())
}

/// Watches MarketplaceServices and Deployments into `seen`; resolves once both initial lists
/// are in.
async fn watch(client: Client, seen: Shared) -> Result<(), BoxError> {
    let (ready_tx, mut ready_rx) = tokio::sync::mpsc::channel::<()>(2);
    let msvcs: Api<MarketplaceService> = Api::all(client.clone());
    let seen_m = seen.clone();
    let ready_m = ready_tx.clone();
    tokio::spawn(async move {
        let mut stream = watcher(msvcs, watcher::Config::default()).boxed();
        while let Some(event) = stream.next().await {
            let obj = match event {
                Ok(watcher::Event::Apply(o) | watcher::Event::InitApply(o)) => o,
                Ok(watcher::Event::InitDone) => {
                    let _ = ready_m.try_send(());
                    continue;
                }
                Ok(_) => continue,
                Err(error) => {
                    eprintln!("MarketplaceService watch: {error}");
                    continue;
                }
            };
            let Some(i) = obj.metadata.name.as_deref().and_then(index_of) else {
                continue;
            };
            let status = obj.status.as_ref();
            let entry = (
                obj.metadata.generation.unwrap_or(0),
                status.and_then(|s| s.observed_generation),
                status.map(|s| s.desired_replicas).filter(|d| *d > 0),
            );
            let mut s = lock(&seen_m);
            s.events += 1;
            if let Some(slot) = s.services.get_mut(i) {
                *slot = Some(entry);
            }
        }
    });
    let deployments: Api<Deployment> = Api::all(client);
    tokio::spawn(async move {
        let mut stream = watcher(deployments, watcher::Config::default()).boxed();
        while let Some(event) = stream.next().await {
            let obj = match event {
                Ok(watcher::Event::Apply(o) | watcher::Event::InitApply(o)) => o,
                Ok(watcher::Event::InitDone) => {
                    let _ = ready_tx.try_send(());
                    continue;
                }
                Ok(_) => continue,
                Err(error) => {
                    eprintln!("Deployment watch: {error}");
                    continue;
                }
            };
            let at = unix_now();
            let Some(i) = obj.metadata.name.as_deref().and_then(index_of) else {
                continue;
            };
            let replicas = obj.spec.replicas;
            let mut s = lock(&seen);
            s.events += 1;
            if s.replicas.get(i).is_some_and(Option::is_none) {
                s.deployments_seen += 1;
            }
            if let Some(slot) = s.replicas.get_mut(i) {
                *slot = replicas;
            }
            for (p, want) in WANT.iter().enumerate() {
                if replicas == Some(*want)
                    && let Some(slot) = s.reached[p].get_mut(i)
                    && slot.is_nan()
                {
                    *slot = at;
                }
            }
        }
    });
    for _ in 0..2 {
        tokio::time::timeout(Duration::from_secs(60), ready_rx.recv())
            .await
            .map_err(|_| "the watches did not list within 60 s")?;
    }
    Ok(())
}

/// (VmRSS, VmHWM) of a process in MB.
fn memory_mb(pid: u32) -> (f64, f64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|kb| kb.parse::<f64>().ok())
            .map_or(f64::NAN, |kb| kb / 1024.0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// User + system CPU seconds a process has used (clock ticks of 1/100 s, Linux's USER_HZ).
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name, which is in parentheses and may contain spaces.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok());
    // utime and stime are fields 14 and 15 of the whole line: 12 and 13 after the name.
    match (ticks(11), ticks(12)) {
        (Some(u), Some(s)) => (u + s) / 100.0,
        _ => f64::NAN,
    }
}

fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// p50, p99 and max of a sample, sorted in place.
fn summary(values: &mut [f64]) -> (f64, f64, f64) {
    values.sort_by(f64::total_cmp);
    (
        percentile(values, 0.5),
        percentile(values, 0.99),
        values.last().copied().unwrap_or(f64::NAN),
    )
}

/// The q-quantile of a Prometheus histogram in the text exposition, as the upper bound of
/// the bucket it falls in (the buckets double, so this is within a factor of 2 above).
fn histogram_bound(text: &str, name: &str, q: f64) -> Option<(f64, u64)> {
    let mut buckets: Vec<(f64, u64)> = text
        .lines()
        .filter(|l| l.starts_with(&format!("{name}_bucket{{")))
        .filter_map(|l| {
            let le = l.split("le=\"").nth(1)?.split('"').next()?;
            let le = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().ok()?
            };
            let count = l.rsplit(' ').next()?.parse().ok()?;
            Some((le, count))
        })
        .collect();
    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    let total = buckets.last()?.1;
    let need = (q * total as f64).ceil() as u64;
    buckets
        .iter()
        .find(|(_, c)| *c >= need.max(1))
        .map(|(le, _)| (*le, total))
}

async fn client_for(
    args: &Args,
) -> Result<(Client, PathBuf, Option<devcluster::DevCluster>), BoxError> {
    if let Some(path) = &args.kubeconfig {
        let kubeconfig = Kubeconfig::read_from(path)?;
        let config =
            kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default()).await?;
        return Ok((Client::try_from(config)?, path.clone(), None));
    }
    let path =
        std::env::temp_dir().join(format!("operator-scale-{}.kubeconfig", std::process::id()));
    let cluster = devcluster::DevCluster::start(devcluster::Config {
        kubeconfig: Some(path.clone()),
        ..devcluster::Config::default()
    })
    .await?;
    println!(
        "API server: a devcluster inside the driver process at {} (no simulated workloads)",
        cluster.url()
    );
    Ok((cluster.client()?, path, Some(cluster)))
}

async fn apply_crds(client: &Client) -> Result<(), BoxError> {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let ssa = PatchParams::apply("operator-scale").force();
    for crd in marketplace_operator::crd::crds() {
        let name = crd.metadata.name.clone().unwrap_or_default();
        crds.patch(&name, &ssa, &Patch::Apply(&crd)).await?;
    }
    let msvcs: Api<MarketplaceService> = Api::all(client.clone());
    let deadline = Instant::now() + Duration::from_secs(30);
    while msvcs.list(&ListParams::default().limit(1)).await.is_err() {
        if Instant::now() > deadline {
            return Err("the MarketplaceService CRD was not served within 30 s".into());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}

fn service(i: usize, args: &Args) -> Result<MarketplaceService, serde_json::Error> {
    let name = name_of(i);
    serde_json::from_value(json!({
        "apiVersion": "marketplace.dev/v1alpha1",
        "kind": "MarketplaceService",
        "metadata": {"name": name, "namespace": namespace_of(i, args.namespaces)},
        "spec": {
            "domain": name,
            "image": format!("registry.example/marketplace/{name}:1.0.0"),
            "port": 8080,
            "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}},
            "scaling": {
                "minReplicas": 1,
                "maxReplicas": 10,
                "pollIntervalSeconds": args.poll_seconds,
                "metrics": [{"type": "RequestsPerSecond", "target": 10}],
            },
        },
    }))
}

async fn create_services(client: &Client, args: &Args) -> Result<Duration, BoxError> {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    for n in 0..args.namespaces.max(1) {
        let name = format!("scale-{n}");
        let ns = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}});
        namespaces
            .patch(
                &name,
                &PatchParams::apply("operator-scale").force(),
                &Patch::Apply(ns),
            )
            .await?;
    }
    let started = Instant::now();
    futures::stream::iter(0..args.services)
        .map(|i| {
            let client = client.clone();
            async move {
                let msvc = service(i, args)?;
                let api: Api<MarketplaceService> =
                    Api::namespaced(client, &namespace_of(i, args.namespaces));
                match api.create(&PostParams::default(), &msvc).await {
                    Ok(_) => Ok(()),
                    // A rerun against the same server: the object is there already.
                    Err(kube::Error::Api(s)) if s.code == 409 => Ok(()),
                    Err(e) => Err(BoxError::from(e)),
                }
            }
        })
        .buffer_unordered(args.create_concurrency.max(1))
        .try_collect::<Vec<()>>()
        .await?;
    Ok(started.elapsed())
}

/// Open file descriptors of a process (its sockets, mostly).
fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count())
}

/// What the driver saw of one phase.
struct Phase {
    /// Until every service was at steady state.
    steady: Duration,
    /// Until every service had its Deployment (phase 1) and had been reconciled at its
    /// current generation.
    all_applied: Option<Duration>,
    all_current: Option<Duration>,
    peak_rss: f64,
    peak_fds: usize,
    peak_server_fds: usize,
}

/// Waits until every service is at steady state for `want`, sampling the operator's RSS and
/// open descriptors every 50 ms; prints progress every 5 s.
async fn wait_steady(
    seen: &Shared,
    want: i32,
    n: usize,
    started: Instant,
    pids: (u32, Option<u32>),
    timeout: Duration,
) -> Result<Phase, BoxError> {
    let mut phase = Phase {
        steady: Duration::ZERO,
        all_applied: None,
        all_current: None,
        peak_rss: 0.0,
        peak_fds: 0,
        peak_server_fds: 0,
    };
    let mut last_print = Instant::now();
    loop {
        let (applied, current, steady) = lock(seen).progress(want);
        let (rss, _) = memory_mb(pids.0);
        if rss.is_finite() {
            phase.peak_rss = phase.peak_rss.max(rss);
        }
        let fds = open_fds(pids.0);
        phase.peak_fds = phase.peak_fds.max(fds);
        if let Some(server) = pids.1 {
            phase.peak_server_fds = phase.peak_server_fds.max(open_fds(server));
        }
        if applied == n && phase.all_applied.is_none() {
            phase.all_applied = Some(started.elapsed());
        }
        if current == n && phase.all_current.is_none() {
            phase.all_current = Some(started.elapsed());
        }
        if steady == n {
            phase.steady = started.elapsed();
            return Ok(phase);
        }
        if last_print.elapsed() >= Duration::from_secs(5) {
            last_print = Instant::now();
            println!(
                "  {:>6.1} s: {applied}/{n} Deployments, {current}/{n} reconciled, {steady}/{n} at {want} replicas; operator RSS {rss:.0} MB, {fds} fds",
                started.elapsed().as_secs_f64()
            );
        }
        if started.elapsed() > timeout {
            return Err(format!(
                "not at steady state after {timeout:?}: {applied}/{n} Deployments, {current}/{n} reconciled, {steady}/{n} at {want} replicas"
            )
            .into());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Per-service latency from the first read of a phase's reading to the watch seeing the
/// Deployment at that phase's replicas: (p50, p99, max, how many services had both).
fn latencies(first_read: &[Option<f64>], reached: &[f64]) -> (f64, f64, f64, usize) {
    let mut values: Vec<f64> = first_read
        .iter()
        .zip(reached)
        .filter_map(|(r, d)| Some(d - (*r)?))
        .filter(|v| v.is_finite())
        .collect();
    let (p50, p99, max) = summary(&mut values);
    (p50, p99, max, values.len())
}

/// The operator process, driven over its stdin and stdout.
struct OperatorProcess {
    child: tokio::process::Child,
    pid: u32,
    stdin: tokio::process::ChildStdin,
    stdout: tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
}

impl OperatorProcess {
    fn spawn(args: &Args, kubeconfig: &std::path::Path) -> Result<Self, BoxError> {
        let mut child = tokio::process::Command::new(std::env::current_exe()?)
            .args(["--role", "operator"])
            .args(["--services", &args.services.to_string()])
            .args(["--namespaces", &args.namespaces.to_string()])
            .args(["--concurrency", &args.concurrency.to_string()])
            .env("KUBECONFIG", kubeconfig)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()?;
        let pid = child.id().ok_or("the operator exited at once")?;
        let stdin = child.stdin.take().ok_or("no stdin")?;
        let stdout = BufReader::new(child.stdout.take().ok_or("no stdout")?).lines();
        Ok(OperatorProcess {
            child,
            pid,
            stdin,
            stdout,
        })
    }

    /// Sends a command; returns the first answer line that starts with `answer`.
    async fn ask(&mut self, command: &str, answer: &str) -> Result<String, BoxError> {
        self.stdin
            .write_all(format!("{command}\n").as_bytes())
            .await?;
        self.stdin.flush().await?;
        loop {
            match tokio::time::timeout(Duration::from_secs(60), self.stdout.next_line()).await {
                Ok(Ok(Some(line))) if line.starts_with(answer) => {
                    return Ok(line[answer.len()..].trim().to_owned());
                }
                Ok(Ok(Some(_))) => {}
                other => {
                    return Err(
                        format!("no answer to {command:?} from the operator: {other:?}").into(),
                    );
                }
            }
        }
    }

    async fn report(&mut self) -> Result<serde_json::Value, BoxError> {
        Ok(serde_json::from_str(&self.ask("report", "report ").await?)?)
    }
}

/// A counter's value in the text exposition, summed over its label sets.
fn counter(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(name))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .fold(0.0, |a, b| a + b)
}

/// The API server's resourceVersion now: the devcluster counts every stored write with it.
async fn resource_version(client: &Client) -> Option<u64> {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let list = namespaces
        .list(&ListParams::default().limit(1))
        .await
        .ok()?;
    list.metadata.resource_version?.parse().ok()
}

/// Stored writes between two resourceVersions, in all and per service.
fn writes(from: Option<u64>, to: Option<u64>, n: usize) -> String {
    match (from, to) {
        (Some(a), Some(b)) if b >= a => {
            format!(
                "{} ({:.1} per service)",
                b - a,
                (b - a) as f64 / n.max(1) as f64
            )
        }
        _ => "unknown".to_owned(),
    }
}

fn seconds(d: Option<Duration>) -> String {
    d.map_or_else(|| "–".to_owned(), |d| format!("{:.2} s", d.as_secs_f64()))
}

async fn driver(args: Args) -> Result<(), BoxError> {
    let n = args.services;
    let timeout = Duration::from_secs(args.timeout_seconds);
    let (client, kubeconfig, _cluster) = client_for(&args).await?;
    println!(
        "operator_scale: {n} MarketplaceServices in {} namespaces, poll every {} s, controller concurrency {}",
        args.namespaces, args.poll_seconds, args.concurrency
    );
    apply_crds(&client).await?;
    let created = create_services(&client, &args).await?;
    println!(
        "created {n} MarketplaceServices in {:.2} s ({:.0}/s, {} in flight)",
        created.as_secs_f64(),
        n as f64 / created.as_secs_f64().max(1e-9),
        args.create_concurrency
    );
    let seen: Shared = Arc::new(Mutex::new(Seen::new(n)));
    watch(client.clone(), seen.clone()).await?;

    // Phase 1: the operator starts and brings every service to 2 replicas.
    let server_cpu_0 = args.server_pid.map(cpu_seconds);
    let rv_0 = resource_version(&client).await;
    let started = Instant::now();
    let mut op = OperatorProcess::spawn(&args, &kubeconfig)?;
    let pids = (op.pid, args.server_pid);
    println!(
        "phase 1: operator (pid {}) started; every reading asks for 2 replicas",
        op.pid
    );
    let p1 = wait_steady(&seen, WANT[0], n, started, pids, timeout).await?;
    let operator_cpu_1 = cpu_seconds(op.pid);
    let server_cpu_1 = args.server_pid.map(cpu_seconds);
    let (rss_1, hwm_1) = memory_mb(op.pid);
    let rv_1 = resource_version(&client).await;
    let report_1 = op.report().await?;
    let telemetry_1 = report_1["telemetry"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    println!(
        "phase 1: all {n} at steady state {:.2} s after the operator started",
        p1.steady.as_secs_f64()
    );

    // Phase 2: every reading now asks for 3; the autoscalers act at their next tick.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let switched = Instant::now();
    op.ask("phase2", "switched").await?;
    let p2 = wait_steady(&seen, WANT[1], n, switched, pids, timeout).await?;
    println!(
        "phase 2: all {n} at 3 replicas {:.2} s after the switch (includes the wait for the next tick)",
        p2.steady.as_secs_f64()
    );
    let (rss_2, hwm_2) = memory_mb(op.pid);
    let rv_2 = resource_version(&client).await;
    let operator_cpu_2 = cpu_seconds(op.pid);
    let server_cpu_2 = args.server_pid.map(cpu_seconds);
    let report_2 = op.report().await?;
    let telemetry_2 = report_2["telemetry"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    drop(op.stdin);
    let _ = tokio::time::timeout(Duration::from_secs(15), op.child.wait()).await;

    let first_read: Vec<Vec<Option<f64>>> = (0..2)
        .map(|p| {
            report_2["first_read"][p]
                .as_array()
                .map(|v| v.iter().map(serde_json::Value::as_f64).collect())
                .unwrap_or_default()
        })
        .collect();
    let (reached, events) = {
        let s = lock(&seen);
        (s.reached.clone(), s.events)
    };
    let l1 = latencies(&first_read[0], &reached[0]);
    let l2 = latencies(&first_read[1], &reached[1]);
    let reconciles = "marketplace_operator_reconciles_total";
    let failures = "marketplace_operator_reconcile_errors_total";
    let hist = "marketplace_operator_scale_latency_seconds";

    println!();
    println!("== results: {n} MarketplaceServices ==");
    println!(
        "phase 1, operator start → steady state (observedGeneration current, desiredReplicas 2, Deployment at 2): {:.2} s",
        p1.steady.as_secs_f64()
    );
    println!(
        "  every Deployment applied after {}, every service reconciled after {}; {:.0} reconciles ({:.0} failed), {} metric reads",
        seconds(p1.all_applied),
        seconds(p1.all_current),
        counter(&telemetry_1, reconciles),
        counter(&telemetry_1, failures),
        report_1["reads"],
    );
    println!(
        "  CPU: operator {operator_cpu_1:.1} s{}; stored writes {}",
        server_cpu_1
            .zip(server_cpu_0)
            .map_or(String::new(), |(a, b)| {
                let busy = 100.0 * (a - b) / p1.steady.as_secs_f64();
                format!(", API server {:.1} s ({busy:.0}% of one core)", a - b)
            }),
        writes(rv_0, rv_1, n),
    );
    println!(
        "  operator RSS {rss_1:.1} MB (VmHWM {hwm_1:.1} MB), peak open fds {} (API server {})",
        p1.peak_fds, p1.peak_server_fds
    );
    println!(
        "  sample → replica patch seen by a watch (1 → 2): p50 {:.3} s, p99 {:.3} s, max {:.3} s over {} services",
        l1.0, l1.1, l1.2, l1.3
    );
    if let (Some((b50, count)), Some((b99, _))) = (
        histogram_bound(&telemetry_1, hist, 0.5),
        histogram_bound(&telemetry_1, hist, 0.99),
    ) {
        println!(
            "  the operator's scale_latency_seconds (read → patch accepted, {count} patches): p50 ≤ {b50} s, p99 ≤ {b99} s (bucket bounds)"
        );
    }
    println!(
        "phase 2, readings switched → all {n} at 3 replicas (includes up to one poll interval): {:.2} s",
        p2.steady.as_secs_f64()
    );
    println!(
        "  {:.0} more reconciles ({:.0} failed), {} metric reads in all",
        counter(&telemetry_2, reconciles) - counter(&telemetry_1, reconciles),
        counter(&telemetry_2, failures) - counter(&telemetry_1, failures),
        report_2["reads"],
    );
    println!(
        "  CPU: operator {:.1} s{}; stored writes {}",
        operator_cpu_2 - operator_cpu_1,
        server_cpu_2
            .zip(server_cpu_1)
            .map_or(String::new(), |(a, b)| {
                let busy = 100.0 * (a - b) / p2.steady.as_secs_f64();
                format!(", API server {:.1} s ({busy:.0}% of one core)", a - b)
            }),
        writes(rv_1, rv_2, n),
    );
    println!(
        "  operator RSS {rss_2:.1} MB (VmHWM {hwm_2:.1} MB), peak open fds {} (API server {})",
        p2.peak_fds, p2.peak_server_fds
    );
    println!(
        "  sample → replica patch seen by a watch (2 → 3, all {n} tick together): p50 {:.3} s, p99 {:.3} s, max {:.3} s over {} services",
        l2.0, l2.1, l2.2, l2.3
    );
    if let (Some((b50, count)), Some((b99, _))) = (
        histogram_bound(&telemetry_2, hist, 0.5),
        histogram_bound(&telemetry_2, hist, 0.99),
    ) {
        println!(
            "  the operator's scale_latency_seconds, both phases ({count} patches): p50 ≤ {b50} s, p99 ≤ {b99} s (bucket bounds)"
        );
    }
    println!("operator peak RSS (VmHWM) over the run: {hwm_2:.1} MB");
    if let Some(pid) = args.server_pid {
        let (rss, hwm) = memory_mb(pid);
        println!("API server RSS: {rss:.1} MB now, peak {hwm:.1} MB");
    }
    println!(
        "autoscalers running {}, watch events seen by the driver {events}",
        report_2["autoscalers"]
    );
    Ok(())
}
