//! Shared test set-up: a fresh devcluster per test, namespaces, and the Widget CRD.
#![allow(dead_code)] // each test binary uses a different part

use std::collections::BTreeMap;
use std::time::Duration;

use devcluster::{Config, DevCluster};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::Client;
use kube::api::{Api, ApiResource, DynamicObject, PostParams};
use serde_json::{Value, json};

pub const WIDGETS_CRD: &str = include_str!("../fixtures/widgets.yaml");

pub async fn start() -> (DevCluster, Client) {
    start_with(Config {
        bookmark_interval: Duration::from_millis(200),
        ..Config::default()
    })
    .await
}

pub async fn start_with(config: Config) -> (DevCluster, Client) {
    let cluster = DevCluster::start(config).await.expect("devcluster starts");
    let client = cluster.client().expect("client");
    (cluster, client)
}

pub async fn namespace(client: &Client, name: &str) {
    let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": name}})).unwrap();
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &ns)
        .await
        .expect("namespace created");
}

pub fn widget_crd() -> CustomResourceDefinition {
    let v: Value = serde_saphyr::from_str(WIDGETS_CRD).expect("fixture parses");
    serde_json::from_value(v).expect("fixture is a CRD")
}

pub async fn install_widgets(client: &Client) {
    Api::<CustomResourceDefinition>::all(client.clone())
        .create(&PostParams::default(), &widget_crd())
        .await
        .expect("CRD created");
}

pub fn widget_resource() -> ApiResource {
    ApiResource {
        group: "test.devcluster.dev".into(),
        version: "v1".into(),
        api_version: "test.devcluster.dev/v1".into(),
        kind: "Widget".into(),
        plural: "widgets".into(),
    }
}

pub fn widgets(client: &Client, ns: &str) -> Api<DynamicObject> {
    Api::namespaced_with(client.clone(), ns, &widget_resource())
}

pub fn widget(name: &str, spec: Value) -> DynamicObject {
    serde_json::from_value(json!({
        "apiVersion": "test.devcluster.dev/v1",
        "kind": "Widget",
        "metadata": {"name": name},
        "spec": spec,
    }))
    .unwrap()
}

/// The Status of a failed call, or a panic naming what succeeded instead.
pub fn status<T: std::fmt::Debug>(r: kube::Result<T>) -> Box<kube::core::Status> {
    match r {
        Err(kube::Error::Api(s)) => s,
        other => panic!("expected an API error, got {other:?}"),
    }
}

/// A raw request; returns (HTTP code, body as JSON).
pub async fn raw(
    client: &Client,
    method: &str,
    path: &str,
    content_type: &str,
    body: &[u8],
) -> (u16, Value) {
    let req = http::Request::builder()
        .method(method)
        .uri(path)
        .header("content-type", content_type)
        .body(body.to_vec())
        .unwrap();
    match client.request::<Value>(req).await {
        Ok(v) => (200, v),
        Err(kube::Error::Api(s)) => (s.code, serde_json::to_value(&*s).unwrap()),
        Err(e) => panic!("transport error: {e}"),
    }
}

pub fn cm(name: &str, labels: &[(&str, &str)]) -> ConfigMap {
    let labels: BTreeMap<String, String> = labels
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    serde_json::from_value(
        json!({"metadata": {"name": name, "labels": labels}, "data": {"k": "v"}}),
    )
    .unwrap()
}

pub fn deployment(name: &str) -> Deployment {
    serde_json::from_value(json!({
        "metadata": {"name": name, "labels": {"app": name}},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [
                    {"name": "main", "image": "main:1", "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]},
                    {"name": "sidecar", "image": "side:1"}
                ]}
            }
        }
    }))
    .unwrap()
}

/// Polls `f` every 50 ms until it holds, for at most `secs`; whether it ever held.
pub async fn wait_for<F, Fut>(secs: u64, mut f: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    while tokio::time::Instant::now() < deadline {
        if f().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}
