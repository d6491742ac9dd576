//! Status: conditions computed from the applied Deployment, the validation result and the
//! autoscaler's last tick; merged with the previous ones, then written once by server-side
//! apply (only the fields the reconcile owns; the decision fields are the autoscaler's).

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use marketplace_crds::v1alpha1::MarketplaceServiceStatus;
use serde_json::{Value, json};

use super::autoscaler::Snapshot;
use crate::controllers::conditions::{self, Computed, FALSE, TRUE, UNKNOWN};
use crate::scaling::{Hold, Limit};

/// Condition types.
pub mod types {
    pub const READY: &str = "Ready";
    pub const SCALING_ACTIVE: &str = "ScalingActive";
    pub const METRICS_AVAILABLE: &str = "MetricsAvailable";
    pub const SCALING_LIMITED: &str = "ScalingLimited";
    /// Whether the service's cache tier is ready; only for a service with `cache`.
    pub const CACHE_READY: &str = "CacheReady";
}

/// Condition reasons.
pub mod reasons {
    pub const REPLICAS_READY: &str = "ReplicasReady";
    pub const REPLICAS_STARTING: &str = "ReplicasStarting";
    pub const SCALED_TO_ZERO: &str = "ScaledToZero";
    pub const DEPLOYMENT_MISSING: &str = "DeploymentMissing";
    pub const INVALID_SPEC: &str = "InvalidSpec";
    pub const SCALING_DISABLED: &str = "ScalingDisabled";
    pub const AWAITING_FIRST_DECISION: &str = "AwaitingFirstDecision";
    pub const VALID_METRIC_SIGNAL: &str = "ValidMetricSignal";
    pub const FAILED_GET_METRICS: &str = "FailedGetMetrics";
    pub const METRICS_READ: &str = "MetricsRead";
    pub const METRICS_UNAVAILABLE: &str = "MetricsUnavailable";
    pub const DESIRED_WITHIN_RANGE: &str = "DesiredWithinRange";
    pub const TOO_FEW_REPLICAS: &str = "TooFewReplicas";
    pub const TOO_MANY_REPLICAS: &str = "TooManyReplicas";
    pub const SCALE_UP_LIMITED: &str = "ScaleUpLimited";
    pub const SCALE_DOWN_LIMITED: &str = "ScaleDownLimited";
    pub const TIER_READY: &str = "TierReady";
    pub const TIER_NOT_READY: &str = "TierNotReady";
    pub const TIER_NOT_FOUND: &str = "TierNotFound";
    pub const TIER_PENDING: &str = "TierPending";
}

use reasons as r;
use types as t;

/// What the Deployment says, for status.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Replicas {
    pub desired: i32,
    pub current: i32,
    pub ready: i32,
    pub updated: i32,
}

impl Replicas {
    pub fn of(d: &Deployment) -> Self {
        let status = d.status.clone().unwrap_or_default();
        Self {
            desired: d.spec.replicas.unwrap_or(1),
            current: status.replicas.unwrap_or(0),
            ready: status.ready_replicas.unwrap_or(0),
            updated: status.updated_replicas.unwrap_or(0),
        }
    }
}

/// `Ready` from the Deployment, or from the validation errors (as a user reads them) of a
/// spec that failed validation.
pub fn ready_condition(deployment: Option<Replicas>, invalid: Option<&str>) -> Computed {
    if let Some(message) = invalid {
        return Computed::new(t::READY, FALSE, r::INVALID_SPEC, message);
    }
    let Some(d) = deployment else {
        return Computed::new(
            t::READY,
            FALSE,
            r::DEPLOYMENT_MISSING,
            "the Deployment does not exist yet",
        );
    };
    let message = format!("{}/{} replicas ready", d.ready, d.desired);
    if d.desired == 0 {
        Computed::new(t::READY, TRUE, r::SCALED_TO_ZERO, "scaled to 0 replicas")
    } else if d.ready >= d.desired && d.updated >= d.desired {
        Computed::new(t::READY, TRUE, r::REPLICAS_READY, message)
    } else {
        Computed::new(t::READY, FALSE, r::REPLICAS_STARTING, message)
    }
}

/// The scaling conditions of an autoscaled service, from the autoscaler's last tick.
pub fn scaling_conditions(snapshot: Option<&Snapshot>) -> Vec<Computed> {
    let Some(s) = snapshot.filter(|s| s.ticks > 0) else {
        let waiting = "the autoscaler has not decided yet";
        return vec![
            Computed::new(
                t::SCALING_ACTIVE,
                UNKNOWN,
                r::AWAITING_FIRST_DECISION,
                waiting,
            ),
            Computed::new(
                t::METRICS_AVAILABLE,
                UNKNOWN,
                r::AWAITING_FIRST_DECISION,
                waiting,
            ),
            Computed::new(
                t::SCALING_LIMITED,
                UNKNOWN,
                r::AWAITING_FIRST_DECISION,
                waiting,
            ),
        ];
    };
    let reason_text = s.last.map(|d| d.reason()).unwrap_or_default();
    let active = if s.any_metric {
        Computed::new(
            t::SCALING_ACTIVE,
            TRUE,
            r::VALID_METRIC_SIGNAL,
            "the autoscaler reads metrics and decides every poll interval",
        )
    } else {
        let held = match s.last.and_then(|d| d.explanation.hold) {
            Some(Hold::AllMetricsMissing) => {
                "no metric could be read; replicas are held (never scaled down on missing data), fallback applies if configured"
            }
            _ => "no metric could be read",
        };
        Computed::new(t::SCALING_ACTIVE, FALSE, r::FAILED_GET_METRICS, held)
    };
    let metrics = match &s.metrics_error {
        None => Computed::new(
            t::METRICS_AVAILABLE,
            TRUE,
            r::METRICS_READ,
            "every metric was read",
        ),
        Some(e) => Computed::new(
            t::METRICS_AVAILABLE,
            FALSE,
            r::METRICS_UNAVAILABLE,
            e.clone(),
        ),
    };
    let limited = match s.last.and_then(|d| d.explanation.limit).map(|(l, _)| l) {
        None => Computed::new(
            t::SCALING_LIMITED,
            FALSE,
            r::DESIRED_WITHIN_RANGE,
            "the desired count is within the bounds and rates",
        ),
        Some(limit) => {
            let reason = match limit {
                Limit::MinReplicas => r::TOO_FEW_REPLICAS,
                Limit::MaxReplicas => r::TOO_MANY_REPLICAS,
                Limit::ScaleUpRate => r::SCALE_UP_LIMITED,
                Limit::ScaleDownRate => r::SCALE_DOWN_LIMITED,
            };
            Computed::new(t::SCALING_LIMITED, TRUE, reason, reason_text)
        }
    };
    vec![active, metrics, limited]
}

pub fn disabled_condition() -> Computed {
    Computed::new(
        t::SCALING_ACTIVE,
        FALSE,
        r::SCALING_DISABLED,
        "no spec.scaling: replicas follow spec.replicas, which kubectl scale, an HPA or KEDA can drive through the scale subresource",
    )
}

/// The reconcile's part of the status.
#[derive(Clone, Debug, PartialEq)]
pub struct Owned {
    pub observed_generation: Option<i64>,
    pub replicas: i32,
    pub ready_replicas: i32,
    pub selector: Option<String>,
    /// Only for services without a scaling block (the autoscaler's field otherwise).
    pub desired_replicas: Option<i32>,
    pub conditions: Vec<Condition>,
}

impl Owned {
    pub fn build(
        previous: Option<&MarketplaceServiceStatus>,
        generation: Option<i64>,
        deployment: Option<Replicas>,
        selector: Option<String>,
        desired_replicas: Option<i32>,
        computed: &[Computed],
        now: &Time,
    ) -> Self {
        let old = previous
            .map(|s| s.conditions.as_slice())
            .unwrap_or_default();
        let d = deployment.unwrap_or_default();
        Self {
            observed_generation: generation,
            replicas: d.current,
            ready_replicas: d.ready,
            selector,
            desired_replicas,
            conditions: conditions::merge(old, computed, generation, now),
        }
    }

    /// Whether `status` already says all this (so the write can be skipped).
    pub fn is_current(&self, status: Option<&MarketplaceServiceStatus>) -> bool {
        let Some(s) = status else { return false };
        s.observed_generation == self.observed_generation
            && s.replicas == self.replicas
            && s.ready_replicas == self.ready_replicas
            && s.selector == self.selector
            && self
                .desired_replicas
                .is_none_or(|d| d == s.desired_replicas)
            && conditions::same(&s.conditions, &self.conditions)
    }

    pub fn patch(&self) -> Value {
        let mut status = json!({
            "replicas": self.replicas,
            "readyReplicas": self.ready_replicas,
            "conditions": self.conditions,
        });
        if let Some(g) = self.observed_generation {
            status["observedGeneration"] = json!(g);
        }
        if let Some(s) = &self.selector {
            status["selector"] = json!(s);
        }
        if let Some(d) = self.desired_replicas {
            status["desiredReplicas"] = json!(d);
        }
        json!({
            "apiVersion": "marketplace.dev/v1alpha1",
            "kind": "MarketplaceService",
            "status": status,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scaling::{Explanation, Mode};

    fn snapshot(limit: Option<Limit>, error: Option<&str>, any_metric: bool) -> Snapshot {
        let mut explanation = Explanation::new(3, 3);
        explanation.limit = limit.map(|l| (l, 12));
        if !any_metric {
            explanation.hold = Some(Hold::AllMetricsMissing);
        }
        Snapshot {
            ticks: 4,
            last: Some(crate::scaling::Decision {
                desired: 10,
                mode: Mode::Limited,
                explanation,
            }),
            metrics_error: error.map(str::to_owned),
            any_metric,
        }
    }

    fn find<'a>(cs: &'a [Computed], t: &str) -> &'a Computed {
        cs.iter().find(|c| c.type_ == t).expect("condition present")
    }

    #[test]
    fn ready_means_every_desired_replica_is_updated_and_ready() {
        let r = |desired, ready, updated| Replicas {
            desired,
            current: desired,
            ready,
            updated,
        };
        let valid = None;
        assert_eq!(ready_condition(Some(r(3, 3, 3)), valid).status, TRUE);
        let starting = ready_condition(Some(r(3, 2, 3)), valid);
        assert_eq!(
            (starting.status, starting.reason),
            (FALSE, r::REPLICAS_STARTING)
        );
        assert_eq!(starting.message, "2/3 replicas ready");
        assert_eq!(
            ready_condition(Some(r(0, 0, 0)), valid).reason,
            r::SCALED_TO_ZERO
        );
        assert_eq!(ready_condition(None, valid).reason, r::DEPLOYMENT_MISSING);
    }

    #[test]
    fn an_invalid_spec_is_not_ready_whatever_the_pods_say() {
        let c = ready_condition(
            Some(Replicas::default()),
            Some("spec.scaling.minReplicas: must be at least 1"),
        );
        assert_eq!((c.status, c.reason), (FALSE, r::INVALID_SPEC));
        assert!(c.message.contains("spec.scaling.minReplicas"));
    }

    #[test]
    fn a_rate_limited_decision_sets_scaling_limited_with_its_reason() {
        let cs = scaling_conditions(Some(&snapshot(Some(Limit::ScaleUpRate), None, true)));
        let limited = find(&cs, t::SCALING_LIMITED);
        assert_eq!(
            (limited.status, limited.reason),
            (TRUE, r::SCALE_UP_LIMITED)
        );
        assert!(
            limited.message.contains("scale-up rate policy"),
            "{}",
            limited.message
        );
        assert_eq!(find(&cs, t::SCALING_ACTIVE).status, TRUE);
        assert_eq!(find(&cs, t::METRICS_AVAILABLE).status, TRUE);
    }

    #[test]
    fn missing_metrics_say_why_and_deactivate_scaling() {
        let cs = scaling_conditions(Some(&snapshot(
            None,
            Some("Prometheus has no samples"),
            false,
        )));
        let metrics = find(&cs, t::METRICS_AVAILABLE);
        assert_eq!(
            (metrics.status, metrics.reason),
            (FALSE, r::METRICS_UNAVAILABLE)
        );
        assert!(metrics.message.contains("no samples"));
        let active = find(&cs, t::SCALING_ACTIVE);
        assert_eq!(
            (active.status, active.reason),
            (FALSE, r::FAILED_GET_METRICS)
        );
        assert!(active.message.contains("never scaled down"));
        assert_eq!(find(&cs, t::SCALING_LIMITED).status, FALSE);
    }

    #[test]
    fn before_the_first_tick_every_scaling_condition_is_unknown() {
        for c in scaling_conditions(None) {
            assert_eq!((c.status, c.reason), (UNKNOWN, r::AWAITING_FIRST_DECISION));
        }
    }

    #[test]
    fn an_unchanged_status_is_not_written_again() {
        let computed = [Computed::new(
            t::READY,
            TRUE,
            r::REPLICAS_READY,
            "2/2 replicas ready",
        )];
        let d = Replicas {
            desired: 2,
            current: 2,
            ready: 2,
            updated: 2,
        };
        let owned = Owned::build(
            None,
            Some(3),
            Some(d),
            Some("a=b".into()),
            None,
            &computed,
            &crate::controllers::clock::time_at(1.0),
        );
        let written: MarketplaceServiceStatus =
            serde_json::from_value(owned.patch()["status"].clone()).expect("a status");
        let again = Owned::build(
            Some(&written),
            Some(3),
            Some(d),
            Some("a=b".into()),
            None,
            &computed,
            &crate::controllers::clock::time_at(99.0),
        );
        assert!(again.is_current(Some(&written)));
        assert_eq!(
            again.conditions[0].last_transition_time,
            written.conditions[0].last_transition_time
        );
        let newer = Owned::build(
            Some(&written),
            Some(4),
            Some(d),
            Some("a=b".into()),
            None,
            &computed,
            &crate::controllers::clock::time_at(99.0),
        );
        assert!(!newer.is_current(Some(&written)));
    }
}
