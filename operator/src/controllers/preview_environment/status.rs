//! Status: conditions computed from what the reconcile found and did, merged with the previous
//! ones, the phase derived from them, and written once by server-side apply.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use marketplace_crds::v1alpha1::{
    MarketplaceService, PreviewEnvironmentStatus, PreviewPhase, PreviewServiceStatus,
};
use serde_json::{Value, json};

use crate::controllers::conditions::{self, Computed, FALSE, TRUE};

/// Condition types.
pub mod types {
    /// Every service of the environment is ready.
    pub const READY: &str = "Ready";
    /// The namespace, quota, limits, policies, cache and copies are in place.
    pub const PROVISIONED: &str = "Provisioned";
    /// The TTL has passed and the namespace was removed.
    pub const EXPIRED: &str = "Expired";
}

/// Condition reasons (the bad-input ones are also Event reasons).
pub mod reasons {
    pub const SERVICES_READY: &str = "ServicesReady";
    pub const SERVICES_STARTING: &str = "ServicesStarting";
    pub const PROVISIONED: &str = "Provisioned";
    pub const NAMESPACE_TERMINATING: &str = "NamespaceTerminating";
    pub const NAMESPACE_TAKEN: &str = "NamespaceTaken";
    pub const INVALID_SPEC: &str = "InvalidSpec";
    pub const APPLY_REJECTED: &str = "ApplyRejected";
    pub const TTL_ELAPSED: &str = "TtlElapsed";
    pub const WITHIN_TTL: &str = "WithinTtl";
    pub const TERMINATING: &str = "Terminating";
}

use reasons as r;
use types as t;

/// One copy as its controller reports it.
#[derive(Clone, Debug, PartialEq)]
pub struct ServiceState {
    pub name: String,
    pub image: String,
    pub ready: bool,
    pub url: String,
}

impl ServiceState {
    /// `ready` from the copy's own `Ready` condition, once it describes the copy's spec.
    pub fn of(copy: &MarketplaceService, url: String) -> Self {
        let ready = copy.status.as_ref().is_some_and(|s| {
            s.observed_generation == copy.metadata.generation
                && s.conditions
                    .iter()
                    .any(|c| c.type_ == t::READY && c.status == TRUE)
        });
        Self {
            name: copy.metadata.name.clone().unwrap_or_default(),
            image: copy.spec.image.clone(),
            ready,
            url,
        }
    }
}

/// What the reconcile came to.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    /// Everything applied; the services as they are.
    Provisioned(Vec<ServiceState>),
    /// Waiting for the namespace of an earlier environment to go.
    Pending(String),
    /// Bad input or a rejected write: nothing is left in the cluster.
    Failed {
        reason: &'static str,
        message: String,
    },
    /// The TTL has passed: the namespace is removed.
    Expired,
    /// The PreviewEnvironment is being deleted.
    Terminating,
}

/// The conditions of an outcome: `Ready`, `Provisioned`, `Expired`.
pub fn conditions_of(outcome: &Outcome) -> Vec<Computed> {
    let not_expired = || Computed::new(t::EXPIRED, FALSE, r::WITHIN_TTL, "the TTL has not passed");
    match outcome {
        Outcome::Provisioned(services) => {
            let ready = services.iter().filter(|s| s.ready).count();
            let starting: Vec<&str> = services
                .iter()
                .filter(|s| !s.ready)
                .map(|s| s.name.as_str())
                .collect();
            let readiness = if starting.is_empty() {
                Computed::new(
                    t::READY,
                    TRUE,
                    r::SERVICES_READY,
                    format!("{ready}/{} services ready", services.len()),
                )
            } else {
                Computed::new(
                    t::READY,
                    FALSE,
                    r::SERVICES_STARTING,
                    format!(
                        "{ready}/{} services ready; starting: {}",
                        services.len(),
                        starting.join(", ")
                    ),
                )
            };
            vec![
                readiness,
                Computed::new(
                    t::PROVISIONED,
                    TRUE,
                    r::PROVISIONED,
                    "namespace, quota, limits, network policies, cache and services applied",
                ),
                not_expired(),
            ]
        }
        Outcome::Pending(message) => vec![
            Computed::new(t::READY, FALSE, r::NAMESPACE_TERMINATING, message.clone()),
            Computed::new(
                t::PROVISIONED,
                FALSE,
                r::NAMESPACE_TERMINATING,
                message.clone(),
            ),
            not_expired(),
        ],
        Outcome::Failed { reason, message } => vec![
            Computed::new(t::READY, FALSE, reason, message.clone()),
            Computed::new(t::PROVISIONED, FALSE, reason, message.clone()),
            not_expired(),
        ],
        Outcome::Expired => {
            let message = "the TTL has passed: the namespace and everything in it were removed; extend spec.ttl to provision the environment again";
            vec![
                Computed::new(t::READY, FALSE, r::TTL_ELAPSED, message),
                Computed::new(t::PROVISIONED, FALSE, r::TTL_ELAPSED, message),
                Computed::new(t::EXPIRED, TRUE, r::TTL_ELAPSED, message),
            ]
        }
        Outcome::Terminating => {
            let message = "the environment is being deleted with its namespace";
            vec![
                Computed::new(t::READY, FALSE, r::TERMINATING, message),
                Computed::new(t::PROVISIONED, FALSE, r::TERMINATING, message),
            ]
        }
    }
}

/// The phase, for people, from the conditions (never stored apart from them).
pub fn phase_of(computed: &[Computed]) -> PreviewPhase {
    let find = |type_: &str| computed.iter().find(|c| c.type_ == type_);
    let is = |type_: &str, status: &str| find(type_).is_some_and(|c| c.status == status);
    let provisioned = find(t::PROVISIONED);
    if provisioned.is_some_and(|c| c.reason == r::TERMINATING) {
        PreviewPhase::Terminating
    } else if is(t::EXPIRED, TRUE) {
        PreviewPhase::Expired
    } else if is(t::READY, TRUE) {
        PreviewPhase::Ready
    } else if is(t::PROVISIONED, TRUE) {
        PreviewPhase::Provisioning
    } else if provisioned.is_none_or(|c| c.reason == r::NAMESPACE_TERMINATING) {
        PreviewPhase::Pending
    } else {
        PreviewPhase::Failed
    }
}

/// The status the reconcile writes.
#[derive(Clone, Debug, PartialEq)]
pub struct Owned {
    pub observed_generation: Option<i64>,
    pub namespace: Option<String>,
    pub phase: PreviewPhase,
    pub expires_at: Option<Time>,
    pub services: Vec<PreviewServiceStatus>,
    pub conditions: Vec<Condition>,
}

impl Owned {
    /// `namespace` only where the namespace exists (a failed or expired environment has
    /// none).
    pub fn build(
        previous: Option<&PreviewEnvironmentStatus>,
        generation: Option<i64>,
        namespace: Option<String>,
        expires_at: Option<Time>,
        outcome: &Outcome,
        now: &Time,
    ) -> Self {
        let computed = conditions_of(outcome);
        let old = previous
            .map(|s| s.conditions.as_slice())
            .unwrap_or_default();
        let services = match outcome {
            Outcome::Provisioned(services) => services
                .iter()
                .map(|s| PreviewServiceStatus {
                    name: s.name.clone(),
                    image: s.image.clone(),
                    ready: s.ready,
                    url: Some(s.url.clone()),
                })
                .collect(),
            _ => Vec::new(),
        };
        Self {
            observed_generation: generation,
            namespace,
            phase: phase_of(&computed),
            expires_at,
            services,
            conditions: conditions::merge(old, &computed, generation, now),
        }
    }

    /// Whether `status` already says all this (so the write can be skipped).
    pub fn is_current(&self, status: Option<&PreviewEnvironmentStatus>) -> bool {
        let Some(s) = status else { return false };
        s.observed_generation == self.observed_generation
            && s.namespace == self.namespace
            && s.phase == Some(self.phase)
            && s.expires_at.as_ref().map(|t| t.0.as_second())
                == self.expires_at.as_ref().map(|t| t.0.as_second())
            && s.services == self.services
            && conditions::same(&s.conditions, &self.conditions)
    }

    pub fn patch(&self) -> Value {
        let mut status = json!({
            "phase": self.phase,
            "conditions": self.conditions,
        });
        if let Some(g) = self.observed_generation {
            status["observedGeneration"] = json!(g);
        }
        if let Some(ns) = &self.namespace {
            status["namespace"] = json!(ns);
        }
        if let Some(at) = &self.expires_at {
            status["expiresAt"] = json!(at);
        }
        if !self.services.is_empty() {
            status["services"] = json!(self.services);
        }
        json!({
            "apiVersion": "marketplace.dev/v1alpha1",
            "kind": "PreviewEnvironment",
            "status": status,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controllers::clock::time_at;

    fn service(name: &str, ready: bool) -> ServiceState {
        ServiceState {
            name: name.into(),
            image: format!("r/{name}:b"),
            ready,
            url: format!("http://{name}.b.example"),
        }
    }

    #[test]
    fn the_phase_follows_the_conditions() {
        let phase = |o: Outcome| phase_of(&conditions_of(&o));
        assert_eq!(
            phase(Outcome::Provisioned(vec![
                service("a", true),
                service("b", false)
            ])),
            PreviewPhase::Provisioning
        );
        assert_eq!(
            phase(Outcome::Provisioned(vec![service("a", true)])),
            PreviewPhase::Ready
        );
        assert_eq!(phase(Outcome::Provisioned(vec![])), PreviewPhase::Ready);
        assert_eq!(
            phase(Outcome::Pending("old namespace".into())),
            PreviewPhase::Pending
        );
        assert_eq!(
            phase(Outcome::Failed {
                reason: "QuotaTooSmall",
                message: "x".into()
            }),
            PreviewPhase::Failed
        );
        assert_eq!(phase(Outcome::Expired), PreviewPhase::Expired);
        assert_eq!(phase(Outcome::Terminating), PreviewPhase::Terminating);
    }

    #[test]
    fn readiness_names_the_services_still_starting() {
        let cs = conditions_of(&Outcome::Provisioned(vec![
            service("a", true),
            service("b", false),
        ]));
        assert_eq!(cs[0].message, "1/2 services ready; starting: b");
        assert_eq!(cs[0].reason, r::SERVICES_STARTING);
    }

    #[test]
    fn an_unchanged_status_is_not_written_again() {
        let outcome = Outcome::Provisioned(vec![service("a", true)]);
        let owned = Owned::build(
            None,
            Some(2),
            Some("preview-x".into()),
            Some(time_at(5_000.0)),
            &outcome,
            &time_at(1.0),
        );
        let written: PreviewEnvironmentStatus =
            serde_json::from_value(owned.patch()["status"].clone()).expect("a status");
        assert_eq!(
            written.services[0].url.as_deref(),
            Some("http://a.b.example")
        );
        let again = Owned::build(
            Some(&written),
            Some(2),
            Some("preview-x".into()),
            Some(time_at(5_000.0)),
            &outcome,
            &time_at(99.0),
        );
        assert!(again.is_current(Some(&written)));
        let extended = Owned::build(
            Some(&written),
            Some(3),
            Some("preview-x".into()),
            Some(time_at(9_000.0)),
            &outcome,
            &time_at(99.0),
        );
        assert!(!extended.is_current(Some(&written)));
    }
}
