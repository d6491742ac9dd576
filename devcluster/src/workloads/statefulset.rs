//! The StatefulSet controller: Pods `<name>-<ordinal>` created in order, each only once the
//! one before it is Ready (OrderedReady), removed from the highest ordinal down, and replaced
//! one at a time from the highest ordinal when the template changes.

use std::sync::Arc;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::Controller;
use kube::runtime::controller::Action;
use kube::{Api, ResourceExt};
use serde_json::json;

use super::kubelet::is_ready;
use super::replicaset::{owned_pods, selector_string};
use super::{
    Ctx, WorkloadError, api_error, drain, error_policy, has_code, owner_ref, template_hash,
    watcher_config,
};

const REVISION_LABEL: &str = "controller-revision-hash";

pub(crate) async fn run(ctx: Arc<Ctx>) {
    let sets: Api<StatefulSet> = Api::all(ctx.client.clone());
    let pods: Api<Pod> = Api::all(ctx.client.clone());
    drain(
        Controller::new(sets, watcher_config())
            .owns(pods, watcher_config())
            .run(reconcile, error_policy, ctx),
    )
    .await;
}

fn ordinal(set: &str, pod: &Pod) -> Option<usize> {
    pod.name_any()
        .strip_prefix(set)?
        .strip_prefix('-')?
        .parse()
        .ok()
}

async fn reconcile(sts: Arc<StatefulSet>, ctx: Arc<Ctx>) -> Result<Action, WorkloadError> {
    if sts.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let name = sts.name_any();
    let ns = sts.namespace().unwrap_or_default();
    let spec = &sts.spec;
    let want = spec.replicas.unwrap_or(1).max(0) as usize;
    let revision = format!("{name}-{}", template_hash(&spec.template));
    let mut pods = owned_pods(&ctx, sts.as_ref(), &selector_string(&spec.selector)).await?;
    pods.sort_by_key(|p| ordinal(&name, p).unwrap_or(usize::MAX));
    let pod_api: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
    let all_ready = pods.iter().all(is_ready);

    if pods.len() > want {
        // Highest ordinal first, one at a time.
        if let Some(last) = pods.last() {
            delete_pod(&pod_api, &last.name_any(), &name).await?;
        }
    } else if pods.len() < want && all_ready {
        let next = (0..want).find(|i| !pods.iter().any(|p| ordinal(&name, p) == Some(*i)));
        if let (Some(i), Some(owner)) = (next, owner_ref(sts.as_ref())) {
            let mut meta = spec.template.metadata.clone().unwrap_or_default();
            let pod_name = format!("{name}-{i}");
            let labels = meta.labels.get_or_insert_with(Default::default);
            labels.insert(REVISION_LABEL.to_owned(), revision.clone());
            labels.insert(
                "statefulset.kubernetes.io/pod-name".to_owned(),
                pod_name.clone(),
            );
            meta.name = Some(pod_name.clone());
            meta.generate_name = None;
            meta.namespace = Some(ns.clone());
            meta.owner_references = Some(vec![owner]);
            let mut pod_spec = spec.template.spec.clone().unwrap_or_default();
            pod_spec.node_name = Some(ctx.config.node_name.clone());
            pod_spec.hostname = Some(pod_name.clone());
            let pod = Pod {
                metadata: meta,
                spec: Some(pod_spec),
                status: None,
            };
            match pod_api.create(&PostParams::default(), &pod).await {
                Ok(_) => {}
                Err(e) if has_code(&e, 409) => {}
                Err(e) => return Err(api_error("create pod for", "StatefulSet", &name)(e)),
            }
        }
    } else if all_ready {
        // Rolling update: replace the highest-ordinal Pod still on an old revision.
        let outdated = pods
            .iter()
            .rev()
            .find(|p| p.labels().get(REVISION_LABEL) != Some(&revision));
        if let Some(pod) = outdated {
            delete_pod(&pod_api, &pod.name_any(), &name).await?;
        }
    }

    let ready = pods.iter().filter(|p| is_ready(p)).count() as i32;
    let updated = pods
        .iter()
        .filter(|p| p.labels().get(REVISION_LABEL) == Some(&revision))
        .count() as i32;
    let seen = sts.status.as_ref().map(|s| {
        (
            s.observed_generation,
            s.replicas,
            s.ready_replicas.unwrap_or(0),
            s.updated_replicas.unwrap_or(0),
        )
    });
    let now = (sts.metadata.generation, pods.len() as i32, ready, updated);
    if seen != Some(now) {
        let status = json!({"status": {
            "observedGeneration": sts.metadata.generation,
            "replicas": pods.len() as i32,
            "readyReplicas": ready,
            "availableReplicas": ready,
            "currentReplicas": updated,
            "updatedReplicas": updated,
            "currentRevision": revision,
            "updateRevision": revision,
        }});
        let api: Api<StatefulSet> = Api::namespaced(ctx.client.clone(), &ns);
        api.patch_status(&name, &PatchParams::default(), &Patch::Merge(status))
            .await
            .map_err(api_error("update status of", "StatefulSet", &name))?;
    }
    Ok(Action::await_change())
}

async fn delete_pod(api: &Api<Pod>, pod: &str, set: &str) -> Result<(), WorkloadError> {
    match api.delete(pod, &DeleteParams::default()).await {
        Ok(_) => Ok(()),
        Err(e) if has_code(&e, 404) => Ok(()),
        Err(e) => Err(api_error("delete pod of", "StatefulSet", set)(e)),
    }
}
