//! `marketplace-operator simulate`: replays a traffic trace through the policy under test
//! and the baselines (`hpa`, `keda`, `kpa`, `oracle`), all on the same service model and,
//! but for the oracle, through the same `scaling::Engine`; then prints a table and writes
//! JSON and an HTML report.
//!
//! Stages: `load` (trace, model, policy) → `simulate` (pure: replays, figures) → `output`
//! (table, JSON, HTML). `simulate` is the library entry point for tests and benches.

mod baselines;
mod figures;
mod model;
mod report;
mod trace;

use std::path::PathBuf;

use marketplace_crds::v1alpha1::MarketplaceService;

pub use baselines::{hpa, keda, kpa, lineup, simulated_policy};
pub use figures::{Accumulator, Bursts, Figures, Series};
pub use model::{Controller, Model, ModelError, Replay, replay};
pub use report::services_html;
pub use trace::{Synthetic, Trace, TraceError};

use crate::scaling::{Mode, Policy, SpecError};

/// Arguments of `marketplace-operator simulate`.
#[derive(Clone, Debug, clap::Args)]
pub struct SimulateArgs {
    /// Trace CSV with the header `t_seconds,requests_per_second`.
    #[arg(
        long,
        value_name = "FILE.csv",
        required_unless_present = "synthetic",
        conflicts_with = "synthetic"
    )]
    pub trace: Option<PathBuf>,
    /// Generate a synthetic trace instead of reading one.
    #[arg(long, value_enum)]
    pub synthetic: Option<Synthetic>,
    /// Which week `--synthetic marketplace` (or which three weeks `--synthetic social`)
    /// generates; the other shapes are fixed.
    #[arg(long, default_value_t = 1, requires = "synthetic")]
    pub seed: u64,
    /// A MarketplaceService YAML whose `spec.scaling` is the policy under test (default: the
    /// recommended scaling block, see `default_scaling_spec`).
    #[arg(long, value_name = "FILE.yaml")]
    pub policy: Option<PathBuf>,
    /// Seconds from a scale-up decision until the new replica serves.
    #[arg(long, default_value_t = 30.0, allow_negative_numbers = true)]
    pub startup_seconds: f64,
    /// Requests/s at which one replica saturates (default: the trace's peak needs 40
    /// replicas at the target utilization).
    #[arg(long, allow_negative_numbers = true)]
    pub capacity_rps: Option<f64>,
    /// Fraction of capacity every policy targets per replica.
    #[arg(long, default_value_t = 0.7, allow_negative_numbers = true)]
    pub target_utilization: f64,
    /// Simulation step, in seconds.
    #[arg(long, default_value_t = 1.0, allow_negative_numbers = true)]
    pub step_seconds: f64,
    /// Prometheus scrape interval, in seconds.
    #[arg(long, default_value_t = 15.0, allow_negative_numbers = true)]
    pub scrape_interval_seconds: f64,
    /// maxReplicas of the baselines, the oracle and the default policy (at least 1).
    #[arg(long, default_value_t = 200, allow_negative_numbers = true)]
    pub max_replicas: u32,
    /// Unix time of the trace's first row (matters only to scheduled floors).
    #[arg(long, default_value_t = 0.0, allow_negative_numbers = true)]
    pub start_unix_seconds: f64,
    /// Write the figures as JSON here.
    #[arg(long, value_name = "OUT.json")]
    pub json: Option<PathBuf>,
    /// Write the HTML report (inline SVG charts) here.
    #[arg(long, value_name = "OUT.html")]
    pub report: Option<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum SimulateError {
    #[error(transparent)]
    Trace(#[from] TraceError),
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error("either --trace or --synthetic is required")]
    NoTrace,
    #[error("failed to read policy {path}")]
    ReadPolicy {
        path: String,
        source: std::io::Error,
    },
    #[error("failed to parse policy {path} as a MarketplaceService: {message}")]
    ParsePolicy { path: String, message: String },
    #[error("policy {path} has no spec.scaling block")]
    NoScaling { path: String },
    #[error("policy {path}: {error}")]
    Spec { path: String, error: SpecError },
    #[error("the default scaling block is invalid: {0}")]
    DefaultSpec(SpecError),
    #[error("failed to write {path}")]
    Write {
        path: String,
        source: std::io::Error,
    },
    #[error("failed to encode the JSON results: {0}")]
    Json(#[from] serde_json::Error),
    #[error("failed to draw the report: {0}")]
    Plot(String),
}

/// What the trace was, for the JSON.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct TraceInfo {
    pub name: String,
    pub source: String,
    pub step_seconds: f64,
    pub duration_seconds: f64,
    pub peak_rps: f64,
    pub mean_rps: f64,
}

/// One policy's figures, with ratios to the baselines of the same run.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct PolicyResult {
    pub name: String,
    #[serde(flatten)]
    pub figures: Figures,
    pub vs_hpa: Ratios,
    pub vs_oracle: Ratios,
    /// Decisions per mode (engine policies only).
    pub modes: std::collections::BTreeMap<String, u64>,
    #[serde(skip)]
    pub series: Series,
}

/// Each figure divided by the baseline's (`null` when the baseline's is 0).
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct Ratios {
    pub under_capacity_seconds: Option<f64>,
    pub unserved_requests: Option<f64>,
    pub replica_seconds: Option<f64>,
    pub replica_seconds_per_burst: Option<f64>,
    pub scale_events: Option<f64>,
    pub peak_replicas: Option<f64>,
}

impl Ratios {
    fn of(f: &Figures, base: &Figures) -> Self {
        let r = |a: f64, b: f64| if b > 0.0 { Some(a / b) } else { None };
        Self {
            under_capacity_seconds: r(f.under_capacity_seconds, base.under_capacity_seconds),
            unserved_requests: r(f.unserved_requests, base.unserved_requests),
            replica_seconds: r(f.replica_seconds, base.replica_seconds),
            replica_seconds_per_burst: r(
                f.replica_seconds_per_burst,
                base.replica_seconds_per_burst,
            ),
            scale_events: r(f.scale_events as f64, base.scale_events as f64),
            peak_replicas: r(f64::from(f.peak_replicas), f64::from(base.peak_replicas)),
        }
    }
}

/// The whole run, as written to JSON.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Results {
    pub trace: TraceInfo,
    pub model: Model,
    pub policies: Vec<PolicyResult>,
}

impl Results {
    pub fn get(&self, name: &str) -> Option<&PolicyResult> {
        self.policies.iter().find(|p| p.name == name)
    }
}

/// Replays `trace` (any step; it is resampled to the model's) through every controller.
/// Pure apart from `progress`, which is told how many steps are done as they are.
pub fn simulate(
    trace: &Trace,
    source: &str,
    model: &Model,
    controllers: &[(String, Controller)],
    progress: &(dyn Fn(u64) + Sync),
) -> Result<Results, SimulateError> {
    model.validate()?;
    let grid = trace.resample(model.step_seconds)?;
    let bursts = Bursts::detect(&grid, model);
    // Each replay is independent: run them on scoped threads (the machine decides how many
    // actually run at once).
    let replays: Vec<Result<Replay, ModelError>> = std::thread::scope(|s| {
        let handles: Vec<_> = controllers
            .iter()
            .map(|(name, c)| {
                let (grid, bursts) = (&grid, &bursts);
                s.spawn(move || replay(name, grid, model, bursts, c, &mut |n| progress(n)))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or(Err(ModelError::Panicked)))
            .collect()
    });
    let mut runs = Vec::with_capacity(replays.len());
    for ((name, _), r) in controllers.iter().zip(replays) {
        runs.push((name.clone(), r?));
    }
    let base = |n: &str| {
        runs.iter()
            .find(|(name, _)| name == n)
            .map(|(_, r)| r.figures.clone())
    };
    let (hpa_f, oracle_f) = (
        base("hpa").unwrap_or_default(),
        base("oracle").unwrap_or_default(),
    );
    let policies = runs
        .into_iter()
        .map(|(name, r)| PolicyResult {
            vs_hpa: Ratios::of(&r.figures, &hpa_f),
            vs_oracle: Ratios::of(&r.figures, &oracle_f),
            modes: r
                .modes
                .iter()
                .map(|(m, n): &(Mode, u64)| (m.to_string(), *n))
                .collect(),
            figures: r.figures,
            series: r.series,
            name,
        })
        .collect();
    Ok(Results {
        trace: TraceInfo {
            name: trace.name.clone(),
            source: source.to_string(),
            step_seconds: trace.step,
            duration_seconds: trace.duration(),
            peak_rps: trace.peak(),
            mean_rps: trace.mean(),
        },
        model: model.clone(),
        policies,
    })
}

/// The model for a trace: capacity sized so the peak needs 40 replicas unless given.
/// Each flag is checked before anything is derived from it, so an error names the flag the
/// user got wrong, not the capacity computed from it.
pub fn model_for(trace: &Trace, args: &SimulateArgs) -> Result<Model, ModelError> {
    let u = args.target_utilization;
    if !(u > 0.0 && u <= 1.0) {
        return Err(ModelError::Utilization(u));
    }
    if args.max_replicas == 0 {
        return Err(ModelError::MaxReplicas);
    }
    let capacity_rps = match args.capacity_rps {
        Some(c) => c,
        None if trace.peak() > 0.0 => trace.peak() / (40.0 * u),
        None => return Err(ModelError::NoLoad),
    };
    let model = Model {
        capacity_rps,
        target_utilization: args.target_utilization,
        startup_seconds: args.startup_seconds,
        scrape_interval_seconds: args.scrape_interval_seconds,
        step_seconds: args.step_seconds,
        min_replicas: 1,
        max_replicas: args.max_replicas,
        start_unix_seconds: args.start_unix_seconds,
    };
    model.validate()?;
    Ok(model)
}

/// The policy under test: `--policy`'s `spec.scaling`, or the default block.
pub fn policy_for(args: &SimulateArgs, model: &Model) -> Result<Policy, SimulateError> {
    let Some(path) = &args.policy else {
        return Policy::from_spec(&default_scaling_spec(
            model.target_rps(),
            model.max_replicas,
        ))
        .map_err(SimulateError::DefaultSpec);
    };
    let shown = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| SimulateError::ReadPolicy {
        path: shown.clone(),
        source,
    })?;
    let svc: MarketplaceService =
        serde_saphyr::from_str(&text).map_err(|e| SimulateError::ParsePolicy {
            path: shown.clone(),
            message: e.to_string(),
        })?;
    let spec = svc.spec.scaling.ok_or_else(|| SimulateError::NoScaling {
        path: shown.clone(),
    })?;
    Policy::from_spec(&spec).map_err(|error| SimulateError::Spec { path: shown, error })
}

pub use crate::scaling::default_scaling_spec;

/// The shape as it is typed on the command line (`flash-crowd`, not `FlashCrowd`).
fn shape_name(shape: Synthetic) -> String {
    use clap::ValueEnum;
    shape
        .to_possible_value()
        .map_or_else(|| format!("{shape:?}"), |v| v.get_name().to_owned())
}

/// `marketplace-operator simulate`: load, replay, print the table, write JSON and HTML.
pub fn run(args: SimulateArgs) -> Result<Results, SimulateError> {
    let (trace, source) = match (&args.trace, args.synthetic) {
        (Some(path), _) => (Trace::from_csv_file(path)?, path.display().to_string()),
        (None, Some(shape)) => (
            shape.generate_seeded(args.seed),
            format!("--synthetic {} --seed {}", shape_name(shape), args.seed),
        ),
        (None, None) => return Err(SimulateError::NoTrace),
    };
    let model = model_for(&trace, &args)?;
    let policy = policy_for(&args, &model)?;
    tracing::info!(trace = %trace.name, capacity_rps = model.capacity_rps, "simulating");
    let controllers = lineup(&model, policy);
    let steps = (trace.duration() / model.step_seconds).ceil() as u64 * controllers.len() as u64;
    let bar = indicatif::ProgressBar::with_draw_target(
        Some(steps),
        indicatif::ProgressDrawTarget::stderr(),
    );
    bar.set_style(
        indicatif::ProgressStyle::with_template("{msg} [{bar:40}] {percent}% ({eta})")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    bar.set_message(format!("replaying {}", trace.name));
    let results = simulate(&trace, &source, &model, &controllers, &|n| bar.inc(n))?;
    bar.finish_and_clear();
    crate::output::print(&report::table(&results)).map_err(|source| SimulateError::Write {
        path: "stdout".to_owned(),
        source,
    })?;
    if let Some(path) = &args.json {
        let text = serde_json::to_string_pretty(&results)?;
        write(path, &text)?;
        written("JSON", path)?;
    }
    if let Some(path) = &args.report {
        let html = report::html(&results)?;
        write(path, &html)?;
        written("report", path)?;
    }
    Ok(results)
}

/// Tells the user where an output went (the path as given, so it can be pasted back).
fn written(what: &str, path: &std::path::Path) -> Result<(), SimulateError> {
    crate::output::print(&format!("{what} written to {}\n", path.display())).map_err(|source| {
        SimulateError::Write {
            path: "stdout".to_owned(),
            source,
        }
    })
}

fn write(path: &std::path::Path, text: &str) -> Result<(), SimulateError> {
    std::fs::write(path, text).map_err(|source| SimulateError::Write {
        path: path.display().to_string(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args() -> SimulateArgs {
        SimulateArgs {
            trace: None,
            synthetic: Some(Synthetic::Step),
            seed: 1,
            policy: None,
            startup_seconds: 30.0,
            capacity_rps: None,
            target_utilization: 0.7,
            step_seconds: 1.0,
            scrape_interval_seconds: 15.0,
            max_replicas: 200,
            start_unix_seconds: 0.0,
            json: None,
            report: None,
        }
    }

    fn run_step() -> Results {
        let trace = Synthetic::Step.generate();
        let model = model_for(&trace, &args()).expect("valid model");
        let policy = policy_for(&args(), &model).expect("default policy");
        simulate(
            &trace,
            "synthetic",
            &model,
            &lineup(&model, policy),
            &|_| {},
        )
        .expect("replays")
    }

    #[test]
    fn every_baseline_and_the_policy_replay_the_same_trace() {
        let r = run_step();
        let names: Vec<&str> = r.policies.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["hpa", "keda", "kpa", "oracle", "policy"]);
        let oracle = r.get("oracle").expect("oracle ran");
        assert_eq!(oracle.figures.under_capacity_seconds, 0.0);
        assert_eq!(
            oracle.figures.peak_replicas, 40,
            "the peak needs 40 replicas by construction"
        );
    }

    #[test]
    fn the_json_has_the_documented_shape() {
        let v = serde_json::to_value(run_step()).expect("serializable");
        for key in ["trace", "model", "policies"] {
            assert!(v.get(key).is_some(), "missing {key}");
        }
        let p = &v["policies"][0];
        for key in [
            "name",
            "under_capacity_seconds",
            "unserved_requests",
            "replica_seconds",
            "replica_seconds_per_burst",
            "scale_events",
            "peak_replicas",
        ] {
            assert!(p.get(key).is_some(), "missing policies[].{key}");
        }
    }

    #[test]
    fn a_step_in_load_costs_the_hpa_under_capacity_that_the_policy_halves_or_nearly() {
        let r = run_step();
        let (hpa, policy) = (r.get("hpa").expect("hpa"), r.get("policy").expect("policy"));
        assert!(hpa.figures.under_capacity_seconds > 0.0);
        assert!(policy.figures.under_capacity_seconds < hpa.figures.under_capacity_seconds);
    }

    #[test]
    fn the_oracle_pays_warm_up_at_the_real_start_up_not_a_whole_step() {
        // 1 replica's worth, then 10: the 9 new replicas start 30 s before the second
        // minute, so they cost 9 × 30 s, not 9 × 60 s (the step).
        let trace = Trace {
            name: "jump".into(),
            step: 60.0,
            rates: vec![7.0, 70.0],
        };
        let model = Model {
            capacity_rps: 10.0,
            target_utilization: 0.7,
            startup_seconds: 30.0,
            scrape_interval_seconds: 15.0,
            step_seconds: 60.0,
            min_replicas: 1,
            max_replicas: 200,
            start_unix_seconds: 0.0,
        };
        let r = simulate(
            &trace,
            "t",
            &model,
            &[("oracle".to_string(), Controller::Oracle)],
            &|_| {},
        )
        .expect("replays");
        let f = &r.get("oracle").expect("oracle").figures;
        assert!(
            (f.replica_seconds - (60.0 + 9.0 * 30.0 + 600.0)).abs() < 1e-6,
            "{f:?}"
        );
        assert_eq!(f.under_capacity_seconds, 0.0);
    }

    #[test]
    fn zero_capacity_is_an_error_not_a_panic() {
        let trace = Synthetic::Step.generate();
        let err = model_for(
            &trace,
            &SimulateArgs {
                capacity_rps: Some(0.0),
                ..args()
            },
        )
        .expect_err("impossible");
        assert!(err.to_string().contains("capacity"), "{err}");
    }

    #[test]
    fn the_report_is_self_contained_html_with_a_chart_per_policy() {
        let html = report::html(&run_step()).expect("drawn");
        assert!(html.starts_with("<!doctype html>"));
        assert_eq!(
            html.matches("<svg").count(),
            12,
            "a zoom and an overview per policy, and the policy's one shortfall (the step's \
             onset) plotted for the policy and the hpa"
        );
        assert!(html.contains("Where the policy fell short"));
        assert!(!html.contains("<script") && !html.contains("src=\"http"));
    }
}
