//! CRUD, selectors, paging, optimistic concurrency and error bodies, through kube-rs
//! and raw HTTP against a running devcluster.

mod common;

use common::*;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use serde_json::json;

#[tokio::test]
async fn crud_round_trip_sets_server_fields_and_rejects_stale_updates() {
    let (cluster, client) = start().await;
    namespace(&client, "crud").await;
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), "crud");

    let mut generated: ConfigMap =
        serde_json::from_value(json!({"metadata": {"generateName": "gen-"}})).unwrap();
    generated = api
        .create(&PostParams::default(), &generated)
        .await
        .unwrap();
    let name = generated.metadata.name.clone().unwrap();
    assert!(
        name.starts_with("gen-") && name.len() == 9,
        "generated name {name}"
    );
    assert!(
        generated
            .metadata
            .uid
            .as_deref()
            .is_some_and(|u| u.len() == 36)
    );
    assert!(generated.metadata.creation_timestamp.is_some());

    let created = api
        .create(&PostParams::default(), &cm("a", &[]))
        .await
        .unwrap();
    let rv1: u64 = created
        .metadata
        .resource_version
        .clone()
        .unwrap()
        .parse()
        .unwrap();
    assert!(status(api.create(&PostParams::default(), &cm("a", &[])).await).is_already_exists());

    let mut changed = created.clone();
    changed.data = Some([("k".to_string(), "w".to_string())].into());
    let updated = api
        .replace("a", &PostParams::default(), &changed)
        .await
        .unwrap();
    let rv2: u64 = updated
        .metadata
        .resource_version
        .clone()
        .unwrap()
        .parse()
        .unwrap();
    assert!(rv2 > rv1, "resourceVersion increases: {rv1} -> {rv2}");
    assert_eq!(updated.metadata.uid, created.metadata.uid);

    // `changed` still carries rv1: a stale write.
    let s = status(api.replace("a", &PostParams::default(), &changed).await);
    assert_eq!((s.code, s.reason.as_str()), (409, "Conflict"));

    api.delete("a", &DeleteParams::default()).await.unwrap();
    assert!(status(api.get("a").await).is_not_found());
    assert_eq!(api.get_opt("a").await.unwrap(), None);
    cluster.shutdown().await;
}

#[tokio::test]
async fn delete_preconditions_guard_against_the_wrong_object() {
    let (cluster, client) = start().await;
    namespace(&client, "pre").await;
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), "pre");
    let created = api
        .create(&PostParams::default(), &cm("a", &[]))
        .await
        .unwrap();
    let mut dp = DeleteParams {
        preconditions: Some(kube::api::Preconditions {
            uid: Some("not-the-uid".into()),
            resource_version: None,
        }),
        ..Default::default()
    };
    assert_eq!(status(api.delete("a", &dp).await).code, 409);
    dp.preconditions = Some(kube::api::Preconditions {
        uid: created.metadata.uid.clone(),
        resource_version: None,
    });
    api.delete("a", &dp).await.unwrap();
    assert!(api.get_opt("a").await.unwrap().is_none());
    cluster.shutdown().await;
}

#[tokio::test]
async fn list_filters_by_selectors_and_pages_with_continue() {
    let (cluster, client) = start().await;
    namespace(&client, "one").await;
    namespace(&client, "two").await;
    let one: Api<ConfigMap> = Api::namespaced(client.clone(), "one");
    let two: Api<ConfigMap> = Api::namespaced(client.clone(), "two");
    for (i, env) in ["prod", "prod", "dev", "staging", "dev"].iter().enumerate() {
        let labels: Vec<(&str, &str)> = if i == 4 {
            vec![("env", env)]
        } else {
            vec![("env", env), ("tier", "web")]
        };
        one.create(&PostParams::default(), &cm(&format!("c{i}"), &labels))
            .await
            .unwrap();
    }
    two.create(&PostParams::default(), &cm("other", &[("env", "prod")]))
        .await
        .unwrap();

    let names = |l: kube::core::ObjectList<ConfigMap>| -> Vec<String> {
        l.items
            .into_iter()
            .map(|c| c.metadata.name.unwrap())
            .collect()
    };
    let list = one
        .list(&ListParams::default().labels("env in (prod,staging)"))
        .await
        .unwrap();
    assert!(
        list.metadata
            .resource_version
            .as_deref()
            .is_some_and(|rv| !rv.is_empty())
    );
    assert_eq!(names(list), ["c0", "c1", "c3"]);
    assert_eq!(
        names(
            one.list(&ListParams::default().labels("env notin (prod),tier"))
                .await
                .unwrap()
        ),
        ["c2", "c3"]
    );
    assert_eq!(
        names(
            one.list(&ListParams::default().labels("!tier"))
                .await
                .unwrap()
        ),
        // Every namespace has kube-root-ca.crt, unlabelled, as on a real cluster.
        ["c4", "kube-root-ca.crt"]
    );
    assert_eq!(
        names(
            one.list(&ListParams::default().labels("env!=dev"))
                .await
                .unwrap()
        ),
        ["c0", "c1", "c3", "kube-root-ca.crt"]
    );
    assert_eq!(
        names(
            one.list(&ListParams::default().fields("metadata.name=c2"))
                .await
                .unwrap()
        ),
        ["c2"]
    );

    let all: Api<ConfigMap> = Api::all(client.clone());
    let everywhere = all
        .list(&ListParams::default().labels("env=prod"))
        .await
        .unwrap();
    assert_eq!(everywhere.items.len(), 3, "lists across namespaces");
    let only_two = all
        .list(&ListParams::default().fields("metadata.namespace=two"))
        .await
        .unwrap();
    assert_eq!(names(only_two), ["kube-root-ca.crt", "other"]);

    let mut seen = vec![];
    let mut lp = ListParams::default().limit(2);
    loop {
        let page = one.list(&lp).await.unwrap();
        assert!(page.items.len() <= 2);
        let token = page.metadata.continue_.clone();
        seen.extend(names(page));
        match token {
            Some(t) if !t.is_empty() => lp = ListParams::default().limit(2).continue_token(&t),
            _ => break,
        }
    }
    assert_eq!(seen, ["c0", "c1", "c2", "c3", "c4", "kube-root-ca.crt"]);
    assert_eq!(
        status(one.list(&ListParams::default().labels("env in prod")).await).code,
        400
    );
    cluster.shutdown().await;
}

#[tokio::test]
async fn malformed_bodies_are_bad_requests_and_unknown_resources_not_found() {
    let (cluster, client) = start().await;
    namespace(&client, "m").await;
    let before = cluster.object_count();
    let (code, body) = raw(
        &client,
        "POST",
        "/api/v1/namespaces/m/configmaps",
        "application/json",
        b"{\"metadata\": ",
    )
    .await;
    assert_eq!(
        (code, body["reason"].as_str(), body["status"].as_str()),
        (400, Some("BadRequest"), Some("Failure"))
    );
    let (code, _) = raw(
        &client,
        "POST",
        "/api/v1/namespaces/m/configmaps",
        "application/yaml",
        b"metadata: [unclosed",
    )
    .await;
    assert_eq!(code, 400);
    let (code, _) = raw(
        &client,
        "POST",
        "/api/v1/namespaces/m/configmaps",
        "application/json",
        b"[1, 2]",
    )
    .await;
    assert_eq!(code, 400);
    let (code, _) = raw(
        &client,
        "PATCH",
        "/api/v1/namespaces/m/configmaps/x",
        "application/merge-patch+json",
        b"{}",
    )
    .await;
    assert_eq!(code, 404);
    let (code, body) = raw(
        &client,
        "GET",
        "/apis/nothing.dev/v1/things",
        "application/json",
        b"",
    )
    .await;
    assert_eq!((code, body["reason"].as_str()), (404, Some("NotFound")));
    let (code, _) = raw(
        &client,
        "GET",
        "/api/v1/namespaces/m/nosuchresource",
        "application/json",
        b"",
    )
    .await;
    assert_eq!(code, 404);
    let (code, _) = raw(
        &client,
        "DELETE",
        "/apis/apps/v1/namespaces/m/deployments/x/status",
        "",
        b"",
    )
    .await;
    assert_eq!(code, 405, "a subresource cannot be deleted");
    // A YAML body works where JSON does.
    let (code, created) = raw(
        &client,
        "POST",
        "/api/v1/namespaces/m/configmaps",
        "application/yaml",
        b"metadata:\n  name: from-yaml\ndata:\n  a: b\n",
    )
    .await;
    assert_eq!((code, created["data"]["a"].as_str()), (200, Some("b")));
    assert_eq!(
        cluster.object_count(),
        before + 1,
        "failed requests changed nothing"
    );
    cluster.shutdown().await;
}

#[tokio::test]
async fn concurrent_writers_from_one_version_have_exactly_one_winner() {
    let (cluster, client) = start().await;
    namespace(&client, "race").await;
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), "race");
    let base = api
        .create(&PostParams::default(), &cm("shared", &[]))
        .await
        .unwrap();
    let attempts = (0..20).map(|i| {
        let api = api.clone();
        let mut mine = base.clone();
        mine.data = Some([("writer".to_string(), i.to_string())].into());
        async move { api.replace("shared", &PostParams::default(), &mine).await }
    });
    let results = futures::future::join_all(attempts).await;
    let won = results.iter().filter(|r| r.is_ok()).count();
    let conflicts = results
        .iter()
        .filter(|r| matches!(r, Err(kube::Error::Api(s)) if s.code == 409))
        .count();
    assert_eq!((won, conflicts), (1, 19));

    let creates = (0..10).map(|_| {
        let api = api.clone();
        async move { api.create(&PostParams::default(), &cm("once", &[])).await }
    });
    let created = futures::future::join_all(creates)
        .await
        .into_iter()
        .filter(|r| r.is_ok())
        .count();
    assert_eq!(created, 1);
    cluster.shutdown().await;
}
