//! The PreviewEnvironment controller end to end: the operator's controllers as `run` starts
//! them (the MarketplaceService controller runs the copies) against an in-process devcluster
//! with simulated workloads, on a clock that runs `SPEED` times faster than real time, so a
//! TTL of hours passes in seconds. Assertions are on the resulting objects, status and
//! Events; every wait is bounded. Then property tests of the namespace name, and the
//! acceptance check's path through a real kubectl.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use k8s_openapi::api::core::v1::{LimitRange, Namespace, ResourceQuota};
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::api::networking::v1::{Ingress, NetworkPolicy};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::core::{ApiResource, DynamicObject};
use kube::{Api, Client};
use marketplace_crds::v1alpha1::{
    CacheTier, MarketplaceService, PreviewEnvironment, PreviewPhase, namespace_name,
};
use marketplace_operator::controllers::preview_environment::FINALIZER;
use proptest::prelude::*;
use proptest::test_runner::TestRunner;
use serde_json::{Value, json};

/// Simulated seconds per real second: an hour of TTL takes 3 s.
const SPEED: f64 = 1200.0;
/// The longest any single convergence may take, in real time.
const WAIT: Duration = Duration::from_secs(30);
/// Where the services to copy live.
const SOURCE: &str = "marketplace";
const AWKWARD_BRANCH: &str = "feature/Checkout_Redesign--Über-Long-Name-That-Keeps-Going-And-Going-Well-Past-Sixty-Three-Characters";

/// A devcluster with the operator's controllers (as `run` starts them) and the source
/// namespace.
async fn setup() -> (Cluster, Operator) {
    let c = start(SPEED, None).await;
    let operator = Operator::start(&c, Arc::new(Readings::default()));
    create_namespace(&c.client, SOURCE).await;
    (c, operator)
}

async fn create_namespace(client: &Client, name: &str) {
    let ns: Namespace =
        serde_json::from_value(json!({"metadata": {"name": name}})).expect("a namespace");
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &ns)
        .await
        .expect("the namespace is created");
}

async fn source_service(client: &Client, name: &str, spec: Value) {
    let mut m = service(name, spec);
    m.metadata.namespace = Some(SOURCE.to_owned());
    Api::<MarketplaceService>::namespaced(client.clone(), SOURCE)
        .create(&PostParams::default(), &m)
        .await
        .expect("the source service is created");
}

fn penvs(client: &Client) -> Api<PreviewEnvironment> {
    Api::all(client.clone())
}

fn preview(name: &str, spec: Value) -> PreviewEnvironment {
    serde_json::from_value(json!({
        "apiVersion": "marketplace.dev/v1alpha1",
        "kind": "PreviewEnvironment",
        "metadata": {"name": name},
        "spec": spec,
    }))
    .expect("the fixture is a PreviewEnvironment")
}

async fn create_preview(client: &Client, name: &str, spec: Value) -> PreviewEnvironment {
    penvs(client)
        .create(&PostParams::default(), &preview(name, spec))
        .await
        .expect("the API server accepts the PreviewEnvironment")
}

fn penv_conditions(p: &PreviewEnvironment) -> String {
    p.status
        .iter()
        .flat_map(|s| &s.conditions)
        .map(|c| format!("{}={} ({}: {})", c.type_, c.status, c.reason, c.message))
        .collect::<Vec<_>>()
        .join("; ")
}

fn condition_of<'a>(
    p: &'a PreviewEnvironment,
    type_: &str,
) -> Option<&'a k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition> {
    p.status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
}

/// Waits until the environment's current generation is in `phase`, and returns it.
async fn phase(client: &Client, name: &str, phase: PreviewPhase) -> PreviewEnvironment {
    eventually(
        &format!("PreviewEnvironment {name} to be {phase:?}"),
        WAIT,
        || async {
            let p = penvs(client).get(name).await.map_err(text)?;
            let s = p.status.clone().unwrap_or_default();
            if s.phase == Some(phase) && s.observed_generation == p.metadata.generation {
                Ok(p)
            } else {
                Err(format!(
                    "phase {:?}, generation {:?} observed {:?}: {}",
                    s.phase,
                    p.metadata.generation,
                    s.observed_generation,
                    penv_conditions(&p)
                ))
            }
        },
    )
    .await
}

async fn namespace_exists(client: &Client, name: &str) -> bool {
    matches!(
        Api::<Namespace>::all(client.clone()).get_opt(name).await,
        Ok(Some(_))
    )
}

async fn namespace_gone(client: &Client, name: &str) {
    eventually(&format!("namespace {name} to be gone"), WAIT, || async {
        match Api::<Namespace>::all(client.clone()).get_opt(name).await {
            Ok(None) => Ok(()),
            Ok(Some(ns)) => Err(format!("still there: {:?}", ns.status)),
            Err(e) => Err(text(e)),
        }
    })
    .await;
}

async fn gone(client: &Client, name: &str) {
    eventually(
        &format!("PreviewEnvironment {name} to be gone"),
        WAIT,
        || async {
            match penvs(client).get_opt(name).await {
                Ok(None) => Ok(()),
                Ok(Some(p)) => Err(format!(
                    "still there, finalizers {:?}: {}",
                    p.metadata.finalizers,
                    penv_conditions(&p)
                )),
                Err(e) => Err(text(e)),
            }
        },
    )
    .await;
}

/// The Events about the environment `name` (cluster-scoped: they live in `default`).
async fn penv_events(client: &Client, name: &str) -> Vec<Event> {
    Api::<Event>::namespaced(client.clone(), "default")
        .list(&ListParams::default())
        .await
        .expect("the Events list")
        .items
        .into_iter()
        .filter(|e| {
            e.regarding.as_ref().is_some_and(|r| {
                r.kind.as_deref() == Some("PreviewEnvironment") && r.name.as_deref() == Some(name)
            })
        })
        .collect()
}

fn names<T: kube::Resource>(objects: &[T]) -> Vec<String> {
    let mut names: Vec<String> = objects
        .iter()
        .filter_map(|o| o.meta().name.clone())
        .collect();
    names.sort();
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_environment_gets_its_namespace_quota_limits_policies_copies_ingresses_and_cache() {
    let (c, _operator) = setup().await;
    source_service(
        &c.client,
        "orders",
        json!({"domain": "orders", "image": "registry.example/orders:1.4", "port": 9000,
            "resources": {"requests": {"cpu": "250m", "memory": "256Mi"}},
            "cache": {"name": "shared", "keyPrefix": "orders:"},
            "scaling": {"minReplicas": 3, "maxReplicas": 20,
                "metrics": [{"type": "RequestsPerSecond", "target": 50.0}]}}),
    )
    .await;
    source_service(
        &c.client,
        "users",
        json!({"domain": "users", "image": "registry.example:5000/users:2.0", "replicas": 4}),
    )
    .await;
    source_service(
        &c.client,
        "payments",
        json!({"domain": "payments", "image": "registry.example/payments:1.0"}),
    )
    .await;
    let created = create_preview(
        &c.client,
        "pr-4711",
        json!({"branch": AWKWARD_BRANCH, "sourceNamespace": SOURCE, "ttl": "72h",
            "services": [{"name": "orders"}, {"name": "users", "image": "example.org/users:pr-4711"}],
            "quota": {"cpu": "2", "memory": "2Gi", "pods": 10}}),
    )
    .await;
    let p = eventually("the environment to be provisioned", WAIT, || async {
        let p = penvs(&c.client).get("pr-4711").await.map_err(text)?;
        match condition_of(&p, "Provisioned") {
            Some(cond) if cond.status == "True" => Ok(p),
            _ => Err(penv_conditions(&p)),
        }
    })
    .await;
    let status = p.status.clone().unwrap_or_default();
    let ns = status.namespace.clone().expect("status.namespace");
    assert_eq!(ns, namespace_name(AWKWARD_BRANCH));
    assert!(
        ns.len() <= 63 && ns.starts_with("preview-feature-checkout-redesign-ber-long"),
        "{ns}"
    );
    let created_at = created
        .metadata
        .creation_timestamp
        .expect("a creation time")
        .0
        .as_second();
    let expires = status.expires_at.clone().expect("expiresAt").0.as_second();
    assert_eq!(expires - created_at, 72 * 3600);

    // The namespace: labelled, annotated with the full branch, owned.
    let namespace = Api::<Namespace>::all(c.client.clone())
        .get(&ns)
        .await
        .expect("the namespace exists");
    let annotations = namespace.metadata.annotations.clone().unwrap_or_default();
    assert_eq!(
        annotations
            .get("marketplace.dev/branch")
            .map(String::as_str),
        Some(AWKWARD_BRANCH)
    );
    let labels = namespace.metadata.labels.clone().unwrap_or_default();
    let branch_label = labels
        .get("marketplace.dev/branch")
        .expect("a branch label");
    assert!(ns.ends_with(branch_label.as_str()));
    assert_eq!(
        namespace
            .metadata
            .owner_references
            .as_ref()
            .map(|o| o[0].uid.clone()),
        created.metadata.uid
    );

    // Quota and limits.
    let quota = Api::<ResourceQuota>::namespaced(c.client.clone(), &ns)
        .get("preview-quota")
        .await
        .expect("the quota");
    let hard = quota.spec.and_then(|s| s.hard).unwrap_or_default();
    assert_eq!(hard.get("requests.cpu"), Some(&Quantity("2".into())));
    assert_eq!(hard.get("requests.memory"), Some(&Quantity("2Gi".into())));
    assert_eq!(hard.get("pods"), Some(&Quantity("10".into())));
    let limits = Api::<LimitRange>::namespaced(c.client.clone(), &ns)
        .get("preview-limits")
        .await
        .expect("the limit range");
    let item = &limits.spec.expect("a spec").limits[0];
    assert!(
        item.default_request
            .as_ref()
            .is_some_and(|d| d.contains_key("cpu"))
    );

    // Isolation: ingress from the namespace and the ingress controller, egress to it and DNS.
    let policies = Api::<NetworkPolicy>::namespaced(c.client.clone(), &ns)
        .list(&ListParams::default())
        .await
        .expect("the policies")
        .items;
    assert_eq!(names(&policies), ["preview-egress", "preview-ingress"]);
    let json = serde_json::to_value(&policies).expect("serializes");
    let ingress = json
        .as_array()
        .and_then(|a| {
            a.iter()
                .find(|p| p["metadata"]["name"] == "preview-ingress")
        })
        .expect("the ingress policy");
    assert_eq!(
        ingress["spec"]["ingress"][0]["from"][1]["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"],
        "ingress-nginx"
    );

    // Copies: branch tag or override, one replica, no autoscaling, the preview's cache.
    let copies = Api::<MarketplaceService>::namespaced(c.client.clone(), &ns)
        .list(&ListParams::default())
        .await
        .expect("the copies")
        .items;
    assert_eq!(names(&copies), ["orders", "users"]);
    let by_name: HashMap<String, &MarketplaceService> = copies
        .iter()
        .map(|m| (m.metadata.name.clone().unwrap_or_default(), m))
        .collect();
    let orders = &by_name["orders"].spec;
    let tag = marketplace_crds::v1alpha1::branch_slug(AWKWARD_BRANCH);
    assert_eq!(orders.image, format!("registry.example/orders:{tag}"));
    assert_eq!(orders.replicas, Some(1));
    assert!(orders.scaling.is_none());
    let cache = orders.cache.as_ref().expect("orders keeps a cache");
    assert_eq!(cache.name, "preview-cache");
    assert_eq!(cache.key_prefix.as_deref(), Some("orders:"));
    let users = &by_name["users"].spec;
    assert_eq!(users.image, "example.org/users:pr-4711");
    assert_eq!(users.replicas, Some(1));
    assert!(users.cache.is_none());

    // Its own cache tier.
    let tiers = Api::<DynamicObject>::namespaced_with(
        c.client.clone(),
        &ns,
        &ApiResource::erase::<CacheTier>(&()),
    )
    .list(&ListParams::default())
    .await
    .expect("the cache tiers")
    .items;
    assert_eq!(tiers.len(), 1);
    assert_eq!(tiers[0].data["spec"]["maxMemory"], "64mb");

    // An Ingress per service, and the URLs in status.
    let ingresses = Api::<Ingress>::namespaced(c.client.clone(), &ns)
        .list(&ListParams::default())
        .await
        .expect("the ingresses")
        .items;
    assert_eq!(names(&ingresses), ["orders", "users"]);
    let urls: BTreeMap<String, Option<String>> = status
        .services
        .iter()
        .map(|s| (s.name.clone(), s.url.clone()))
        .collect();
    assert_eq!(
        urls.get("orders").cloned().flatten(),
        Some(format!(
            "http://orders.{}.preview.marketplace.dev",
            branch_label
        ))
    );
    let events = penv_events(&c.client, "pr-4711").await;
    assert!(
        events
            .iter()
            .any(|e| e.reason.as_deref() == Some("Provisioned")),
        "{events:?}"
    );

    // The services run: the environment turns Ready.
    let ready = phase(&c.client, "pr-4711", PreviewPhase::Ready).await;
    assert!(
        ready
            .status
            .unwrap_or_default()
            .services
            .iter()
            .all(|s| s.ready)
    );

    // Settled, it writes nothing: re-applying unchanged children must not wake it again.
    let versions = || async {
        let penv = penvs(&c.client)
            .get("pr-4711")
            .await
            .expect("the environment");
        let quota = Api::<ResourceQuota>::namespaced(c.client.clone(), &ns)
            .get("preview-quota")
            .await
            .expect("the quota");
        (
            penv.metadata.resource_version,
            quota.metadata.resource_version,
        )
    };
    let before = versions().await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        versions().await,
        before,
        "a settled environment keeps writing"
    );

    // A service dropped from the spec goes; Open drops the policies.
    penvs(&c.client)
        .patch(
            "pr-4711",
            &PatchParams::default(),
            &Patch::Merge(
                json!({"spec": {"services": [{"name": "orders"}], "networkIsolation": "Open"}}),
            ),
        )
        .await
        .expect("the patch is accepted");
    eventually("users and the policies to go", WAIT, || async {
        let copies = Api::<MarketplaceService>::namespaced(c.client.clone(), &ns)
            .list(&ListParams::default())
            .await
            .map_err(text)?
            .items;
        let policies = Api::<NetworkPolicy>::namespaced(c.client.clone(), &ns)
            .list(&ListParams::default())
            .await
            .map_err(text)?
            .items;
        if names(&copies) == ["orders"] && policies.is_empty() {
            Ok(())
        } else {
            Err(format!("{:?}, {:?}", names(&copies), names(&policies)))
        }
    })
    .await;

    // Deletion: the namespace and everything in it go, then the object.
    penvs(&c.client)
        .delete("pr-4711", &DeleteParams::default())
        .await
        .expect("the delete is accepted");
    gone(&c.client, "pr-4711").await;
    namespace_gone(&c.client, &ns).await;
    let left = Api::<ResourceQuota>::all(c.client.clone())
        .list(&ListParams::default().fields(&format!("metadata.namespace={ns}")))
        .await
        .expect("the quotas")
        .items;
    assert!(left.is_empty(), "{left:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_its_ttl_an_environment_expires_and_a_longer_ttl_brings_it_back() {
    let (c, _operator) = setup().await;
    source_service(
        &c.client,
        "inventory",
        json!({"domain": "inventory", "image": "registry.example/inventory:3.1"}),
    )
    .await;
    let created = create_preview(
        &c.client,
        "pr-1",
        json!({"branch": "fix/stock", "sourceNamespace": SOURCE, "ttl": "2h", "isolatedCache": false}),
    )
    .await;
    let created_at = created
        .metadata
        .creation_timestamp
        .expect("a creation time")
        .0
        .as_second();
    let ready = phase(&c.client, "pr-1", PreviewPhase::Ready).await;
    let ns = ready
        .status
        .clone()
        .and_then(|s| s.namespace)
        .expect("a namespace");
    let services = ready.status.clone().unwrap_or_default().services;
    assert_eq!(services.len(), 1);
    assert_eq!(services[0].image, "registry.example/inventory:fix-stock");

    // Extending the TTL moves the expiry.
    penvs(&c.client)
        .patch(
            "pr-1",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"ttl": "3h"}})),
        )
        .await
        .expect("the patch is accepted");
    let extended = eventually("expiresAt to move", WAIT, || async {
        let p = penvs(&c.client).get("pr-1").await.map_err(text)?;
        let at = p
            .status
            .as_ref()
            .and_then(|s| s.expires_at.clone())
            .map(|t| t.0.as_second());
        if at == Some(created_at + 3 * 3600) {
            Ok(p)
        } else {
            Err(format!("expiresAt {at:?}"))
        }
    })
    .await;
    assert_ne!(
        extended.status.and_then(|s| s.phase),
        Some(PreviewPhase::Expired)
    );

    // Three simulated hours are 9 real seconds: the environment expires, its namespace goes,
    // the object stays.
    let expired = phase(&c.client, "pr-1", PreviewPhase::Expired).await;
    assert!(
        c.clock.now() >= (created_at + 3 * 3600) as f64,
        "expired early"
    );
    let cond = condition_of(&expired, "Expired").expect("an Expired condition");
    assert_eq!(
        (cond.status.as_str(), cond.reason.as_str()),
        ("True", "TtlElapsed")
    );
    assert_eq!(expired.status.clone().and_then(|s| s.namespace), None);
    namespace_gone(&c.client, &ns).await;
    let events = penv_events(&c.client, "pr-1").await;
    assert!(
        events
            .iter()
            .any(|e| e.reason.as_deref() == Some("TtlElapsed")),
        "{events:?}"
    );

    // A TTL past now provisions it again.
    penvs(&c.client)
        .patch(
            "pr-1",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"ttl": "30d"}})),
        )
        .await
        .expect("the patch is accepted");
    phase(&c.client, "pr-1", PreviewPhase::Ready).await;
    assert!(namespace_exists(&c.client, &ns).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deletion_removes_the_namespace_even_when_the_source_namespace_has_gone() {
    let (c, operator) = setup().await;
    source_service(
        &c.client,
        "orders",
        json!({"domain": "orders", "image": "registry.example/orders:1.0"}),
    )
    .await;
    create_preview(
        &c.client,
        "pr-9",
        json!({"branch": "feature/x", "sourceNamespace": SOURCE}),
    )
    .await;
    let p = eventually("the environment to be provisioned", WAIT, || async {
        let p = penvs(&c.client).get("pr-9").await.map_err(text)?;
        match condition_of(&p, "Provisioned") {
            Some(cond) if cond.status == "True" => Ok(p),
            _ => Err(penv_conditions(&p)),
        }
    })
    .await;
    assert!(
        p.metadata
            .finalizers
            .iter()
            .flatten()
            .any(|f| f == FINALIZER)
    );
    let ns = namespace_name("feature/x");
    assert!(namespace_exists(&c.client, &ns).await);

    // With the controller down, the source namespace goes and the environment is deleted:
    // the finalizer holds it until the controller is back.
    operator.kill();
    Api::<Namespace>::all(c.client.clone())
        .delete(SOURCE, &DeleteParams::default())
        .await
        .expect("the source namespace is deleted");
    namespace_gone(&c.client, SOURCE).await;
    penvs(&c.client)
        .delete("pr-9", &DeleteParams::default())
        .await
        .expect("the delete is accepted");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let held = penvs(&c.client)
        .get("pr-9")
        .await
        .expect("held by the finalizer");
    assert!(held.metadata.deletion_timestamp.is_some());
    assert!(namespace_exists(&c.client, &ns).await);

    let operator = Operator::start(&c, Arc::new(Readings::default()));
    gone(&c.client, "pr-9").await;
    namespace_gone(&c.client, &ns).await;
    operator.shutdown().await;
}

/// Waits until the environment has Failed for `reason`, and returns the condition's message.
async fn failed_for(client: &Client, name: &str, reason: &str) -> String {
    let p = phase(client, name, PreviewPhase::Failed).await;
    let cond = condition_of(&p, "Provisioned").expect("a Provisioned condition");
    assert_eq!(cond.status, "False");
    assert_eq!(cond.reason, reason, "{}", penv_conditions(&p));
    let ready = condition_of(&p, "Ready").expect("a Ready condition");
    assert_eq!(
        (ready.status.as_str(), ready.reason.as_str()),
        ("False", reason)
    );
    assert_eq!(p.status.as_ref().and_then(|s| s.namespace.clone()), None);
    let events = eventually("the Warning Event", WAIT, || async {
        let events = penv_events(client, name).await;
        if events
            .iter()
            .any(|e| e.type_.as_deref() == Some("Warning") && e.reason.as_deref() == Some(reason))
        {
            Ok(events)
        } else {
            Err(format!("{events:?}"))
        }
    })
    .await;
    assert!(!events.is_empty());
    cond.message.clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_a_condition_and_an_event_and_leaves_no_namespace() {
    let (c, _operator) = setup().await;
    source_service(
        &c.client,
        "orders",
        json!({"domain": "orders", "image": "registry.example/orders:1.0",
            "resources": {"requests": {"cpu": "1500m", "memory": "1Gi"}}}),
    )
    .await;

    create_preview(
        &c.client,
        "no-source",
        json!({"branch": "a", "sourceNamespace": "nowhere"}),
    )
    .await;
    let message = failed_for(&c.client, "no-source", "SourceNamespaceMissing").await;
    assert!(message.contains("nowhere"), "{message}");
    assert!(!namespace_exists(&c.client, &namespace_name("a")).await);

    create_preview(
        &c.client,
        "no-service",
        json!({"branch": "b", "sourceNamespace": SOURCE, "services": [{"name": "orders"}, {"name": "ghost"}]}),
    )
    .await;
    let message = failed_for(&c.client, "no-service", "SourceServiceMissing").await;
    assert!(
        message.contains("ghost") && !message.contains("orders"),
        "{message}"
    );
    assert!(!namespace_exists(&c.client, &namespace_name("b")).await);

    create_preview(
        &c.client,
        "small-quota",
        json!({"branch": "c", "sourceNamespace": SOURCE, "quota": {"cpu": "1"}}),
    )
    .await;
    let message = failed_for(&c.client, "small-quota", "QuotaTooSmall").await;
    assert!(
        message.contains("spec.quota.cpu allows 1, but the services request 1550m"),
        "{message}"
    );
    assert!(!namespace_exists(&c.client, &namespace_name("c")).await);

    // A branch of only unsafe characters is a valid Git branch: its namespace is named by the
    // hash alone, but its image tag must be given.
    create_preview(
        &c.client,
        "unsafe-branch",
        json!({"branch": "___", "sourceNamespace": SOURCE}),
    )
    .await;
    let message = failed_for(&c.client, "unsafe-branch", "NoImageTag").await;
    assert!(message.contains("spec.imageTag"), "{message}");
    penvs(&c.client)
        .patch(
            "unsafe-branch",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"imageTag": "pr-12"}})),
        )
        .await
        .expect("the patch is accepted");
    let p = eventually("the hash-named environment", WAIT, || async {
        let p = penvs(&c.client).get("unsafe-branch").await.map_err(text)?;
        match condition_of(&p, "Provisioned") {
            Some(cond) if cond.status == "True" => Ok(p),
            _ => Err(penv_conditions(&p)),
        }
    })
    .await;
    let ns = p.status.and_then(|s| s.namespace).expect("a namespace");
    assert_eq!(
        ns,
        format!("preview-{}", marketplace_crds::v1alpha1::branch_hash("___"))
    );

    // What the schema refuses never reaches the controller.
    let refused = penvs(&c.client)
        .create(
            &PostParams::default(),
            &preview("bad-branch", json!({"branch": "a..b"})),
        )
        .await
        .expect_err("a..b is no Git branch");
    assert!(text(refused).contains("Git branch name"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failure_after_provisioning_removes_the_half_built_namespace() {
    let (c, _operator) = setup().await;
    // A source image so long that the branch tag pushes the copy's past the API's 512
    // characters: the API server rejects the copy after the namespace and its first
    // children were made.
    let long = format!("registry.example/{}:1", "a".repeat(480));
    source_service(
        &c.client,
        "orders",
        json!({"domain": "orders", "image": long}),
    )
    .await;
    create_preview(
        &c.client,
        "rejected",
        json!({"branch": "feature/y", "sourceNamespace": SOURCE, "imageTag": "t".repeat(100)}),
    )
    .await;
    let message = failed_for(&c.client, "rejected", "ApplyRejected").await;
    assert!(message.contains("MarketplaceService orders"), "{message}");
    namespace_gone(&c.client, &namespace_name("feature/y")).await;

    // A provisioned environment whose quota shrinks below its services goes too.
    source_service(
        &c.client,
        "users",
        json!({"domain": "users", "image": "registry.example/users:1",
            "resources": {"requests": {"memory": "1Gi"}}}),
    )
    .await;
    create_preview(
        &c.client,
        "shrunk",
        json!({"branch": "feature/z", "sourceNamespace": SOURCE, "services": [{"name": "users"}]}),
    )
    .await;
    let p = eventually("the environment to be provisioned", WAIT, || async {
        let p = penvs(&c.client).get("shrunk").await.map_err(text)?;
        match condition_of(&p, "Provisioned") {
            Some(cond) if cond.status == "True" => Ok(p),
            _ => Err(penv_conditions(&p)),
        }
    })
    .await;
    let ns = p.status.and_then(|s| s.namespace).expect("a namespace");
    penvs(&c.client)
        .patch(
            "shrunk",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"quota": {"memory": "512Mi"}}})),
        )
        .await
        .expect("the patch is accepted");
    failed_for(&c.client, "shrunk", "QuotaTooSmall").await;
    namespace_gone(&c.client, &ns).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_environment_for_the_same_branch_does_not_take_the_first_ones_namespace() {
    let (c, _operator) = setup().await;
    source_service(
        &c.client,
        "orders",
        json!({"domain": "orders", "image": "registry.example/orders:1.0"}),
    )
    .await;
    create_preview(
        &c.client,
        "first",
        json!({"branch": "main", "sourceNamespace": SOURCE, "isolatedCache": false}),
    )
    .await;
    phase(&c.client, "first", PreviewPhase::Ready).await;
    create_preview(
        &c.client,
        "second",
        json!({"branch": "main", "sourceNamespace": SOURCE}),
    )
    .await;
    let message = failed_for(&c.client, "second", "NamespaceTaken").await;
    assert!(message.contains(&namespace_name("main")), "{message}");
    // The first is untouched.
    assert!(namespace_exists(&c.client, &namespace_name("main")).await);
    phase(&c.client, "first", PreviewPhase::Ready).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sample_environment_provisions_from_the_sample_marketplace() {
    let c = start(SPEED, None).await;
    let _operator = Operator::start(&c, Arc::new(Readings::default()));
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    for file in [
        "manifests/samples/marketplace.yaml",
        "manifests/samples/preview.yaml",
    ] {
        let yaml = std::fs::read_to_string(repo.join(file)).expect("the sample is readable");
        c.cluster
            .apply_manifests(&yaml)
            .unwrap_or_else(|e| panic!("{file} applies: {e}"));
    }
    let p = eventually("the sample environment to be provisioned", WAIT, || async {
        let p = penvs(&c.client).get("pr-1234").await.map_err(text)?;
        match condition_of(&p, "Provisioned") {
            Some(cond) if cond.status == "True" => Ok(p),
            _ => Err(penv_conditions(&p)),
        }
    })
    .await;
    let images: BTreeMap<String, String> = p
        .status
        .unwrap_or_default()
        .services
        .into_iter()
        .map(|s| (s.name, s.image))
        .collect();
    assert_eq!(
        images.get("inventory").map(String::as_str),
        Some("registry.example/marketplace/inventory:pr-1234")
    );
    assert_eq!(
        images.get("orders").map(String::as_str),
        Some("registry.example/marketplace/orders:feature-cart-v2")
    );
    // The GitOps template renders a PreviewEnvironment the API accepts.
    let dir = std::env::temp_dir().join(format!("mkt-preview-gitops-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("a scratch directory");
    let rendered = kubectl(
        &dir,
        &[
            "kustomize",
            &repo
                .join("manifests/gitops/argocd/preview")
                .display()
                .to_string(),
        ],
    )
    .expect("kubectl kustomize renders the template");
    c.cluster
        .apply_manifests(&rendered)
        .expect("the rendered template applies");
    let _ = std::fs::remove_dir_all(&dir);
}

// The namespace name, as properties.

fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// Branches crowded together: few characters, many case and separator variants of one
/// another, so that slugs collide often and only the hash tells them apart.
fn crowded_branch() -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop::sample::select(vec!['a', 'A', 'b', '1', '/', '_', '-', '.', 'Ü', 'ü', '日']),
        1..120,
    )
    .prop_map(|chars| chars.into_iter().collect())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2_000))]

    #[test]
    fn every_branch_names_a_valid_namespace(branch in "\\PC{1,255}") {
        let ns = namespace_name(&branch);
        prop_assert!(is_dns_label(&ns), "{ns:?} from {branch:?}");
        prop_assert!(ns.starts_with("preview-"));
        prop_assert_eq!(&ns, &namespace_name(&branch), "deterministic");
    }

    #[test]
    fn crowded_branches_name_valid_namespaces(branch in crowded_branch()) {
        let ns = namespace_name(&branch);
        prop_assert!(is_dns_label(&ns), "{ns:?} from {branch:?}");
    }
}

#[test]
fn distinct_branches_never_share_a_namespace_in_a_large_sample() {
    // Drawn straight from the seeded generator (proptest's value trees are slow at this
    // size): half crowded branches, half any characters at any length Git allows.
    let mut runner = TestRunner::deterministic();
    let rng = runner.rng();
    const CROWD: [char; 11] = ['a', 'A', 'b', '1', '/', '_', '-', '.', 'Ü', 'ü', '日'];
    let mut seen: HashMap<String, String> = HashMap::new();
    for i in 0..100_000 {
        let len = 1 + (rng.next_u32() % if i % 2 == 0 { 120 } else { 255 }) as usize;
        let branch: String = (0..len)
            .map(|_| {
                let r = rng.next_u32();
                if i % 2 == 0 {
                    CROWD[r as usize % CROWD.len()]
                } else {
                    char::from_u32(r % 0x3000).unwrap_or('x')
                }
            })
            .collect();
        let ns = namespace_name(&branch);
        if let Some(other) = seen.insert(ns.clone(), branch.clone()) {
            assert_eq!(other, branch, "{other:?} and {branch:?} share {ns}");
        }
    }
    assert!(
        seen.len() > 75_000,
        "the sample has too few distinct branches"
    );
    // The cases a slug alone would merge.
    let twins = [
        "feature/ABC_123",
        "feature-abc-123",
        "Feature/abc.123",
        "feature//abc--123",
    ];
    let mut names: Vec<String> = twins.iter().map(|b| namespace_name(b)).collect();
    names.sort();
    names.dedup();
    assert_eq!(names.len(), twins.len(), "{names:?}");
}

// The acceptance check's path, through a real kubectl.

fn kubectl(dir: &Path, args: &[&str]) -> Result<String, String> {
    let mut child = Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(dir.join("kubeconfig"))
        .arg("--cache-dir")
        .arg(dir.join("cache"))
        .args(args)
        .env_remove("KUBECONFIG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("kubectl does not start: {e}"))?;
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        if child.try_wait().map_err(|e| e.to_string())?.is_some() {
            break;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            return Err(format!("kubectl {} overran", args.join(" ")));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().map_err(|e| e.to_string())?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if out.status.success() {
        Ok(stdout)
    } else {
        Err(format!(
            "kubectl {}: {stdout}{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

async fn kubectl_async(dir: &Path, args: &[&str]) -> Result<String, String> {
    let dir = dir.to_path_buf();
    let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        kubectl(&dir, &args)
    })
    .await
    .map_err(|e| e.to_string())?
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_applies_an_awkward_branch_and_its_namespace_goes_with_it() {
    let (c, _operator) = setup().await;
    source_service(
        &c.client,
        "orders",
        json!({"domain": "orders", "image": "registry.example/orders:1.0"}),
    )
    .await;
    let dir = std::env::temp_dir().join(format!("mkt-preview-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("a scratch directory");
    c.cluster
        .write_kubeconfig(dir.join("kubeconfig"))
        .expect("the kubeconfig is written");
    let manifest = format!(
        "apiVersion: marketplace.dev/v1alpha1\nkind: PreviewEnvironment\nmetadata: {{name: pr-4711}}\nspec: {{sourceNamespace: {SOURCE}, branch: \"{AWKWARD_BRANCH}\"}}\n"
    );
    std::fs::write(dir.join("p.yaml"), manifest).expect("the manifest is written");
    let file = dir.join("p.yaml").display().to_string();
    kubectl_async(&dir, &["apply", "-f", &file])
        .await
        .expect("kubectl apply succeeds");
    let ns = eventually("status.namespace", WAIT, || async {
        let out = kubectl_async(
            &dir,
            &[
                "get",
                "penv",
                "pr-4711",
                "-o",
                "jsonpath={.status.namespace}",
            ],
        )
        .await?;
        if out.is_empty() {
            Err("no namespace yet".to_owned())
        } else {
            Ok(out)
        }
    })
    .await;
    assert!(is_dns_label(&ns), "{ns}");
    for kind in ["resourcequota", "limitrange", "networkpolicy"] {
        let out = kubectl_async(&dir, &["get", kind, "-n", &ns, "--no-headers"])
            .await
            .expect("kubectl get succeeds");
        assert!(!out.trim().is_empty(), "no {kind} in {ns}");
    }
    kubectl_async(
        &dir,
        &["delete", "penv", "pr-4711", "--wait", "--timeout=60s"],
    )
    .await
    .expect("kubectl delete succeeds");
    eventually("the namespace to go", WAIT, || async {
        match kubectl_async(&dir, &["get", "namespace", &ns]).await {
            Ok(out) => Err(format!("still there: {out}")),
            Err(_) => Ok(()),
        }
    })
    .await;
    let _ = std::fs::remove_dir_all(&dir);
}
