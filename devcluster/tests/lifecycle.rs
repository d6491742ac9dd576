//! Subresources and deletion: status/scale, finalizers, garbage collection, namespaces.

mod common;

use common::*;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use serde_json::json;

#[tokio::test]
async fn status_and_scale_subresources_keep_spec_and_status_apart() {
    let (cluster, client) = start().await;
    namespace(&client, "sub").await;
    install_widgets(&client).await;
    let api = widgets(&client, "sub");
    let mut w = widget("w", json!({"color": "green", "replicas": 2}));
    w.data["status"] = json!({"phase": "ignored on create"});
    let created = api.create(&PostParams::default(), &w).await.unwrap();
    assert!(
        created.data.get("status").is_none(),
        "status is not written through the main resource"
    );
    assert_eq!(created.metadata.generation, Some(1));

    let s = api
        .patch_status("w", &PatchParams::default(), &Patch::Merge(json!({"status": {"replicas": 2, "phase": "Running", "selector": "app=w"}, "spec": {"color": "red"}})))
        .await
        .unwrap();
    assert_eq!(s.data["status"]["phase"], "Running");
    assert_eq!(
        s.data["spec"]["color"], "green",
        "a status write leaves spec alone"
    );
    assert_eq!(
        s.metadata.generation,
        Some(1),
        "status writes do not bump generation"
    );

    let s = api
        .patch(
            "w",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"color": "blue"}, "status": {"phase": "x"}})),
        )
        .await
        .unwrap();
    assert_eq!(s.metadata.generation, Some(2));
    assert_eq!(
        s.data["status"]["phase"], "Running",
        "a main-resource write leaves status alone"
    );
    let s = api
        .patch(
            "w",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"l": "v"}}})),
        )
        .await
        .unwrap();
    assert_eq!(
        s.metadata.generation,
        Some(2),
        "metadata changes do not bump generation"
    );

    let scale = api.get_scale("w").await.unwrap();
    assert_eq!(scale.spec.unwrap().replicas, Some(2));
    assert_eq!(
        scale.status.as_ref().unwrap().selector.as_deref(),
        Some("app=w")
    );
    let scaled = api
        .patch_scale(
            "w",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": 5}})),
        )
        .await
        .unwrap();
    assert_eq!(scaled.spec.unwrap().replicas, Some(5));
    let after = api.get("w").await.unwrap();
    assert_eq!(after.data["spec"]["replicas"], 5);
    assert_eq!(after.metadata.generation, Some(3));

    // Built-in scale: Deployments.
    let deploys: Api<Deployment> = Api::namespaced(client.clone(), "sub");
    deploys
        .create(&PostParams::default(), &deployment("d"))
        .await
        .unwrap();
    let sc = deploys.get_scale("d").await.unwrap();
    assert_eq!(sc.status.unwrap().selector.as_deref(), Some("app=d"));
    deploys
        .patch_scale(
            "d",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": 7}})),
        )
        .await
        .unwrap();
    assert_eq!(deploys.get("d").await.unwrap().spec.replicas, Some(7));
    cluster.shutdown().await;
}

#[tokio::test]
async fn finalizers_hold_deletion_until_removed() {
    let (cluster, client) = start().await;
    namespace(&client, "fin").await;
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), "fin");
    let mut c = cm("held", &[]);
    c.metadata.finalizers = Some(vec!["test.dev/cleanup".into()]);
    api.create(&PostParams::default(), &c).await.unwrap();
    api.delete("held", &DeleteParams::default()).await.unwrap();
    let still = api.get("held").await.unwrap();
    assert!(
        still.metadata.deletion_timestamp.is_some(),
        "deletion is pending"
    );
    let more = json!({"metadata": {"finalizers": ["test.dev/cleanup", "test.dev/another"]}});
    let s = status(
        api.patch("held", &PatchParams::default(), &Patch::Merge(more))
            .await,
    );
    assert_eq!(
        (s.code, s.reason.as_str()),
        (422, "Invalid"),
        "no new finalizers once deleting"
    );
    api.patch(
        "held",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"finalizers": null}})),
    )
    .await
    .unwrap();
    assert!(
        api.get_opt("held").await.unwrap().is_none(),
        "gone once the last finalizer is removed"
    );
    cluster.shutdown().await;
}

#[tokio::test]
async fn owner_deletion_cascades_and_orphan_keeps_dependents() {
    let (cluster, client) = start().await;
    namespace(&client, "gc").await;
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), "gc");
    for owner in ["o1", "o2"] {
        let o = api
            .create(&PostParams::default(), &cm(owner, &[]))
            .await
            .unwrap();
        let mut dep = cm(&format!("{owner}-child"), &[]);
        dep.metadata.owner_references = Some(vec![serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "ConfigMap", "name": owner, "uid": o.metadata.uid.unwrap()
        })).unwrap()]);
        api.create(&PostParams::default(), &dep).await.unwrap();
    }
    let mut orphan_ref = cm("bad-ref", &[]);
    orphan_ref.metadata.owner_references = Some(vec![
        serde_json::from_value(
            json!({"apiVersion": "v1", "kind": "ConfigMap", "name": "o1", "uid": ""}),
        )
        .unwrap(),
    ]);
    let s = status(api.create(&PostParams::default(), &orphan_ref).await);
    assert_eq!(
        s.details.unwrap().causes[0].field,
        "metadata.ownerReferences[0].uid"
    );
    api.delete("o1", &DeleteParams::background()).await.unwrap();
    assert!(
        api.get_opt("o1-child").await.unwrap().is_none(),
        "background deletion removes dependents"
    );
    api.delete("o2", &DeleteParams::orphan()).await.unwrap();
    let orphan = api.get("o2-child").await.unwrap();
    assert!(
        orphan
            .metadata
            .owner_references
            .is_none_or(|r| r.is_empty()),
        "orphans lose the owner reference"
    );
    cluster.shutdown().await;
}

#[tokio::test]
async fn a_child_created_after_its_owner_is_gone_is_collected() {
    let (cluster, client) = start().await;
    namespace(&client, "late").await;
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), "late");
    let owner = api
        .create(&PostParams::default(), &cm("owner", &[]))
        .await
        .unwrap();
    let owner_ref = json!({"apiVersion": "v1", "kind": "ConfigMap", "name": "owner",
        "uid": owner.metadata.uid.clone().unwrap()});
    api.delete("owner", &DeleteParams::background())
        .await
        .unwrap();
    // A controller that read the owner before its deletion applies a child afterwards.
    let mut late = cm("late-child", &[]);
    late.metadata.owner_references = Some(vec![serde_json::from_value(owner_ref.clone()).unwrap()]);
    api.create(&PostParams::default(), &late).await.unwrap();
    assert!(
        api.get_opt("late-child").await.unwrap().is_none(),
        "a child of a deleted owner is garbage"
    );
    // A new owner of the same name is another object: the old uid still names nobody.
    api.create(&PostParams::default(), &cm("owner", &[]))
        .await
        .unwrap();
    api.create(&PostParams::default(), &late).await.unwrap();
    assert!(api.get_opt("late-child").await.unwrap().is_none());
    // A child of a live owner stays.
    let live = api.get("owner").await.unwrap();
    let mut kept = cm("kept-child", &[]);
    kept.metadata.owner_references = Some(vec![serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": live.metadata.uid.unwrap()
    })).unwrap()]);
    api.create(&PostParams::default(), &kept).await.unwrap();
    assert!(api.get_opt("kept-child").await.unwrap().is_some());
    cluster.shutdown().await;
}

#[tokio::test]
async fn namespace_deletion_removes_its_contents() {
    let (cluster, client) = start().await;
    namespace(&client, "doomed").await;
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), "doomed");
    api.create(&PostParams::default(), &cm("a", &[]))
        .await
        .unwrap();
    Api::<Namespace>::all(client.clone())
        .delete("doomed", &DeleteParams::default())
        .await
        .unwrap();
    assert!(
        Api::<Namespace>::all(client.clone())
            .get_opt("doomed")
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        Api::<ConfigMap>::all(client.clone())
            .list(&ListParams::default().fields("metadata.namespace=doomed"))
            .await
            .unwrap()
            .items
            .is_empty()
    );
    // And nothing can be created in a namespace that does not exist.
    assert!(status(api.create(&PostParams::default(), &cm("b", &[])).await).is_not_found());
    cluster.shutdown().await;
}

#[tokio::test]
async fn delete_collection_honours_selectors_and_foreground_removes_dependents_first() {
    let (cluster, client) = start().await;
    namespace(&client, "dc").await;
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), "dc");
    for (n, t) in [("a", "x"), ("b", "x"), ("c", "y")] {
        api.create(&PostParams::default(), &cm(n, &[("t", t)]))
            .await
            .unwrap();
    }
    api.delete_collection(
        &DeleteParams::default(),
        &ListParams::default().labels("t=x"),
    )
    .await
    .unwrap();
    let left: Vec<String> = api
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|c| c.metadata.name.unwrap())
        .collect();
    // The namespace's kube-root-ca.crt is unlabelled: the selector spares it.
    assert_eq!(left, ["c", "kube-root-ca.crt"]);

    let owner = api.get("c").await.unwrap();
    let mut dep = cm("dep", &[]);
    dep.metadata.owner_references = Some(vec![serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "ConfigMap", "name": "c", "uid": owner.metadata.uid.unwrap(), "blockOwnerDeletion": true
    })).unwrap()]);
    api.create(&PostParams::default(), &dep).await.unwrap();
    api.delete("c", &DeleteParams::foreground()).await.unwrap();
    assert!(api.get_opt("c").await.unwrap().is_none());
    assert!(api.get_opt("dep").await.unwrap().is_none());
    cluster.shutdown().await;
}

#[tokio::test]
async fn foreground_deletion_waits_for_finalizing_dependents() {
    let (cluster, client) = start().await;
    namespace(&client, "fg").await;
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), "fg");
    let owner = api
        .create(&PostParams::default(), &cm("owner", &[]))
        .await
        .unwrap();
    let mut dep = cm("dep", &[]);
    dep.metadata.finalizers = Some(vec!["test.dev/slow".into()]);
    dep.metadata.owner_references = Some(vec![
        serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": owner.metadata.uid.unwrap(), "blockOwnerDeletion": true
        }))
        .unwrap(),
    ]);
    api.create(&PostParams::default(), &dep).await.unwrap();

    api.delete("owner", &DeleteParams::foreground())
        .await
        .unwrap();
    let waiting = api.get("owner").await.unwrap();
    assert!(waiting.metadata.deletion_timestamp.is_some());
    assert_eq!(
        waiting.metadata.finalizers,
        Some(vec!["foregroundDeletion".to_string()])
    );
    assert!(
        api.get("dep")
            .await
            .unwrap()
            .metadata
            .deletion_timestamp
            .is_some()
    );

    // The dependent's controller finishes: then both are gone.
    api.patch(
        "dep",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"finalizers": null}})),
    )
    .await
    .unwrap();
    assert!(api.get_opt("dep").await.unwrap().is_none());
    assert!(
        api.get_opt("owner").await.unwrap().is_none(),
        "the owner goes with its last dependent"
    );
    cluster.shutdown().await;
}
