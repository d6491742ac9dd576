//! The CEL rules in the CRDs, evaluated by a Kubernetes CEL engine against the schema exactly as
//! an API server would (defaults applied first): valid objects pass, each invalid one fails with
//! the message a user reads.

use marketplace_crds::crds;
use serde_json::{Value, json};

fn schema(kind: &str) -> Value {
    let crd = crds()
        .into_iter()
        .find(|c| c.spec.names.kind == kind)
        .unwrap_or_else(|| panic!("no CRD for {kind}"));
    let schema = crd.spec.versions[0]
        .schema
        .clone()
        .and_then(|s| s.open_api_v3_schema)
        .expect("schema");
    serde_json::to_value(schema).expect("schema to JSON")
}

fn violations(kind: &str, object: &Value, old: Option<&Value>) -> Vec<String> {
    let validator = kube_cel::Validator::new();
    match validator.validate_with_defaults(&schema(kind), object, old) {
        Ok(()) => vec![],
        Err(errors) => errors.iter().map(ToString::to_string).collect(),
    }
}

fn msvc(spec: Value) -> Value {
    json!({"apiVersion": "marketplace.dev/v1alpha1", "kind": "MarketplaceService",
           "metadata": {"name": "orders", "namespace": "shop"}, "spec": spec})
}

fn rps_scaling() -> Value {
    json!({"minReplicas": 2, "maxReplicas": 20, "metrics": [{"type": "RequestsPerSecond", "target": 50.0}]})
}

#[test]
fn a_valid_autoscaled_service_passes_every_rule() {
    let obj = msvc(json!({"domain": "orders", "image": "orders:1", "scaling": rps_scaling()}));
    assert_eq!(
        violations("MarketplaceService", &obj, None),
        Vec::<String>::new()
    );
}

#[test]
fn min_above_max_fails_with_a_readable_message() {
    let obj = msvc(json!({"domain": "orders", "image": "orders:1",
        "scaling": {"minReplicas": 9, "maxReplicas": 3, "metrics": [{"type": "Cpu", "target": 70.0}]}}));
    let v = violations("MarketplaceService", &obj, None);
    assert!(
        v.iter()
            .any(|m| m.contains("minReplicas must not exceed maxReplicas")),
        "{v:?}"
    );
}

#[test]
fn replicas_beside_a_scaling_block_fails() {
    let obj = msvc(
        json!({"domain": "orders", "image": "orders:1", "replicas": 3, "scaling": rps_scaling()}),
    );
    let v = violations("MarketplaceService", &obj, None);
    assert!(
        v.iter()
            .any(|m| m.contains("spec.replicas cannot be set together with spec.scaling")),
        "{v:?}"
    );
}

#[test]
fn a_custom_metric_without_query_fails_and_a_query_elsewhere_fails() {
    let obj = msvc(
        json!({"domain": "orders", "image": "orders:1", "scaling": {"maxReplicas": 5, "metrics": [
        {"type": "Custom", "target": 3.0},
        {"type": "Cpu", "target": 70.0, "query": "up"}]}}),
    );
    let v = violations("MarketplaceService", &obj, None);
    assert_eq!(
        v.iter()
            .filter(|m| m.contains("query is required for type Custom"))
            .count(),
        2,
        "{v:?}"
    );
}

#[test]
fn fallback_and_schedules_are_bounded_by_max_replicas() {
    let obj = msvc(
        json!({"domain": "orders", "image": "orders:1", "scaling": {"maxReplicas": 5,
        "metrics": [{"type": "Cpu", "target": 70.0}],
        "fallback": {"replicas": 8},
        "schedules": [{"name": "sale", "cron": "0 9 * * 1", "durationSeconds": 3600, "minReplicas": 6}]}}),
    );
    let v = violations("MarketplaceService", &obj, None);
    assert!(
        v.iter()
            .any(|m| m.contains("fallback.replicas must lie between")),
        "{v:?}"
    );
    assert!(
        v.iter()
            .any(|m| m.contains("a schedule's minReplicas must not exceed maxReplicas")),
        "{v:?}"
    );
}

#[test]
fn a_disruption_budget_needs_exactly_one_field() {
    let obj =
        msvc(json!({"domain": "orders", "image": "orders:1", "replicas": 2, "disruption": {}}));
    let v = violations("MarketplaceService", &obj, None);
    assert!(
        v.iter()
            .any(|m| m.contains("exactly one of minAvailable and maxUnavailable")),
        "{v:?}"
    );
}

fn ctier(spec: Value) -> Value {
    json!({"apiVersion": "marketplace.dev/v1alpha1", "kind": "CacheTier",
           "metadata": {"name": "main", "namespace": "shop"}, "spec": spec})
}

#[test]
fn an_empty_cache_tier_passes_with_its_defaults() {
    assert_eq!(
        violations("CacheTier", &ctier(json!({})), None),
        Vec::<String>::new()
    );
}

#[test]
fn a_cache_tier_rejects_unlisted_settings_standalone_replicas_and_duplicate_flush_ids() {
    let obj = ctier(json!({"replicas": 2, "config": {"save": "60 1"},
        "flushes": [{"id": "a", "prefix": "x:"}, {"id": "a", "prefix": "y:"}]}));
    let v = violations("CacheTier", &obj, None);
    for expected in [
        "read replicas) can only be set in mode PrimaryReplica",
        "config may only set",
        "every flush id must be unique",
    ] {
        assert!(
            v.iter().any(|m| m.contains(expected)),
            "{expected} not in {v:?}"
        );
    }
}

fn penv(spec: Value) -> Value {
    json!({"apiVersion": "marketplace.dev/v1alpha1", "kind": "PreviewEnvironment",
           "metadata": {"name": "pr-42"}, "spec": spec})
}

#[test]
fn a_preview_branch_cannot_change_after_creation() {
    let old = penv(json!({"branch": "feature/cart"}));
    let new = penv(json!({"branch": "feature/other"}));
    assert_eq!(
        violations("PreviewEnvironment", &old, Some(&old)),
        Vec::<String>::new()
    );
    let v = violations("PreviewEnvironment", &new, Some(&old));
    assert!(v.iter().any(|m| m.contains("branch is immutable")), "{v:?}");
}

#[test]
fn a_url_template_without_the_service_placeholder_fails() {
    let obj = penv(json!({"branch": "main", "urlHostTemplate": "preview.example.com"}));
    let v = violations("PreviewEnvironment", &obj, None);
    assert!(
        v.iter()
            .any(|m| m.contains("urlHostTemplate must contain {service}")),
        "{v:?}"
    );
}
