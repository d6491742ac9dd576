//! Version conversion of built-ins served in more than one version. Objects are stored
//! once, in the storage version; a client of another version reads and writes through
//! these conversions, as upstream's conversion functions do. Today: HorizontalPodAutoscaler,
//! stored as autoscaling/v2 and served as autoscaling/v1 too (`kubectl autoscale`, older
//! KEDA-style clients). What v1 cannot say travels in the same annotations upstream uses,
//! so a v1 read-modify-write keeps the v2-only fields.

use serde_json::{Map, Value, json};

use crate::resources::ResourceInfo;

const METRICS: &str = "autoscaling.alpha.kubernetes.io/metrics";
const BEHAVIOR: &str = "autoscaling.alpha.kubernetes.io/behavior";
const CONDITIONS: &str = "autoscaling.alpha.kubernetes.io/conditions";
const CURRENT_METRICS: &str = "autoscaling.alpha.kubernetes.io/current-metrics";

fn is_hpa(info: &ResourceInfo) -> bool {
    info.group == "autoscaling" && info.plural == "horizontalpodautoscalers"
}

/// The stored object as a client of `version` sees it.
pub fn to_version(info: &ResourceInfo, version: &str, obj: Value) -> Value {
    if is_hpa(info) && version == "v1" {
        return hpa_v2_to_v1(obj);
    }
    obj
}

/// An object a client of `version` sent, in the storage version.
pub fn to_storage(info: &ResourceInfo, version: &str, obj: Value) -> Value {
    if is_hpa(info) && version == "v1" {
        return hpa_v1_to_v2(obj);
    }
    obj
}

fn is_cpu_utilization(m: &Value) -> bool {
    m.get("type").and_then(Value::as_str) == Some("Resource")
        && m.pointer("/resource/name").and_then(Value::as_str) == Some("cpu")
        && m.pointer("/resource/target/type").and_then(Value::as_str) == Some("Utilization")
}

fn annotations(obj: &mut Value) -> Option<&mut Map<String, Value>> {
    let meta = crate::util::meta_mut(obj);
    let a = meta.entry("annotations").or_insert_with(|| json!({}));
    if !a.is_object() {
        *a = json!({});
    }
    a.as_object_mut()
}

fn drop_empty_annotations(obj: &mut Value) {
    let meta = crate::util::meta_mut(obj);
    if meta
        .get("annotations")
        .and_then(Value::as_object)
        .is_some_and(Map::is_empty)
    {
        meta.remove("annotations");
    }
}

fn hpa_v2_to_v1(mut obj: Value) -> Value {
    let spec = obj.get("spec").cloned().unwrap_or_else(|| json!({}));
    let status = obj.get("status").cloned();
    let metrics: Vec<Value> = spec
        .get("metrics")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let cpu = metrics
        .iter()
        .find(|m| is_cpu_utilization(m))
        .and_then(|m| m.pointer("/resource/target/averageUtilization"))
        .cloned();
    let others: Vec<Value> = metrics
        .into_iter()
        .filter(|m| !is_cpu_utilization(m))
        .collect();
    let mut v1_spec = Map::new();
    for k in ["scaleTargetRef", "minReplicas", "maxReplicas"] {
        if let Some(v) = spec.get(k) {
            v1_spec.insert(k.into(), v.clone());
        }
    }
    if let Some(c) = cpu {
        v1_spec.insert("targetCPUUtilizationPercentage".into(), c);
    }
    if let Some(ann) = annotations(&mut obj) {
        if !others.is_empty() {
            ann.insert(METRICS.into(), json!(Value::Array(others).to_string()));
        }
        if let Some(b) = spec.get("behavior") {
            ann.insert(BEHAVIOR.into(), json!(b.to_string()));
        }
        if let Some(c) = status.as_ref().and_then(|s| s.get("conditions")) {
            ann.insert(CONDITIONS.into(), json!(c.to_string()));
        }
        if let Some(c) = status.as_ref().and_then(|s| s.get("currentMetrics")) {
            ann.insert(CURRENT_METRICS.into(), json!(c.to_string()));
        }
    }
    drop_empty_annotations(&mut obj);
    let Some(o) = obj.as_object_mut() else {
        return obj;
    };
    o.insert("apiVersion".into(), json!("autoscaling/v1"));
    o.insert("spec".into(), Value::Object(v1_spec));
    if let Some(s) = status {
        let mut v1 = Map::new();
        for k in [
            "observedGeneration",
            "lastScaleTime",
            "currentReplicas",
            "desiredReplicas",
        ] {
            if let Some(v) = s.get(k) {
                v1.insert(k.into(), v.clone());
            }
        }
        let current_cpu = s
            .get("currentMetrics")
            .and_then(Value::as_array)
            .and_then(|ms| {
                ms.iter().find_map(|m| {
                    (m.pointer("/resource/name").and_then(Value::as_str) == Some("cpu"))
                        .then(|| m.pointer("/resource/current/averageUtilization").cloned())
                        .flatten()
                })
            });
        if let Some(c) = current_cpu {
            v1.insert("currentCPUUtilizationPercentage".into(), c);
        }
        o.insert("status".into(), Value::Object(v1));
    }
    obj
}

fn parsed_annotation(obj: &mut Value, key: &str) -> Option<Value> {
    let raw = annotations(obj)?.remove(key)?;
    raw.as_str().and_then(|s| serde_json::from_str(s).ok())
}

fn hpa_v1_to_v2(mut obj: Value) -> Value {
    let spec = obj.get("spec").cloned().unwrap_or_else(|| json!({}));
    let status = obj.get("status").cloned();
    let mut metrics: Vec<Value> = parsed_annotation(&mut obj, METRICS)
        .and_then(|m| m.as_array().cloned())
        .unwrap_or_default();
    let behavior = parsed_annotation(&mut obj, BEHAVIOR);
    let conditions = parsed_annotation(&mut obj, CONDITIONS);
    let current_metrics = parsed_annotation(&mut obj, CURRENT_METRICS);
    drop_empty_annotations(&mut obj);
    if let Some(cpu) = spec.get("targetCPUUtilizationPercentage") {
        metrics.insert(
            0,
            json!({"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": cpu}}}),
        );
    }
    let mut v2_spec = Map::new();
    for k in ["scaleTargetRef", "minReplicas", "maxReplicas"] {
        if let Some(v) = spec.get(k) {
            v2_spec.insert(k.into(), v.clone());
        }
    }
    if !metrics.is_empty() {
        v2_spec.insert("metrics".into(), Value::Array(metrics));
    }
    if let Some(b) = behavior {
        v2_spec.insert("behavior".into(), b);
    }
    let Some(o) = obj.as_object_mut() else {
        return obj;
    };
    o.insert("apiVersion".into(), json!("autoscaling/v2"));
    o.insert("spec".into(), Value::Object(v2_spec));
    if let Some(s) = status {
        let mut v2 = Map::new();
        for k in [
            "observedGeneration",
            "lastScaleTime",
            "currentReplicas",
            "desiredReplicas",
        ] {
            if let Some(v) = s.get(k) {
                v2.insert(k.into(), v.clone());
            }
        }
        if let Some(c) = current_metrics {
            v2.insert("currentMetrics".into(), c);
        } else if let Some(cpu) = s.get("currentCPUUtilizationPercentage") {
            v2.insert(
                "currentMetrics".into(),
                json!([{"type": "Resource", "resource": {"name": "cpu", "current": {"averageUtilization": cpu}}}]),
            );
        }
        if let Some(c) = conditions {
            v2.insert("conditions".into(), c);
        }
        o.insert("status".into(), Value::Object(v2));
    }
    obj
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_v1_autoscaler_round_trips_through_v2_with_its_v2_only_fields() {
        let v2 = json!({
            "apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": "web"},
            "spec": {
                "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
                "minReplicas": 1, "maxReplicas": 4,
                "metrics": [
                    {"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 70}}},
                    {"type": "External", "external": {"metric": {"name": "queue"}, "target": {"type": "Value", "value": "10"}}}
                ],
                "behavior": {"scaleDown": {"stabilizationWindowSeconds": 60}}
            }
        });
        let v1 = hpa_v2_to_v1(v2.clone());
        assert_eq!(v1["spec"]["targetCPUUtilizationPercentage"], 70);
        assert!(v1["spec"].get("metrics").is_none());
        assert!(v1["metadata"]["annotations"][METRICS].is_string());
        assert_eq!(hpa_v1_to_v2(v1), v2);
    }
}
