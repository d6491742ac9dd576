//! Bad input through the Rust mirror of the schema and CEL rules, and through serde: each is
//! rejected with a message that names the field and says what is wrong.

use marketplace_crds::v1alpha1::*;
use serde_json::json;

fn service(scaling: serde_json::Value) -> MarketplaceServiceSpec {
    serde_json::from_value(json!({
        "domain": "orders",
        "image": "registry.example/orders:1.0",
        "scaling": scaling,
    }))
    .expect("fixture deserializes")
}

fn rps_scaling() -> serde_json::Value {
    json!({"minReplicas": 2, "maxReplicas": 20, "metrics": [{"type": "RequestsPerSecond", "target": 50.0}]})
}

#[test]
fn a_valid_service_passes_and_takes_defaults() {
    let spec = service(rps_scaling());
    assert_eq!(spec.port, 8080);
    assert_eq!(spec.validate(), Ok(()));
}

#[test]
fn min_above_max_is_rejected_naming_both_bounds() {
    let spec = service(
        json!({"minReplicas": 10, "maxReplicas": 3, "metrics": [{"type": "Cpu", "target": 70.0}]}),
    );
    let err = spec.validate().expect_err("min > max must fail");
    assert!(err.has_field("spec.scaling.minReplicas"), "{err}");
    assert!(
        err.to_string()
            .contains("minReplicas (10) must not exceed maxReplicas (3)"),
        "{err}"
    );
}

#[test]
fn a_negative_target_is_rejected() {
    let spec = service(
        json!({"maxReplicas": 3, "metrics": [{"type": "RequestsPerSecond", "target": -5.0}]}),
    );
    let err = spec.validate().expect_err("negative target must fail");
    assert!(err.has_field("spec.scaling.metrics[0].target"), "{err}");
    assert!(
        err.to_string()
            .contains("must be a positive number, got -5"),
        "{err}"
    );
}

#[test]
fn a_custom_metric_needs_a_query_and_others_may_not_have_one() {
    let spec = service(json!({"maxReplicas": 3, "metrics": [
        {"type": "Custom", "target": 5.0},
        {"type": "InFlight", "target": 5.0, "query": "up"}
    ]}));
    let err = spec.validate().expect_err("query rules must fail");
    assert!(err.has_field("spec.scaling.metrics[0].query"), "{err}");
    assert!(err.has_field("spec.scaling.metrics[1].query"), "{err}");
}

#[test]
fn replicas_and_scaling_together_are_rejected() {
    let mut spec = service(rps_scaling());
    spec.replicas = Some(3);
    let err = spec
        .validate()
        .expect_err("replicas with scaling must fail");
    assert!(err.has_field("spec.replicas"), "{err}");
}

#[test]
fn a_bad_cron_or_time_zone_in_a_schedule_is_rejected() {
    let spec = service(
        json!({"maxReplicas": 30, "metrics": [{"type": "RequestsPerSecond", "target": 50.0}],
        "schedules": [{"name": "match-day", "cron": "61 14 * * *", "timeZone": "Mars/Olympus", "durationSeconds": 7200, "minReplicas": 10}]}),
    );
    let err = spec.validate().expect_err("bad schedule must fail");
    assert!(err.has_field("spec.scaling.schedules[0].cron"), "{err}");
    assert!(err.has_field("spec.scaling.schedules[0].timeZone"), "{err}");
}

#[test]
fn fallback_replicas_outside_the_bounds_are_rejected() {
    let spec = service(
        json!({"minReplicas": 2, "maxReplicas": 5, "metrics": [{"type": "Cpu", "target": 70.0}],
        "fallback": {"replicas": 9}}),
    );
    let err = spec.validate().expect_err("fallback above max must fail");
    assert!(err.has_field("spec.scaling.fallback.replicas"), "{err}");
}

#[test]
fn a_service_cannot_depend_on_itself_or_twice_on_a_peer() {
    let mut spec = service(rps_scaling());
    spec.depends_on = vec!["inventory".into(), "orders".into(), "inventory".into()];
    let err = spec.validate().expect_err("bad dependsOn must fail");
    assert!(err.has_field("spec.dependsOn[1]"), "{err}");
    assert!(err.has_field("spec.dependsOn[2]"), "{err}");
}

#[test]
fn an_unknown_metric_type_fails_to_deserialize_naming_the_variants() {
    let err = serde_json::from_value::<MetricSpec>(json!({"type": "Memory", "target": 1.0}))
        .expect_err("unknown metric type");
    assert!(
        err.to_string().contains("unknown variant `Memory`"),
        "{err}"
    );
}

#[test]
fn an_unknown_eviction_policy_fails_to_deserialize() {
    let err = serde_json::from_value::<CacheTierSpec>(json!({"evictionPolicy": "allkeys-fifo"}))
        .expect_err("unknown eviction policy");
    let msg = err.to_string();
    assert!(
        msg.contains("unknown variant `allkeys-fifo`") && msg.contains("allkeys-lru"),
        "{msg}"
    );
}

#[test]
fn a_cache_tier_defaults_to_a_valid_standalone_lru_tier() {
    let spec: CacheTierSpec = serde_json::from_value(json!({})).expect("empty spec takes defaults");
    assert_eq!(spec.mode, CacheMode::Standalone);
    assert_eq!(spec.eviction_policy.as_redis(), "allkeys-lru");
    assert_eq!(parse_redis_memory(&spec.max_memory), Some(256 << 20));
    assert_eq!(spec.validate(), Ok(()));
}

#[test]
fn a_cache_tier_rejects_unlisted_settings_replicas_when_standalone_and_bad_flushes() {
    let spec: CacheTierSpec = serde_json::from_value(json!({
        "replicas": 2,
        "maxMemory": "lots",
        "config": {"save": "60 1", "hz": "20"},
        "flushes": [{"id": "a", "prefix": "orders:*"}, {"id": "a", "prefix": "users:"}]
    }))
    .expect("deserializes");
    let err = spec.validate().expect_err("invalid cache tier");
    for field in [
        "spec.replicas",
        "spec.maxMemory",
        "spec.config[save]",
        "spec.flushes[0].prefix",
        "spec.flushes[1].id",
    ] {
        assert!(err.has_field(field), "{field} not reported in {err}");
    }
    assert!(!err.has_field("spec.config[hz]"), "hz is allowed: {err}");
}

fn preview(branch: &str) -> PreviewEnvironmentSpec {
    serde_json::from_value(json!({"branch": branch})).expect("fixture deserializes")
}

#[test]
fn a_preview_environment_takes_defaults_and_derives_its_namespace() {
    let spec = preview("feature/Cart_v2");
    assert_eq!(spec.validate(), Ok(()));
    let ns = spec.namespace_name();
    assert!(ns.starts_with("preview-feature-cart-v2-"), "{ns}");
    assert_eq!(
        ns.len(),
        "preview-feature-cart-v2-".len() + BRANCH_HASH_LENGTH
    );
    assert_eq!(
        spec.effective_image_tag().as_deref(),
        Some("feature-cart-v2")
    );
    assert_eq!(parse_ttl(&spec.ttl), Some(72 * 3600));
}

#[test]
fn an_over_long_branch_name_is_rejected_with_the_limit() {
    let spec = preview(&"a".repeat(300));
    let err = spec.validate().expect_err("long branch must fail");
    assert!(err.has_field("spec.branch"), "{err}");
    assert!(
        err.to_string().contains("300 characters long; at most 255"),
        "{err}"
    );
}

#[test]
fn a_branch_with_forbidden_characters_and_a_bad_ttl_are_rejected() {
    let mut spec = preview("fix bug;rm");
    spec.ttl = "forever".into();
    let err = spec.validate().expect_err("bad branch and ttl");
    assert!(
        err.has_field("spec.branch") && err.has_field("spec.ttl"),
        "{err}"
    );
    spec.ttl = "31d".into();
    assert!(
        spec.validate()
            .expect_err("ttl too long")
            .to_string()
            .contains("at most 30d")
    );
    for bad in [
        "a..b",
        "/lead",
        "trail/",
        "x.lock",
        "a@{1}",
        "tab\tbranch",
        "a:b",
    ] {
        assert!(preview(bad).validate().is_err(), "{bad} must be rejected");
    }
}

#[test]
fn the_longest_allowed_branch_still_makes_a_valid_namespace_name() {
    let spec = preview(&"b".repeat(MAX_BRANCH_LENGTH));
    assert_eq!(spec.validate(), Ok(()));
    assert!(spec.namespace_name().len() <= 63);
}

#[test]
fn a_branch_of_only_unsafe_characters_is_named_by_its_hash() {
    let spec = preview("___");
    assert_eq!(spec.validate(), Ok(()));
    assert_eq!(
        spec.namespace_name(),
        format!("preview-{}", marketplace_crds::v1alpha1::branch_hash("___"))
    );
    assert_ne!(spec.namespace_name(), preview("__").namespace_name());
    assert_eq!(spec.effective_image_tag(), None);
}

#[test]
fn predictive_headroom_outside_its_range_is_rejected() {
    let spec = service(
        json!({"maxReplicas": 30, "metrics": [{"type": "RequestsPerSecond", "target": 50.0}],
        "predictive": {"headroomSigmas": 9.0}}),
    );
    let err = spec.validate().expect_err("headroom above 6 must fail");
    assert!(
        err.has_field("spec.scaling.predictive.headroomSigmas"),
        "{err}"
    );
}
