//! PATCH: merge, JSON, strategic merge, and server-side apply with field ownership.

mod common;

use std::collections::BTreeMap;

use common::*;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;

#[tokio::test]
async fn merge_json_and_strategic_patches_follow_their_rules() {
    let (cluster, client) = start().await;
    namespace(&client, "p").await;
    let api: Api<Deployment> = Api::namespaced(client.clone(), "p");
    api.create(&PostParams::default(), &deployment("web"))
        .await
        .unwrap();

    // Strategic merge: containers and env merge by name; $patch: delete removes one.
    let smp = json!({"spec": {"template": {"spec": {"containers": [
        {"name": "main", "image": "main:2", "env": [{"name": "B", "$patch": "delete"}, {"name": "C", "value": "3"}]}
    ]}}}});
    let d = api
        .patch("web", &PatchParams::default(), &Patch::Strategic(smp))
        .await
        .unwrap();
    let containers = d.spec.template.spec.unwrap().containers;
    assert_eq!(
        containers.len(),
        2,
        "the sidecar survives a strategic merge"
    );
    assert_eq!(containers[0].image.as_deref(), Some("main:2"));
    let env: Vec<String> = containers[0]
        .env
        .clone()
        .unwrap()
        .into_iter()
        .map(|e| e.name)
        .collect();
    assert_eq!(env, ["A", "C"]);

    // Merge patch replaces lists wholesale and deletes with null.
    let merge = json!({"metadata": {"labels": {"app": null, "team": "x"}}, "spec": {"template": {"spec": {"containers": [{"name": "only", "image": "o:1"}]}}}});
    let d = api
        .patch("web", &PatchParams::default(), &Patch::Merge(merge))
        .await
        .unwrap();
    assert_eq!(
        d.metadata.labels.unwrap(),
        BTreeMap::from([("team".to_string(), "x".to_string())])
    );
    assert_eq!(d.spec.template.spec.unwrap().containers.len(), 1);

    // JSON patch, with a failing test op leaving the object untouched.
    let ok: json_patch::Patch =
        serde_json::from_value(json!([{"op": "replace", "path": "/spec/replicas", "value": 4}]))
            .unwrap();
    assert_eq!(
        api.patch("web", &PatchParams::default(), &Patch::<()>::Json(ok))
            .await
            .unwrap()
            .spec
            .replicas,
        Some(4)
    );
    let bad: json_patch::Patch = serde_json::from_value(json!([
        {"op": "test", "path": "/spec/replicas", "value": 99},
        {"op": "replace", "path": "/spec/replicas", "value": 7}
    ]))
    .unwrap();
    assert_eq!(
        status(
            api.patch("web", &PatchParams::default(), &Patch::<()>::Json(bad))
                .await
        )
        .code,
        422
    );
    assert_eq!(api.get("web").await.unwrap().spec.replicas, Some(4));

    // Custom resources do not take strategic merge patches (as upstream).
    install_widgets(&client).await;
    let w = widgets(&client, "p");
    w.create(
        &PostParams::default(),
        &widget("w", json!({"color": "red"})),
    )
    .await
    .unwrap();
    assert_eq!(
        status(
            w.patch(
                "w",
                &PatchParams::default(),
                &Patch::Strategic(json!({"spec": {"color": "blue"}}))
            )
            .await
        )
        .code,
        415
    );
    cluster.shutdown().await;
}

#[tokio::test]
async fn server_side_apply_tracks_owners_removes_dropped_fields_and_reports_conflicts() {
    let (cluster, client) = start().await;
    namespace(&client, "ssa").await;
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), "ssa");
    let applied = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cfg", "labels": {"a": "1"}}, "data": {"x": "1", "y": "2"}});
    let c = api
        .patch("cfg", &PatchParams::apply("alice"), &Patch::Apply(&applied))
        .await
        .unwrap();
    let mf = c.metadata.managed_fields.clone().unwrap();
    assert_eq!(mf.len(), 1);
    assert_eq!(
        (mf[0].manager.as_deref(), mf[0].operation.as_deref()),
        (Some("alice"), Some("Apply"))
    );
    let fields = serde_json::to_value(&mf[0].fields_v1).unwrap();
    assert!(
        fields["f:data"]["f:x"].is_object() && fields["f:metadata"]["f:labels"]["f:a"].is_object(),
        "{fields}"
    );

    // Another manager sets a different value for alice's field: conflict, unless forced.
    let bob = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cfg"}, "data": {"x": "bob"}});
    let s = status(
        api.patch("cfg", &PatchParams::apply("bob"), &Patch::Apply(&bob))
            .await,
    );
    assert_eq!((s.code, s.reason.as_str()), (409, "Conflict"));
    assert!(s.message.contains("alice"), "{}", s.message);
    let forced = api
        .patch(
            "cfg",
            &PatchParams::apply("bob").force(),
            &Patch::Apply(&bob),
        )
        .await
        .unwrap();
    assert_eq!(forced.data.unwrap()["x"], "bob");

    // Alice stops applying y: it is removed; x now belongs to bob and stays.
    let alice2 = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cfg", "labels": {"a": "1"}}, "data": {}});
    let c = api
        .patch("cfg", &PatchParams::apply("alice"), &Patch::Apply(&alice2))
        .await
        .unwrap();
    assert_eq!(
        c.data.unwrap(),
        BTreeMap::from([("x".to_string(), "bob".to_string())])
    );
    let managers: Vec<String> = c
        .metadata
        .managed_fields
        .unwrap()
        .into_iter()
        .filter_map(|m| m.manager)
        .collect();
    assert!(managers.contains(&"bob".to_string()));

    // A resourceVersion in an apply configuration is a precondition.
    let stale = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cfg", "resourceVersion": "1"}});
    let s = status(
        api.patch("cfg", &PatchParams::apply("alice"), &Patch::Apply(&stale))
            .await,
    );
    assert_eq!(s.code, 409);

    // An apply body that is not YAML/JSON at all is a 400.
    let (code, body) = raw(
        &client,
        "PATCH",
        "/api/v1/namespaces/ssa/configmaps/cfg?fieldManager=x",
        "application/apply-patch+yaml",
        b"{not: [valid",
    )
    .await;
    assert_eq!((code, body["reason"].as_str()), (400, Some("BadRequest")));
    cluster.shutdown().await;
}

#[tokio::test]
async fn server_side_apply_keeps_list_items_another_manager_still_owns_part_of() {
    let (cluster, client) = start().await;
    namespace(&client, "own").await;
    let api: Api<Deployment> = Api::namespaced(client.clone(), "own");
    let mut full = serde_json::to_value(deployment("web")).unwrap();
    full["apiVersion"] = json!("apps/v1");
    full["kind"] = json!("Deployment");
    api.patch("web", &PatchParams::apply("alice"), &Patch::Apply(&full))
        .await
        .unwrap();

    let bob = PatchParams {
        field_manager: Some("bob".into()),
        ..Default::default()
    };
    let smp = json!({"spec": {"template": {"spec": {"containers": [{"name": "sidecar", "image": "side:2"}]}}}});
    api.patch("web", &bob, &Patch::Strategic(smp))
        .await
        .unwrap();

    // Alice drops the sidecar and env B from her configuration.
    let mut slim = full.clone();
    let containers = &mut slim["spec"]["template"]["spec"]["containers"];
    *containers =
        json!([{"name": "main", "image": "main:1", "env": [{"name": "A", "value": "1"}]}]);
    let d = api
        .patch("web", &PatchParams::apply("alice"), &Patch::Apply(&slim))
        .await
        .unwrap();
    let containers = d.spec.template.spec.unwrap().containers;
    let names: Vec<&str> = containers.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(
        names,
        ["main", "sidecar"],
        "bob still owns the sidecar's image"
    );
    assert_eq!(containers[1].image.as_deref(), Some("side:2"));
    let env: Vec<&str> = containers[0]
        .env
        .iter()
        .flatten()
        .map(|e| e.name.as_str())
        .collect();
    assert_eq!(env, ["A"], "env B was alice's alone, so it goes");
    cluster.shutdown().await;
}

#[tokio::test]
async fn server_side_apply_removes_a_struct_its_manager_dropped_entirely() {
    let (cluster, client) = start().await;
    namespace(&client, "ssa-struct").await;
    let api: Api<Deployment> = Api::namespaced(client.clone(), "ssa-struct");
    let with = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
        "spec": {"selector": {"matchLabels": {"app": "web"}},
                 "template": {"metadata": {"labels": {"app": "web"}},
                              "spec": {"dnsConfig": {"nameservers": ["10.0.0.10"]},
                                       "containers": [{"name": "main", "image": "main:1"}]}}}});
    api.patch("web", &PatchParams::apply("alice"), &Patch::Apply(&with))
        .await
        .unwrap();
    // The same configuration without the struct: it goes whole, not as `dnsConfig: {}`
    // (a schema with required fields would refuse the empty struct the operator found).
    let mut without = with.clone();
    without["spec"]["template"]["spec"]
        .as_object_mut()
        .unwrap()
        .remove("dnsConfig");
    api.patch("web", &PatchParams::apply("alice"), &Patch::Apply(&without))
        .await
        .unwrap();
    let raw = api.get("web").await.unwrap();
    let pod = serde_json::to_value(raw.spec.template.spec.unwrap()).unwrap();
    assert!(pod.get("dnsConfig").is_none(), "{pod}");
    cluster.shutdown().await;
}
