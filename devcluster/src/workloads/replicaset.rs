//! The ReplicaSet controller: keeps `spec.replicas` Pods from the template, removing unready
//! and newest Pods first when there are too many, and reports how many are ready.

use std::sync::Arc;

use futures::StreamExt;

use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::Controller;
use kube::runtime::controller::Action;
use kube::{Api, ResourceExt};
use serde_json::json;

use super::kubelet::is_ready;
use super::{
    Ctx, WorkloadError, api_error, controlled_by, drain, error_policy, has_code, owner_ref,
    watcher_config,
};

pub(crate) async fn run(ctx: Arc<Ctx>) {
    let sets: Api<ReplicaSet> = Api::all(ctx.client.clone());
    let pods: Api<Pod> = Api::all(ctx.client.clone());
    drain(
        Controller::new(sets, watcher_config())
            .owns(pods, watcher_config())
            .run(reconcile, error_policy, ctx),
    )
    .await;
}

/// Pods a controller owns, alive (not being deleted), found by its selector and owner uid.
pub(crate) async fn owned_pods<K>(
    ctx: &Ctx,
    owner: &K,
    selector: &str,
) -> Result<Vec<Pod>, WorkloadError>
where
    K: kube::Resource,
{
    let ns = owner.meta().namespace.clone().unwrap_or_default();
    let api: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
    let list = api
        .list(&ListParams::default().labels(selector))
        .await
        .map_err(api_error(
            "list pods of",
            "ReplicaSet",
            owner.meta().name.clone().unwrap_or_default(),
        ))?;
    Ok(list
        .items
        .into_iter()
        .filter(|p| controlled_by(p, owner) && p.metadata.deletion_timestamp.is_none())
        .collect())
}

/// `matchLabels` as a label selector string; expressions are ignored (our own children only
/// use matchLabels).
pub(crate) fn selector_string(
    selector: &k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector,
) -> String {
    selector
        .match_labels
        .iter()
        .flatten()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// Pod creations in flight at once per ReplicaSet.
const CREATE_CONCURRENCY: usize = 16;

async fn reconcile(rs: Arc<ReplicaSet>, ctx: Arc<Ctx>) -> Result<Action, WorkloadError> {
    if rs.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let name = rs.name_any();
    let ns = rs.namespace().unwrap_or_default();
    let spec = &rs.spec;
    let want = spec.replicas.unwrap_or(1).max(0) as usize;
    let selector = selector_string(&spec.selector);
    let mut pods = owned_pods(&ctx, rs.as_ref(), &selector).await?;
    let pod_api: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);

    if pods.len() < want {
        let Some(owner) = owner_ref(rs.as_ref()) else {
            return Ok(Action::await_change());
        };
        let template = spec.template.clone().unwrap_or_default();
        let new_pod = || {
            let mut meta = template.metadata.clone().unwrap_or_default();
            meta.generate_name = Some(format!("{name}-"));
            meta.name = None;
            meta.namespace = Some(ns.clone());
            meta.owner_references = Some(vec![owner.clone()]);
            let mut pod_spec = template.spec.clone().unwrap_or_default();
            pod_spec.node_name = Some(ctx.config.node_name.clone());
            Pod {
                metadata: meta,
                spec: Some(pod_spec),
                status: None,
            }
        };
        // Concurrently, as the real controller's slow-start batches do: one at a time, a
        // scale-up by 30 pods would start its last pod 30 round trips after its first.
        let creates: Vec<Pod> = (pods.len()..want).map(|_| new_pod()).collect();
        let created: Vec<Result<Pod, kube::Error>> = futures::stream::iter(creates)
            .map(|pod| {
                let pod_api = pod_api.clone();
                async move { pod_api.create(&PostParams::default(), &pod).await }
            })
            .buffer_unordered(CREATE_CONCURRENCY)
            .collect()
            .await;
        for result in created {
            pods.push(result.map_err(api_error("create pod for", "ReplicaSet", &name))?);
        }
    } else if pods.len() > want {
        // Unready pods go first, then the newest: what serves traffic is kept.
        pods.sort_by(|a, b| {
            is_ready(a)
                .cmp(&is_ready(b))
                .then_with(|| {
                    b.metadata
                        .creation_timestamp
                        .cmp(&a.metadata.creation_timestamp)
                })
                .then_with(|| b.name_any().cmp(&a.name_any()))
        });
        let extra = pods.len() - want;
        for pod in pods.drain(..extra) {
            match pod_api
                .delete(&pod.name_any(), &DeleteParams::default())
                .await
            {
                Ok(_) => {}
                Err(e) if has_code(&e, 404) => {}
                Err(e) => return Err(api_error("delete pod of", "ReplicaSet", &name)(e)),
            }
        }
    }

    let ready = pods.iter().filter(|p| is_ready(p)).count() as i32;
    let status = json!({"status": {
        "replicas": pods.len() as i32,
        "fullyLabeledReplicas": pods.len() as i32,
        "readyReplicas": ready,
        "availableReplicas": ready,
        "observedGeneration": rs.metadata.generation,
    }});
    let api: Api<ReplicaSet> = Api::namespaced(ctx.client.clone(), &ns);
    if rs.status.as_ref().map(|s| {
        (
            s.replicas,
            s.ready_replicas.unwrap_or(0),
            s.observed_generation,
        )
    }) != Some((pods.len() as i32, ready, rs.metadata.generation))
    {
        api.patch_status(&name, &PatchParams::default(), &Patch::Merge(status))
            .await
            .map_err(api_error("update status of", "ReplicaSet", &name))?;
    }
    Ok(Action::await_change())
}
