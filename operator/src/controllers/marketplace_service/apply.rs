//! Apply: the built children go to the API server by server-side apply, one field manager,
//! forced (the operator alone owns these fields). A child no longer built is deleted.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{DeleteParams, Patch, PatchParams};
use kube::{Api, Client};
use serde_json::json;

use super::build::Children;
use super::error::Error;
use crate::controllers::{AUTOSCALER_MANAGER, FIELD_MANAGER};

/// The children as the API server holds them after the apply.
pub struct Applied {
    pub deployment: Deployment,
}

/// Whether `manager` owns the Deployment's `spec.replicas`.
fn owns_replicas(deployment: &Deployment, manager: &str) -> bool {
    deployment
        .metadata
        .managed_fields
        .iter()
        .flatten()
        .filter(|m| m.manager.as_deref() == Some(manager))
        .filter_map(|m| m.fields_v1.as_ref())
        .any(|f| f.0.pointer("/f:spec/f:replicas").is_some())
}

pub async fn apply(
    client: &Client,
    namespace: &str,
    children: &Children,
    existing: Option<&Deployment>,
    autoscaled: bool,
    min_replicas: u32,
    has_budget: bool,
) -> Result<Applied, Error> {
    let name = children
        .deployment
        .metadata
        .name
        .clone()
        .unwrap_or_default();
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), namespace);
    let ssa = PatchParams::apply(FIELD_MANAGER).force();

    // An autoscaled Deployment's replicas belong to the autoscaler's field manager. When the
    // service just gained its scaling block (the reconcile owned the field until now), the
    // autoscaler takes the field over first,
    // with the count running now: were the reconcile to drop the field before anyone else
    // owned it, the API server would reset it to 1 and kill the pods above.
    let adopt = |replicas: u32| {
        json!({
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": name},
            "spec": {"replicas": replicas},
        })
    };
    let autoscaler_ssa = PatchParams::apply(AUTOSCALER_MANAGER).force();
    if autoscaled
        && let Some(d) = existing
        && owns_replicas(d, FIELD_MANAGER)
    {
        let running = d.spec.replicas.unwrap_or(1);
        let replicas = u32::try_from(running).unwrap_or(0).max(min_replicas);
        deployments
            .patch(&name, &autoscaler_ssa, &Patch::Apply(adopt(replicas)))
            .await
            .map_err(|source| Error::AdoptReplicas {
                name: name.clone(),
                source,
            })?;
    }

    let deployment = deployments
        .patch(&name, &ssa, &Patch::Apply(&children.deployment))
        .await
        .map_err(|source| Error::ApplyDeployment {
            name: name.clone(),
            source,
        })?;
    // A new autoscaled Deployment starts at the API server's default of one replica; the
    // autoscaler raises it to minReplicas at its first tick (a write fewer per service).

    let services: Api<Service> = Api::namespaced(client.clone(), namespace);
    services
        .patch(&name, &ssa, &Patch::Apply(&children.service))
        .await
        .map_err(|source| Error::ApplyService {
            name: name.clone(),
            source,
        })?;

    let budgets: Api<PodDisruptionBudget> = Api::namespaced(client.clone(), namespace);
    match &children.disruption_budget {
        Some(pdb) => {
            budgets
                .patch(&name, &ssa, &Patch::Apply(pdb))
                .await
                .map_err(|source| Error::ApplyDisruptionBudget {
                    name: name.clone(),
                    source,
                })?;
        }
        None if has_budget => match budgets.delete(&name, &DeleteParams::default()).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(source) => {
                return Err(Error::DeleteDisruptionBudget {
                    name: name.clone(),
                    source,
                });
            }
        },
        None => {}
    }
    Ok(Applied { deployment })
}
