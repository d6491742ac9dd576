//! CRDs (registration, discovery, tables, schema and CEL validation) and the built-in
//! kinds' defaults, validation and Events.

mod common;

use common::*;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use serde_json::{Value, json};

#[tokio::test]
async fn crd_objects_are_validated_with_field_causes_and_defaulted() {
    let (cluster, client) = start().await;
    let bootstrap = cluster.object_count();
    namespace(&client, "v").await;
    install_widgets(&client).await;
    let api = widgets(&client, "v");
    let bad = widget(
        "bad",
        json!({"color": "purple", "replicas": 11, "size": "XL", "tags": ["waytoolongtag"], "unknown": 1}),
    );
    let s = status(api.create(&PostParams::default(), &bad).await);
    assert_eq!((s.code, s.reason.as_str()), (422, "Invalid"));
    let fields: Vec<String> = s
        .details
        .unwrap()
        .causes
        .into_iter()
        .map(|c| c.field)
        .collect();
    for f in ["spec.color", "spec.replicas", "spec.size", "spec.tags[0]"] {
        assert!(fields.contains(&f.to_string()), "{f} in {fields:?}");
    }
    let s = status(
        api.create(
            &PostParams::default(),
            &widget("missing", json!({"size": "S"})),
        )
        .await,
    );
    assert_eq!(s.details.unwrap().causes[0].field, "spec.color");
    let s = status(
        api.create(
            &PostParams::default(),
            &widget("typed", json!({"color": "red", "replicas": "two"})),
        )
        .await,
    );
    assert!(s.message.contains("spec.replicas"), "{}", s.message);

    let dup = widget(
        "dup",
        json!({"color": "red", "ports": [{"name": "a", "port": 1}, {"name": "a", "port": 2}]}),
    );
    let s = status(api.create(&PostParams::default(), &dup).await);
    assert_eq!(
        s.details.unwrap().causes[0].field,
        "spec.ports[1]",
        "list-type map keys are unique"
    );

    let ok = api
        .create(
            &PostParams::default(),
            &widget("ok", json!({"color": "red", "unknown": true})),
        )
        .await
        .unwrap();
    assert_eq!(ok.data["spec"]["size"], "M", "defaults applied");
    assert_eq!(ok.data["spec"]["replicas"], 1);
    assert!(
        ok.data["spec"].get("unknown").is_none(),
        "unknown fields pruned"
    );
    assert_eq!(
        cluster.object_count() - bootstrap,
        3 + 1 + 1,
        "v with its default ServiceAccount and kube-root-ca.crt, the CRD and one widget"
    );
    cluster.shutdown().await;
}

#[tokio::test]
async fn crd_registration_serves_the_resource_discovery_and_tables() {
    let (cluster, client) = start().await;
    namespace(&client, "d").await;
    let (code, _) = raw(&client, "GET", "/apis/test.devcluster.dev/v1", "", b"").await;
    assert_eq!(code, 404);
    let (_, before) = raw(&client, "GET", "/openapi/v3", "", b"").await;
    assert!(before["paths"].get("apis/test.devcluster.dev/v1").is_none());
    install_widgets(&client).await;
    let (_, after) = raw(&client, "GET", "/openapi/v3", "", b"").await;
    assert!(
        after["paths"]["apis/test.devcluster.dev/v1"]["serverRelativeURL"].is_string(),
        "the OpenAPI index follows CRD registration"
    );
    let (_, list) = raw(&client, "GET", "/apis/test.devcluster.dev/v1", "", b"").await;
    let names: Vec<&str> = list["resources"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r["name"].as_str())
        .collect();
    assert_eq!(names, ["widgets", "widgets/status", "widgets/scale"]);
    // Aggregated discovery, as kube-rs' run_aggregated (and kubectl) ask for it.
    let discovery = kube::Discovery::new(client.clone())
        .run_aggregated()
        .await
        .unwrap();
    let gvk = kube::api::GroupVersionKind::gvk("test.devcluster.dev", "v1", "Widget");
    let (ar, caps) = discovery.resolve_gvk(&gvk).expect("widgets discovered");
    assert_eq!(
        (ar.plural.as_str(), caps.scope),
        ("widgets", kube::discovery::Scope::Namespaced)
    );
    assert!(
        caps.subresources
            .iter()
            .any(|(sub, _)| sub.plural == "widgets/scale" || sub.plural == "scale"),
        "{:?}",
        caps.subresources
    );
    let core = kube::api::GroupVersionKind::gvk("", "v1", "ConfigMap");
    assert!(
        discovery.resolve_gvk(&core).is_some(),
        "the core group is discovered too"
    );
    let (_, groups) = raw(&client, "GET", "/apis", "", b"").await;
    assert!(
        groups["groups"]
            .as_array()
            .unwrap()
            .iter()
            .any(|g| g["name"] == "test.devcluster.dev")
    );
    let (_, oa) = raw(
        &client,
        "GET",
        "/openapi/v3/apis/test.devcluster.dev/v1",
        "",
        b"",
    )
    .await;
    let patch =
        &oa["paths"]["/apis/test.devcluster.dev/v1/namespaces/{namespace}/widgets/{name}"]["patch"];
    assert!(
        patch["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["name"] == "fieldValidation")
    );
    assert!(oa["components"]["schemas"]["dev.devcluster.test.v1.Widget"]["properties"]["spec"]["properties"]["color"].is_object());

    widgets(&client, "d")
        .create(
            &PostParams::default(),
            &widget("t", json!({"color": "red"})),
        )
        .await
        .unwrap();
    let req = http::Request::get("/apis/test.devcluster.dev/v1/namespaces/d/widgets")
        .header(
            "accept",
            "application/json;as=Table;v=v1;g=meta.k8s.io,application/json",
        )
        .body(vec![])
        .unwrap();
    let table: Value = client.request(req).await.unwrap();
    assert_eq!(table["kind"], "Table");
    let cols: Vec<&str> = table["columnDefinitions"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| c["name"].as_str())
        .collect();
    assert_eq!(cols, ["Name", "Color", "Replicas", "Ready", "Age"]);
    assert_eq!(table["rows"][0]["cells"][0], "t");
    assert_eq!(table["rows"][0]["cells"][1], "red");

    // Re-applying the same CRD changes nothing (no new resourceVersion).
    let crds: Api<k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition> =
        Api::all(client.clone());
    let mut body = serde_json::to_value(widget_crd()).unwrap();
    body["apiVersion"] = json!("apiextensions.k8s.io/v1");
    body["kind"] = json!("CustomResourceDefinition");
    let pp = PatchParams::apply("test").force();
    let first = crds
        .patch("widgets.test.devcluster.dev", &pp, &Patch::Apply(&body))
        .await
        .unwrap();
    let second = crds
        .patch("widgets.test.devcluster.dev", &pp, &Patch::Apply(&body))
        .await
        .unwrap();
    assert_eq!(
        first.metadata.resource_version,
        second.metadata.resource_version
    );
    assert_eq!(
        second.status.unwrap().stored_versions,
        Some(vec!["v1".to_string()])
    );

    // Deleting the CRD stops serving it and removes its objects.
    Api::<k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition>::all(client.clone())
        .delete("widgets.test.devcluster.dev", &DeleteParams::default())
        .await
        .unwrap();
    let (code, _) = raw(
        &client,
        "GET",
        "/apis/test.devcluster.dev/v1/namespaces/d/widgets",
        "",
        b"",
    )
    .await;
    assert_eq!(code, 404);
    cluster.shutdown().await;
}

#[tokio::test]
async fn recorder_events_are_visible_through_the_core_events_api() {
    use kube::runtime::events::{Event, EventType, Recorder, Reporter};
    let (cluster, client) = start().await;
    namespace(&client, "ev").await;
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), "ev");
    let c = api
        .create(&PostParams::default(), &cm("subject", &[]))
        .await
        .unwrap();
    let recorder = Recorder::new(
        client.clone(),
        Reporter {
            controller: "test-ctl".into(),
            instance: None,
        },
    );
    let ev = Event {
        type_: EventType::Warning,
        reason: "Broken".into(),
        note: Some("something broke".into()),
        action: "Reconcile".into(),
        secondary: None,
    };
    let reference = kube::Resource::object_ref(&c, &());
    recorder.publish(&ev, &reference).await.unwrap();
    recorder.publish(&ev, &reference).await.unwrap(); // a series: merge-patched

    // `kubectl describe` reads core/v1 Events by involvedObject.
    let core: Api<k8s_openapi::api::core::v1::Event> = Api::namespaced(client.clone(), "ev");
    let found = core
        .list(
            &ListParams::default()
                .fields("involvedObject.name=subject,involvedObject.kind=ConfigMap"),
        )
        .await
        .unwrap();
    assert_eq!(found.items.len(), 1);
    assert_eq!(found.items[0].message.as_deref(), Some("something broke"));
    assert_eq!(
        found.items[0].reporting_component.as_deref(),
        Some("test-ctl")
    );
    let newer: Api<k8s_openapi::api::events::v1::Event> = Api::namespaced(client.clone(), "ev");
    let e = newer.list(&ListParams::default()).await.unwrap();
    assert_eq!(e.items[0].series.as_ref().map(|s| s.count), Some(2));
    cluster.shutdown().await;
}

#[tokio::test]
async fn builtin_kinds_get_defaults_and_their_mistakes_are_invalid() {
    let (cluster, client) = start().await;
    namespace(&client, "b").await;
    let svcs: Api<k8s_openapi::api::core::v1::Service> = Api::namespaced(client.clone(), "b");
    let svc: k8s_openapi::api::core::v1::Service =
        serde_json::from_value(json!({"metadata": {"name": "s"}, "spec": {"selector": {"app": "x"}, "ports": [{"port": 80}]}})).unwrap();
    let s = svcs
        .create(&PostParams::default(), &svc)
        .await
        .unwrap()
        .spec
        .unwrap();
    assert_eq!(s.type_.as_deref(), Some("ClusterIP"));
    let ip = s.cluster_ip.clone().unwrap();
    assert!(ip.starts_with("10.96."), "{ip}");
    let port = &s.ports.unwrap()[0];
    assert_eq!(
        (port.protocol.as_deref(), port.target_port.is_some()),
        (Some("TCP"), true)
    );
    // Applying without the IP keeps it.
    let applied = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"}, "spec": {"ports": [{"port": 80}], "selector": {"app": "x"}}});
    let s2 = svcs
        .patch("s", &PatchParams::apply("op"), &Patch::Apply(&applied))
        .await
        .unwrap();
    assert_eq!(s2.spec.unwrap().cluster_ip, Some(ip));

    let deploys: Api<Deployment> = Api::namespaced(client.clone(), "b");
    let d = deploys
        .create(&PostParams::default(), &deployment("ok"))
        .await
        .unwrap();
    assert_eq!(
        d.spec.strategy.unwrap().type_.as_deref(),
        Some("RollingUpdate")
    );
    assert_eq!(
        d.spec.template.spec.unwrap().containers[0]
            .image_pull_policy
            .as_deref(),
        Some("IfNotPresent")
    );

    let mut bad = deployment("bad");
    bad.spec.template.metadata.as_mut().unwrap().labels =
        Some([("app".to_string(), "other".to_string())].into());
    let s = status(deploys.create(&PostParams::default(), &bad).await);
    assert_eq!(s.code, 422);
    assert_eq!(
        s.details.unwrap().causes[0].field,
        "spec.template.metadata.labels"
    );
    let s = status(deploys.patch("ok", &PatchParams::default(), &Patch::Merge(json!({"spec": {"selector": {"matchLabels": {"app": "x"}}, "template": {"metadata": {"labels": {"app": "x"}}}}}))).await);
    assert!(s.message.contains("field is immutable"), "{}", s.message);
    cluster.shutdown().await;
}

#[tokio::test]
async fn a_crd_whose_cel_rule_does_not_compile_is_invalid() {
    let (cluster, client) = start().await;
    let mut crd = serde_json::to_value(widget_crd()).unwrap();
    crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["x-kubernetes-validations"] =
        json!([{"rule": "self.color ==", "message": "broken"}]);
    let crds: Api<k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition> =
        Api::all(client.clone());
    let s = status(
        crds.create(
            &PostParams::default(),
            &serde_json::from_value(crd).unwrap(),
        )
        .await,
    );
    assert_eq!(s.code, 422);
    let field = &s.details.unwrap().causes[0].field;
    assert!(
        field.contains("properties[spec].x-kubernetes-validations[0].rule"),
        "{field}"
    );
    cluster.shutdown().await;
}

#[tokio::test]
async fn cel_rules_and_transition_rules_are_enforced() {
    let (cluster, client) = start().await;
    namespace(&client, "cel").await;
    install_widgets(&client).await;
    let api = widgets(&client, "cel");
    let s = status(
        api.create(
            &PostParams::default(),
            &widget("many", json!({"color": "red", "replicas": 7})),
        )
        .await,
    );
    assert_eq!(s.code, 422);
    assert!(
        s.message.contains("red widgets come in fives at most"),
        "{}",
        s.message
    );
    assert_eq!(s.details.unwrap().causes[0].field, "spec");

    api.create(
        &PostParams::default(),
        &widget("w", json!({"color": "blue", "size": "S"})),
    )
    .await
    .unwrap();
    let s = status(
        api.patch(
            "w",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"size": "L"}})),
        )
        .await,
    );
    assert!(s.message.contains("size is immutable"), "{}", s.message);
    let ok = api
        .patch(
            "w",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": 7}})),
        )
        .await
        .unwrap();
    assert_eq!(
        ok.data["spec"]["replicas"], 7,
        "the rule only binds red widgets"
    );
    cluster.shutdown().await;
}

#[tokio::test]
async fn manifests_apply_in_process_in_order_and_idempotently() {
    let (cluster, client) = start().await;
    let yaml = format!(
        "{WIDGETS_CRD}\n---\napiVersion: v1\nkind: Namespace\nmetadata: {{name: m}}\n---\n\
         apiVersion: test.devcluster.dev/v1\nkind: Widget\nmetadata: {{name: w, namespace: m}}\nspec: {{color: blue}}\n"
    );
    assert_eq!(cluster.apply_manifests(&yaml).unwrap(), 3);
    let w = widgets(&client, "m").get("w").await.unwrap();
    assert_eq!(
        w.data["spec"]["size"], "M",
        "validated and defaulted like any write"
    );
    assert_eq!(cluster.apply_manifests(&yaml).unwrap(), 3);
    let again = widgets(&client, "m").get("w").await.unwrap();
    assert_eq!(
        again.metadata.resource_version, w.metadata.resource_version,
        "re-applying changes nothing"
    );
    let bad = "apiVersion: test.devcluster.dev/v1\nkind: Widget\nmetadata: {name: x, namespace: m}\nspec: {color: pink}\n";
    assert!(matches!(
        cluster.apply_manifests(bad),
        Err(devcluster::Error::ApplyManifest { index: 0, .. })
    ));
    cluster.shutdown().await;
}
