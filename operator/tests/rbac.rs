//! The operator under its own ServiceAccount and ClusterRole (manifests/base/rbac.yaml) on a
//! devcluster with RBAC on and an audit log: every controller is driven through its paths
//! (children applied and pruned, autoscaling, a cache tier's mode switch and flush, a
//! preview environment provisioned and deleted), and then the audit log must show no call
//! refused, and the ClusterRole must grant nothing the operator never called.

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use common::redis_server::RedisServer;
use common::{Readings, eventually, text};
use devcluster::workloads::WorkloadConfig;
use devcluster::{Config, DevCluster};
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use marketplace_crds::v1alpha1::{CacheTier, MarketplaceService, MetricType, PreviewEnvironment};
use marketplace_operator::cache::Auth;
use marketplace_operator::controllers::cache_tier::CacheSettings;
use marketplace_operator::controllers::marketplace_service::Autoscalers;
use marketplace_operator::controllers::{Clock, Context, Settings, Telemetry, run_all};
use marketplace_operator::scaling::MetricReading;
use serde_json::{Value, json};

const OPERATOR_NS: &str = "marketplace-system";
const OPERATOR_SA: &str = "marketplace-operator";
const SHOP: &str = "shop";
const WAIT: Duration = Duration::from_secs(40);

/// The install's RBAC objects, namespace and ServiceAccount, as `kubectl kustomize` renders
/// the dev overlay; the ClusterRole's rules as (group, resource, verb).
fn rendered_rbac() -> (String, BTreeSet<(String, String, String)>) {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let out = std::process::Command::new("kubectl")
        .args(["kustomize", "manifests/overlays/dev"])
        .current_dir(&repo)
        .output()
        .expect("kubectl runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let docs: Vec<Value> =
        serde_saphyr::from_str_multiple(&String::from_utf8_lossy(&out.stdout)).expect("YAML");
    let wanted = [
        "Namespace",
        "ServiceAccount",
        "ClusterRole",
        "ClusterRoleBinding",
        "Role",
        "RoleBinding",
    ];
    let mut yaml = String::new();
    let mut grants = BTreeSet::new();
    for d in docs
        .iter()
        .filter(|d| wanted.contains(&d["kind"].as_str().unwrap_or("")))
    {
        yaml.push_str("---\n");
        yaml.push_str(&serde_json::to_string(d).expect("json"));
        yaml.push('\n');
        if d["kind"] == "ClusterRole" {
            for rule in d["rules"].as_array().into_iter().flatten() {
                for g in rule["apiGroups"].as_array().into_iter().flatten() {
                    for r in rule["resources"].as_array().into_iter().flatten() {
                        for v in rule["verbs"].as_array().into_iter().flatten() {
                            grants.insert((
                                g.as_str().unwrap_or("").to_owned(),
                                r.as_str().unwrap_or("").to_owned(),
                                v.as_str().unwrap_or("").to_owned(),
                            ));
                        }
                    }
                }
            }
        }
    }
    (yaml, grants)
}

async fn apply(client: &Client, value: Value) {
    let ns = value["metadata"]["namespace"].as_str().map(str::to_owned);
    let name = value["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let kind = value["kind"].as_str().unwrap_or_default().to_owned();
    let pp = PatchParams::apply("rbac-test").force();
    let patch = Patch::Apply(&value);
    let result = match (kind.as_str(), ns) {
        ("MarketplaceService", Some(ns)) => {
            Api::<MarketplaceService>::namespaced(client.clone(), &ns)
                .patch(&name, &pp, &patch)
                .await
                .map(|_| ())
        }
        ("CacheTier", Some(ns)) => Api::<CacheTier>::namespaced(client.clone(), &ns)
            .patch(&name, &pp, &patch)
            .await
            .map(|_| ()),
        ("PreviewEnvironment", None) => Api::<PreviewEnvironment>::all(client.clone())
            .patch(&name, &pp, &patch)
            .await
            .map(|_| ()),
        other => panic!("no apply for {other:?}"),
    };
    result.unwrap_or_else(|e| panic!("apply {kind} {name}: {e}"));
}

fn msvc(name: &str, spec: Value) -> Value {
    json!({"apiVersion": "marketplace.dev/v1alpha1", "kind": "MarketplaceService",
           "metadata": {"name": name, "namespace": SHOP}, "spec": spec})
}

fn tier(spec: Value) -> Value {
    json!({"apiVersion": "marketplace.dev/v1alpha1", "kind": "CacheTier",
           "metadata": {"name": "hot", "namespace": SHOP}, "spec": spec})
}

async fn condition_true<K>(api: &Api<K>, name: &str, type_: &str) -> Result<(), String>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug + serde::Serialize,
{
    let obj =
        serde_json::to_value(api.get(name).await.map_err(text)?).map_err(|e| e.to_string())?;
    let ok = obj["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|c| c["type"] == type_ && c["status"] == "True");
    if ok {
        Ok(())
    } else {
        Err(format!("{name}: {}", obj["status"]["conditions"]))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operator_runs_on_its_cluster_role_and_uses_all_of_it() {
    let dir = std::env::temp_dir().join(format!("mkt-rbac-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("scratch");
    let audit = dir.join("audit.jsonl");
    let speed = 20.0;
    let cluster = DevCluster::start(Config {
        authz: true,
        audit: Some(audit.clone()),
        bookmark_interval: Duration::from_millis(500),
        workloads: Some(WorkloadConfig {
            pod_startup: Duration::from_secs(5),
            speed,
            ..WorkloadConfig::default()
        }),
        ..Config::default()
    })
    .await
    .expect("devcluster starts");
    let crds = marketplace_operator::crd::all_crds_yaml().expect("CRDs");
    cluster.apply_manifests(&crds).expect("the CRDs apply");
    let (rbac, granted) = rendered_rbac();
    cluster
        .apply_manifests(&rbac)
        .expect("the install's RBAC applies");
    let admin = cluster.client().expect("admin client");
    for ns in [SHOP] {
        Api::<Namespace>::all(admin.clone())
            .create(
                &PostParams::default(),
                &serde_json::from_value(json!({"metadata": {"name": ns}})).expect("ns"),
            )
            .await
            .expect("namespace");
    }

    // The controllers, as `run` starts them, with the operator's own credentials.
    let client = cluster
        .client_as_service_account(OPERATOR_NS, OPERATOR_SA)
        .expect("a token for the operator's ServiceAccount");
    let readings = Arc::new(Readings::default());
    let redis = RedisServer::start(None).await;
    let ctx = Arc::new(Context::new(
        client,
        Clock::scaled(common_now(), speed),
        readings.clone(),
        Arc::new(Telemetry::new()),
        Settings {
            min_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(2),
            ..Settings::default()
        },
    ));
    let cache = CacheSettings {
        stats_every: Duration::from_millis(300),
        ..CacheSettings::new(Arc::new(redis.resolver(Auth::None)))
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let controllers = tokio::spawn(run_all(
        ctx,
        Arc::new(Autoscalers::default()),
        cache,
        async move {
            let _ = stopped.await;
        },
    ));

    // MarketplaceServices: a fixed one with a budget that it later drops (PDB delete), an
    // autoscaled one (replica patches, decisions in status), both using the tier.
    let services = Api::<MarketplaceService>::namespaced(admin.clone(), SHOP);
    apply(
        &admin,
        msvc(
            "users",
            json!({"domain": "users", "image": "u:1", "replicas": 3, "cache": {"name": "hot"}}),
        ),
    )
    .await;
    readings.set_in(
        SHOP,
        "orders",
        MetricType::RequestsPerSecond,
        MetricReading::average(30.0, 1),
    );
    apply(&admin, msvc("orders", json!({"domain": "orders", "image": "o:1", "dependsOn": ["users"], "cache": {"name": "hot"},
        "scaling": {"minReplicas": 1, "maxReplicas": 5, "pollIntervalSeconds": 15,
                    "metrics": [{"type": "RequestsPerSecond", "target": 10}]}}))).await;
    // The tier: a mode switch there and back (StatefulSet, read and headless Services
    // created, then deleted), a flush.
    apply(
        &admin,
        tier(json!({"mode": "PrimaryReplica", "replicas": 1})),
    )
    .await;
    let tiers = Api::<CacheTier>::namespaced(admin.clone(), SHOP);
    eventually("the tier Ready", WAIT, || {
        condition_true(&tiers, "hot", "Ready")
    })
    .await;
    apply(
        &admin,
        tier(json!({"mode": "Standalone", "flushes": [{"id": "f1", "prefix": "users:"}]})),
    )
    .await;
    eventually("the flush", WAIT, || async {
        let t = tiers.get("hot").await.map_err(text)?;
        let done = t.status.map(|s| s.completed_flushes.len()).unwrap_or(0);
        if done == 1 {
            Ok(())
        } else {
            Err("no flush yet".to_owned())
        }
    })
    .await;
    eventually("users Ready", WAIT, || {
        condition_true(&services, "users", "Ready")
    })
    .await;
    eventually("orders scaled", WAIT, || async {
        let d = Api::<k8s_openapi::api::apps::v1::Deployment>::namespaced(admin.clone(), SHOP)
            .get("orders")
            .await
            .map_err(text)?;
        if d.spec.replicas == Some(3) {
            Ok(())
        } else {
            Err(format!("{:?}", d.spec.replicas))
        }
    })
    .await;
    apply(
        &admin,
        msvc(
            "users",
            json!({"domain": "users", "image": "u:1", "replicas": 1, "cache": {"name": "hot"}}),
        ),
    )
    .await;

    // A preview of the shop: provisioned, then deleted (namespace and all in it).
    let penvs = Api::<PreviewEnvironment>::all(admin.clone());
    apply(
        &admin,
        json!({"apiVersion": "marketplace.dev/v1alpha1", "kind": "PreviewEnvironment",
        "metadata": {"name": "pr-1"}, "spec": {"branch": "feature/rbac", "sourceNamespace": SHOP}}),
    )
    .await;
    eventually("the preview Ready", WAIT, || {
        condition_true(&penvs, "pr-1", "Ready")
    })
    .await;
    // Pruned: a copy and its Ingress, the cache tier, the network policies.
    apply(
        &admin,
        json!({"apiVersion": "marketplace.dev/v1alpha1", "kind": "PreviewEnvironment",
        "metadata": {"name": "pr-1"}, "spec": {"branch": "feature/rbac", "sourceNamespace": SHOP,
        "services": [{"name": "orders"}], "isolatedCache": false, "networkIsolation": "Open"}}),
    )
    .await;
    eventually("the preview pruned", WAIT, || async {
        let p = penvs.get("pr-1").await.map_err(text)?;
        let ns = p
            .status
            .as_ref()
            .and_then(|s| s.namespace.clone())
            .ok_or("no namespace")?;
        let tiers = Api::<CacheTier>::namespaced(admin.clone(), &ns)
            .list(&Default::default())
            .await
            .map_err(text)?;
        let copies = Api::<MarketplaceService>::namespaced(admin.clone(), &ns)
            .list(&Default::default())
            .await
            .map_err(text)?;
        let provisioned = condition_true(&penvs, "pr-1", "Ready").await;
        if tiers.items.is_empty() && copies.items.len() == 1 && provisioned.is_ok() {
            Ok(())
        } else {
            Err(format!(
                "{} tiers, {} copies, {provisioned:?}",
                tiers.items.len(),
                copies.items.len()
            ))
        }
    })
    .await;
    penvs
        .delete("pr-1", &DeleteParams::default())
        .await
        .expect("delete the preview");
    eventually("the preview gone", WAIT, || async {
        match penvs.get_opt("pr-1").await.map_err(text)? {
            None => Ok(()),
            Some(_) => Err("still there".to_owned()),
        }
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let _ = stop.send(());
    let _ = tokio::time::timeout(Duration::from_secs(10), controllers).await;

    // What the operator did, by the audit log.
    let user = format!("system:serviceaccount:{OPERATOR_NS}:{OPERATOR_SA}");
    let log = std::fs::read_to_string(&audit).expect("the audit log");
    let mut used = BTreeSet::new();
    let mut refused = Vec::new();
    for line in log.lines() {
        let e: Value = serde_json::from_str(line).expect("an audit line is JSON");
        if e["user"] != user.as_str() || e["resource"].is_null() {
            continue;
        }
        let resource = match e["subresource"].as_str() {
            Some(sub) => format!("{}/{sub}", e["resource"].as_str().unwrap_or("")),
            None => e["resource"].as_str().unwrap_or("").to_owned(),
        };
        let call = (
            e["apiGroup"].as_str().unwrap_or("").to_owned(),
            resource,
            e["verb"].as_str().unwrap_or("").to_owned(),
        );
        if e["code"] == 403 {
            refused.push(line.to_owned());
        }
        used.insert(call);
    }
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        refused.is_empty(),
        "the operator was refused:\n{}",
        refused.join("\n")
    );
    // A real API server authorizes an apply that creates its object as `create` as well.
    let applied: Vec<_> = used
        .iter()
        .filter(|(_, _, v)| v == "patch")
        .map(|(g, r, _)| (g.clone(), r.clone(), "create".to_owned()))
        .collect();
    used.extend(applied);
    // The Event recorder patches an Event only when the same one repeats within its series
    // window, which this scenario need not provoke.
    used.insert(("events.k8s.io".into(), "events".into(), "patch".into()));
    // Leases belong to the leader election Role (run.rs), which this test does not start.
    let unused: Vec<_> = granted.difference(&used).collect();
    assert!(
        unused.is_empty(),
        "the ClusterRole grants calls the operator never made: {unused:?}"
    );
}

fn common_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}
