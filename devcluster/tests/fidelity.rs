//! API details the unmodified kube client depends on, each found by kube-rs' own
//! cluster-backed tests or by a real server's behaviour: DELETE answering a Status,
//! PartialObjectMetadata on PATCH, key order, Node field selectors, componentstatuses,
//! APIServices, TokenRequest / TokenReview, ephemeral containers, eviction with
//! PodDisruptionBudgets, CSR approval, HorizontalPodAutoscaler v1 <-> v2, access reviews,
//! deployment revisions, pods/log and the 501 of exec.

mod common;

use std::time::Duration;

use common::*;
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::authentication::v1::{TokenRequest, TokenReview};
use k8s_openapi::api::authorization::v1::SelfSubjectAccessReview;
use k8s_openapi::api::autoscaling;
use k8s_openapi::api::certificates::v1::CertificateSigningRequest;
use k8s_openapi::api::core::v1::{ComponentStatus, ConfigMap, Node, Pod, ServiceAccount};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::kube_aggregator::pkg::apis::apiregistration::v1::APIService;
use kube::api::{
    Api, DeleteParams, EvictParams, ListParams, LogParams, Patch, PatchParams, PostParams,
};
use kube::core::PartialObjectMeta;
use serde_json::{Value, json};

fn from<T: serde::de::DeserializeOwned>(v: Value) -> T {
    serde_json::from_value(v).expect("fixture deserializes")
}

fn pod(name: &str, labels: Value) -> Pod {
    from(json!({
        "metadata": {"name": name, "labels": labels},
        "spec": {"containers": [{"name": "main", "image": "main:1"}]},
    }))
}

/// Marks a Pod Running and Ready, as the kubelet would (the bare server has none).
async fn make_ready(pods: &Api<Pod>, name: &str) {
    pods.patch_status(
        name,
        &PatchParams::default(),
        &Patch::Merge(json!({"status": {"phase": "Running", "conditions": [
            {"type": "Ready", "status": "True"}
        ]}})),
    )
    .await
    .expect("pod status patched");
}

#[tokio::test]
async fn deleting_a_config_map_answers_a_status_and_deleting_a_pod_the_pod() {
    let (cluster, client) = start().await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    cms.create(&PostParams::default(), &cm("gone", &[]))
        .await
        .unwrap();
    let answer = cms.delete("gone", &DeleteParams::default()).await.unwrap();
    let status = answer.right().expect("a Status for an immediate delete");
    assert_eq!(
        status.status,
        Some(kube::core::response::StatusSummary::Success)
    );
    let details = status.details.expect("details");
    assert_eq!(
        (details.name.as_str(), details.kind.as_str()),
        ("gone", "configmaps")
    );

    // Finalizers keep it: then the object comes back, marked deleting.
    let mut held = cm("held", &[]);
    held.metadata.finalizers = Some(vec!["test/hold".into()]);
    cms.create(&PostParams::default(), &held).await.unwrap();
    let answer = cms.delete("held", &DeleteParams::default()).await.unwrap();
    let obj = answer.left().expect("the object while finalizers hold it");
    assert!(obj.metadata.deletion_timestamp.is_some());

    let pods: Api<Pod> = Api::namespaced(client, "default");
    pods.create(&PostParams::default(), &pod("p", json!({})))
        .await
        .unwrap();
    let answer = pods.delete("p", &DeleteParams::default()).await.unwrap();
    assert!(
        answer.is_left(),
        "pods answer with the deleted object, as upstream"
    );
    cluster.shutdown().await;
}

#[tokio::test]
async fn patch_metadata_answers_partial_object_metadata() {
    let (cluster, client) = start().await;
    let cms: Api<ConfigMap> = Api::namespaced(client, "default");
    cms.create(&PostParams::default(), &cm("m", &[]))
        .await
        .unwrap();
    let patched: PartialObjectMeta<ConfigMap> = cms
        .patch_metadata(
            "m",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"m": "1"}}})),
        )
        .await
        .unwrap();
    assert_eq!(
        patched.types.as_ref().map(|t| t.kind.as_str()),
        Some("PartialObjectMetadata")
    );
    assert_eq!(
        patched
            .metadata
            .labels
            .unwrap_or_default()
            .get("m")
            .map(String::as_str),
        Some("1")
    );
    cluster.shutdown().await;
}

#[tokio::test]
async fn json_bodies_lead_with_kind_api_version_metadata_spec_and_status() {
    let (cluster, client) = start().await;
    let req = http::Request::get("/api/v1/namespaces/default/services/kubernetes")
        .body(vec![])
        .unwrap();
    let body = client.request_text(req).await.unwrap();
    let at = |k: &str| body.find(&format!("\"{k}\"")).unwrap_or(usize::MAX);
    let order = [
        at("kind"),
        at("apiVersion"),
        at("metadata"),
        at("spec"),
        at("status"),
    ];
    assert!(order.windows(2).all(|w| w[0] < w[1]), "{body}");
    let req = http::Request::get("/api/v1/namespaces")
        .body(vec![])
        .unwrap();
    let list = client.request_text(req).await.unwrap();
    assert!(
        list.starts_with("{\"kind\":\"NamespaceList\",\"apiVersion\":\"v1\""),
        "{list}"
    );
    cluster.shutdown().await;
}

#[tokio::test]
async fn unschedulable_false_selects_nodes_that_leave_it_unset() {
    let (cluster, client) = start().await;
    let nodes: Api<Node> = Api::all(client);
    for (name, spec) in [
        ("plain", json!({})),
        ("cordoned", json!({"unschedulable": true})),
    ] {
        nodes
            .create(
                &PostParams::default(),
                &from(json!({"metadata": {"name": name}, "spec": spec})),
            )
            .await
            .unwrap();
    }
    let schedulable = nodes
        .list(&ListParams::default().fields("spec.unschedulable==false"))
        .await
        .unwrap();
    let names: Vec<String> = schedulable
        .items
        .iter()
        .map(|n| n.metadata.name.clone().unwrap_or_default())
        .collect();
    assert_eq!(names, ["plain"]);
    cluster.shutdown().await;
}

#[tokio::test]
async fn componentstatuses_and_api_services_are_listed() {
    let (cluster, client) = start().await;
    let cs = Api::<ComponentStatus>::all(client.clone())
        .list(&ListParams::default())
        .await
        .unwrap();
    assert!(
        cs.items
            .iter()
            .any(|c| c.metadata.name.as_deref() == Some("etcd-0"))
    );
    let services = Api::<APIService>::all(client)
        .list(&ListParams::default())
        .await
        .unwrap();
    let names: Vec<&str> = services
        .items
        .iter()
        .filter_map(|s| s.metadata.name.as_deref())
        .collect();
    assert!(
        names.contains(&"v1.") && names.contains(&"v1.apps"),
        "{names:?}"
    );
    cluster.shutdown().await;
}

#[tokio::test]
async fn a_token_request_issues_a_token_that_a_token_review_accepts() {
    let (cluster, client) = start().await;
    let sas: Api<ServiceAccount> = Api::namespaced(client.clone(), "default");
    let tr: TokenRequest = from(json!({"spec": {"audiences": ["api"], "expirationSeconds": 3600}}));
    let issued = sas
        .create_token_request("default", &PostParams::default(), &tr)
        .await
        .unwrap();
    let token = issued.status.expect("status").token.expect("token");
    assert_eq!(token.split('.').count(), 3, "JWT-shaped");
    let review: TokenReview = from(json!({"spec": {"token": token, "audiences": ["api"]}}));
    let answer = Api::<TokenReview>::all(client.clone())
        .create(&PostParams::default(), &review)
        .await
        .unwrap();
    let status = serde_json::to_value(answer.status).unwrap();
    assert_eq!(status["authenticated"], true);
    assert_eq!(
        status["user"]["username"],
        "system:serviceaccount:default:default"
    );
    let bogus: TokenReview = from(json!({"spec": {"token": "nope"}}));
    let answer = Api::<TokenReview>::all(client)
        .create(&PostParams::default(), &bogus)
        .await
        .unwrap();
    assert_eq!(
        serde_json::to_value(answer.status).unwrap()["authenticated"],
        false
    );
    cluster.shutdown().await;
}

#[tokio::test]
async fn ephemeral_containers_are_written_through_their_subresource_only() {
    let (cluster, client) = start().await;
    let pods: Api<Pod> = Api::namespaced(client, "default");
    pods.create(&PostParams::default(), &pod("dbg", json!({})))
        .await
        .unwrap();
    let patch = json!({"spec": {
        "ephemeralContainers": [{"name": "debugger", "image": "busybox", "targetContainerName": "main"}],
        "containers": [{"name": "main", "image": "changed:2"}],
    }});
    pods.patch_ephemeral_containers("dbg", &PatchParams::default(), &Patch::Strategic(patch))
        .await
        .unwrap();
    let got = serde_json::to_value(pods.get_ephemeral_containers("dbg").await.unwrap()).unwrap();
    assert_eq!(got["spec"]["ephemeralContainers"][0]["name"], "debugger");
    assert_eq!(
        got["spec"]["containers"][0]["image"], "main:1",
        "only ephemeralContainers change"
    );
    cluster.shutdown().await;
}

#[tokio::test]
async fn eviction_honours_pod_disruption_budgets() {
    let (cluster, client) = start().await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    for name in ["a", "b"] {
        pods.create(&PostParams::default(), &pod(name, json!({"app": "web"})))
            .await
            .unwrap();
        make_ready(&pods, name).await;
    }
    let pdb: PodDisruptionBudget = from(json!({
        "metadata": {"name": "web"},
        "spec": {"minAvailable": 1, "selector": {"matchLabels": {"app": "web"}}},
    }));
    Api::<PodDisruptionBudget>::namespaced(client.clone(), "default")
        .create(&PostParams::default(), &pdb)
        .await
        .unwrap();
    pods.evict("a", &EvictParams::default())
        .await
        .expect("one of two may go");
    assert!(pods.get_opt("a").await.unwrap().is_none());
    // kube's default client retries a 429 itself; one without retries sees it at once.
    let mut config = cluster.kube_config().unwrap();
    config.default_retry = false;
    let strict: Api<Pod> = Api::namespaced(kube::Client::try_from(config).unwrap(), "default");
    let s = status(strict.evict("b", &EvictParams::default()).await);
    assert_eq!((s.code, s.reason.as_str()), (429, "TooManyRequests"));
    let cause = &s.details.expect("details").causes[0];
    assert_eq!(cause.reason, "DisruptionBudget");
    assert!(
        cause.message.contains("needs 1 healthy pods and has 1"),
        "{}",
        cause.message
    );
    assert!(pods.get_opt("b").await.unwrap().is_some());
    cluster.shutdown().await;
}

#[tokio::test]
async fn a_csr_is_approved_through_its_approval_subresource() {
    let (cluster, client) = start().await;
    let csrs: Api<CertificateSigningRequest> = Api::all(client);
    let csr: CertificateSigningRequest = from(json!({
        "metadata": {"name": "node-csr"},
        "spec": {"request": "LS0tLS1CRUdJTiBDRVJUSUZJQ0FURSBSRVFVRVNULS0tLS0K",
                 "signerName": "kubernetes.io/kube-apiserver-client", "usages": ["client auth"]},
    }));
    csrs.create(&PostParams::default(), &csr).await.unwrap();
    let approval = json!({"status": {"conditions": [{
        "type": "Approved", "status": "True", "reason": "Test", "message": "approved by the test",
    }]}});
    csrs.patch_approval("node-csr", &PatchParams::default(), &Patch::Merge(approval))
        .await
        .unwrap();
    let got = serde_json::to_value(csrs.get("node-csr").await.unwrap()).unwrap();
    assert_eq!(got["status"]["conditions"][0]["type"], "Approved");
    assert_eq!(
        got["spec"]["signerName"],
        "kubernetes.io/kube-apiserver-client"
    );
    cluster.shutdown().await;
}

#[tokio::test]
async fn autoscalers_are_served_as_v1_and_v2_of_one_object() {
    let (cluster, client) = start().await;
    let v2: autoscaling::v2::HorizontalPodAutoscaler = from(json!({
        "metadata": {"name": "web"},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
            "minReplicas": 1, "maxReplicas": 4,
            "metrics": [
                {"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 70}}},
                {"type": "External", "external": {"metric": {"name": "queue"}, "target": {"type": "Value", "value": "10"}}},
            ],
        },
    }));
    Api::<autoscaling::v2::HorizontalPodAutoscaler>::namespaced(client.clone(), "default")
        .create(&PostParams::default(), &v2)
        .await
        .unwrap();
    let v1api: Api<autoscaling::v1::HorizontalPodAutoscaler> =
        Api::namespaced(client.clone(), "default");
    let v1 = serde_json::to_value(v1api.get("web").await.unwrap()).unwrap();
    assert_eq!(v1["spec"]["targetCPUUtilizationPercentage"], 70);
    // A v1 client's write keeps what only v2 can say.
    v1api
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"maxReplicas": 6}})),
        )
        .await
        .unwrap();
    let back = serde_json::to_value(
        Api::<autoscaling::v2::HorizontalPodAutoscaler>::namespaced(client, "default")
            .get("web")
            .await
            .unwrap(),
    )
    .unwrap();
    assert_eq!(back["spec"]["maxReplicas"], 6);
    assert_eq!(back["spec"]["metrics"].as_array().map(Vec::len), Some(2));
    assert!(back["metadata"].get("annotations").is_none(), "{back}");
    cluster.shutdown().await;
}

#[tokio::test]
async fn access_reviews_allow_everything_while_authorization_is_off() {
    let (cluster, client) = start().await;
    let review: SelfSubjectAccessReview = from(json!({"spec": {"resourceAttributes": {
        "namespace": "default", "verb": "create", "group": "apps", "resource": "deployments",
    }}}));
    let answer = Api::<SelfSubjectAccessReview>::all(client)
        .create(&PostParams::default(), &review)
        .await
        .unwrap();
    assert!(answer.status.expect("status").allowed);
    cluster.shutdown().await;
}

fn workloads_config() -> devcluster::Config {
    devcluster::Config {
        workloads: Some(devcluster::workloads::WorkloadConfig {
            pod_startup: Duration::from_millis(20),
            ..Default::default()
        }),
        ..devcluster::Config::default()
    }
}

fn revision(annotations: Option<&std::collections::BTreeMap<String, String>>) -> Option<String> {
    annotations.and_then(|a| a.get("deployment.kubernetes.io/revision").cloned())
}

#[tokio::test]
async fn deployments_keep_revisions_and_prune_history_beyond_the_limit() {
    let (cluster, client) = start_with(workloads_config()).await;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "default");
    let mut d = deployment("web");
    d.spec.revision_history_limit = Some(1);
    deployments
        .create(&PostParams::default(), &d)
        .await
        .unwrap();
    let sets: Api<ReplicaSet> = Api::namespaced(client.clone(), "default");
    for (i, image) in ["main:2", "main:3"].iter().enumerate() {
        let want = (i + 1).to_string();
        assert!(
            wait_for(10, || async {
                let d = deployments.get("web").await.unwrap();
                revision(d.metadata.annotations.as_ref()).as_deref() == Some(want.as_str())
                    && d.status.and_then(|s| s.updated_replicas) == Some(2)
                    && d.metadata.generation == Some(i as i64 + 1)
            })
            .await,
            "revision {want} rolled out"
        );
        let patch = json!({"spec": {"template": {"spec": {"containers": [{"name": "main", "image": image}]}}}});
        deployments
            .patch("web", &PatchParams::default(), &Patch::Strategic(patch))
            .await
            .unwrap();
    }
    assert!(
        wait_for(10, || async {
            let list = sets.list(&ListParams::default()).await.unwrap();
            let mut revs: Vec<String> = list
                .items
                .iter()
                .filter_map(|rs| revision(rs.metadata.annotations.as_ref()))
                .collect();
            revs.sort();
            revs == ["2", "3"]
        })
        .await,
        "revision 1 pruned: revisionHistoryLimit 1 keeps one old set"
    );
    cluster.shutdown().await;
}

#[tokio::test]
async fn pod_logs_tell_what_the_simulated_kubelet_did() {
    let (cluster, client) = start_with(workloads_config()).await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    pods.create(&PostParams::default(), &pod("logger", json!({})))
        .await
        .unwrap();
    assert!(
        wait_for(10, || async {
            pods.logs("logger", &LogParams::default())
                .await
                .is_ok_and(|l| l.contains("is ready"))
        })
        .await
    );
    let logs = pods.logs("logger", &LogParams::default()).await.unwrap();
    assert!(logs.contains("started container main"), "{logs}");
    let tail = pods
        .logs(
            "logger",
            &LogParams {
                tail_lines: Some(1),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(tail.lines().count(), 1);
    // exec has no node to run on: a clear 501, not a 404.
    let (code, body) = raw(
        &client,
        "POST",
        "/api/v1/namespaces/default/pods/logger/exec?command=ls&container=main&stdout=true",
        "application/json",
        b"",
    )
    .await;
    assert_eq!(code, 501);
    assert!(
        body["message"]
            .as_str()
            .unwrap_or_default()
            .contains("simulated node"),
        "{body}"
    );
    cluster.shutdown().await;
}
