//! Hostile input over HTTP: over a thousand requests mixing methods, paths, media types
//! and malformed bodies. Nothing may answer 5xx, the server must keep serving, and an
//! object the requests do not address stays as it was.

mod common;

use common::*;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, PostParams};
use serde_json::json;

/// A small deterministic generator (xorshift): reproducible without a seed file.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn pick<'a, T: ?Sized>(&mut self, items: &[&'a T]) -> &'a T {
        items[(self.next() % items.len() as u64) as usize]
    }
}

const PATHS: &[&str] = &[
    "/api/v1/namespaces/fuzz/configmaps",
    "/api/v1/namespaces/fuzz/configmaps/keep",
    "/api/v1/namespaces/fuzz/configmaps/other",
    "/api/v1/namespaces/fuzz/configmaps/keep/status",
    "/api/v1/namespaces/fuzz/pods/p",
    "/api/v1/namespaces/fuzz/services",
    "/apis/apps/v1/namespaces/fuzz/deployments/d",
    "/apis/apps/v1/namespaces/fuzz/deployments/d/scale",
    "/apis/apps/v1/namespaces/fuzz/deployments",
    "/apis/test.devcluster.dev/v1/namespaces/fuzz/widgets",
    "/apis/test.devcluster.dev/v1/namespaces/fuzz/widgets/w",
    "/apis/test.devcluster.dev/v1/namespaces/fuzz/widgets/w/scale",
    "/apis/apiextensions.k8s.io/v1/customresourcedefinitions",
    "/api/v1/namespaces",
    "/api/v1/namespaces/fuzz/status",
    "/apis/nope/v1/things",
    "/api/v1/namespaces/fuzz/configmaps?labelSelector=a+in+(b&limit=-1",
    "/api/v1/namespaces/fuzz/configmaps?fieldSelector=%%%&continue=x:y",
    "/api/v1/namespaces/fuzz/configmaps?watch=true&resourceVersion=abc",
    "/openapi/v3/apis/apps/v1",
    "/api//v1///",
];

const TYPES: &[&str] = &[
    "application/json",
    "application/yaml",
    "application/merge-patch+json",
    "application/json-patch+json",
    "application/strategic-merge-patch+json",
    "application/apply-patch+yaml",
    "application/vnd.kubernetes.protobuf",
    "text/plain",
];

const BODIES: &[&str] = &[
    "",
    "{",
    "null",
    "[]",
    "[{\"op\": \"remove\", \"path\": \"/metadata\"}]",
    "[{\"op\": \"test\", \"path\": \"/x\", \"value\": 1}, {\"op\": \"add\", \"path\": \"/a/b/c\", \"value\": 2}]",
    "{\"apiVersion\": \"v1\", \"kind\": \"ConfigMap\", \"metadata\": {\"name\": \"other\"}, \"data\": {\"a\": 1}}",
    "{\"apiVersion\": \"v1\", \"kind\": \"ConfigMap\", \"metadata\": {\"name\": \"keep\", \"resourceVersion\": \"1\"}}",
    "{\"metadata\": {\"name\": \"keep\", \"labels\": [1, 2]}}",
    "{\"metadata\": {\"name\": \"x\", \"finalizers\": \"no\"}, \"spec\": {\"$patch\": \"delete\"}}",
    "{\"metadata\": {\"name\": \"w\"}, \"spec\": {\"color\": 7, \"replicas\": 1e308}}",
    "{\"spec\": {\"replicas\": -5}, \"status\": {\"replicas\": \"many\"}}",
    "{\"apiVersion\": \"apps/v1\", \"kind\": \"Deployment\", \"metadata\": {\"name\": \"d\"}, \"spec\": {\"template\": 3}}",
    "{\"kind\": \"Pod\", \"metadata\": {\"name\": \"p\", \"ownerReferences\": [{}]}}",
    "metadata:\n  name: [unclosed",
    "a: &x [*x]",
    "k8s\u{0}\u{a}\u{ff}\u{ff}\u{ff}",
    "{\"spec\": {\"$setElementOrder/containers\": 5, \"$retainKeys\": {}, \"$deleteFromPrimitiveList/x\": null}}",
];

#[tokio::test]
async fn malformed_and_hostile_requests_never_fail_the_server() {
    let (cluster, client) = start().await;
    namespace(&client, "fuzz").await;
    install_widgets(&client).await;
    namespace(&client, "safe").await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "safe");
    let keep: ConfigMap = serde_json::from_value(
        json!({"metadata": {"name": "keep", "finalizers": ["fuzz/hold"]}, "data": {"k": "v"}}),
    )
    .unwrap();
    let keep = cms.create(&PostParams::default(), &keep).await.unwrap();

    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut deep = String::new();
    for _ in 0..2000 {
        deep.push('[');
    }
    let methods = ["GET", "POST", "PUT", "PATCH", "DELETE"];
    for i in 0..1500 {
        let method = methods[(rng.next() % methods.len() as u64) as usize];
        let mut path = rng.pick(PATHS).to_string();
        if method == "PATCH" && rng.next().is_multiple_of(2) {
            path.push_str(if path.contains('?') {
                "&fieldManager=fuzz"
            } else {
                "?fieldManager=fuzz"
            });
        }
        let body = if i % 97 == 0 {
            deep.clone()
        } else {
            rng.pick(BODIES).to_string()
        };
        let req = http::Request::builder()
            .method(method)
            .uri(&path)
            .header("content-type", rng.pick(TYPES))
            .body(kube::client::Body::from(body.clone().into_bytes()))
            .unwrap();
        // Watches that did start are not read: a timeout keeps the loop moving.
        let res = tokio::time::timeout(std::time::Duration::from_secs(5), client.send(req)).await;
        let Ok(Ok(res)) = res else { continue };
        assert!(
            res.status().as_u16() < 500,
            "{method} {path} with {body:?} -> {}",
            res.status()
        );
        // No request addresses the kept object, and its finalizer holds it through
        // namespace deletions: a write that spilled over would show here.
        if i % 50 == 0 {
            let still = cms.get("keep").await.expect("the kept object survives");
            assert_eq!(still.data, keep.data, "after {method} {path} with {body:?}");
        }
    }
    assert!(client.apiserver_version().await.is_ok(), "still serving");
    assert!(cms.list(&Default::default()).await.is_ok());
    cluster.shutdown().await;
}
