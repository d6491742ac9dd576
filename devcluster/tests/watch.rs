//! Watch semantics kube-runtime depends on: events, bookmarks, resume, 410 Expired
//! inside the stream, relist, selector transitions, streaming lists.

mod common;

use std::time::Duration;

use common::*;
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams};
use kube::runtime::watcher;
use serde_json::json;

#[tokio::test]
async fn watch_streams_changes_bookmarks_and_resumes_from_a_resource_version() {
    let (cluster, client) = start().await;
    namespace(&client, "w").await;
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), "w");
    let first = api
        .create(&PostParams::default(), &cm("before", &[]))
        .await
        .unwrap();
    let start_rv = first.metadata.resource_version.clone().unwrap();

    let mut stream = api
        .watch(&WatchParams::default().timeout(10), &start_rv)
        .await
        .unwrap()
        .boxed();
    api.create(&PostParams::default(), &cm("a", &[("x", "1")]))
        .await
        .unwrap();
    api.patch(
        "a",
        &PatchParams::default(),
        &Patch::Merge(json!({"data": {"k": "changed"}})),
    )
    .await
    .unwrap();
    api.delete("a", &DeleteParams::default()).await.unwrap();

    let mut kinds = vec![];
    let mut bookmark_rv = None;
    while kinds.len() < 3 || bookmark_rv.is_none() {
        let ev = tokio::time::timeout(Duration::from_secs(5), stream.try_next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        match ev {
            WatchEvent::Added(c) => kinds.push(format!("ADDED {}", c.metadata.name.unwrap())),
            WatchEvent::Modified(c) => kinds.push(format!("MODIFIED {}", c.data.unwrap()["k"])),
            WatchEvent::Deleted(c) => kinds.push(format!("DELETED {}", c.metadata.name.unwrap())),
            WatchEvent::Bookmark(b) => bookmark_rv = Some(b.metadata.resource_version),
            WatchEvent::Error(e) => panic!("unexpected error event {e:?}"),
        }
    }
    assert_eq!(
        kinds,
        ["ADDED a", "MODIFIED changed", "DELETED a"],
        "the 'before' object predates the watch"
    );
    assert!(bookmark_rv.is_some_and(|rv| !rv.is_empty()));

    // Resuming from the first revision replays exactly what happened since.
    let replay: Vec<_> = api
        .watch(
            &WatchParams::default().timeout(1).disable_bookmarks(),
            &start_rv,
        )
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    assert_eq!(replay.len(), 3);
    cluster.shutdown().await;
}

#[tokio::test]
async fn too_old_resource_version_is_an_expired_error_event_inside_the_stream() {
    let (cluster, client) = start().await;
    namespace(&client, "old").await;
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), "old");
    let c = api
        .create(&PostParams::default(), &cm("a", &[]))
        .await
        .unwrap();
    api.create(&PostParams::default(), &cm("b", &[]))
        .await
        .unwrap();
    cluster.compact();
    // The request itself succeeds (HTTP 200); the 410 arrives as an ERROR event.
    let mut stream = api
        .watch(
            &WatchParams::default(),
            c.metadata.resource_version.as_deref().unwrap(),
        )
        .await
        .unwrap()
        .boxed();
    match stream.try_next().await.unwrap() {
        Some(WatchEvent::Error(s)) => assert_eq!((s.code, s.reason.as_str()), (410, "Expired")),
        other => panic!("expected a 410 ERROR event, got {other:?}"),
    }
    cluster.shutdown().await;
}

#[tokio::test]
async fn kube_runtime_watcher_relists_after_410() {
    let (cluster, client) = start().await;
    namespace(&client, "relist").await;
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), "relist");
    api.create(&PostParams::default(), &cm("first", &[]))
        .await
        .unwrap();

    let mut events = watcher(api.clone(), watcher::Config::default()).boxed();
    let mut inits = 0;
    let mut names_at_init_done = vec![];
    let mut current = vec![];
    let mut expired_seen = false;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while inits < 2 {
        let next = tokio::time::timeout_at(deadline, events.next())
            .await
            .expect("watcher progresses")
            .expect("stream open");
        let ev = match next {
            Ok(ev) => ev,
            // The watcher surfaces the in-stream 410 as an error, then relists by itself.
            Err(watcher::Error::WatchError(s)) if s.code == 410 => {
                expired_seen = true;
                continue;
            }
            Err(e) => panic!("unexpected watcher error {e}"),
        };
        match ev {
            watcher::Event::Init => current.clear(),
            watcher::Event::InitApply(c) => current.push(c.metadata.name.unwrap()),
            watcher::Event::InitDone => {
                inits += 1;
                names_at_init_done.push(current.clone());
                if inits == 1 {
                    // History is gone and the connection drops: the watcher must re-watch
                    // from its last revision, get 410 Expired in-stream, and relist.
                    api.create(&PostParams::default(), &cm("second", &[]))
                        .await
                        .unwrap();
                    cluster.compact();
                    cluster.drop_watches();
                }
            }
            watcher::Event::Apply(_) | watcher::Event::Delete(_) => {}
        }
    }
    // kube-root-ca.crt is in every namespace, as on a real cluster.
    assert_eq!(names_at_init_done[0], ["first", "kube-root-ca.crt"]);
    assert!(
        expired_seen,
        "the re-watch from the compacted revision got 410 Expired"
    );
    assert_eq!(
        names_at_init_done[1],
        ["first", "kube-root-ca.crt", "second"],
        "the relist sees the new object"
    );
    cluster.shutdown().await;
}

#[tokio::test]
async fn watch_with_a_label_selector_sees_objects_enter_and_leave_it() {
    let (cluster, client) = start().await;
    namespace(&client, "sel").await;
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), "sel");
    let c = api
        .create(&PostParams::default(), &cm("a", &[("on", "no")]))
        .await
        .unwrap();
    let mut stream = api
        .watch(
            &WatchParams::default()
                .labels("on=yes")
                .disable_bookmarks()
                .timeout(5),
            &c.metadata.resource_version.unwrap(),
        )
        .await
        .unwrap()
        .boxed();
    for v in ["yes", "no"] {
        api.patch(
            "a",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"on": v}}})),
        )
        .await
        .unwrap();
    }
    let first = stream.try_next().await.unwrap().unwrap();
    let second = stream.try_next().await.unwrap().unwrap();
    assert!(
        matches!(first, WatchEvent::Added(_)),
        "entering the selection is ADDED: {first:?}"
    );
    assert!(
        matches!(second, WatchEvent::Deleted(_)),
        "leaving it is DELETED: {second:?}"
    );
    cluster.shutdown().await;
}

#[tokio::test]
async fn streaming_lists_end_the_initial_events_with_a_bookmark() {
    let (cluster, client) = start().await;
    namespace(&client, "stream").await;
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), "stream");
    for n in ["a", "b"] {
        api.create(&PostParams::default(), &cm(n, &[]))
            .await
            .unwrap();
    }
    let mut events = watcher(api.clone(), watcher::Config::default().streaming_lists()).boxed();
    let mut names = vec![];
    loop {
        match tokio::time::timeout(Duration::from_secs(5), events.try_next())
            .await
            .unwrap()
            .unwrap()
            .unwrap()
        {
            watcher::Event::InitApply(c) => names.push(c.metadata.name.unwrap()),
            watcher::Event::InitDone => break,
            _ => {}
        }
    }
    assert_eq!(names, ["a", "b", "kube-root-ca.crt"]);
    cluster.shutdown().await;
}

#[tokio::test]
async fn metadata_only_requests_get_partial_object_metadata() {
    use kube::core::PartialObjectMeta;
    let (cluster, client) = start().await;
    namespace(&client, "meta").await;
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), "meta");
    api.create(&PostParams::default(), &cm("a", &[("x", "1")]))
        .await
        .unwrap();
    let m = api.get_metadata("a").await.unwrap();
    assert_eq!(m.metadata.labels.unwrap()["x"], "1");
    let req = http::Request::get("/api/v1/namespaces/meta/configmaps")
        .header(
            "accept",
            "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1,application/json",
        )
        .body(vec![])
        .unwrap();
    let list: serde_json::Value = client.request(req).await.unwrap();
    assert_eq!(list["kind"], "PartialObjectMetadataList");
    assert!(list["items"][0].get("data").is_none(), "metadata only");

    let metas: Api<PartialObjectMeta<ConfigMap>> = Api::namespaced(client.clone(), "meta");
    let mut events = watcher(metas, watcher::Config::default().labels("x")).boxed();
    loop {
        let ev = tokio::time::timeout(Duration::from_secs(5), events.try_next());
        match ev.await.unwrap().unwrap().unwrap() {
            watcher::Event::InitApply(m) => assert_eq!(m.metadata.name.as_deref(), Some("a")),
            watcher::Event::InitDone => break,
            _ => {}
        }
    }
    cluster.shutdown().await;
}
