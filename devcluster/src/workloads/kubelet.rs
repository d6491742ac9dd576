//! The kubelet's part: a Pod appears Pending, and turns Running and Ready one (simulated)
//! start-up delay after the kubelet first saw it. Deleted Pods go at once, as if their
//! containers stopped instantly.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{DeleteParams, Patch, PatchParams};
use kube::runtime::Controller;
use kube::runtime::controller::Action;
use kube::{Api, ResourceExt};
use serde_json::json;

use super::{Ctx, WorkloadError, api_error, drain, error_policy, has_code, watcher_config};

/// When each not-yet-ready Pod was created (or first seen, for a Pod the API server did not
/// report), by uid.
pub(crate) struct KubeletState {
    first_seen: Mutex<HashMap<String, Instant>>,
    births: Arc<super::PodBirths>,
}

impl KubeletState {
    pub(crate) fn new(births: Arc<super::PodBirths>) -> Self {
        Self {
            first_seen: Mutex::new(HashMap::new()),
            births,
        }
    }

    fn first_seen(&self, uid: &str) -> Instant {
        let mut map = self.first_seen.lock().unwrap_or_else(|e| e.into_inner());
        *map.entry(uid.to_owned())
            .or_insert_with(|| self.births.take(uid).unwrap_or_else(Instant::now))
    }

    fn forget(&self, uid: &str) {
        let mut map = self.first_seen.lock().unwrap_or_else(|e| e.into_inner());
        map.remove(uid);
        self.births.take(uid);
    }
}

pub(crate) async fn run(ctx: Arc<Ctx>) {
    let pods: Api<Pod> = Api::all(ctx.client.clone());
    drain(Controller::new(pods, watcher_config()).run(reconcile, error_policy, ctx)).await;
}

pub(crate) fn is_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

async fn reconcile(pod: Arc<Pod>, ctx: Arc<Ctx>) -> Result<Action, WorkloadError> {
    let name = pod.name_any();
    let ns = pod.namespace().unwrap_or_default();
    let uid = pod.uid().unwrap_or_default();
    let api: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);

    if pod.metadata.deletion_timestamp.is_some() {
        ctx.kubelet.forget(&uid);
        if pod.finalizers().is_empty() {
            let dp = DeleteParams {
                grace_period_seconds: Some(0),
                ..DeleteParams::default()
            };
            match api.delete(&name, &dp).await {
                Ok(_) => {}
                Err(e) if has_code(&e, 404) => {}
                Err(e) => return Err(api_error("delete", "Pod", &name)(e)),
            }
        }
        return Ok(Action::await_change());
    }
    if is_ready(&pod) {
        ctx.kubelet.forget(&uid);
        return Ok(Action::await_change());
    }

    let first_seen = ctx.kubelet.first_seen(&uid);
    let startup = ctx.config.real(ctx.config.pod_startup);
    let now = Time(k8s_openapi::jiff::Timestamp::now());
    let containers: Vec<_> = pod
        .spec
        .as_ref()
        .map(|s| {
            s.containers
                .iter()
                .map(|c| (c.name.clone(), c.image.clone().unwrap_or_default()))
                .collect()
        })
        .unwrap_or_default();
    let pp = PatchParams::default();

    let elapsed = first_seen.elapsed();
    if elapsed < startup {
        if pod.status.as_ref().and_then(|s| s.phase.as_deref()) != Some("Pending") {
            let status = json!({"status": {
                "phase": "Pending",
                "hostIP": "10.0.0.1",
                "conditions": [{"type": "PodScheduled", "status": "True", "lastTransitionTime": now}],
                "containerStatuses": containers.iter().map(|(n, image)| json!({
                    "name": n, "image": image, "imageID": "", "ready": false, "started": false,
                    "restartCount": 0, "state": {"waiting": {"reason": "ContainerCreating"}}
                })).collect::<Vec<_>>(),
            }});
            api.patch_status(&name, &pp, &Patch::Merge(status))
                .await
                .map_err(api_error("mark pending", "Pod", &name))?;
        }
        return Ok(Action::requeue(startup - elapsed));
    }

    let conditions: Vec<_> = ["PodScheduled", "Initialized", "ContainersReady", "Ready"]
        .iter()
        .map(|t| json!({"type": t, "status": "True", "lastTransitionTime": now}))
        .collect();
    let status = json!({"status": {
        "phase": "Running",
        "hostIP": "10.0.0.1",
        "podIP": pod_ip(&uid),
        "startTime": now,
        "conditions": conditions,
        "containerStatuses": containers.iter().map(|(n, image)| json!({
            "name": n, "image": image, "imageID": "", "ready": true, "started": true,
            "restartCount": 0, "state": {"running": {"startedAt": now}}
        })).collect::<Vec<_>>(),
    }});
    api.patch_status(&name, &pp, &Patch::Merge(status))
        .await
        .map_err(api_error("mark ready", "Pod", &name))?;
    ctx.kubelet.forget(&uid);
    Ok(Action::await_change())
}

/// A stable fake address per Pod, so Endpoints-like consumers see distinct IPs.
fn pod_ip(uid: &str) -> String {
    let h = uid
        .bytes()
        .fold(0u32, |h, b| h.wrapping_mul(31).wrapping_add(u32::from(b)));
    format!("10.244.{}.{}", (h >> 8) % 256, h % 254 + 1)
}
