//! The policies a trace is replayed through. Every one but the oracle is a configuration of
//! the same `scaling::Engine`, so the comparison is between policies, not implementations.

use crate::scaling::{
    Burst, MetricKind, MetricPolicy, Policy, RateKind, RatePolicy, ScalingRules, Select, TargetType,
};

use super::model::{Controller, Model};

/// The Kubernetes HPA with every default: 15 s sync period, 0.1 tolerance, default behavior.
pub fn hpa(model: &Model) -> Policy {
    Policy::hpa(model.min_replicas, model.max_replicas, model.target_rps())
}

/// KEDA: it drives an HPA, so HPA behaviour, but its scaler is polled every 30 s.
pub fn keda(model: &Model) -> Policy {
    Policy {
        poll_interval: 30.0,
        ..hpa(model)
    }
}

/// Knative's KPA with its defaults: a 2 s tick, the desired count from the demand averaged
/// over a 60 s stable window (no tolerance), panic when the 6 s window asks for 200% of the
/// ready pods (no scale-down in panic, which lasts a stable window), scale-up at most 1000×
/// and scale-down at most 2× per tick, no scale-down delay.
pub fn kpa(model: &Model) -> Policy {
    Policy {
        tolerance: 0.0,
        metric_window: 60.0,
        burst: Some(Burst {
            window: 6.0,
            threshold: 2.0,
            hold: 60.0,
            slope_window: 0.0,
            horizon: 0.0,
            min_surprise: 0.0,
        }),
        scale_up: ScalingRules {
            tolerance: None,
            stabilization_window: 0.0,
            select: Select::Max,
            policies: vec![RatePolicy {
                kind: RateKind::Percent,
                value: 99_900,
                period: 2.0,
            }],
        },
        scale_down: ScalingRules {
            tolerance: None,
            stabilization_window: 0.0,
            select: Select::Max,
            policies: vec![RatePolicy {
                kind: RateKind::Percent,
                value: 50,
                period: 2.0,
            }],
        },
        poll_interval: 2.0,
        legacy: false,
        ..hpa(model)
    }
}

/// Keeps what the simulator can measure (requests/s) and puts the model's target on it:
/// every policy is judged at the same target utilization. Metrics of other kinds are
/// dropped (the simulator has no latency or CPU model); were they kept, they would read as
/// missing and, as in the HPA, block every scale-down.
pub fn simulated_policy(mut policy: Policy, model: &Model) -> Policy {
    policy
        .metrics
        .retain(|m| m.kind == MetricKind::RequestsPerSecond);
    if policy.metrics.is_empty() {
        policy.metrics.push(MetricPolicy {
            kind: MetricKind::RequestsPerSecond,
            target_type: TargetType::AverageValue,
            target: model.target_rps(),
        });
    }
    for m in &mut policy.metrics {
        m.target_type = TargetType::AverageValue;
        m.target = model.target_rps();
    }
    // The forecast plans against saturation; in the model that is 1 / utilization × target
    // (the engine's default assumes the default 70%).
    if let Some(p) = policy.predictive.as_mut() {
        p.saturation = 1.0 / model.target_utilization;
    }
    policy
}

/// The named controllers of a run, baselines first, the policy under test last.
pub fn lineup(model: &Model, policy: Policy) -> Vec<(String, Controller)> {
    vec![
        ("hpa".to_string(), Controller::Engine(Box::new(hpa(model)))),
        (
            "keda".to_string(),
            Controller::Engine(Box::new(keda(model))),
        ),
        ("kpa".to_string(), Controller::Engine(Box::new(kpa(model)))),
        ("oracle".to_string(), Controller::Oracle),
        (
            "policy".to_string(),
            Controller::Engine(Box::new(simulated_policy(policy, model))),
        ),
    ]
}
