//! Authentication and RBAC (`Config::authz`), and the audit log: a ServiceAccount's client
//! may do what its bindings allow and gets a real server's 403 otherwise; access reviews
//! answer from the same evaluator; every request is written down.

mod common;

use std::time::Duration;

use common::*;
use k8s_openapi::api::authorization::v1::{SelfSubjectAccessReview, SubjectAccessReview};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Pod, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRoleBinding, RoleBinding};
use kube::api::{Api, ListParams, PostParams};
use serde_json::{Value, json};

fn config(audit: Option<std::path::PathBuf>) -> devcluster::Config {
    devcluster::Config {
        authz: true,
        audit,
        ..devcluster::Config::default()
    }
}

fn from<T: serde::de::DeserializeOwned>(v: Value) -> T {
    serde_json::from_value(v).expect("fixture deserializes")
}

async fn service_account(admin: &kube::Client, ns: &str, name: &str) {
    Api::<ServiceAccount>::namespaced(admin.clone(), ns)
        .create(
            &PostParams::default(),
            &from(json!({"metadata": {"name": name}})),
        )
        .await
        .expect("service account created");
}

async fn bind_in(admin: &kube::Client, ns: &str, role: &str, sa_ns: &str, sa: &str) {
    let rb: RoleBinding = from(json!({
        "metadata": {"name": format!("{sa}-{role}")},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
        "subjects": [{"kind": "ServiceAccount", "name": sa, "namespace": sa_ns}],
    }));
    Api::<RoleBinding>::namespaced(admin.clone(), ns)
        .create(&PostParams::default(), &rb)
        .await
        .expect("role binding created");
}

#[tokio::test]
async fn a_service_account_may_do_what_its_bindings_allow_and_nothing_else() {
    let (cluster, admin) = start_with(config(None)).await;
    namespace(&admin, "x").await;
    service_account(&admin, "default", "op").await;
    let op = cluster.client_as_service_account("default", "op").unwrap();

    let s = status(
        Api::<Pod>::namespaced(op.clone(), "x")
            .list(&ListParams::default())
            .await,
    );
    assert_eq!((s.code, s.reason.as_str()), (403, "Forbidden"));
    assert_eq!(
        s.message,
        "pods is forbidden: User \"system:serviceaccount:default:op\" cannot list resource \"pods\" in API group \"\" in the namespace \"x\""
    );

    bind_in(&admin, "x", "edit", "default", "op").await;
    Api::<Pod>::namespaced(op.clone(), "x")
        .list(&ListParams::default())
        .await
        .expect("edit in x allows listing pods there");
    Api::<ConfigMap>::namespaced(op.clone(), "x")
        .create(&PostParams::default(), &cm("made", &[]))
        .await
        .expect("and creating config maps");
    let s = status(
        Api::<Pod>::namespaced(op.clone(), "default")
            .list(&ListParams::default())
            .await,
    );
    assert_eq!(s.code, 403, "but not in another namespace");
    let s = status(
        Api::<Namespace>::all(op.clone())
            .create(
                &PostParams::default(),
                &from(json!({"metadata": {"name": "nope"}})),
            )
            .await,
    );
    assert_eq!(
        s.message,
        "namespaces is forbidden: User \"system:serviceaccount:default:op\" cannot create resource \"namespaces\" in API group \"\" at the cluster scope"
    );

    // A ClusterRoleBinding grants everywhere.
    let crb: ClusterRoleBinding = from(json!({
        "metadata": {"name": "op-view"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "view"},
        "subjects": [{"kind": "ServiceAccount", "name": "op", "namespace": "default"}],
    }));
    Api::<ClusterRoleBinding>::all(admin.clone())
        .create(&PostParams::default(), &crb)
        .await
        .unwrap();
    Api::<Pod>::all(op)
        .list(&ListParams::default())
        .await
        .expect("view everywhere");
    cluster.shutdown().await;
}

#[tokio::test]
async fn requests_without_a_valid_token_are_anonymous_or_unauthorized() {
    let (cluster, admin) = start_with(config(None)).await;
    Api::<Pod>::all(admin)
        .list(&ListParams::default())
        .await
        .expect("the kubeconfig's admin may do anything");
    let anonymous =
        kube::Client::try_from(kube::Config::new(cluster.url().parse().unwrap())).unwrap();
    let s = status(
        Api::<Pod>::all(anonymous.clone())
            .list(&ListParams::default())
            .await,
    );
    assert!(
        s.message
            .contains("User \"system:anonymous\" cannot list resource \"pods\""),
        "{}",
        s.message
    );
    anonymous
        .apiserver_version()
        .await
        .expect("/version is public");
    let mut bad = kube::Config::new(cluster.url().parse().unwrap());
    bad.headers.push((
        http::header::AUTHORIZATION,
        http::HeaderValue::from_static("Bearer not-a-token"),
    ));
    let bad = kube::Client::try_from(bad).unwrap();
    let s = status(Api::<Pod>::all(bad).list(&ListParams::default()).await);
    assert_eq!((s.code, s.reason.as_str()), (401, "Unauthorized"));
    cluster.shutdown().await;
}

#[tokio::test]
async fn access_reviews_answer_from_the_same_evaluator() {
    let (cluster, admin) = start_with(config(None)).await;
    namespace(&admin, "x").await;
    service_account(&admin, "x", "op").await;
    bind_in(&admin, "x", "view", "x", "op").await;
    let op = cluster.client_as_service_account("x", "op").unwrap();
    let can = |verb: &str| {
        from::<SelfSubjectAccessReview>(json!({"spec": {"resourceAttributes": {
            "namespace": "x", "verb": verb, "resource": "pods",
        }}}))
    };
    let ssar = Api::<SelfSubjectAccessReview>::all(op);
    let list = ssar
        .create(&PostParams::default(), &can("list"))
        .await
        .unwrap();
    assert!(list.status.expect("status").allowed);
    let delete = ssar
        .create(&PostParams::default(), &can("delete"))
        .await
        .unwrap();
    assert!(!delete.status.expect("status").allowed);
    let sar: SubjectAccessReview = from(json!({"spec": {
        "user": "system:serviceaccount:x:op",
        "groups": ["system:serviceaccounts", "system:authenticated"],
        "resourceAttributes": {"namespace": "x", "verb": "watch", "resource": "pods"},
    }}));
    let answer = Api::<SubjectAccessReview>::all(admin)
        .create(&PostParams::default(), &sar)
        .await
        .unwrap();
    let status = answer.status.expect("status");
    assert!(status.allowed);
    assert!(
        status
            .reason
            .unwrap_or_default()
            .contains("RoleBinding \"op-view\"")
    );
    cluster.shutdown().await;
}

#[tokio::test]
async fn groups_bound_to_a_role_grant_it_to_their_users() {
    let (cluster, admin) = start_with(config(None)).await;
    let crb: ClusterRoleBinding = from(json!({
        "metadata": {"name": "devs-view"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "view"},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": "devs"}],
    }));
    Api::<ClusterRoleBinding>::all(admin)
        .create(&PostParams::default(), &crb)
        .await
        .unwrap();
    let alice = cluster.client_as_user("alice", &["devs"]).unwrap();
    Api::<Pod>::all(alice)
        .list(&ListParams::default())
        .await
        .expect("devs view");
    let bob = cluster.client_as_user("bob", &[]).unwrap();
    assert_eq!(
        status(Api::<Pod>::all(bob).list(&ListParams::default()).await).code,
        403
    );
    cluster.shutdown().await;
}

#[tokio::test]
async fn the_audit_log_lists_every_call_with_its_user_and_code() {
    let path = std::env::temp_dir().join(format!("devcluster-audit-{}.jsonl", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let (cluster, admin) = start_with(config(Some(path.clone()))).await;
    service_account(&admin, "default", "op").await;
    let op = cluster.client_as_service_account("default", "op").unwrap();
    let _ = Api::<ConfigMap>::namespaced(op, "default")
        .get("kube-root-ca.crt")
        .await;
    cluster.shutdown().await;
    let lines: Vec<Value> = std::fs::read_to_string(&path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let _ = std::fs::remove_file(&path);
    let denied = lines
        .iter()
        .find(|l| l["user"] == "system:serviceaccount:default:op")
        .expect("the service account's call is logged");
    assert_eq!(denied["verb"], "get");
    assert_eq!(denied["resource"], "configmaps");
    assert_eq!(denied["namespace"], "default");
    assert_eq!(denied["name"], "kube-root-ca.crt");
    assert_eq!(denied["code"], 403);
    assert!(
        lines
            .iter()
            .any(|l| l["user"] == "kubernetes-admin" && l["verb"] == "create" && l["code"] == 201)
    );
}

#[tokio::test]
async fn simulated_workloads_run_under_authorization() {
    let (cluster, admin) = start_with(devcluster::Config {
        authz: true,
        ..devcluster::Config::with_workloads(Duration::from_millis(20))
    })
    .await;
    let deployments: Api<k8s_openapi::api::apps::v1::Deployment> =
        Api::namespaced(admin.clone(), "default");
    deployments
        .create(&PostParams::default(), &deployment("web"))
        .await
        .unwrap();
    assert!(
        wait_for(10, || async {
            deployments
                .get("web")
                .await
                .ok()
                .and_then(|d| d.status)
                .and_then(|s| s.ready_replicas)
                == Some(2)
        })
        .await
    );
    cluster.shutdown().await;
}
