//! PATCH bodies: JSON merge patch (RFC 7386), JSON patch (RFC 6902), strategic merge
//! patch (list merge keys and `$patch`/`$setElementOrder`/`$retainKeys`/
//! `$deleteFromPrimitiveList` directives), and the merge step of server-side apply.

use serde_json::{Map, Value};

use crate::resources::ResourceInfo;

/// How a list merges: replaced whole, a set of scalars, or a map keyed by fields.
#[derive(Clone, Debug, PartialEq)]
pub enum ListType {
    Atomic,
    Set,
    Map(Vec<String>),
}

/// List semantics at a field path (field names only, list indices skipped).
pub fn list_type(info: &ResourceInfo, version: &str, path: &[&str]) -> ListType {
    match path {
        ["metadata", "finalizers"] => return ListType::Set,
        ["metadata", "ownerReferences"] => return ListType::Map(vec!["uid".into()]),
        ["metadata", ..] => return ListType::Atomic,
        _ => {}
    }
    if let Some(schema) = info.version(version).and_then(|v| v.schema.as_ref()) {
        return crate::crd::schema_list_type(schema, path).unwrap_or(ListType::Atomic);
    }
    builtin_list_type(info, path)
}

/// The patchMergeKey of the built-in kinds' lists (k8s.io/api struct tags).
fn builtin_list_type(info: &ResourceInfo, path: &[&str]) -> ListType {
    let key = |k: &str| ListType::Map(vec![k.to_string()]);
    match path.last().copied().unwrap_or_default() {
        "containers"
        | "initContainers"
        | "ephemeralContainers"
        | "env"
        | "volumes"
        | "imagePullSecrets" => key("name"),
        "volumeMounts" => key("mountPath"),
        "volumeDevices" => key("devicePath"),
        "ports" if info.plural == "services" && path == ["spec", "ports"] => key("port"),
        "ports" if path.len() >= 2 && path[path.len() - 2].ends_with("ontainers") => {
            key("containerPort")
        }
        "conditions" => key("type"),
        "hostAliases" => key("ip"),
        "topologySpreadConstraints" => key("topologyKey"),
        _ => ListType::Atomic,
    }
}

pub fn merge_patch(doc: &mut Value, patch: &Value) {
    json_patch::merge(doc, patch);
}

/// RFC 6902 as the API server applies it (evanphx/json-patch): a `test` for `null`
/// passes when the path is absent. kube-runtime's finalizer helper relies on that
/// (`test /metadata/finalizers == null`, then `add`). Ops run one by one on a scratch
/// copy, so a failure leaves the caller's object untouched.
pub fn json_patch(doc: &mut Value, patch: &Value) -> Result<(), String> {
    let ops: json_patch::Patch =
        serde_json::from_value(patch.clone()).map_err(|e| format!("invalid JSON patch: {e}"))?;
    let mut scratch = doc.clone();
    for op in ops.0 {
        if let json_patch::PatchOperation::Test(t) = &op
            && t.value.is_null()
            && scratch.pointer(&t.path.to_string()).is_none()
        {
            continue;
        }
        json_patch::patch(&mut scratch, std::slice::from_ref(&op)).map_err(|e| e.to_string())?;
    }
    *doc = scratch;
    Ok(())
}

struct Ctx<'a> {
    info: &'a ResourceInfo,
    version: &'a str,
}

fn is_directive(k: &str) -> bool {
    k.starts_with('$')
}

/// Remove SMP directives from a value that is being inserted as new.
fn strip(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(k, _)| !is_directive(k))
                .map(|(k, v)| (k.clone(), strip(v)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(
            a.iter()
                .filter(|x| {
                    !(x.is_object()
                        && x.get("$patch").is_some()
                        && x.as_object().is_some_and(|o| o.len() == 1))
                })
                .map(strip)
                .collect(),
        ),
        other => other.clone(),
    }
}

pub fn strategic_merge(
    info: &ResourceInfo,
    version: &str,
    doc: &mut Value,
    patch: &Value,
) -> Result<(), String> {
    let Value::Object(p) = patch else {
        return Err("a strategic merge patch must be a JSON object".into());
    };
    if !doc.is_object() {
        *doc = Value::Object(Map::new());
    }
    let ctx = Ctx { info, version };
    let mut path = vec![];
    if let Value::Object(d) = doc {
        smp_map(&ctx, &mut path, d, p)?;
    }
    Ok(())
}

fn smp_map(
    ctx: &Ctx,
    path: &mut Vec<String>,
    doc: &mut Map<String, Value>,
    patch: &Map<String, Value>,
) -> Result<(), String> {
    match patch.get("$patch").and_then(Value::as_str) {
        Some("replace") => {
            *doc = match strip(&Value::Object(patch.clone())) {
                Value::Object(m) => m,
                _ => Map::new(),
            };
            return Ok(());
        }
        Some("delete") => {
            doc.clear();
            return Ok(());
        }
        Some(other) if other != "merge" => return Err(format!("unknown patch type: {other}")),
        _ => {}
    }
    let mut orders = vec![];
    for (k, pv) in patch {
        if let Some(field) = k.strip_prefix("$setElementOrder/") {
            orders.push((field.to_string(), pv.clone()));
            continue;
        }
        if let Some(field) = k.strip_prefix("$deleteFromPrimitiveList/") {
            if let (Some(Value::Array(list)), Some(del)) = (doc.get_mut(field), pv.as_array()) {
                list.retain(|x| !del.contains(x));
            }
            continue;
        }
        if is_directive(k) {
            continue;
        }
        path.push(k.clone());
        match pv {
            Value::Null => {
                doc.remove(k);
            }
            Value::Object(pm) => {
                let entry = doc
                    .entry(k.clone())
                    .or_insert_with(|| Value::Object(Map::new()));
                if !entry.is_object() {
                    *entry = Value::Object(Map::new());
                }
                if let Value::Object(dm) = entry {
                    smp_map(ctx, path, dm, pm)?;
                }
                if pm.get("$patch").and_then(Value::as_str) == Some("delete") {
                    doc.remove(k);
                }
            }
            Value::Array(pl) => {
                let names: Vec<&str> = path.iter().map(String::as_str).collect();
                let lt = list_type(ctx.info, ctx.version, &names);
                let current = doc.remove(k).and_then(|v| {
                    if let Value::Array(a) = v {
                        Some(a)
                    } else {
                        None
                    }
                });
                let merged = match (&lt, current) {
                    (ListType::Map(keys), Some(cur)) => smp_list(ctx, path, cur, pl, &keys[0])?,
                    (ListType::Set, Some(mut cur)) => {
                        for x in pl.iter().filter(|x| !x.is_object()) {
                            if !cur.contains(x) {
                                cur.push(x.clone());
                            }
                        }
                        cur
                    }
                    _ => match strip(pv) {
                        Value::Array(a) => a,
                        _ => vec![],
                    },
                };
                doc.insert(k.clone(), Value::Array(merged));
            }
            scalar => {
                doc.insert(k.clone(), scalar.clone());
            }
        }
        path.pop();
    }
    for (field, order) in orders {
        if let (Some(Value::Array(list)), Some(order)) = (doc.get_mut(&field), order.as_array()) {
            reorder(list, order);
        }
    }
    if let Some(keep) = patch.get("$retainKeys").and_then(Value::as_array) {
        doc.retain(|k, _| keep.iter().any(|x| x.as_str() == Some(k)));
    }
    Ok(())
}

fn same_key(a: &Value, b: &Value, key: &str) -> bool {
    a.get(key).is_some() && a.get(key) == b.get(key)
}

fn smp_list(
    ctx: &Ctx,
    path: &mut Vec<String>,
    mut cur: Vec<Value>,
    patch: &[Value],
    key: &str,
) -> Result<Vec<Value>, String> {
    if patch
        .iter()
        .any(|x| x.get("$patch").and_then(Value::as_str) == Some("replace"))
    {
        return Ok(match strip(&Value::Array(patch.to_vec())) {
            Value::Array(a) => a,
            _ => vec![],
        });
    }
    for item in patch {
        let Value::Object(pm) = item else {
            if !cur.contains(item) {
                cur.push(item.clone());
            }
            continue;
        };
        if pm.get("$patch").and_then(Value::as_str) == Some("delete") {
            cur.retain(|c| !same_key(c, item, key));
            continue;
        }
        match cur.iter_mut().find(|c| same_key(c, item, key)) {
            Some(Value::Object(cm)) => smp_map(ctx, path, cm, pm)?,
            _ => cur.push(strip(item)),
        }
    }
    Ok(cur)
}

/// `$setElementOrder`: listed items first in the given order, the rest after as they were.
fn reorder(list: &mut Vec<Value>, order: &[Value]) {
    let pos = |x: &Value| {
        order.iter().position(|o| match (o, x) {
            (Value::Object(om), Value::Object(_)) => om.iter().all(|(k, v)| x.get(k) == Some(v)),
            _ => o == x,
        })
    };
    let mut indexed: Vec<(usize, Value)> = list.drain(..).enumerate().collect();
    indexed.sort_by_key(|(i, x)| (pos(x).unwrap_or(order.len() + *i), *i));
    list.extend(indexed.into_iter().map(|(_, x)| x));
}

/// The merge step of server-side apply: the applied configuration wins for the fields
/// it names; keyed lists merge per key, sets union, atomic lists are replaced.
pub fn apply_merge(info: &ResourceInfo, version: &str, live: &mut Value, applied: &Value) {
    let mut path = vec![];
    apply_value(&Ctx { info, version }, &mut path, live, applied);
}

fn apply_value(ctx: &Ctx, path: &mut Vec<String>, live: &mut Value, applied: &Value) {
    match (live, applied) {
        (Value::Object(lm), Value::Object(am)) => {
            for (k, av) in am {
                path.push(k.clone());
                if av.is_null() {
                    lm.remove(k);
                } else if let Some(lv) = lm.get_mut(k) {
                    apply_value(ctx, path, lv, av);
                } else {
                    lm.insert(k.clone(), av.clone());
                }
                path.pop();
            }
        }
        (live @ Value::Array(_), Value::Array(al)) => {
            let names: Vec<&str> = path.iter().map(String::as_str).collect();
            match list_type(ctx.info, ctx.version, &names) {
                ListType::Map(keys) => {
                    if let Value::Array(ll) = live {
                        for item in al {
                            let found = ll
                                .iter_mut()
                                .find(|l| keys.iter().all(|k| l.get(k) == item.get(k)));
                            match found {
                                Some(l) => apply_value(ctx, path, l, item),
                                None => ll.push(item.clone()),
                            }
                        }
                    }
                }
                ListType::Set => {
                    if let Value::Array(ll) = live {
                        for item in al {
                            if !ll.contains(item) {
                                ll.push(item.clone());
                            }
                        }
                    }
                }
                ListType::Atomic => *live = applied.clone(),
            }
        }
        (live, applied) => *live = applied.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::Registry;
    use serde_json::json;

    fn deployments() -> std::sync::Arc<ResourceInfo> {
        Registry::default()
            .find("apps", "v1", "deployments")
            .unwrap()
    }

    #[test]
    fn containers_and_env_merge_by_name() {
        let mut doc = json!({"spec": {"template": {"spec": {"containers": [
            {"name": "a", "image": "a:1", "env": [{"name": "X", "value": "1"}, {"name": "Y", "value": "2"}]},
            {"name": "b", "image": "b:1"}
        ]}}}});
        let patch = json!({"spec": {"template": {"spec": {"containers": [
            {"name": "a", "env": [{"name": "Y", "value": "3"}, {"name": "X", "$patch": "delete"}]},
            {"name": "c", "image": "c:1"}
        ]}}}});
        strategic_merge(&deployments(), "v1", &mut doc, &patch).unwrap();
        let c = &doc["spec"]["template"]["spec"]["containers"];
        assert_eq!(c.as_array().unwrap().len(), 3);
        assert_eq!(c[0]["image"], "a:1");
        assert_eq!(c[0]["env"], json!([{"name": "Y", "value": "3"}]));
        assert_eq!(c[2]["name"], "c");
    }

    #[test]
    fn json_patch_test_for_null_passes_on_a_missing_path_and_failures_change_nothing() {
        let mut doc = json!({"metadata": {"name": "a"}});
        let add = json!([
            {"op": "test", "path": "/metadata/finalizers", "value": null},
            {"op": "add", "path": "/metadata/finalizers", "value": ["f"]}
        ]);
        json_patch(&mut doc, &add).unwrap();
        assert_eq!(doc["metadata"]["finalizers"], json!(["f"]));
        let failing = json!([
            {"op": "remove", "path": "/metadata/finalizers"},
            {"op": "test", "path": "/metadata/name", "value": "b"}
        ]);
        assert!(json_patch(&mut doc, &failing).is_err());
        assert_eq!(doc["metadata"]["finalizers"], json!(["f"]));
    }

    #[test]
    fn set_element_order_and_replace_directives() {
        let mut doc =
            json!({"spec": {"template": {"spec": {"containers": [{"name": "a"}, {"name": "b"}]}}}});
        let patch = json!({"spec": {"template": {"spec": {"$setElementOrder/containers": [{"name": "b"}, {"name": "a"}]}}}});
        strategic_merge(&deployments(), "v1", &mut doc, &patch).unwrap();
        assert_eq!(
            doc["spec"]["template"]["spec"]["containers"][0]["name"],
            "b"
        );
        let patch = json!({"spec": {"$patch": "replace", "replicas": 1}});
        strategic_merge(&deployments(), "v1", &mut doc, &patch).unwrap();
        assert_eq!(doc["spec"], json!({"replicas": 1}));
    }
}

#[cfg(test)]
mod robustness {
    use super::*;
    use crate::resources::Registry;
    use proptest::prelude::*;

    /// JSON that looks like patches: directive keys and merge-keyed list names included.
    fn arb_json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            "[a-z$]{0,6}".prop_map(Value::from),
        ];
        leaf.prop_recursive(4, 48, 5, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                prop::collection::btree_map(
                    prop_oneof![
                        Just("$patch".to_string()),
                        Just("$setElementOrder/containers".to_string()),
                        Just("$retainKeys".to_string()),
                        Just("$deleteFromPrimitiveList/finalizers".to_string()),
                        Just("containers".to_string()),
                        Just("name".to_string()),
                        Just("spec".to_string()),
                        "[a-z]{1,4}",
                    ],
                    inner,
                    0..4
                )
                .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #[test]
        fn no_patch_input_panics(doc in arb_json(), patch in arb_json()) {
            let info = Registry::default().find("apps", "v1", "deployments").unwrap();
            let mut d = doc.clone();
            let _ = strategic_merge(&info, "v1", &mut d, &patch);
            let mut d = doc.clone();
            merge_patch(&mut d, &patch);
            let mut d = doc.clone();
            let before = d.clone();
            if json_patch(&mut d, &patch).is_err() {
                prop_assert_eq!(d, before, "a failed JSON patch leaves the document as it was");
            }
            let mut d = doc;
            apply_merge(&info, "v1", &mut d, &patch);
        }
    }
}
