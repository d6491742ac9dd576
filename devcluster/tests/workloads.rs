//! Simulated workloads through the real API: Deployments and StatefulSets gain ready replicas
//! one start-up delay after their Pods appear, and roll over on a template change.

mod common;

use std::time::Duration;

use devcluster::{Config, DevCluster};
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use serde_json::json;

use common::wait_for;

async fn cluster(pod_startup: Duration) -> (DevCluster, Client) {
    let cluster = DevCluster::start(Config::with_workloads(pod_startup))
        .await
        .expect("devcluster starts");
    let client = cluster.client().expect("client");
    (cluster, client)
}

fn deployment(name: &str, replicas: i32, image: &str) -> Deployment {
    serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}},
                         "spec": {"containers": [{"name": "app", "image": image}]}}
        }
    }))
    .expect("deployment fixture")
}

async fn ready_replicas(api: &Api<Deployment>, name: &str) -> i32 {
    api.get(name)
        .await
        .ok()
        .and_then(|d| d.status)
        .and_then(|s| s.ready_replicas)
        .unwrap_or(0)
}

#[tokio::test]
async fn a_deployment_becomes_ready_only_after_the_pod_startup_delay() {
    let startup = Duration::from_millis(800);
    let (cluster, client) = cluster(startup).await;
    let api: Api<Deployment> = Api::default_namespaced(client.clone());
    let started = tokio::time::Instant::now();
    api.create(&PostParams::default(), &deployment("orders", 3, "orders:1"))
        .await
        .expect("create deployment");

    let pods: Api<Pod> = Api::default_namespaced(client.clone());
    assert!(
        wait_for(10, || async {
            pods.list(&ListParams::default().labels("app=orders"))
                .await
                .map(|l| l.items.len())
                .unwrap_or(0)
                == 3
        })
        .await,
        "three pods were not created"
    );
    assert_eq!(
        ready_replicas(&api, "orders").await,
        0,
        "pods must not be ready before the start-up delay"
    );
    assert!(
        wait_for(10, || async { ready_replicas(&api, "orders").await == 3 }).await,
        "deployment never became ready"
    );
    assert!(
        started.elapsed() >= startup,
        "ready after {:?}, before the {startup:?} start-up",
        started.elapsed()
    );

    let d = api.get("orders").await.expect("get");
    let status = d.status.expect("status");
    assert_eq!(status.replicas, Some(3));
    assert_eq!(status.observed_generation, d.metadata.generation);
    let available = status
        .conditions
        .unwrap_or_default()
        .into_iter()
        .find(|c| c.type_.as_deref() == Some("Available"))
        .expect("Available condition");
    assert_eq!(available.status.as_deref(), Some("True"));
    cluster.shutdown().await;
}

#[tokio::test]
async fn scaling_a_deployment_down_removes_pods_and_a_new_template_rolls_over() {
    let (cluster, client) = cluster(Duration::from_millis(50)).await;
    let api: Api<Deployment> = Api::default_namespaced(client.clone());
    api.create(&PostParams::default(), &deployment("users", 4, "users:1"))
        .await
        .expect("create");
    assert!(wait_for(10, || async { ready_replicas(&api, "users").await == 4 }).await);

    api.patch(
        "users",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"replicas": 2}})),
    )
    .await
    .expect("scale down");
    let pods: Api<Pod> = Api::default_namespaced(client.clone());
    assert!(
        wait_for(10, || async {
            pods.list(&ListParams::default().labels("app=users"))
                .await
                .map(|l| l.items.len())
                .unwrap_or(0)
                == 2
        })
        .await,
        "scale-down did not remove pods"
    );

    let new_template = json!({"spec": {"template": {"spec": {"containers": [{"name": "app", "image": "users:2"}]}}}});
    api.patch(
        "users",
        &PatchParams::default(),
        &Patch::Strategic(new_template),
    )
    .await
    .expect("new image");
    let sets: Api<ReplicaSet> = Api::default_namespaced(client.clone());
    let rolled = wait_for(15, || async {
        let Ok(list) = sets.list(&ListParams::default().labels("app=users")).await else {
            return false;
        };
        let active: Vec<_> = list
            .items
            .iter()
            .filter(|rs| rs.spec.replicas.unwrap_or(0) > 0)
            .collect();
        let images_v2 = pods
            .list(&ListParams::default().labels("app=users"))
            .await
            .map(|l| {
                l.items.iter().all(|p| {
                    p.spec
                        .as_ref()
                        .and_then(|s| s.containers.first())
                        .and_then(|c| c.image.as_deref())
                        == Some("users:2")
                }) && l.items.len() == 2
            })
            .unwrap_or(false);
        list.items.len() == 2 && active.len() == 1 && images_v2
    })
    .await;
    assert!(
        rolled,
        "the rollout did not finish with one active ReplicaSet on users:2"
    );
    assert!(wait_for(10, || async { ready_replicas(&api, "users").await == 2 }).await);
    cluster.shutdown().await;
}

#[tokio::test]
async fn a_statefulset_creates_ordered_pods_one_after_another() {
    let (cluster, client) = cluster(Duration::from_millis(100)).await;
    let api: Api<StatefulSet> = Api::default_namespaced(client.clone());
    let sts: StatefulSet = serde_json::from_value(json!({
        "metadata": {"name": "redis"},
        "spec": {"replicas": 3, "serviceName": "redis",
                 "selector": {"matchLabels": {"app": "redis"}},
                 "template": {"metadata": {"labels": {"app": "redis"}},
                              "spec": {"containers": [{"name": "redis", "image": "redis:7.2"}]}}}
    }))
    .expect("fixture");
    api.create(&PostParams::default(), &sts)
        .await
        .expect("create");
    let ready = wait_for(15, || async {
        api.get("redis")
            .await
            .ok()
            .and_then(|s| s.status)
            .and_then(|s| s.ready_replicas)
            == Some(3)
    })
    .await;
    assert!(ready, "statefulset never had 3 ready replicas");
    let pods: Api<Pod> = Api::default_namespaced(client.clone());
    let mut names: Vec<String> = pods
        .list(&ListParams::default().labels("app=redis"))
        .await
        .expect("list")
        .items
        .into_iter()
        .filter_map(|p| p.metadata.name)
        .collect();
    names.sort();
    assert_eq!(names, ["redis-0", "redis-1", "redis-2"]);
    cluster.shutdown().await;
}
