//! Our own CRDs on the devcluster, driven by an unmodified kube_runtime Controller: the
//! MarketplaceService and an owned child converge, follow spec changes, the controller goes
//! quiet once nothing changes (no-op applies wake nobody), and the child is collected with
//! its owner.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use devcluster::{Config, DevCluster};
use futures::StreamExt;
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::Controller;
use kube::runtime::controller::Action;
use kube::runtime::watcher;
use kube::{Api, Client, Resource, ResourceExt};
use marketplace_crds::v1alpha1::MarketplaceService;
use serde_json::json;

use common::wait_for;

const MANAGER: &str = "test-controller";

#[derive(Debug, thiserror::Error)]
#[error("reconcile failed")]
struct ReconcileFailed(#[from] kube::Error);

struct Ctx {
    client: Client,
    reconciles: AtomicUsize,
}

async fn reconcile(svc: Arc<MarketplaceService>, ctx: Arc<Ctx>) -> Result<Action, ReconcileFailed> {
    ctx.reconciles.fetch_add(1, Ordering::SeqCst);
    let ns = svc.namespace().unwrap_or_default();
    let name = svc.name_any();
    let owner = svc.controller_owner_ref(&()).expect("owner ref");
    let child = json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": format!("{name}-config"), "namespace": ns, "ownerReferences": [owner],
                     "labels": {"app.kubernetes.io/managed-by": MANAGER}},
        "data": {"domain": svc.spec.domain, "image": svc.spec.image},
    });
    let pp = PatchParams::apply(MANAGER).force();
    Api::<ConfigMap>::namespaced(ctx.client.clone(), &ns)
        .patch(&format!("{name}-config"), &pp, &Patch::Apply(child))
        .await?;
    let status = json!({
        "apiVersion": "marketplace.dev/v1alpha1", "kind": "MarketplaceService",
        "status": {"observedGeneration": svc.metadata.generation, "replicas": svc.spec.replicas.unwrap_or(1),
                   "readyReplicas": 0, "desiredReplicas": svc.spec.replicas.unwrap_or(1)}
    });
    Api::<MarketplaceService>::namespaced(ctx.client.clone(), &ns)
        .patch_status(&name, &pp, &Patch::Apply(status))
        .await?;
    Ok(Action::await_change())
}

fn error_policy(_: Arc<MarketplaceService>, _: &ReconcileFailed, _: Arc<Ctx>) -> Action {
    Action::requeue(Duration::from_millis(100))
}

#[tokio::test]
async fn a_marketplace_service_and_its_child_converge_and_the_controller_goes_quiet() {
    let cluster = DevCluster::start(Config::default()).await.expect("start");
    let client = cluster.client().expect("client");
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    for crd in marketplace_crds::crds() {
        crds.create(&PostParams::default(), &crd)
            .await
            .expect("create CRD");
    }
    let services: Api<MarketplaceService> = Api::namespaced(client.clone(), "default");
    assert!(
        wait_for(10, || async {
            services.list(&Default::default()).await.is_ok()
        })
        .await,
        "CRD never served"
    );

    let ctx = Arc::new(Ctx {
        client: client.clone(),
        reconciles: AtomicUsize::new(0),
    });
    let controller = Controller::new(
        Api::<MarketplaceService>::all(client.clone()),
        watcher::Config::default(),
    )
    .owns(
        Api::<ConfigMap>::all(client.clone()),
        watcher::Config::default(),
    )
    .run(reconcile, error_policy, ctx.clone())
    .for_each(|_| async {});
    let controller = tokio::spawn(controller);

    let svc: MarketplaceService = serde_json::from_value(json!({
        "apiVersion": "marketplace.dev/v1alpha1", "kind": "MarketplaceService",
        "metadata": {"name": "orders"},
        "spec": {"domain": "orders", "image": "orders:1", "replicas": 2}
    }))
    .expect("fixture");
    services
        .create(&PostParams::default(), &svc)
        .await
        .expect("create service");

    let configs: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let converged = |image: &'static str, generation: i64| {
        let services = services.clone();
        let configs = configs.clone();
        async move {
            let Ok(s) = services.get("orders").await else {
                return false;
            };
            let Ok(cm) = configs.get("orders-config").await else {
                return false;
            };
            s.metadata.generation == Some(generation)
                && s.status.as_ref().and_then(|st| st.observed_generation) == Some(generation)
                && cm
                    .data
                    .as_ref()
                    .and_then(|d| d.get("image"))
                    .map(String::as_str)
                    == Some(image)
        }
    };
    assert!(
        wait_for(10, || converged("orders:1", 1)).await,
        "first reconcile never converged"
    );
    let cm = configs.get("orders-config").await.expect("child");
    assert_eq!(
        cm.owner_references().first().map(|o| o.name.as_str()),
        Some("orders")
    );

    // Steady state: with nothing changing, the controller goes quiet.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let settled = ctx.reconciles.load(Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let later = ctx.reconciles.load(Ordering::SeqCst);
    assert_eq!(
        settled, later,
        "controller kept reconciling an unchanged object ({settled} -> {later})"
    );

    // A spec change bumps the generation and flows to the child and status.
    services
        .patch(
            "orders",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"image": "orders:2"}})),
        )
        .await
        .expect("update spec");
    assert!(
        wait_for(10, || converged("orders:2", 2)).await,
        "spec change never converged"
    );

    // The CRD's CEL rule holds on the server too: replicas beside a scaling block is refused.
    let err = services
        .patch(
            "orders",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"scaling": {"maxReplicas": 5, "metrics": [{"type": "Cpu", "target": 70.0}]}}})),
        )
        .await
        .expect_err("replicas with scaling must be invalid");
    assert!(
        matches!(&err, kube::Error::Api(s) if s.code == 422 && s.message.contains("spec.replicas cannot be set together with spec.scaling")),
        "{err:?}"
    );

    // Deleting the owner garbage-collects the child.
    services
        .delete("orders", &DeleteParams::default())
        .await
        .expect("delete");
    assert!(
        wait_for(10, || async {
            matches!(configs.get("orders-config").await, Err(kube::Error::Api(s)) if s.code == 404)
        })
        .await,
        "owned ConfigMap was not garbage-collected"
    );
    controller.abort();
    cluster.shutdown().await;
}
