//! A kube-runtime Controller (with the finalizer helper, server-side apply of an owned
//! child and of status) reconciling a custom resource on devcluster to steady state.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::*;
use futures::StreamExt;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::finalizer::{Event, finalizer};
use kube::runtime::watcher;
use kube::{Client, Resource, ResourceExt};
use serde_json::json;

const FINALIZER: &str = "test.devcluster.dev/cleanup";

struct Ctx {
    client: Client,
    cleanups: AtomicUsize,
}

async fn apply_children(w: &DynamicObject, client: &Client) -> Result<Action, kube::Error> {
    let ns = w.namespace().unwrap_or_default();
    let name = w.name_any();
    let owner = w
        .controller_owner_ref(&widget_resource())
        .expect("widgets have uids");
    let child = json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": format!("{name}-cfg"), "ownerReferences": [owner]},
        "data": {"color": w.data["spec"]["color"]},
    });
    let pp = PatchParams::apply("widget-controller").force();
    Api::<ConfigMap>::namespaced(client.clone(), &ns)
        .patch(&format!("{name}-cfg"), &pp, &Patch::Apply(&child))
        .await?;
    let replicas = w.data["spec"]["replicas"].as_i64().unwrap_or(1);
    let status = json!({
        "apiVersion": "test.devcluster.dev/v1",
        "kind": "Widget",
        "metadata": {"name": name},
        "status": {"replicas": replicas, "readyReplicas": replicas, "phase": "Ready"},
    });
    widgets(client, &ns)
        .patch_status(&name, &pp, &Patch::Apply(&status))
        .await?;
    Ok(Action::await_change())
}

async fn reconcile(
    w: Arc<DynamicObject>,
    ctx: Arc<Ctx>,
) -> Result<Action, kube::runtime::finalizer::Error<kube::Error>> {
    let api = widgets(&ctx.client, &w.namespace().unwrap_or_default());
    finalizer(&api, FINALIZER, w, |event| async {
        match event {
            Event::Apply(w) => apply_children(&w, &ctx.client).await,
            Event::Cleanup(_) => {
                ctx.cleanups.fetch_add(1, Ordering::SeqCst);
                Ok(Action::await_change())
            }
        }
    })
    .await
}

async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while tokio::time::Instant::now() < deadline {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting until {what}");
}

#[tokio::test]
async fn a_controller_reconciles_a_custom_resource_and_its_children_to_steady_state() {
    let (cluster, client) = start().await;
    namespace(&client, "ctl").await;
    install_widgets(&client).await;
    let ctx = Arc::new(Ctx {
        client: client.clone(),
        cleanups: AtomicUsize::new(0),
    });
    let controller = Controller::new_with(
        widgets(&client, "ctl"),
        watcher::Config::default(),
        widget_resource(),
    )
    .owns(
        Api::<ConfigMap>::namespaced(client.clone(), "ctl"),
        watcher::Config::default(),
    )
    .run(
        reconcile,
        |_, _, _| Action::requeue(Duration::from_millis(100)),
        ctx.clone(),
    )
    .for_each(|r| async move {
        if let Err(e) = r {
            eprintln!("reconcile failed: {e:?}");
        }
    });
    let running = tokio::spawn(controller);

    let api = widgets(&client, "ctl");
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "ctl");
    api.create(
        &PostParams::default(),
        &widget("w", json!({"color": "red", "replicas": 3})),
    )
    .await
    .unwrap();
    eventually("status is Ready and the child exists", || async {
        let w = api.get("w").await.unwrap();
        let child = cms.get_opt("w-cfg").await.unwrap();
        w.data["status"]["phase"] == "Ready"
            && w.data["status"]["readyReplicas"] == 3
            && w.finalizers().contains(&FINALIZER.to_string())
            && child.is_some_and(|c| c.data.unwrap()["color"] == "red")
    })
    .await;
    let owners = api.get("w").await.unwrap().metadata.managed_fields.unwrap();
    assert!(
        owners
            .iter()
            .any(|m| m.manager.as_deref() == Some("widget-controller")
                && m.subresource.as_deref() == Some("status")
                && m.operation.as_deref() == Some("Apply")),
        "the status apply is recorded: {owners:?}"
    );

    api.patch(
        "w",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"color": "blue"}})),
    )
    .await
    .unwrap();
    eventually("the child follows the spec", || async {
        cms.get_opt("w-cfg")
            .await
            .unwrap()
            .is_some_and(|c| c.data.unwrap()["color"] == "blue")
    })
    .await;

    cms.delete("w-cfg", &DeleteParams::default()).await.unwrap();
    eventually("a deleted child is recreated", || async {
        cms.get_opt("w-cfg").await.unwrap().is_some()
    })
    .await;

    api.delete("w", &DeleteParams::default()).await.unwrap();
    eventually(
        "the widget is finalized and its child collected",
        || async {
            api.get_opt("w").await.unwrap().is_none()
                && cms.get_opt("w-cfg").await.unwrap().is_none()
        },
    )
    .await;
    assert_eq!(ctx.cleanups.load(Ordering::SeqCst), 1);
    running.abort();
    cluster.shutdown().await;
}
