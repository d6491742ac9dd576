//! CustomResourceDefinitions: turning one into a served resource, and the structural
//! schema work upstream does on every custom object: pruning, defaulting, validation
//! (types, required, enum, bounds, lengths, patterns).

use serde_json::{Map, Value, json};

use crate::error::Cause;
use crate::resources::{PrinterColumn, ResourceInfo, ScaleSpec, VersionInfo};
use crate::state::State;
use crate::util::{meta_str, now_rfc3339, strings};

fn s(v: &Value, key: &str) -> Option<String> {
    v.get(key).and_then(Value::as_str).map(String::from)
}

/// The served resource a CRD object describes, or the field problems that stop it.
pub fn crd_info(crd: &Value) -> Result<ResourceInfo, Vec<Cause>> {
    let spec = crd.get("spec").cloned().unwrap_or(Value::Null);
    let names = spec.get("names").cloned().unwrap_or(Value::Null);
    let mut causes = vec![];
    let group = s(&spec, "group").unwrap_or_default();
    let plural = s(&names, "plural").unwrap_or_default();
    let kind = s(&names, "kind").unwrap_or_default();
    if group.is_empty() {
        causes.push(Cause::required("spec.group"));
    }
    if plural.is_empty() {
        causes.push(Cause::required("spec.names.plural"));
    }
    if kind.is_empty() {
        causes.push(Cause::required("spec.names.kind"));
    }
    let scope = s(&spec, "scope").unwrap_or_default();
    if scope != "Namespaced" && scope != "Cluster" {
        causes.push(Cause::not_supported(
            "spec.scope",
            &json!(scope),
            &[json!("Cluster"), json!("Namespaced")],
        ));
    }
    let name = meta_str(crd, "name").unwrap_or_default();
    if !plural.is_empty() && !group.is_empty() && name != format!("{plural}.{group}") {
        causes.push(Cause::invalid(
            "metadata.name",
            &json!(name),
            "must be spec.names.plural+\".\"+spec.group",
        ));
    }
    let mut versions = vec![];
    for (i, v) in spec
        .get("versions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
    {
        let Some(vname) = s(v, "name") else {
            causes.push(Cause::required(format!("spec.versions[{i}].name")));
            continue;
        };
        let sub = v.get("subresources");
        let scale = sub.and_then(|x| x.get("scale")).map(|sc| ScaleSpec {
            spec_replicas_path: s(sc, "specReplicasPath")
                .unwrap_or_else(|| ".spec.replicas".into()),
            status_replicas_path: s(sc, "statusReplicasPath")
                .unwrap_or_else(|| ".status.replicas".into()),
            label_selector_path: s(sc, "labelSelectorPath"),
        });
        let columns = v
            .get("additionalPrinterColumns")
            .and_then(Value::as_array)
            .map(|cols| {
                cols.iter()
                    .map(|c| PrinterColumn {
                        name: s(c, "name").unwrap_or_default(),
                        type_: s(c, "type").unwrap_or_else(|| "string".into()),
                        format: s(c, "format").unwrap_or_default(),
                        description: s(c, "description").unwrap_or_default(),
                        json_path: s(c, "jsonPath").unwrap_or_default(),
                        priority: c.get("priority").and_then(Value::as_i64).unwrap_or(0),
                    })
                    .collect()
            })
            .unwrap_or_else(|| {
                // Upstream's default when a CRD declares no columns.
                vec![PrinterColumn {
                    name: "Age".into(),
                    type_: "date".into(),
                    format: String::new(),
                    description: String::new(),
                    json_path: ".metadata.creationTimestamp".into(),
                    priority: 0,
                }]
            });
        versions.push(VersionInfo {
            name: vname,
            served: v.get("served").and_then(Value::as_bool).unwrap_or(true),
            storage: v.get("storage").and_then(Value::as_bool).unwrap_or(false),
            cel_key: v
                .get("schema")
                .and_then(|x| x.get("openAPIV3Schema"))
                .filter(|sc| has_rules(sc))
                .map(|sc| {
                    let mut h = std::hash::DefaultHasher::new();
                    std::hash::Hash::hash(&sc.to_string(), &mut h);
                    std::hash::Hasher::finish(&h)
                }),
            schema: v
                .get("schema")
                .and_then(|x| x.get("openAPIV3Schema"))
                .cloned(),
            columns,
            status: sub.and_then(|x| x.get("status")).is_some(),
            scale,
        });
    }
    if versions.is_empty() {
        causes.push(Cause::required("spec.versions"));
    } else if versions.iter().filter(|v| v.storage).count() != 1 {
        causes.push(Cause::invalid(
            "spec.versions",
            &json!("array"),
            "must have exactly one version marked as storage version",
        ));
    }
    if !causes.is_empty() {
        return Err(causes);
    }
    Ok(ResourceInfo {
        list_kind: s(&names, "listKind").unwrap_or_else(|| format!("{kind}List")),
        singular: s(&names, "singular").unwrap_or_else(|| kind.to_lowercase()),
        short_names: strings(names.get("shortNames")),
        categories: strings(names.get("categories")),
        group,
        kind,
        plural,
        namespaced: scope == "Namespaced",
        versions,
        builtin: false,
    })
}

/// Validate a CRD and set the status conditions clients wait for (Established).
pub fn admit_crd(st: &State, crd: &mut Value, causes: &mut Vec<Cause>) {
    match crd_info(crd) {
        Err(c) => causes.extend(c),
        Ok(info) => {
            // CEL rules that do not compile make the CRD invalid, as upstream, rather
            // than failing every object later.
            for (i, v) in info.versions.iter().enumerate() {
                if let (Some(schema), Some(_)) = (&v.schema, v.cel_key) {
                    let compiled = kube_cel::compile_schema(schema);
                    let path = format!("spec.versions[{i}].schema.openAPIV3Schema");
                    compilation_causes(&compiled, &path, causes);
                }
            }
            if st
                .registry
                .by_group_resource(&info.group_resource())
                .is_some_and(|r| r.builtin)
            {
                causes.push(Cause::invalid(
                    "spec.group",
                    &json!(info.group),
                    "conflicts with a built-in resource",
                ));
                return;
            }
            let now = now_rfc3339();
            let names = crd
                .get("spec")
                .and_then(|s| s.get("names"))
                .cloned()
                .unwrap_or(json!({}));
            let mut accepted = names.clone();
            if let Some(a) = accepted.as_object_mut() {
                a.entry("singular").or_insert(json!(info.singular));
                a.entry("listKind").or_insert(json!(info.list_kind));
            }
            let cond = |t: &str, reason: &str, msg: &str| json!({"type": t, "status": "True", "lastTransitionTime": now, "reason": reason, "message": msg});
            // Conditions keep their transition time across updates (a re-apply that
            // changes nothing stays a no-op); stored versions accumulate, as upstream.
            let previous = crd.get("status").cloned().unwrap_or(json!({}));
            let conditions = match previous.get("conditions") {
                Some(c) if c.as_array().is_some_and(|a| !a.is_empty()) => c.clone(),
                _ => json!([
                    cond("NamesAccepted", "NoConflicts", "no conflicts found"),
                    cond(
                        "Established",
                        "InitialNamesAccepted",
                        "the initial names have been accepted"
                    ),
                ]),
            };
            let mut stored = strings(previous.get("storedVersions"));
            if !stored.iter().any(|v| v == info.storage_version()) {
                stored.push(info.storage_version().to_string());
            }
            crd["status"] = json!({
                "conditions": conditions,
                "acceptedNames": accepted,
                "storedVersions": stored,
            });
        }
    }
}

/// Prune unknown fields (their paths go to `pruned`), apply defaults, then validate.
/// `metadata`, `apiVersion` and `kind` are the server's business, not the schema's.
pub fn apply_schema(
    schema: &Value,
    obj: &mut Value,
    pruned: &mut Vec<String>,
    causes: &mut Vec<Cause>,
) {
    let Some(o) = obj.as_object_mut() else { return };
    let server_owned = |k: &str| matches!(k, "metadata" | "apiVersion" | "kind");
    let props = schema.get("properties").and_then(Value::as_object);
    for (k, v) in o.iter_mut().filter(|(k, _)| !server_owned(k)) {
        if let Some(sub) = props.and_then(|p| p.get(k)) {
            prune_and_default(sub, v, k, pruned);
        }
    }
    if !preserves_unknown(schema) {
        o.retain(|k, _| {
            let keep = server_owned(k) || props.is_some_and(|p| p.contains_key(k));
            if !keep {
                pruned.push(k.clone());
            }
            keep
        });
    }
    for (k, sub) in props.into_iter().flatten() {
        if server_owned(k) || o.contains_key(k) {
            continue;
        }
        if let Some(d) = sub.get("default") {
            let mut d = d.clone();
            prune_and_default(sub, &mut d, k, &mut vec![]);
            o.insert(k.clone(), d);
        }
    }
    for req in schema
        .get("required")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
    {
        if !o.contains_key(req) && !server_owned(req) {
            causes.push(Cause::required(req));
        }
    }
    for (k, v) in o.iter().filter(|(k, _)| !server_owned(k)) {
        if let Some(sub) = props.and_then(|p| p.get(k)) {
            validate(sub, v, k, causes);
        }
    }
}

fn preserves_unknown(schema: &Value) -> bool {
    schema
        .get("x-kubernetes-preserve-unknown-fields")
        .and_then(Value::as_bool)
        == Some(true)
}

fn prune_and_default(schema: &Value, v: &mut Value, path: &str, pruned: &mut Vec<String>) {
    match v {
        Value::Object(o) => {
            let props = schema.get("properties").and_then(Value::as_object);
            let additional = schema.get("additionalProperties");
            for (k, child) in o.iter_mut() {
                let child_path = format!("{path}.{k}");
                match (props.and_then(|p| p.get(k)), additional) {
                    (Some(sub), _) => prune_and_default(sub, child, &child_path, pruned),
                    (None, Some(a)) if a.is_object() => {
                        prune_and_default(a, child, &child_path, pruned)
                    }
                    _ => {}
                }
            }
            let keep_all = preserves_unknown(schema)
                || additional.is_some_and(|a| a.is_object() || a.as_bool() == Some(true))
                || schema
                    .get("x-kubernetes-embedded-resource")
                    .and_then(Value::as_bool)
                    == Some(true);
            if !keep_all {
                o.retain(|k, _| {
                    let keep = props.is_some_and(|p| p.contains_key(k));
                    if !keep {
                        pruned.push(format!("{path}.{k}"));
                    }
                    keep
                });
            }
            for (k, sub) in props.into_iter().flatten() {
                if !o.contains_key(k)
                    && let Some(d) = sub.get("default")
                {
                    let mut d = d.clone();
                    prune_and_default(sub, &mut d, k, &mut vec![]);
                    o.insert(k.clone(), d);
                }
            }
        }
        Value::Array(items) => {
            if let Some(item_schema) = schema.get("items") {
                for (i, it) in items.iter_mut().enumerate() {
                    prune_and_default(item_schema, it, &format!("{path}[{i}]"), pruned);
                }
            }
        }
        _ => {}
    }
}

fn is_int(v: &Value) -> bool {
    v.as_i64().is_some()
        || v.as_u64().is_some()
        || v.as_f64()
            .is_some_and(|f| f.fract() == 0.0 && f.is_finite())
}

fn type_ok(t: &str, v: &Value) -> bool {
    match t {
        "object" => v.is_object(),
        "array" => v.is_array(),
        "string" => v.is_string(),
        "integer" => v.is_number() && is_int(v),
        "number" => v.is_number(),
        "boolean" => v.is_boolean(),
        _ => true,
    }
}

/// Validate one value against its schema, appending causes with the field path.
pub fn validate(schema: &Value, v: &Value, path: &str, causes: &mut Vec<Cause>) {
    if v.is_null() {
        if schema.get("nullable").and_then(Value::as_bool) == Some(true) {
            return;
        }
        if schema.get("type").is_some() {
            causes.push(Cause::type_mismatch(
                path,
                v,
                schema["type"].as_str().unwrap_or("object"),
            ));
        }
        return;
    }
    let int_or_string = schema
        .get("x-kubernetes-int-or-string")
        .and_then(Value::as_bool)
        == Some(true);
    if let Some(t) = schema.get("type").and_then(Value::as_str)
        && !(int_or_string && (v.is_string() || is_int(v)))
        && !type_ok(t, v)
    {
        causes.push(Cause::type_mismatch(path, v, t));
        return;
    }
    if let Some(allowed) = schema.get("enum").and_then(Value::as_array)
        && !allowed.contains(v)
    {
        causes.push(Cause::not_supported(path, v, allowed));
    }
    let num = |k: &str| schema.get(k).and_then(Value::as_f64);
    let flag = |k: &str| schema.get(k).and_then(Value::as_bool) == Some(true);
    if let Some(x) = v.as_f64() {
        if let Some(min) = num("minimum")
            && (x < min || (flag("exclusiveMinimum") && x <= min))
        {
            let op = if flag("exclusiveMinimum") {
                "greater than"
            } else {
                "greater than or equal to"
            };
            causes.push(Cause::invalid(
                path,
                v,
                format!("{path} in body should be {op} {min}"),
            ));
        }
        if let Some(max) = num("maximum")
            && (x > max || (flag("exclusiveMaximum") && x >= max))
        {
            let op = if flag("exclusiveMaximum") {
                "less than"
            } else {
                "less than or equal to"
            };
            causes.push(Cause::invalid(
                path,
                v,
                format!("{path} in body should be {op} {max}"),
            ));
        }
        if let Some(m) = num("multipleOf").filter(|m| *m > 0.0)
            && (x / m).fract().abs() > 1e-9
        {
            causes.push(Cause::invalid(
                path,
                v,
                format!("{path} in body should be a multiple of {m}"),
            ));
        }
    }
    if let Some(text) = v.as_str() {
        let len = text.chars().count() as f64;
        if let Some(min) = num("minLength").filter(|m| len < *m) {
            causes.push(Cause::invalid(
                path,
                v,
                format!("{path} in body should be at least {min} chars long"),
            ));
        }
        if let Some(max) = num("maxLength").filter(|m| len > *m) {
            causes.push(Cause::invalid(
                path,
                v,
                format!("{path} in body should be at most {max} chars long"),
            ));
        }
        if let Some(p) = schema.get("pattern").and_then(Value::as_str) {
            match pattern_matches(p, text) {
                Some(false) => {
                    causes.push(Cause::invalid(
                        path,
                        v,
                        format!("{path} in body should match '{p}'"),
                    ));
                }
                Some(true) => {}
                None => causes.push(Cause::invalid(
                    path,
                    v,
                    format!("the schema pattern '{p}' cannot be evaluated"),
                )),
            }
        }
    }
    if let Some(items) = v.as_array() {
        let n = items.len() as f64;
        if let Some(min) = num("minItems").filter(|m| n < *m) {
            causes.push(Cause::invalid(
                path,
                v,
                format!("{path} in body should have at least {min} items"),
            ));
        }
        if let Some(max) = num("maxItems").filter(|m| n > *m) {
            causes.push(Cause::invalid(
                path,
                v,
                format!("{path} in body should have at most {max} items"),
            ));
        }
        if let Some(item_schema) = schema.get("items") {
            for (i, it) in items.iter().enumerate() {
                validate(item_schema, it, &format!("{path}[{i}]"), causes);
            }
        }
        // Sets and maps hold each element (or key) once, as upstream enforces.
        let keys = strings(schema.get("x-kubernetes-list-map-keys"));
        let identity = |it: &Value| -> Value {
            match schema.get("x-kubernetes-list-type").and_then(Value::as_str) {
                Some("map") => Value::Array(
                    keys.iter()
                        .map(|k| it.get(k).cloned().unwrap_or(Value::Null))
                        .collect(),
                ),
                _ => it.clone(),
            }
        };
        if matches!(
            schema.get("x-kubernetes-list-type").and_then(Value::as_str),
            Some("map" | "set")
        ) {
            let mut seen: Vec<Value> = vec![];
            for (i, it) in items.iter().enumerate() {
                let id = identity(it);
                if seen.contains(&id) {
                    causes.push(Cause {
                        reason: "FieldValueDuplicate",
                        message: format!("Duplicate value: {id}"),
                        field: format!("{path}[{i}]"),
                    });
                } else {
                    seen.push(id);
                }
            }
        }
    }
    if let Some(o) = v.as_object() {
        validate_object(schema, o, path, causes);
    }
    for sub in schema
        .get("allOf")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        validate(sub, v, path, causes);
    }
    for (key, need_one) in [("anyOf", false), ("oneOf", true)] {
        if let Some(alts) = schema.get(key).and_then(Value::as_array) {
            let passing = alts
                .iter()
                .filter(|alt| {
                    let mut c = vec![];
                    validate(alt, v, path, &mut c);
                    c.is_empty()
                })
                .count();
            if passing == 0 || (need_one && passing > 1) {
                causes.push(Cause::invalid(
                    path,
                    v,
                    format!("{path} in body must validate {key} of the schemas"),
                ));
            }
        }
    }
}

fn validate_object(schema: &Value, o: &Map<String, Value>, path: &str, causes: &mut Vec<Cause>) {
    let n = o.len() as f64;
    if let Some(min) = schema
        .get("minProperties")
        .and_then(Value::as_f64)
        .filter(|m| n < *m)
    {
        causes.push(Cause::invalid(
            path,
            &Value::Object(o.clone()),
            format!("{path} in body should have at least {min} properties"),
        ));
    }
    if let Some(max) = schema
        .get("maxProperties")
        .and_then(Value::as_f64)
        .filter(|m| n > *m)
    {
        causes.push(Cause::invalid(
            path,
            &Value::Object(o.clone()),
            format!("{path} in body should have at most {max} properties"),
        ));
    }
    for req in schema
        .get("required")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
    {
        if !o.contains_key(req) {
            causes.push(Cause::required(format!("{path}.{req}")));
        }
    }
    let props = schema.get("properties").and_then(Value::as_object);
    let additional = schema.get("additionalProperties").filter(|a| a.is_object());
    for (k, child) in o {
        let sub = props.and_then(|p| p.get(k)).or(additional);
        if let Some(sub) = sub {
            validate(sub, child, &format!("{path}.{k}"), causes);
        }
    }
}

/// How a list at `path` (field names from the root) merges, read from the schema's
/// `x-kubernetes-list-type` / `x-kubernetes-list-map-keys`. CRD lists default to atomic.
pub fn schema_list_type(schema: &Value, path: &[&str]) -> Option<crate::patch::ListType> {
    let mut cur = schema;
    for k in path {
        cur = cur.get("properties").and_then(|p| p.get(*k)).or_else(|| {
            // Inside an array, a key names a field of its items.
            cur.get("items")
                .and_then(|i| i.get("properties"))
                .and_then(|p| p.get(*k))
        })?;
    }
    let lt = cur.get("x-kubernetes-list-type").and_then(Value::as_str);
    Some(match lt {
        Some("map") => crate::patch::ListType::Map(strings(cur.get("x-kubernetes-list-map-keys"))),
        Some("set") => crate::patch::ListType::Set,
        _ => crate::patch::ListType::Atomic,
    })
}

/// Evaluate the schema's CEL `x-kubernetes-validations` rules (transition rules see
/// `old`). A rule that cannot be evaluated (a CEL feature kube-cel lacks, a runtime
/// error) fails the write and says so, rather than letting the object through unchecked.
pub fn validate_cel(
    schema: &Value,
    key: Option<u64>,
    obj: &Value,
    old: Option<&Value>,
    causes: &mut Vec<Cause>,
) {
    let Some(key) = key else { return };
    thread_local! {
        // Compiling the rules costs more than evaluating them: keep them compiled per
        // schema (keyed by content, so an updated CRD gets its new rules).
        static COMPILED: std::cell::RefCell<std::collections::HashMap<u64, std::rc::Rc<kube_cel::CompiledSchema>>> =
            Default::default();
    }
    let compiled = COMPILED.with(|c| {
        let mut c = c.borrow_mut();
        if c.len() > 256 {
            c.clear();
        }
        c.entry(key)
            .or_insert_with(|| std::rc::Rc::new(kube_cel::compile_schema(schema)))
            .clone()
    });
    let Err(errors) = kube_cel::validate_compiled(&compiled, obj, old) else {
        return;
    };
    for e in errors.into_vec() {
        let field = if e.field_path.is_empty() {
            "<root>".to_string()
        } else {
            e.field_path.clone()
        };
        let message = match e.kind {
            kube_cel::ErrorKind::ValidationFailure => {
                format!("Invalid value: \"object\": {}", e.message)
            }
            _ => format!(
                "Invalid value: \"object\": rule {:?} could not be evaluated: {}",
                e.rule, e.message
            ),
        };
        causes.push(Cause {
            reason: "FieldValueInvalid",
            message,
            field,
        });
    }
}

fn has_rules(schema: &Value) -> bool {
    match schema {
        Value::Object(m) => m.contains_key("x-kubernetes-validations") || m.values().any(has_rules),
        Value::Array(a) => a.iter().any(has_rules),
        _ => false,
    }
}

/// Whether `text` matches the schema `pattern` (None: the pattern does not compile).
/// Patterns are compiled once per thread: validation runs on every write.
fn pattern_matches(pattern: &str, text: &str) -> Option<bool> {
    thread_local! {
        static PATTERNS: std::cell::RefCell<std::collections::HashMap<String, Option<regex::Regex>>> =
            Default::default();
    }
    PATTERNS.with(|p| {
        let mut p = p.borrow_mut();
        if p.len() > 1024 {
            p.clear();
        }
        p.entry(pattern.to_string())
            .or_insert_with(|| regex::Regex::new(pattern).ok())
            .as_ref()
            .map(|re| re.is_match(text))
    })
}

fn compilation_causes(c: &kube_cel::CompiledSchema, path: &str, causes: &mut Vec<Cause>) {
    for (i, e) in c.compilation_errors().into_iter().enumerate() {
        causes.push(Cause::invalid(
            format!("{path}.x-kubernetes-validations[{i}].rule"),
            &json!("object"),
            format!("compilation failed: {e}"),
        ));
    }
    for (k, sub) in &c.properties {
        compilation_causes(sub, &format!("{path}.properties[{k}]"), causes);
    }
    if let Some(items) = &c.items {
        compilation_causes(items, &format!("{path}.items"), causes);
    }
    if let Some(extra) = &c.additional_properties {
        compilation_causes(extra, &format!("{path}.additionalProperties"), causes);
    }
    for (key, list) in [
        ("allOf", &c.all_of),
        ("oneOf", &c.one_of),
        ("anyOf", &c.any_of),
    ] {
        for (i, sub) in list.iter().enumerate() {
            compilation_causes(sub, &format!("{path}.{key}[{i}]"), causes);
        }
    }
}
