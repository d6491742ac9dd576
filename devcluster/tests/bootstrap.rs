//! A fresh cluster has what a real one has before anyone writes to it: the `kubernetes`
//! Service, the default ClusterRoles, and in every namespace the `default`
//! ServiceAccount and the `kube-root-ca.crt` ConfigMap.

mod common;

use std::process::Command;

use common::*;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Service, ServiceAccount};
use k8s_openapi::api::rbac::v1::ClusterRole;
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use serde_json::json;

#[tokio::test]
async fn the_kubernetes_service_is_there_from_the_start() {
    let (cluster, client) = start().await;
    let svc = Api::<Service>::namespaced(client, "default")
        .get("kubernetes")
        .await
        .expect("kubernetes Service");
    let spec = svc.spec.unwrap();
    assert_eq!(spec.type_.as_deref(), Some("ClusterIP"));
    assert_eq!(spec.cluster_ip.as_deref(), Some("10.96.0.1"));
    let ports = spec.ports.unwrap();
    assert_eq!(ports.len(), 1);
    assert_eq!(ports[0].name.as_deref(), Some("https"));
    assert_eq!(ports[0].port, 443);
    assert_eq!(
        ports[0].target_port,
        Some(k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(6443))
    );
    cluster.shutdown().await;
}

#[tokio::test]
async fn kubectl_gets_the_kubernetes_service() {
    let (cluster, _client) = start().await;
    let dir = std::env::temp_dir().join(format!("devcluster-bootstrap-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let kubeconfig = dir.join("kubeconfig");
    cluster.write_kubeconfig(&kubeconfig).unwrap();
    let mut cmd = Command::new("kubectl");
    cmd.arg("--kubeconfig")
        .arg(&kubeconfig)
        .arg("--cache-dir")
        .arg(dir.join("cache"))
        .args(["get", "svc", "kubernetes", "-n", "default"]);
    let out = tokio::task::spawn_blocking(move || cmd.output().expect("kubectl runs"))
        .await
        .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "kubectl get svc kubernetes failed: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let row = stdout.lines().nth(1).unwrap_or_default();
    assert!(row.starts_with("kubernetes "), "{stdout}");
    assert!(
        row.contains("ClusterIP") && row.contains("10.96.0.1"),
        "{stdout}"
    );
    assert!(row.contains("443/TCP"), "{stdout}");
    cluster.shutdown().await;
}

#[tokio::test]
async fn a_new_namespace_has_its_default_service_account_and_root_ca_at_once() {
    let (cluster, client) = start().await;
    namespace(&client, "fresh").await;
    // Listed right after the create: no controller to wait for.
    let sas = Api::<ServiceAccount>::namespaced(client.clone(), "fresh")
        .list(&ListParams::default())
        .await
        .unwrap();
    let names: Vec<_> = sas
        .items
        .iter()
        .filter_map(|s| s.metadata.name.clone())
        .collect();
    assert_eq!(names, ["default"]);
    let cm = Api::<ConfigMap>::namespaced(client.clone(), "fresh")
        .get("kube-root-ca.crt")
        .await
        .expect("kube-root-ca.crt");
    let ca = cm
        .data
        .unwrap_or_default()
        .remove("ca.crt")
        .unwrap_or_default();
    assert!(ca.starts_with("-----BEGIN CERTIFICATE-----"), "{ca}");
    cluster.shutdown().await;
}

#[tokio::test]
async fn the_seeded_namespaces_have_their_default_service_accounts_too() {
    let (cluster, client) = start().await;
    for ns in ["default", "kube-system", "kube-public", "kube-node-lease"] {
        Api::<ServiceAccount>::namespaced(client.clone(), ns)
            .get("default")
            .await
            .unwrap_or_else(|e| panic!("default ServiceAccount in {ns}: {e}"));
        Api::<ConfigMap>::namespaced(client.clone(), ns)
            .get("kube-root-ca.crt")
            .await
            .unwrap_or_else(|e| panic!("kube-root-ca.crt in {ns}: {e}"));
    }
    cluster.shutdown().await;
}

#[tokio::test]
async fn a_dry_run_namespace_create_seeds_nothing() {
    let (cluster, client) = start().await;
    let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": "ghost"}})).unwrap();
    let pp = PostParams {
        dry_run: true,
        ..Default::default()
    };
    Api::<Namespace>::all(client.clone())
        .create(&pp, &ns)
        .await
        .unwrap();
    let sas = Api::<ServiceAccount>::all(client)
        .list(&ListParams::default().fields("metadata.namespace=ghost"))
        .await
        .unwrap();
    assert!(sas.items.is_empty());
    cluster.shutdown().await;
}

#[tokio::test]
async fn deleting_a_namespace_removes_its_default_service_account() {
    let (cluster, client) = start().await;
    namespace(&client, "brief").await;
    Api::<Namespace>::all(client.clone())
        .delete("brief", &DeleteParams::default())
        .await
        .unwrap();
    let sas = Api::<ServiceAccount>::namespaced(client.clone(), "brief");
    let cms = Api::<ConfigMap>::namespaced(client, "brief");
    assert!(
        wait_for(5, || async {
            sas.get_opt("default").await.unwrap().is_none()
                && cms.get_opt("kube-root-ca.crt").await.unwrap().is_none()
        })
        .await
    );
    cluster.shutdown().await;
}

#[tokio::test]
async fn the_default_cluster_roles_are_there_from_the_start() {
    let (cluster, client) = start().await;
    let roles = Api::<ClusterRole>::all(client);
    let admin = roles.get("cluster-admin").await.expect("cluster-admin");
    let rules = admin.rules.unwrap();
    assert!(rules.iter().any(|r| {
        r.verbs == ["*"]
            && r.resources.as_deref() == Some(&["*".to_string()][..])
            && r.api_groups.as_deref() == Some(&["*".to_string()][..])
    }));
    assert!(
        rules
            .iter()
            .any(|r| r.non_resource_urls.as_deref() == Some(&["*".to_string()][..]))
    );
    let view = roles.get("view").await.expect("view").rules.unwrap();
    assert!(view.iter().all(|r| r.verbs == ["get", "list", "watch"]));
    let edit = roles.get("edit").await.expect("edit").rules.unwrap();
    assert!(edit.iter().any(|r| {
        r.verbs.contains(&"create".to_string())
            && r.resources
                .as_ref()
                .is_some_and(|rs| rs.contains(&"configmaps".to_string()))
    }));
    let admin = roles.get("admin").await.expect("admin").rules.unwrap();
    assert!(admin.iter().any(|r| {
        r.resources
            .as_ref()
            .is_some_and(|rs| rs.contains(&"rolebindings".to_string()))
    }));
    assert!(!edit.iter().any(|r| {
        r.resources
            .as_ref()
            .is_some_and(|rs| rs.contains(&"rolebindings".to_string()))
    }));
    cluster.shutdown().await;
}
