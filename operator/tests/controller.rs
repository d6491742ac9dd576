//! The MarketplaceService controller end to end: the real `marketplace_service::run` against
//! an in-process devcluster with simulated workloads, on a clock that runs `SPEED` times
//! faster than real time (the devcluster's pods start on the same speed), so that simulated
//! minutes take real seconds. Every assertion is on the resulting objects, status and
//! Events; every wait is bounded.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use devcluster::FaultConfig;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::Api;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use marketplace_crds::v1alpha1::{MarketplaceService, MetricType};
use marketplace_operator::metrics::StaticSource;
use marketplace_operator::scaling::MetricReading;
use serde_json::{Value, json};

/// Simulated seconds per real second: the 15 s poll interval takes 0.25 s, the 300 s
/// scale-down window 5 s, a pod's 10 s start-up 0.17 s.
const SPEED: f64 = 60.0;
/// The longest any single convergence may take, in real time.
const WAIT: Duration = Duration::from_secs(20);
/// The same under injected faults, where every failed watch request also pauses all of the
/// controller's triggers (kube-runtime's shared trigger backoff).
const FAULT_WAIT: Duration = Duration::from_secs(25);

fn deployments(c: &Cluster) -> Api<Deployment> {
    Api::namespaced(c.client.clone(), NS)
}

fn names<T: kube::Resource>(objects: &[T]) -> Vec<String> {
    let mut names: Vec<String> = objects
        .iter()
        .filter_map(|o| o.meta().name.clone())
        .collect();
    names.sort();
    names
}

fn owner_uids(meta: &ObjectMeta) -> Vec<String> {
    meta.owner_references
        .iter()
        .flatten()
        .map(|r| r.uid.clone())
        .collect()
}

async fn get_service(c: &Cluster, name: &str) -> Result<MarketplaceService, String> {
    services(&c.client).get(name).await.map_err(text)
}

async fn get_deployment(c: &Cluster, name: &str) -> Result<Deployment, String> {
    deployments(c).get(name).await.map_err(text)
}

/// Waits until the service's status describes its current generation and says it is
/// Ready with `replicas` pods, and returns it.
/// Creates a service of `replicas` fixed replicas (no scaling block) named after its domain,
/// and waits until they are ready.
async fn create_fixed(c: &Cluster, name: &str, replicas: i32) -> MarketplaceService {
    services(&c.client)
        .create(
            &PostParams::default(),
            &service(
                name,
                json!({"domain": name, "image": format!("registry.example/{name}:1.0"), "replicas": replicas}),
            ),
        )
        .await
        .expect("the service is created");
    ready_with(c, name, replicas).await
}

async fn ready_with(c: &Cluster, name: &str, replicas: i32) -> MarketplaceService {
    eventually(
        &format!("{name} to be Ready with {replicas} replicas in a current status"),
        WAIT,
        || async {
            let m = get_service(c, name).await?;
            let s = m.status.clone().unwrap_or_default();
            let current =
                s.observed_generation.is_some() && s.observed_generation == m.metadata.generation;
            if current
                && s.replicas == replicas
                && s.ready_replicas == replicas
                && has_condition(&m, "Ready", "True", Some("ReplicasReady"))
            {
                Ok(m)
            } else {
                Err(format!(
                    "generation {:?}, observed {:?}, replicas {}, ready {}, conditions: {}",
                    m.metadata.generation,
                    s.observed_generation,
                    s.replicas,
                    s.ready_replicas,
                    conditions_text(&m)
                ))
            }
        },
    )
    .await
}

fn expected_labels(name: &str, domain: &str) -> BTreeMap<String, String> {
    [
        ("app.kubernetes.io/name", name),
        ("app.kubernetes.io/instance", name),
        ("app.kubernetes.io/component", "domain-service"),
        ("app.kubernetes.io/part-of", "marketplace"),
        ("app.kubernetes.io/managed-by", "marketplace-operator"),
        ("marketplace.dev/domain", domain),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect()
}

fn selector_labels(name: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("app.kubernetes.io/name".to_owned(), name.to_owned()),
        ("app.kubernetes.io/instance".to_owned(), name.to_owned()),
    ])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_gets_exactly_its_children_and_they_cascade_on_delete() {
    let c = start(SPEED, None).await;
    let _operator = Operator::start(&c, Arc::new(Readings::default()));
    let api = services(&c.client);
    let created = api
        .create(
            &PostParams::default(),
            &service(
                "orders",
                json!({
                    "domain": "orders",
                    "image": "registry.example/orders:1.0",
                    "replicas": 2,
                    "dependsOn": ["inventory"],
                    "disruption": {"minAvailable": 1},
                }),
            ),
        )
        .await
        .expect("the service is created");
    let uid = created
        .metadata
        .uid
        .clone()
        .expect("the API server sets a uid");

    let msvc = ready_with(&c, "orders", 2).await;
    let status = msvc.status.clone().expect("status is written");
    assert_eq!(status.observed_generation, Some(1));
    assert_eq!(
        status.selector.as_deref(),
        Some("app.kubernetes.io/instance=orders,app.kubernetes.io/name=orders")
    );
    assert_eq!(status.desired_replicas, 2);
    let ready = condition(&msvc, "Ready").expect("a Ready condition");
    assert_eq!(ready.message, "2/2 replicas ready");
    assert_eq!(ready.observed_generation, Some(1));
    assert!(
        has_condition(&msvc, "ScalingActive", "False", Some("ScalingDisabled")),
        "{}",
        conditions_text(&msvc)
    );

    let kids = children(&c.client).await.expect("children listed");
    assert_eq!(names(&kids.deployments), ["orders"]);
    assert_eq!(names(&kids.services), ["orders"]);
    assert_eq!(names(&kids.budgets), ["orders"]);
    let owner = vec![OwnerReference {
        api_version: "marketplace.dev/v1alpha1".to_owned(),
        kind: "MarketplaceService".to_owned(),
        name: "orders".to_owned(),
        uid: uid.clone(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }];

    let d = &kids.deployments[0];
    assert_eq!(d.spec.replicas, Some(2));
    assert_eq!(d.metadata.owner_references.as_ref(), Some(&owner));
    assert_eq!(
        d.metadata.labels.as_ref(),
        Some(&expected_labels("orders", "orders"))
    );
    assert_eq!(
        d.spec.selector.match_labels.as_ref(),
        Some(&selector_labels("orders"))
    );
    let template_labels = d
        .spec
        .template
        .metadata
        .as_ref()
        .and_then(|m| m.labels.as_ref());
    assert_eq!(template_labels, Some(&expected_labels("orders", "orders")));
    let pod = d.spec.template.spec.as_ref().expect("a pod spec");
    assert_eq!(pod.containers.len(), 1);
    let container = &pod.containers[0];
    assert_eq!(
        container.image.as_deref(),
        Some("registry.example/orders:1.0")
    );
    let ports: Vec<(Option<&str>, i32)> = container
        .ports
        .iter()
        .flatten()
        .map(|p| (p.name.as_deref(), p.container_port))
        .collect();
    assert_eq!(ports, [(Some("http"), 8080)]);
    let probe_path = |p: Option<&k8s_openapi::api::core::v1::Probe>| {
        p.and_then(|p| p.http_get.as_ref())
            .map(|h| (h.path.clone().unwrap_or_default(), h.port.clone()))
    };
    assert_eq!(
        probe_path(container.readiness_probe.as_ref()),
        Some(("/readyz".to_owned(), IntOrString::String("http".to_owned())))
    );
    assert_eq!(
        probe_path(container.liveness_probe.as_ref()),
        Some((
            "/healthz".to_owned(),
            IntOrString::String("http".to_owned())
        ))
    );
    let env: Vec<(&str, Option<&str>)> = container
        .env
        .iter()
        .flatten()
        .map(|e| (e.name.as_str(), e.value.as_deref()))
        .collect();
    assert_eq!(
        env,
        [
            ("PORT", Some("8080")),
            (
                "INVENTORY_URL",
                Some("http://inventory.default.svc.cluster.local:8080")
            ),
        ]
    );

    let svc = &kids.services[0];
    assert_eq!(svc.metadata.owner_references.as_ref(), Some(&owner));
    let svc_spec = svc.spec.as_ref().expect("a Service spec");
    assert_eq!(svc_spec.selector.as_ref(), Some(&selector_labels("orders")));
    let svc_ports: Vec<(Option<&str>, i32, Option<&IntOrString>)> = svc_spec
        .ports
        .iter()
        .flatten()
        .map(|p| (p.name.as_deref(), p.port, p.target_port.as_ref()))
        .collect();
    assert_eq!(
        svc_ports,
        [(
            Some("http"),
            8080,
            Some(&IntOrString::String("http".to_owned()))
        )]
    );

    let pdb = &kids.budgets[0];
    assert_eq!(pdb.metadata.owner_references.as_ref(), Some(&owner));
    let pdb_spec = pdb.spec.as_ref().expect("a PodDisruptionBudget spec");
    assert_eq!(pdb_spec.min_available, Some(IntOrString::Int(1)));
    assert_eq!(pdb_spec.max_unavailable, None);
    assert_eq!(
        pdb_spec
            .selector
            .as_ref()
            .and_then(|s| s.match_labels.as_ref()),
        Some(&selector_labels("orders"))
    );

    // A new image and more replicas: the one Deployment follows.
    api.patch(
        "orders",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"image": "registry.example/orders:1.1", "replicas": 3}})),
    )
    .await
    .expect("the service is updated");
    eventually(
        "the Deployment to take the new image and 3 replicas",
        WAIT,
        || async {
            let d = get_deployment(&c, "orders").await?;
            match (replicas_of(&d), image_of(&d).as_deref()) {
                (Some(3), Some("registry.example/orders:1.1")) => Ok(()),
                other => Err(format!("replicas and image: {other:?}")),
            }
        },
    )
    .await;
    let msvc = ready_with(&c, "orders", 3).await;
    assert_eq!(
        msvc.status.as_ref().and_then(|s| s.observed_generation),
        Some(2)
    );
    let kids = children(&c.client).await.expect("children listed");
    assert_eq!(names(&kids.deployments), ["orders"]);
    assert_eq!(names(&kids.services), ["orders"]);
    assert_eq!(names(&kids.budgets), ["orders"]);

    // No disruption block and a single replica: no budget (one would block every drain).
    api.patch(
        "orders",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"disruption": null, "replicas": 1}})),
    )
    .await
    .expect("the service is updated");
    eventually("the PodDisruptionBudget to be deleted", WAIT, || async {
        let kids = children(&c.client).await?;
        let d = kids.deployments.first().and_then(replicas_of);
        if kids.budgets.is_empty() && d == Some(1) {
            Ok(())
        } else {
            Err(format!(
                "budgets {:?}, Deployment replicas {d:?}",
                names(&kids.budgets)
            ))
        }
    })
    .await;
    let msvc = ready_with(&c, "orders", 1).await;
    assert_eq!(
        msvc.status.as_ref().and_then(|s| s.observed_generation),
        Some(3)
    );
    let kids = children(&c.client).await.expect("children listed");
    assert_eq!(names(&kids.deployments), ["orders"]);
    assert_eq!(names(&kids.services), ["orders"]);

    // Deleting the service takes its children with it (owner references).
    let originals: Vec<String> = child_metas(&kids)
        .into_iter()
        .filter_map(|(_, m)| m.uid.clone())
        .collect();
    assert_eq!(originals.len(), 2);
    api.delete("orders", &DeleteParams::default())
        .await
        .expect("the service is deleted");
    let left = eventually("the service and its children to be gone", WAIT, || async {
        let gone = api.get_opt("orders").await.map_err(text)?.is_none();
        let kids = children(&c.client).await?;
        let left: Vec<(String, Vec<String>)> = child_metas(&kids)
            .into_iter()
            .map(|(kind, m)| {
                (
                    format!(
                        "{kind} {} {}",
                        m.name.clone().unwrap_or_default(),
                        m.uid.clone().unwrap_or_default()
                    ),
                    owner_uids(m),
                )
            })
            .collect();
        let collected = child_metas(&kids)
            .iter()
            .all(|(_, m)| m.uid.as_ref().is_none_or(|u| !originals.contains(u)));
        if gone && collected {
            Ok(left)
        } else {
            Err(format!("service gone: {gone}; children: {left:?}"))
        }
    })
    .await;
    // A reconcile already under way as the service goes (its cache a moment behind) may
    // apply a child again after the cascade. A real cluster's garbage collector removes a
    // child whose owner no longer exists; devcluster's collects only when the owner is
    // deleted. So a child may be left here only as exactly that: owned by the deleted
    // service alone.
    for (child, owners) in &left {
        assert_eq!(
            owners,
            std::slice::from_ref(&uid),
            "{child} left behind, owned by {owners:?}"
        );
    }
}

fn child_metas(kids: &Children) -> Vec<(&'static str, &ObjectMeta)> {
    kids.deployments
        .iter()
        .map(|d| ("Deployment", &d.metadata))
        .chain(kids.services.iter().map(|s| ("Service", &s.metadata)))
        .chain(
            kids.budgets
                .iter()
                .map(|b| ("PodDisruptionBudget", &b.metadata)),
        )
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_being_deleted_gets_no_new_children() {
    let c = start(SPEED, None).await;
    let _operator = Operator::start(&c, Arc::new(Readings::default()));
    let api = services(&c.client);
    // Another party's finalizer holds the service in deletion, as a foreground deletion or
    // a backup tool would.
    let mut held = service(
        "carts",
        json!({"domain": "carts", "image": "registry.example/carts:1.0", "replicas": 2}),
    );
    held.metadata.finalizers = Some(vec!["example.com/hold".to_owned()]);
    api.create(&PostParams::default(), &held)
        .await
        .expect("the service is created");
    ready_with(&c, "carts", 2).await;
    api.delete("carts", &DeleteParams::default())
        .await
        .expect("the deletion is accepted");
    let terminating = api
        .get("carts")
        .await
        .expect("the finalizer holds the service");
    assert!(terminating.metadata.deletion_timestamp.is_some());
    // Time for the controller to see the deletion; then the children go, as the garbage
    // collector takes them in a foreground deletion.
    tokio::time::sleep(Duration::from_millis(500)).await;
    deployments(&c)
        .delete("carts", &DeleteParams::default())
        .await
        .expect("the Deployment is deleted");
    Api::<k8s_openapi::api::core::v1::Service>::namespaced(c.client.clone(), NS)
        .delete("carts", &DeleteParams::default())
        .await
        .expect("the Service is deleted");
    // A minute of simulated time, many reconcile triggers: none brings them back.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let kids = children(&c.client).await.expect("children listed");
    assert!(
        kids.deployments.is_empty() && kids.services.is_empty(),
        "children of a service in deletion were re-created: Deployments {:?}, Services {:?}",
        names(&kids.deployments),
        names(&kids.services)
    );
    assert_eq!(names(&kids.budgets), ["carts"], "the budget was left alone");

    api.patch(
        "carts",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"finalizers": null}})),
    )
    .await
    .expect("the finalizer is removed");
    eventually(
        "the service and its last child to be gone",
        WAIT,
        || async {
            let gone = api.get_opt("carts").await.map_err(text)?.is_none();
            let kids = children(&c.client).await?;
            if gone && kids.budgets.is_empty() {
                Ok(())
            } else {
                Err(format!(
                    "service gone: {gone}; budgets {:?}",
                    names(&kids.budgets)
                ))
            }
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_style_scale_drives_a_service_without_scaling() {
    let c = start(SPEED, None).await;
    let _operator = Operator::start(&c, Arc::new(Readings::default()));
    let api = services(&c.client);
    create_fixed(&c, "users", 2).await;

    let scale = api
        .patch_scale(
            "users",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": 4}})),
        )
        .await
        .expect("the scale subresource accepts the patch");
    assert_eq!(scale.spec.and_then(|s| s.replicas), Some(4));

    eventually("the Deployment to get 4 replicas", WAIT, || async {
        let d = get_deployment(&c, "users").await?;
        match replicas_of(&d) {
            Some(4) => Ok(()),
            other => Err(format!("Deployment replicas {other:?}")),
        }
    })
    .await;
    let msvc = ready_with(&c, "users", 4).await;
    assert_eq!(msvc.spec.replicas, Some(4));
    let status = msvc.status.clone().expect("status is written");
    assert_eq!(status.desired_replicas, 4);
    assert_eq!(status.observed_generation, Some(2));
    let scale = api.get_scale("users").await.expect("the scale is read");
    let scale_status = scale.status.expect("the scale has a status");
    assert_eq!(scale_status.replicas, 4);
    assert_eq!(
        scale_status.selector.as_deref(),
        Some("app.kubernetes.io/instance=users,app.kubernetes.io/name=users")
    );
    let kids = children(&c.client).await.expect("children listed");
    assert_eq!(names(&kids.deployments), ["users"]);
    // More than one replica and no disruption block: the default budget.
    assert_eq!(names(&kids.budgets), ["users"]);
}

fn scaled_service(name: &str, extra: Value) -> MarketplaceService {
    let mut scaling = json!({
        "minReplicas": 1,
        "maxReplicas": 20,
        "metrics": [{"type": "RequestsPerSecond", "target": 10}],
        "pollIntervalSeconds": 15,
    });
    if let (Some(s), Some(e)) = (scaling.as_object_mut(), extra.as_object()) {
        s.extend(e.clone());
    }
    service(
        name,
        json!({"domain": name, "image": format!("registry.example/{name}:1.0"), "scaling": scaling}),
    )
}

/// Watches the Deployment's replicas until they equal `target`, asserting that every value
/// seen is one of `allowed`; returns the simulated time at which `target` was first seen.
async fn replicas_until(c: &Cluster, name: &str, target: i32, allowed: &[i32]) -> f64 {
    let deadline = tokio::time::Instant::now() + WAIT;
    let mut seen = Vec::new();
    loop {
        if let Ok(d) = get_deployment(c, name).await {
            let r = replicas_of(&d).unwrap_or(1);
            if seen.last() != Some(&r) {
                seen.push(r);
            }
            assert!(
                allowed.contains(&r),
                "{name} went to {r} replicas at simulated t={:.0}; allowed {allowed:?}, seen {seen:?}",
                c.clock.now()
            );
            if r == target {
                return c.clock.now();
            }
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{name} never reached {target} replicas within {WAIT:?}; seen {seen:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_load_step_scales_up_then_down_after_the_stabilization_window() {
    let c = start(SPEED, None).await;
    let metrics = Arc::new(Recorded::new(StaticSource::default(), c.clock));
    // One pod reports 60 requests/s against a target of 10 per pod: ceil(60 / 10) = 6.
    metrics.source.set(
        NS,
        "search",
        MetricType::RequestsPerSecond,
        MetricReading::average(60.0, 1),
    );
    let _operator = Operator::start(&c, metrics.clone());
    services(&c.client)
        .create(&PostParams::default(), &scaled_service("search", json!({})))
        .await
        .expect("the service is created");

    let msvc = eventually("search to be scaled to 6", WAIT, || async {
        let m = get_service(&c, "search").await?;
        let d = get_deployment(&c, "search").await?;
        let desired = m.status.as_ref().map(|s| s.desired_replicas);
        if replicas_of(&d) == Some(6) && desired == Some(6) {
            Ok(m)
        } else {
            Err(format!(
                "Deployment replicas {:?}, status.desiredReplicas {desired:?}",
                replicas_of(&d)
            ))
        }
    })
    .await;
    let status = msvc.status.clone().expect("status is written");
    let latest = status
        .recent_decisions
        .first()
        .expect("the scale-up is recorded in recentDecisions");
    assert_eq!(latest.to_replicas, 6);
    assert!(latest.from_replicas < 6, "{latest:?}");
    assert!(
        latest.reason.contains("requests/s") && latest.reason.contains("vs target 10.000"),
        "the reason names the metric and its numbers: {:?}",
        latest.reason
    );
    assert!(
        status
            .recent_decisions
            .iter()
            .all(|d| d.to_replicas > d.from_replicas && !d.reason.is_empty()),
        "{:?}",
        status.recent_decisions
    );
    let events = eventually("a ScaledUp Event", WAIT, || async {
        let events = events_of(&c.client, "search").await?;
        if events
            .iter()
            .any(|e| e.reason.as_deref() == Some("ScaledUp"))
        {
            Ok(events)
        } else {
            Err(format!("{} Events, none ScaledUp", events.len()))
        }
    })
    .await;
    let up = events
        .iter()
        .find(|e| e.reason.as_deref() == Some("ScaledUp"))
        .expect("found above");
    assert_eq!(up.type_.as_deref(), Some("Normal"));
    assert!(
        up.note.as_deref().is_some_and(|n| n.contains("replicas")),
        "{:?}",
        up.note
    );
    ready_with(&c, "search", 6).await;

    // The load drops to 15 requests/s over the 6 pods: ceil(6 × 2.5 / 10) = 2.
    metrics.source.set(
        NS,
        "search",
        MetricType::RequestsPerSecond,
        MetricReading::average(2.5, 6),
    );
    // The default scale-down rate (100% per 15 s) allows 6 → 2 in one step.
    let seen_at = replicas_until(&c, "search", 2, &[6, 2]).await;
    let msvc = eventually("the scale-down to be recorded", WAIT, || async {
        let m = get_service(&c, "search").await?;
        let s = m.status.clone().unwrap_or_default();
        match s.recent_decisions.first() {
            Some(d) if d.to_replicas == 2 && s.desired_replicas == 2 => Ok(m),
            other => Err(format!("latest decision {other:?}")),
        }
    })
    .await;
    let status = msvc.status.expect("status is written");
    let down = &status.recent_decisions[0];
    assert_eq!((down.from_replicas, down.mode.as_str()), (6, "ScaleDown"));
    // The window counts from the last poll that saw the high load; decision times are on
    // the operator's clock, to the second.
    let decided_at = down.time.0.as_second() as f64;
    let reads = metrics.reads();
    let last_high = reads
        .iter()
        .filter(|r| r.value == Some(60.0))
        .map(|r| r.at)
        .fold(f64::NAN, f64::max);
    assert!(
        decided_at >= (last_high + 300.0).floor(),
        "scaled down {:.0} s after the last poll that saw the load, inside the 300 s window",
        decided_at - last_high
    );
    // Nor later than the first poll past the window (the poll at its very edge may go
    // either way). Polls a busy machine skipped do not count.
    let late: Vec<f64> = reads
        .iter()
        .map(|r| r.at - last_high)
        .filter(|&since| since > 301.0 && since < decided_at - last_high - 5.0)
        .collect();
    assert!(
        late.is_empty(),
        "polls {late:?} s after the last high one kept 6 replicas; scaled down at {:.0} s",
        decided_at - last_high
    );
    assert!(seen_at >= decided_at, "{seen_at} < {decided_at}");
    eventually("a ScaledDown Event", WAIT, || async {
        let events = events_of(&c.client, "search").await?;
        if events.iter().any(|e| {
            e.reason.as_deref() == Some("ScaledDown") && e.type_.as_deref() == Some("Normal")
        }) {
            Ok(())
        } else {
            Err(format!("{} Events, none ScaledDown", events.len()))
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_metrics_never_scale_down_and_fallback_applies() {
    let c = start(SPEED, None).await;
    let metrics = Arc::new(Recorded::new(Readings::default(), c.clock));
    // 30 requests/s on one pod against 10 per pod: 3 replicas.
    metrics.source.set(
        "catalog",
        MetricType::RequestsPerSecond,
        MetricReading::average(30.0, 1),
    );
    let _operator = Operator::start(&c, metrics.clone());
    services(&c.client)
        .create(
            &PostParams::default(),
            &scaled_service(
                "catalog",
                json!({"maxReplicas": 10, "fallback": {"replicas": 5, "failureThreshold": 2}}),
            ),
        )
        .await
        .expect("the service is created");

    eventually(
        "catalog to be scaled to 3 on healthy metrics",
        WAIT,
        || async {
            let m = get_service(&c, "catalog").await?;
            let d = get_deployment(&c, "catalog").await?;
            let desired = m.status.as_ref().map(|s| s.desired_replicas);
            if replicas_of(&d) == Some(3)
                && desired == Some(3)
                && has_condition(&m, "MetricsAvailable", "True", Some("MetricsRead"))
                && has_condition(&m, "ScalingActive", "True", Some("ValidMetricSignal"))
            {
                Ok(())
            } else {
                Err(format!(
                    "Deployment replicas {:?}, desired {desired:?}, conditions: {}",
                    replicas_of(&d),
                    conditions_text(&m)
                ))
            }
        },
    )
    .await;

    metrics.source.clear();
    // Never below 3; after two failed reads in a row, the fallback's 5.
    replicas_until(&c, "catalog", 5, &[3, 5]).await;
    let msvc = eventually(
        "the conditions to report the missing metrics",
        WAIT,
        || async {
            let m = get_service(&c, "catalog").await?;
            if has_condition(&m, "MetricsAvailable", "False", Some("MetricsUnavailable"))
                && has_condition(&m, "ScalingActive", "False", Some("FailedGetMetrics"))
                && m.status
                    .as_ref()
                    .and_then(|s| s.recent_decisions.first())
                    .map(|d| d.to_replicas)
                    == Some(5)
            {
                Ok(m)
            } else {
                Err(conditions_text(&m))
            }
        },
    )
    .await;
    let metrics_condition = condition(&msvc, "MetricsAvailable").expect("checked above");
    assert!(
        metrics_condition.message.contains("no samples")
            && metrics_condition.message.contains("default/catalog"),
        "the message says which service had no data: {:?}",
        metrics_condition.message
    );
    let status = msvc.status.clone().expect("status is written");
    let fallback = &status.recent_decisions[0];
    assert_eq!(
        (
            fallback.from_replicas,
            fallback.to_replicas,
            fallback.mode.as_str()
        ),
        (3, 5, "Fallback")
    );
    // The first failed read held 3; the second fell back (failureThreshold 2). The next
    // poll is 15 s later, so a second's rounding of the decision time cannot blur this.
    let fell_back_at = fallback.time.0.as_second() as f64;
    let failed: Vec<f64> = metrics
        .reads()
        .iter()
        .filter(|r| r.value.is_none() && r.at < fell_back_at + 1.0)
        .map(|r| r.at)
        .collect();
    assert_eq!(
        failed.len(),
        2,
        "failed reads {failed:?} up to the fallback at {fell_back_at}"
    );
    assert_eq!(status.desired_replicas, 5);
    assert_eq!(status.mode.as_deref(), Some("Fallback"));

    // Four more polls without metrics: still 5, never less.
    let until = c.clock.now() + 60.0;
    while c.clock.now() < until {
        let d = get_deployment(&c, "catalog")
            .await
            .expect("the Deployment is read");
        assert_eq!(replicas_of(&d), Some(5), "replicas moved without metrics");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_spec_names_the_field_and_changes_no_child() {
    let c = start(SPEED, None).await;
    let _operator = Operator::start(&c, Arc::new(Readings::default()));
    let api = services(&c.client);
    create_fixed(&c, "payments", 2).await;
    let before = eventually("the Deployment to settle", WAIT, || async {
        let d = get_deployment(&c, "payments").await?;
        let s = d.status.clone().unwrap_or_default();
        if s.observed_generation == d.metadata.generation
            && s.ready_replicas == Some(2)
            && s.updated_replicas == Some(2)
            && s.available_replicas == Some(2)
        {
            Ok(d)
        } else {
            Err(format!("Deployment status {s:?}"))
        }
    })
    .await;

    // Passes the schema (and its CEL rules), fails validate(): neither the cron nor the time
    // zone can be checked by the API server. The image changes too, and must not roll out.
    let patched = api
        .patch(
            "payments",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {
                "replicas": null,
                "image": "registry.example/payments:2.0",
                "scaling": {
                    "minReplicas": 2,
                    "maxReplicas": 5,
                    "metrics": [{"type": "RequestsPerSecond", "target": 10}],
                    "schedules": [{
                        "name": "black-friday",
                        "cron": "every friday",
                        "timeZone": "Mars/Olympus",
                        "durationSeconds": 3600,
                        "minReplicas": 4,
                    }],
                },
            }})),
        )
        .await
        .expect("the API server accepts the spec");
    let generation = patched.metadata.generation;

    let msvc = eventually("Ready=False with reason InvalidSpec", WAIT, || async {
        let m = get_service(&c, "payments").await?;
        let current = m.status.as_ref().and_then(|s| s.observed_generation) == generation;
        if current && has_condition(&m, "Ready", "False", Some("InvalidSpec")) {
            Ok(m)
        } else {
            Err(conditions_text(&m))
        }
    })
    .await;
    let message = &condition(&msvc, "Ready").expect("checked above").message;
    assert!(
        message.starts_with(
            "invalid spec: spec.scaling.schedules[0].cron: not a valid cron expression"
        ),
        "{message}"
    );
    assert!(
        message.contains(
            "spec.scaling.schedules[0].timeZone: unknown IANA time zone \"Mars/Olympus\""
        ),
        "{message}"
    );
    let warning = eventually("a Warning Event naming the field", WAIT, || async {
        let events = events_of(&c.client, "payments").await?;
        events
            .into_iter()
            .find(|e| e.reason.as_deref() == Some("InvalidSpec"))
            .ok_or_else(|| "no InvalidSpec Event yet".to_owned())
    })
    .await;
    assert_eq!(warning.type_.as_deref(), Some("Warning"));
    assert_eq!(warning.note.as_deref(), Some(message.as_str()));

    // A few reconciles and polls later, the Deployment is exactly as it was.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let after = get_deployment(&c, "payments")
        .await
        .expect("the Deployment is still there");
    assert_eq!(
        image_of(&after).as_deref(),
        Some("registry.example/payments:1.0")
    );
    assert_eq!(replicas_of(&after), Some(2));
    assert_eq!(after.spec, before.spec);
    assert_eq!(after.metadata.generation, before.metadata.generation);
    assert_eq!(
        after.metadata.resource_version, before.metadata.resource_version,
        "the Deployment was written while the spec was invalid"
    );
    let kids = children(&c.client).await.expect("children listed");
    assert_eq!(names(&kids.deployments), ["payments"]);

    // Fixing the spec rolls the edit out: the rejection is not sticky.
    api.patch(
        "payments",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"scaling": {"schedules": null}}})),
    )
    .await
    .expect("the fix is accepted");
    eventually("the fixed spec to roll out", WAIT, || async {
        let m = get_service(&c, "payments").await?;
        let d = get_deployment(&c, "payments").await?;
        let current =
            m.status.as_ref().and_then(|s| s.observed_generation) == m.metadata.generation;
        let valid = condition(&m, "Ready").is_some_and(|r| r.reason != "InvalidSpec");
        if current && valid && image_of(&d).as_deref() == Some("registry.example/payments:2.0") {
            Ok(())
        } else {
            Err(format!(
                "image {:?}; conditions: {}",
                image_of(&d),
                conditions_text(&m)
            ))
        }
    })
    .await;
}

/// What one service of the fleet should end with.
#[derive(Clone, Debug)]
struct Want {
    image: String,
    replicas: i32,
    /// (minAvailable, maxUnavailable) of its budget, if it has one.
    budget: Option<(Option<IntOrString>, Option<IntOrString>)>,
}

/// Service `i` of the fleet: a third autoscaled (held at minReplicas 2 without metrics), a
/// third with 2 replicas and an explicit budget, a third with 1 replica and no budget.
fn fleet_service(i: usize) -> (MarketplaceService, Want) {
    let name = format!("svc-{i}");
    let image = format!("registry.example/{name}:1");
    let (spec, want) = match i % 3 {
        0 => (
            json!({"scaling": {
                "minReplicas": 2,
                "maxReplicas": 5,
                "metrics": [{"type": "RequestsPerSecond", "target": 10}],
            }}),
            Want {
                image: image.clone(),
                replicas: 2,
                budget: Some((None, Some(IntOrString::Int(1)))),
            },
        ),
        1 => (
            json!({"replicas": 2, "disruption": {"minAvailable": 1}}),
            Want {
                image: image.clone(),
                replicas: 2,
                budget: Some((Some(IntOrString::Int(1)), None)),
            },
        ),
        _ => (
            json!({"replicas": 1}),
            Want {
                image: image.clone(),
                replicas: 1,
                budget: None,
            },
        ),
    };
    let mut full = json!({"domain": name, "image": image});
    if let (Some(f), Some(s)) = (full.as_object_mut(), spec.as_object()) {
        f.extend(s.clone());
    }
    (service(&name, full), want)
}

/// Whether the fleet is converged: every service has a current, Ready status and exactly
/// its children with the right spec; no child lacks a live owner; no extra child exists.
async fn converged(c: &Cluster, wants: &HashMap<String, Want>) -> Result<(), String> {
    let fleet = services(&c.client)
        .list(&Default::default())
        .await
        .map_err(text)?
        .items;
    if names(&fleet).len() != wants.len() {
        return Err(format!("services {:?}", names(&fleet)));
    }
    let mut uids = HashMap::new();
    for m in &fleet {
        let name = m.metadata.name.clone().unwrap_or_default();
        let s = m.status.clone().unwrap_or_default();
        let want = wants
            .get(&name)
            .ok_or_else(|| format!("unexpected service {name}"))?;
        if s.observed_generation.is_none() || s.observed_generation != m.metadata.generation {
            return Err(format!(
                "{name}: observedGeneration {:?} of {:?}",
                s.observed_generation, m.metadata.generation
            ));
        }
        if s.replicas != want.replicas || !has_condition(m, "Ready", "True", None) {
            let deployment = get_deployment(c, &name)
                .await
                .map(|d| (d.spec.replicas, d.status));
            return Err(format!(
                "{name}: status.replicas {}, conditions {}; its Deployment: {deployment:?}",
                s.replicas,
                conditions_text(m)
            ));
        }
        uids.insert(m.metadata.uid.clone().unwrap_or_default(), name);
    }
    let kids = children(&c.client).await?;
    // Every child's owner exists and is the service of the same name.
    let owned_by_its_service = |meta: &ObjectMeta| {
        let owners = owner_uids(meta);
        owners.len() == 1 && uids.get(&owners[0]) == meta.name.as_ref()
    };
    for meta in kids
        .deployments
        .iter()
        .map(|d| &d.metadata)
        .chain(kids.services.iter().map(|s| &s.metadata))
        .chain(kids.budgets.iter().map(|b| &b.metadata))
    {
        if !owned_by_its_service(meta) {
            return Err(format!(
                "{:?} is owned by {:?}, not by a live service of its name",
                meta.name,
                owner_uids(meta)
            ));
        }
    }
    let mut expected: Vec<String> = wants.keys().cloned().collect();
    expected.sort();
    if names(&kids.deployments) != expected || names(&kids.services) != expected {
        return Err(format!(
            "Deployments {:?}, Services {:?}",
            names(&kids.deployments),
            names(&kids.services)
        ));
    }
    let mut with_budget: Vec<String> = wants
        .iter()
        .filter(|(_, w)| w.budget.is_some())
        .map(|(n, _)| n.clone())
        .collect();
    with_budget.sort();
    if names(&kids.budgets) != with_budget {
        return Err(format!("budgets {:?}", names(&kids.budgets)));
    }
    for d in &kids.deployments {
        let name = d.metadata.name.clone().unwrap_or_default();
        let want = &wants[&name];
        if replicas_of(d) != Some(want.replicas) || image_of(d).as_deref() != Some(&want.image) {
            return Err(format!(
                "{name}: Deployment replicas {:?}, image {:?}; want {want:?}",
                replicas_of(d),
                image_of(d)
            ));
        }
    }
    for b in &kids.budgets {
        let name = b.metadata.name.clone().unwrap_or_default();
        let spec = b.spec.clone().unwrap_or_default();
        if Some((spec.min_available.clone(), spec.max_unavailable.clone())) != wants[&name].budget {
            return Err(format!("{name}: budget {spec:?}"));
        }
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_controller_converges_under_injected_faults() {
    let c = start(SPEED, Some(FaultConfig::with_rate(0.2))).await;
    let metrics = Arc::new(Readings::default());
    let first = Operator::start(&c, metrics.clone());
    let mut wants = HashMap::new();
    for i in 0..10 {
        let (msvc, want) = fleet_service(i);
        apply(&c.client, &msvc).await;
        wants.insert(format!("svc-{i}"), want);
        if i == 4 {
            // As an API server restart: every watch stream ends, and the controller's
            // watchers must resume from where they were.
            c.cluster.drop_watches();
        }
    }
    eventually("10 services to converge under faults", FAULT_WAIT, || {
        converged(&c, &wants)
    })
    .await;

    // The controller dies while services are being created; one is edited and more are
    // created while none runs; a fresh one, with a fresh Context and no autoscalers, takes
    // over.
    for i in 10..15 {
        let (msvc, want) = fleet_service(i);
        apply(&c.client, &msvc).await;
        wants.insert(format!("svc-{i}"), want);
    }
    first.kill();
    let (mut edited, _) = fleet_service(1);
    edited.spec.image = "registry.example/svc-1:2".to_owned();
    apply(&c.client, &edited).await;
    if let Some(w) = wants.get_mut("svc-1") {
        w.image = edited.spec.image.clone();
    }
    for i in 15..20 {
        let (msvc, want) = fleet_service(i);
        apply(&c.client, &msvc).await;
        wants.insert(format!("svc-{i}"), want);
    }
    let second = Operator::start(&c, metrics.clone());
    eventually(
        "20 services to converge after a restart",
        FAULT_WAIT,
        || converged(&c, &wants),
    )
    .await;
    assert!(
        c.cluster.faults_injected() > 0,
        "the test must run through faults"
    );

    // The new controller scales the 7 autoscaled services again (some of the statuses
    // above may still be its predecessor's), and stops every autoscaler when it stops.
    let autoscalers = second.autoscalers.clone();
    eventually(
        "an autoscaler for each of the 7 autoscaled services",
        WAIT,
        || {
            let running = autoscalers.len();
            async move {
                if running == 7 {
                    Ok(())
                } else {
                    Err(format!("{running} autoscalers run"))
                }
            }
        },
    )
    .await;
    second.shutdown().await;
    assert!(
        autoscalers.is_empty(),
        "{} autoscalers still run",
        autoscalers.len()
    );
}

/// kube-runtime's Controller backs off all of its trigger streams with one shared backoff,
/// and after a compaction each of the controller's four watches reports its 410 Expired as
/// an error in turn. With client-go's default backoff (0.8, 1.6, 3.2, 6.4 s, jittered) no
/// watch event reached the controller for 8 to 20 s; `WatchBackoff` keeps it to about 1.5 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_created_after_an_api_server_compaction_is_reconciled_within_seconds() {
    let c = start(SPEED, None).await;
    let _operator = Operator::start(&c, Arc::new(Readings::default()));
    let (first, _) = fleet_service(1);
    apply(&c.client, &first).await;
    eventually("the first Deployment", WAIT, || async {
        get_deployment(&c, "svc-1").await.map(|_| ())
    })
    .await;
    // While its pods start (writes the controller does not watch), the store is compacted
    // and every watch ends: the controller's watches resume from versions now forgotten.
    tokio::time::sleep(Duration::from_millis(150)).await;
    c.cluster.compact();
    c.cluster.drop_watches();
    let (second, _) = fleet_service(2);
    apply(&c.client, &second).await;
    eventually(
        "the Deployment of a service created after the compaction",
        Duration::from_secs(3),
        || async { get_deployment(&c, "svc-2").await.map(|_| ()) },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fixed_service_that_gains_scaling_keeps_its_replicas_while_the_autoscaler_takes_over() {
    let c = start(SPEED, None).await;
    let readings = Arc::new(Readings::default());
    // Four pods at the target: the HPA arithmetic asks for exactly four.
    readings.set(
        "catalog",
        MetricType::RequestsPerSecond,
        MetricReading::average(10.0, 4),
    );
    let _operator = Operator::start(&c, readings.clone());
    let api = services(&c.client);
    create_fixed(&c, "catalog", 4).await;

    api.patch(
        "catalog",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"replicas": null, "scaling": {
            "minReplicas": 1, "maxReplicas": 10, "pollIntervalSeconds": 15,
            "metrics": [{"type": "RequestsPerSecond", "target": 10}]}}})),
    )
    .await
    .expect("the scaling block is accepted");

    // Had the reconcile dropped `replicas` before the autoscaler owned it, the API server would
    // have reset it to 1 and the Deployment would have killed three pods.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(4);
    let mut seen = Vec::new();
    while tokio::time::Instant::now() < deadline {
        let d = get_deployment(&c, "catalog").await.expect("the Deployment");
        seen.push(replicas_of(&d).unwrap_or(0));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        seen.iter().all(|&r| r == 4),
        "replicas moved while the autoscaler took over: {seen:?}"
    );
    let d = get_deployment(&c, "catalog").await.expect("the Deployment");
    let owners: Vec<String> = d
        .metadata
        .managed_fields
        .iter()
        .flatten()
        .filter(|m| {
            m.fields_v1
                .as_ref()
                .is_some_and(|f| f.0.pointer("/f:spec/f:replicas").is_some())
        })
        .filter_map(|m| m.manager.clone())
        .collect();
    assert_eq!(owners, ["marketplace-operator-autoscaler"]);
    eventually(
        "the autoscaler's first decision in status",
        WAIT,
        || async {
            let m = api.get("catalog").await.map_err(text)?;
            match m.status.and_then(|s| s.mode) {
                Some(mode) => Ok(mode),
                None => Err("no mode yet".to_owned()),
            }
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_created_after_its_caller_gives_the_caller_its_real_address() {
    let c = start(SPEED, None).await;
    let _operator = Operator::start(&c, Arc::new(Readings::default()));
    let api = services(&c.client);
    let url_of = |d: &Deployment| env_of(d, "STOCK_URL");
    api.create(
        &PostParams::default(),
        &service(
            "checkout",
            json!({"domain": "checkout", "image": "registry.example/checkout:1.0",
                   "replicas": 1, "dependsOn": ["stock"]}),
        ),
    )
    .await
    .expect("the caller is created");
    eventually("the caller's conventional peer address", WAIT, || async {
        let d = get_deployment(&c, "checkout").await?;
        match url_of(&d).as_deref() {
            Some("http://stock.default.svc.cluster.local:8080") => Ok(()),
            other => Err(format!("STOCK_URL {other:?}")),
        }
    })
    .await;
    // At rest: its pods are ready, nothing of its own will trigger it again.
    ready_with(&c, "checkout", 1).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    // The peer serves the `stock` domain under another name and port.
    api.create(
        &PostParams::default(),
        &service(
            "stock-v2",
            json!({"domain": "stock", "image": "registry.example/stock:2.0",
                   "port": 9090, "replicas": 1}),
        ),
    )
    .await
    .expect("the peer is created");
    eventually("the caller's real peer address", WAIT, || async {
        let d = get_deployment(&c, "checkout").await?;
        match url_of(&d).as_deref() {
            Some("http://stock-v2.default.svc.cluster.local:9090") => Ok(()),
            other => Err(format!("STOCK_URL {other:?}")),
        }
    })
    .await;
}
