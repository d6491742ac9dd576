//! The generated CRDs are structural, documented and carry the rules the API server enforces.

use marketplace_crds::crds;
use serde_json::Value;

fn schemas() -> Vec<(String, Value)> {
    crds()
        .into_iter()
        .flat_map(|crd| {
            let name = crd.metadata.name.clone().unwrap_or_default();
            crd.spec.versions.into_iter().map(move |v| {
                let schema = v
                    .schema
                    .and_then(|s| s.open_api_v3_schema)
                    .map(|s| serde_json::to_value(s).unwrap_or(Value::Null))
                    .unwrap_or(Value::Null);
                (format!("{name}/{}", v.name), schema)
            })
        })
        .collect()
}

/// The rules of a structural schema as the API server checks them (Kubernetes docs,
/// "Specifying a structural schema"), collected as "path: problem".
fn structural_problems(node: &Value, path: &str, out: &mut Vec<String>) {
    let Some(obj) = node.as_object() else {
        out.push(format!("{path}: schema node is not an object"));
        return;
    };
    let int_or_string = obj.get("x-kubernetes-int-or-string") == Some(&Value::Bool(true));
    let preserve = obj.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true));
    if obj.contains_key("$ref") || obj.contains_key("definitions") || obj.contains_key("$defs") {
        out.push(format!("{path}: references are not allowed"));
    }
    for junctor in ["allOf", "anyOf", "oneOf", "not"] {
        if obj.contains_key(junctor) && !int_or_string {
            out.push(format!(
                "{path}: {junctor} without x-kubernetes-int-or-string"
            ));
        }
    }
    match obj.get("type").and_then(Value::as_str) {
        Some("") | None if !int_or_string && !preserve => {
            out.push(format!("{path}: no type"));
        }
        _ => {}
    }
    if obj.contains_key("properties") && obj.contains_key("additionalProperties") {
        out.push(format!("{path}: both properties and additionalProperties"));
    }
    if let Some(props) = obj.get("properties").and_then(Value::as_object) {
        for (k, v) in props {
            structural_problems(v, &format!("{path}.{k}"), out);
        }
    }
    if let Some(items) = obj.get("items") {
        structural_problems(items, &format!("{path}[]"), out);
    }
    if let Some(ap) = obj.get("additionalProperties").filter(|v| v.is_object()) {
        structural_problems(ap, &format!("{path}{{}}"), out);
    }
}

#[test]
fn every_crd_schema_is_structural() {
    let mut problems = Vec::new();
    for (name, schema) in schemas() {
        assert!(schema.is_object(), "{name} has no openAPIV3Schema");
        structural_problems(&schema, &name, &mut problems);
    }
    assert!(
        problems.is_empty(),
        "non-structural schema nodes:\n{}",
        problems.join("\n")
    );
}

#[test]
fn the_structural_check_catches_a_node_without_type() {
    let bad =
        serde_json::json!({"type": "object", "properties": {"x": {"description": "no type"}}});
    let mut problems = Vec::new();
    structural_problems(&bad, "t", &mut problems);
    assert_eq!(problems, vec!["t.x: no type".to_owned()]);
}

fn undocumented(node: &Value, path: &str, out: &mut Vec<String>) {
    let Some(obj) = node.as_object() else { return };
    if let Some(props) = obj.get("properties").and_then(Value::as_object) {
        for (k, v) in props {
            let p = format!("{path}.{k}");
            let documented = v
                .get("description")
                .and_then(Value::as_str)
                .is_some_and(|d| !d.trim().is_empty());
            // apiVersion, kind and metadata are documented by Kubernetes itself.
            let kubernetes_owned = path.ends_with("/v1alpha1")
                && ["apiVersion", "kind", "metadata"].contains(&k.as_str());
            if !documented && !kubernetes_owned {
                out.push(p.clone());
            }
            undocumented(v, &p, out);
        }
    }
    if let Some(items) = obj.get("items") {
        undocumented(items, &format!("{path}[]"), out);
    }
}

#[test]
fn every_field_has_a_description_for_kubectl_explain() {
    let mut missing = Vec::new();
    for (name, schema) in schemas() {
        undocumented(&schema, &name, &mut missing);
    }
    assert!(
        missing.is_empty(),
        "fields without a description:\n{}",
        missing.join("\n")
    );
}

#[test]
fn cross_field_rules_are_declared_as_cel() {
    let yaml: Vec<String> = crds()
        .iter()
        .map(|c| serde_json::to_string(c).unwrap_or_default())
        .collect();
    let all = yaml.join("\n");
    for rule in [
        "self.minReplicas <= self.maxReplicas",
        "self == oldSelf",
        "!has(self.scaling) || !has(self.replicas)",
        "self.mode == 'PrimaryReplica' || self.replicas == 0",
    ] {
        assert!(all.contains(rule), "missing CEL rule {rule}");
    }
}

#[test]
fn marketplace_service_serves_the_scale_subresource() {
    let crd = crds()
        .into_iter()
        .find(|c| c.spec.names.kind == "MarketplaceService")
        .expect("MarketplaceService CRD");
    let scale = crd.spec.versions[0]
        .subresources
        .as_ref()
        .and_then(|s| s.scale.as_ref())
        .expect("scale subresource");
    assert_eq!(scale.spec_replicas_path, ".spec.replicas");
    assert_eq!(scale.status_replicas_path, ".status.replicas");
    assert_eq!(
        scale.label_selector_path.as_deref(),
        Some(".status.selector")
    );
}

#[test]
fn every_kind_is_in_the_marketplace_category_with_a_short_name() {
    for crd in crds() {
        let names = &crd.spec.names;
        assert_eq!(
            names.categories.as_deref(),
            Some(&["marketplace".to_owned()][..]),
            "{}",
            names.kind
        );
        assert!(
            names.short_names.as_ref().is_some_and(|s| !s.is_empty()),
            "{}",
            names.kind
        );
    }
}
