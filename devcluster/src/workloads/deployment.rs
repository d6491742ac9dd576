//! The Deployment controller: one ReplicaSet per pod template (named by the template's hash),
//! rolled over with the RollingUpdate strategy's maxSurge / maxUnavailable (or Recreate), and
//! a status summing the ReplicaSets'. Revisions are kept as the real controller keeps them:
//! each ReplicaSet's `deployment.kubernetes.io/revision` (one above the highest of the others
//! when its template becomes current again, the older number kept in `revision-history`),
//! the Deployment's the current set's, and at most `revisionHistoryLimit` scaled-down old
//! sets, so `kubectl rollout history` and `rollout undo` work.

use std::sync::Arc;

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::Controller;
use kube::runtime::controller::Action;
use kube::{Api, ResourceExt};
use serde_json::json;

use super::replicaset::selector_string;
use super::{
    Ctx, WorkloadError, api_error, controlled_by, drain, error_policy, owner_ref, template_hash,
    watcher_config,
};

pub(crate) async fn run(ctx: Arc<Ctx>) {
    let deployments: Api<Deployment> = Api::all(ctx.client.clone());
    let sets: Api<ReplicaSet> = Api::all(ctx.client.clone());
    drain(
        Controller::new(deployments, watcher_config())
            .owns(sets, watcher_config())
            .run(reconcile, error_policy, ctx),
    )
    .await;
}

/// An IntOrString of the strategy, resolved against the desired replicas as Kubernetes does:
/// percentages round up for surge, down for unavailability.
fn resolve(value: Option<&IntOrString>, desired: i32, round_up: bool) -> i32 {
    match value {
        Some(IntOrString::Int(n)) => *n,
        Some(IntOrString::String(s)) => {
            let pct: f64 = s.trim_end_matches('%').parse().unwrap_or(25.0);
            let v = f64::from(desired) * pct / 100.0;
            if round_up {
                v.ceil() as i32
            } else {
                v.floor() as i32
            }
        }
        None => {
            let v = f64::from(desired) * 0.25;
            if round_up {
                v.ceil() as i32
            } else {
                v.floor() as i32
            }
        }
    }
}

pub(crate) const REVISION: &str = "deployment.kubernetes.io/revision";
const REVISION_HISTORY: &str = "deployment.kubernetes.io/revision-history";
/// Deployment annotations the controller does not copy onto its ReplicaSets (upstream's list).
const NOT_COPIED: &[&str] = &[
    "kubectl.kubernetes.io/last-applied-configuration",
    REVISION,
    REVISION_HISTORY,
    "deployment.kubernetes.io/desired-replicas",
    "deployment.kubernetes.io/max-replicas",
    "deprecated.deployment.rollback.to",
];

fn revision(rs: &ReplicaSet) -> i64 {
    rs.annotations()
        .get(REVISION)
        .and_then(|r| r.parse().ok())
        .unwrap_or(0)
}

fn rs_replicas(rs: &ReplicaSet) -> i32 {
    rs.spec.replicas.unwrap_or(0)
}

fn rs_ready(rs: &ReplicaSet) -> i32 {
    rs.status
        .as_ref()
        .and_then(|s| s.ready_replicas)
        .unwrap_or(0)
}

async fn reconcile(deploy: Arc<Deployment>, ctx: Arc<Ctx>) -> Result<Action, WorkloadError> {
    if deploy.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let name = deploy.name_any();
    let ns = deploy.namespace().unwrap_or_default();
    let spec = &deploy.spec;
    let desired = spec.replicas.unwrap_or(1).max(0);
    let hash = template_hash(&spec.template);
    let new_name = format!("{name}-{hash}");
    let rs_api: Api<ReplicaSet> = Api::namespaced(ctx.client.clone(), &ns);
    let selector = selector_string(&spec.selector);
    let owned: Vec<ReplicaSet> = rs_api
        .list(&ListParams::default().labels(&selector))
        .await
        .map_err(api_error("list replicasets of", "Deployment", &name))?
        .items
        .into_iter()
        .filter(|rs| controlled_by(rs, deploy.as_ref()))
        .collect();
    let (new, old): (Vec<_>, Vec<_>) = owned.into_iter().partition(|rs| rs.name_any() == new_name);
    let next_revision = old.iter().map(revision).max().unwrap_or(0) + 1;
    let old_total: i32 = old.iter().map(rs_replicas).sum();
    let old_ready: i32 = old.iter().map(rs_ready).sum();

    let recreate = spec.strategy.as_ref().and_then(|s| s.type_.as_deref()) == Some("Recreate");
    let rolling = spec
        .strategy
        .as_ref()
        .and_then(|s| s.rolling_update.as_ref());
    let max_surge = resolve(rolling.and_then(|r| r.max_surge.as_ref()), desired, true);
    let mut max_unavailable = resolve(
        rolling.and_then(|r| r.max_unavailable.as_ref()),
        desired,
        false,
    );
    if max_surge == 0 && max_unavailable == 0 {
        max_unavailable = 1; // Kubernetes forbids both zero; never deadlock on it.
    }

    let current_new = new.first().map(rs_replicas).unwrap_or(0);
    let new_ready = new.first().map(rs_ready).unwrap_or(0);
    let target_new = if recreate {
        if old_total > 0 { 0 } else { desired }
    } else if old_total == 0 {
        desired
    } else {
        (desired + max_surge - old_total).clamp(current_new.min(desired), desired)
    };

    // Create or resize the ReplicaSet of the current template.
    match new.first() {
        None => {
            let Some(owner) = owner_ref(deploy.as_ref()) else {
                return Ok(Action::await_change());
            };
            let mut template = spec.template.clone();
            let mut labels = template
                .metadata
                .as_ref()
                .and_then(|m| m.labels.clone())
                .unwrap_or_default();
            labels.insert("pod-template-hash".to_owned(), hash.clone());
            template
                .metadata
                .get_or_insert_with(Default::default)
                .labels = Some(labels.clone());
            let mut sel = spec.selector.clone();
            sel.match_labels
                .get_or_insert_with(Default::default)
                .insert("pod-template-hash".to_owned(), hash.clone());
            let mut annotations: std::collections::BTreeMap<String, String> = deploy
                .annotations()
                .iter()
                .filter(|(k, _)| !NOT_COPIED.contains(&k.as_str()))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            annotations.insert(REVISION.to_owned(), next_revision.to_string());
            let rs: ReplicaSet = serde_json::from_value(json!({
                "metadata": {"name": new_name, "namespace": ns, "labels": labels,
                             "annotations": annotations, "ownerReferences": [owner]},
                "spec": {"replicas": target_new, "selector": sel, "template": template},
            }))
            .map_err(|e| api_error("build", "ReplicaSet", &new_name)(kube::Error::SerdeError(e)))?;
            rs_api
                .create(&PostParams::default(), &rs)
                .await
                .map_err(api_error("create", "ReplicaSet", &new_name))?;
        }
        Some(_) if current_new != target_new => {
            rs_api
                .patch(
                    &new_name,
                    &PatchParams::default(),
                    &Patch::Merge(json!({"spec": {"replicas": target_new}})),
                )
                .await
                .map_err(api_error("scale", "ReplicaSet", &new_name))?;
        }
        Some(_) => {}
    }

    if let Some(current) = new.first() {
        set_revisions(&ctx, &deploy, current, next_revision).await?;
    } else if deploy.annotations().get(REVISION) != Some(&next_revision.to_string()) {
        annotate_revision(&ctx, &deploy, next_revision).await?;
    }
    prune_history(&ctx, &deploy, &old).await?;

    // Scale old ReplicaSets down only as far as availability allows.
    let min_available = desired - max_unavailable;
    let mut removable = if recreate {
        old_total
    } else {
        (new_ready + old_ready - min_available).max(0)
    };
    for rs in &old {
        let have = rs_replicas(rs);
        if have == 0 || removable == 0 {
            continue;
        }
        // Unready pods of an old set count against nothing: drop them first.
        let unready = have - rs_ready(rs);
        let cut = (unready + removable).min(have);
        removable -= (cut - unready).max(0);
        rs_api
            .patch(
                &rs.name_any(),
                &PatchParams::default(),
                &Patch::Merge(json!({"spec": {"replicas": have - cut}})),
            )
            .await
            .map_err(api_error("scale down", "ReplicaSet", rs.name_any()))?;
    }

    let total = target_new + old_total;
    let ready = new_ready + old_ready;
    let available_ok = ready >= min_available;
    let complete = old_total == 0 && new_ready >= desired && current_new == desired;
    let status = json!({"status": {
        "observedGeneration": deploy.metadata.generation,
        "replicas": total,
        "updatedReplicas": current_new.max(target_new),
        "readyReplicas": ready,
        "availableReplicas": ready,
        "unavailableReplicas": (desired - ready).max(0),
        "conditions": [
            {"type": "Available", "status": if available_ok { "True" } else { "False" },
             "reason": if available_ok { "MinimumReplicasAvailable" } else { "MinimumReplicasUnavailable" },
             "message": format!("{ready} of {desired} replicas available")},
            {"type": "Progressing", "status": "True",
             "reason": if complete { "NewReplicaSetAvailable" } else { "ReplicaSetUpdated" },
             "message": format!("ReplicaSet \"{new_name}\" has {new_ready} of {desired} ready")},
        ],
    }});
    let seen = deploy.status.as_ref().map(|s| {
        (
            s.observed_generation,
            s.replicas.unwrap_or(0),
            s.updated_replicas.unwrap_or(0),
            s.ready_replicas.unwrap_or(0),
        )
    });
    // Writing an unchanged status would wake this controller again through its own watch.
    if seen
        != Some((
            deploy.metadata.generation,
            total,
            current_new.max(target_new),
            ready,
        ))
    {
        let api: Api<Deployment> = Api::namespaced(ctx.client.clone(), &ns);
        api.patch_status(&name, &PatchParams::default(), &Patch::Merge(status))
            .await
            .map_err(api_error("update status of", "Deployment", &name))?;
    }
    Ok(Action::await_change())
}

/// A template that is current again (a rollback) takes the next revision, keeping its older
/// number in `revision-history`; the Deployment carries its current set's revision.
async fn set_revisions(
    ctx: &Ctx,
    deploy: &Deployment,
    current: &ReplicaSet,
    next_revision: i64,
) -> Result<(), WorkloadError> {
    let mut rev = revision(current);
    if rev < next_revision {
        let name = current.name_any();
        let mut history: Vec<String> = current
            .annotations()
            .get(REVISION_HISTORY)
            .map(|h| h.split(',').map(str::to_owned).collect())
            .unwrap_or_default();
        if rev > 0 {
            history.push(rev.to_string());
        }
        let mut annotations = serde_json::Map::new();
        annotations.insert(REVISION.into(), json!(next_revision.to_string()));
        if !history.is_empty() {
            annotations.insert(REVISION_HISTORY.into(), json!(history.join(",")));
        }
        let api: Api<ReplicaSet> =
            Api::namespaced(ctx.client.clone(), &current.namespace().unwrap_or_default());
        api.patch(
            &name,
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"annotations": annotations}})),
        )
        .await
        .map_err(api_error("set the revision of", "ReplicaSet", &name))?;
        rev = next_revision;
    }
    if deploy.annotations().get(REVISION) != Some(&rev.to_string()) {
        annotate_revision(ctx, deploy, rev).await?;
    }
    Ok(())
}

async fn annotate_revision(ctx: &Ctx, deploy: &Deployment, rev: i64) -> Result<(), WorkloadError> {
    let name = deploy.name_any();
    let api: Api<Deployment> =
        Api::namespaced(ctx.client.clone(), &deploy.namespace().unwrap_or_default());
    api.patch(
        &name,
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"annotations": {REVISION: rev.to_string()}}})),
    )
    .await
    .map_err(api_error("set the revision of", "Deployment", &name))?;
    Ok(())
}

/// Old sets that are fully scaled down, beyond `revisionHistoryLimit` (default 10), go,
/// oldest revision first.
async fn prune_history(
    ctx: &Ctx,
    deploy: &Deployment,
    old: &[ReplicaSet],
) -> Result<(), WorkloadError> {
    let limit = usize::try_from(deploy.spec.revision_history_limit.unwrap_or(10)).unwrap_or(0);
    let mut idle: Vec<&ReplicaSet> = old
        .iter()
        .filter(|rs| {
            rs_replicas(rs) == 0
                && rs.status.as_ref().map_or(0, |s| s.replicas) == 0
                && rs.metadata.deletion_timestamp.is_none()
        })
        .collect();
    if idle.len() <= limit {
        return Ok(());
    }
    idle.sort_by_key(|rs| revision(rs));
    let excess = idle.len() - limit;
    for rs in idle.into_iter().take(excess) {
        let name = rs.name_any();
        let api: Api<ReplicaSet> =
            Api::namespaced(ctx.client.clone(), &rs.namespace().unwrap_or_default());
        match api.delete(&name, &DeleteParams::default()).await {
            Ok(_) => {}
            Err(e) if super::has_code(&e, 404) => {}
            Err(e) => return Err(api_error("prune", "ReplicaSet", &name)(e)),
        }
    }
    Ok(())
}
