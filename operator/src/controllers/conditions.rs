//! Status conditions, merged so that `lastTransitionTime` moves only when a condition's
//! status flips (the Kubernetes API conventions), and a `phase`-like summary derived from
//! them, never stored apart.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

pub const TRUE: &str = "True";
pub const FALSE: &str = "False";
pub const UNKNOWN: &str = "Unknown";

/// A condition as a reconcile computes it, before it is merged with the previous ones.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Computed {
    pub type_: &'static str,
    pub status: &'static str,
    pub reason: &'static str,
    pub message: String,
}

impl Computed {
    pub fn new(
        type_: &'static str,
        status: &'static str,
        reason: &'static str,
        message: impl Into<String>,
    ) -> Self {
        Self {
            type_,
            status,
            reason,
            message: message.into(),
        }
    }
}

/// The new condition list: one entry per computed condition, in the computed order. An entry
/// keeps the previous `lastTransitionTime` unless its status changed; conditions not
/// computed this time are dropped (the controller owns the whole list).
pub fn merge(
    previous: &[Condition],
    computed: &[Computed],
    generation: Option<i64>,
    now: &Time,
) -> Vec<Condition> {
    computed
        .iter()
        .map(|c| {
            let last_transition_time = previous
                .iter()
                .find(|p| p.type_ == c.type_ && p.status == c.status)
                .map_or_else(|| now.clone(), |p| p.last_transition_time.clone());
            Condition {
                type_: c.type_.to_owned(),
                status: c.status.to_owned(),
                reason: c.reason.to_owned(),
                message: c.message.clone(),
                observed_generation: generation,
                last_transition_time,
            }
        })
        .collect()
}

/// Whether two condition lists say the same thing (ignoring timestamps), so a status write
/// can be skipped when nothing but time passed.
pub fn same(a: &[Condition], b: &[Condition]) -> bool {
    a.len() == b.len()
        && a.iter().zip(b).all(|(x, y)| {
            x.type_ == y.type_
                && x.status == y.status
                && x.reason == y.reason
                && x.message == y.message
                && x.observed_generation == y.observed_generation
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controllers::clock::time_at;

    #[test]
    fn the_transition_time_moves_only_when_the_status_flips() {
        let t0 = time_at(100.0);
        let t1 = time_at(200.0);
        let first = merge(
            &[],
            &[Computed::new("Ready", FALSE, "Starting", "0/2 ready")],
            Some(1),
            &t0,
        );
        let same_status = merge(
            &first,
            &[Computed::new("Ready", FALSE, "Starting", "1/2 ready")],
            Some(1),
            &t1,
        );
        assert_eq!(same_status[0].last_transition_time, t0);
        assert_eq!(same_status[0].message, "1/2 ready");
        let flipped = merge(
            &same_status,
            &[Computed::new("Ready", TRUE, "ReplicasReady", "2/2 ready")],
            Some(2),
            &t1,
        );
        assert_eq!(flipped[0].last_transition_time, t1);
        assert_eq!(flipped[0].observed_generation, Some(2));
    }

    #[test]
    fn lists_that_differ_only_in_time_are_the_same() {
        let c = [Computed::new("Ready", TRUE, "ReplicasReady", "ok")];
        let a = merge(&[], &c, Some(1), &time_at(1.0));
        let b = merge(&[], &c, Some(1), &time_at(2.0));
        assert!(same(&a, &b));
        let d = merge(&[], &c, Some(2), &time_at(2.0));
        assert!(!same(&a, &d));
    }
}
