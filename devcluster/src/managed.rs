//! managedFields: which manager owns which fields (fieldsV1), recorded on every write,
//! and server-side apply on top of it: conflicts between managers (409 unless forced)
//! and removal of the fields a manager stopped applying.
//!
//! A field set is a set of paths of fieldsV1 tokens (`f:name`, `k:{"name":"x"}`,
//! `v:"value"`, `.` for a keyed list item itself), the structured-merge-diff shapes.

use std::collections::BTreeSet;

use serde_json::{Map, Value, json};

use crate::error::{ApiError, ApiResult, Cause};
use crate::patch::{ListType, apply_merge, list_type};
use crate::resources::ResourceInfo;
use crate::util::{meta, meta_mut, now_rfc3339};

type Path = Vec<String>;
type FieldSet = BTreeSet<Path>;

/// Metadata the server owns; no manager owns it.
const SERVER_META: &[&str] = &[
    "name",
    "namespace",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "managedFields",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "selfLink",
    "generateName",
];

struct Walker<'a> {
    info: &'a ResourceInfo,
    version: &'a str,
}

impl Walker<'_> {
    fn fields(&self, obj: &Value) -> FieldSet {
        let mut out = FieldSet::new();
        let (mut names, mut tokens) = (vec![], vec![]);
        if let Value::Object(m) = obj {
            for (k, v) in m {
                if k == "apiVersion" || k == "kind" {
                    continue;
                }
                names.push(k.clone());
                tokens.push(format!("f:{k}"));
                if k == "metadata" {
                    if let Value::Object(mm) = v {
                        for (mk, mv) in mm
                            .iter()
                            .filter(|(mk, _)| !SERVER_META.contains(&mk.as_str()))
                        {
                            names.push(mk.clone());
                            tokens.push(format!("f:{mk}"));
                            self.walk(&mut names, &mut tokens, mv, &mut out);
                            names.pop();
                            tokens.pop();
                        }
                    }
                } else {
                    self.walk(&mut names, &mut tokens, v, &mut out);
                }
                names.pop();
                tokens.pop();
            }
        }
        out
    }

    fn walk(&self, names: &mut Vec<String>, tokens: &mut Path, v: &Value, out: &mut FieldSet) {
        match v {
            Value::Object(m) if !m.is_empty() => {
                for (k, c) in m {
                    names.push(k.clone());
                    tokens.push(format!("f:{k}"));
                    self.walk(names, tokens, c, out);
                    names.pop();
                    tokens.pop();
                }
            }
            Value::Array(items) if !items.is_empty() => {
                let n: Vec<&str> = names.iter().map(String::as_str).collect();
                match list_type(self.info, self.version, &n) {
                    ListType::Map(keys) => {
                        for item in items {
                            tokens.push(key_token(&keys, item));
                            tokens.push(".".into());
                            out.insert(tokens.clone());
                            tokens.pop();
                            self.walk(names, tokens, item, out);
                            tokens.pop();
                        }
                    }
                    ListType::Set => {
                        for item in items {
                            tokens.push(format!("v:{item}"));
                            out.insert(tokens.clone());
                            tokens.pop();
                        }
                    }
                    ListType::Atomic => {
                        out.insert(tokens.clone());
                    }
                }
            }
            _ => {
                out.insert(tokens.clone());
            }
        }
    }
}

fn key_token(keys: &[String], item: &Value) -> String {
    let k: Map<String, Value> = keys
        .iter()
        .filter_map(|k| item.get(k).map(|v| (k.clone(), v.clone())))
        .collect();
    format!("k:{}", Value::Object(k))
}

/// The value a path points at, if present.
fn resolve<'a>(obj: &'a Value, path: &[String]) -> Option<&'a Value> {
    let mut cur = obj;
    for t in path {
        cur = if let Some(f) = t.strip_prefix("f:") {
            cur.get(f)?
        } else if let Some(k) = t.strip_prefix("k:") {
            let key: Map<String, Value> = serde_json::from_str(k).ok()?;
            cur.as_array()?
                .iter()
                .find(|i| key.iter().all(|(kk, kv)| i.get(kk) == Some(kv)))?
        } else if let Some(v) = t.strip_prefix("v:") {
            let val: Value = serde_json::from_str(v).ok()?;
            cur.as_array()?.iter().find(|i| **i == val)?
        } else if t == "." {
            cur
        } else {
            return None;
        };
    }
    Some(cur)
}

fn remove_path(obj: &mut Value, path: &[String]) {
    let path = if path.last().is_some_and(|t| t == ".") {
        &path[..path.len() - 1]
    } else {
        path
    };
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let mut cur = obj;
    for t in parents {
        let next = if let Some(f) = t.strip_prefix("f:") {
            cur.get_mut(f)
        } else if let Some(k) = t.strip_prefix("k:") {
            let Ok(key) = serde_json::from_str::<Map<String, Value>>(k) else {
                return;
            };
            cur.as_array_mut().and_then(|a| {
                a.iter_mut()
                    .find(|i| key.iter().all(|(kk, kv)| i.get(kk) == Some(kv)))
            })
        } else {
            None
        };
        let Some(n) = next else { return };
        cur = n;
    }
    if let Some(f) = last.strip_prefix("f:") {
        if let Some(m) = cur.as_object_mut() {
            m.remove(f);
        }
    } else if let Some(k) = last.strip_prefix("k:") {
        if let (Ok(key), Some(a)) = (
            serde_json::from_str::<Map<String, Value>>(k),
            cur.as_array_mut(),
        ) {
            a.retain(|i| !key.iter().all(|(kk, kv)| i.get(kk) == Some(kv)));
        }
    } else if let Some(v) = last.strip_prefix("v:")
        && let (Ok(val), Some(a)) = (serde_json::from_str::<Value>(v), cur.as_array_mut())
    {
        a.retain(|i| *i != val);
    }
}

fn to_tree(set: &FieldSet) -> Value {
    let mut root = Map::new();
    for path in set {
        let mut cur = &mut root;
        for t in path {
            let e = cur
                .entry(t.clone())
                .or_insert_with(|| Value::Object(Map::new()));
            let Value::Object(m) = e else { break };
            cur = m;
        }
    }
    Value::Object(root)
}

fn from_tree(tree: &Value, prefix: &mut Path, out: &mut FieldSet) {
    if let Value::Object(m) = tree {
        for (k, v) in m {
            prefix.push(k.clone());
            if v.as_object().is_some_and(Map::is_empty) {
                out.insert(prefix.clone());
            } else {
                from_tree(v, prefix, out);
            }
            prefix.pop();
        }
    }
}

/// A list item's key field (`k:{"name":"a"}` then `f:name`) goes only with the item.
fn is_key_field(p: &[String]) -> bool {
    let [.., item, field] = p else { return false };
    match (item.strip_prefix("k:"), field.strip_prefix("f:")) {
        (Some(k), Some(f)) => {
            serde_json::from_str::<Map<String, Value>>(k).is_ok_and(|key| key.contains_key(f))
        }
        _ => false,
    }
}

/// Readable field path for conflict messages: `.spec.containers[name="a"].image`.
fn display_path(path: &[String]) -> String {
    let mut s = String::new();
    for t in path {
        if let Some(f) = t.strip_prefix("f:") {
            s.push('.');
            s.push_str(f);
        } else if let Some(k) = t.strip_prefix("k:") {
            let key: Map<String, Value> = serde_json::from_str(k).unwrap_or_default();
            let parts: Vec<String> = key.iter().map(|(k, v)| format!("{k}={v}")).collect();
            s.push_str(&format!("[{}]", parts.join(",")));
        } else if let Some(v) = t.strip_prefix("v:") {
            s.push_str(&format!("[{v}]"));
        }
    }
    s
}

struct Entry {
    manager: String,
    operation: String,
    api_version: String,
    time: String,
    subresource: Option<String>,
    fields: FieldSet,
}

fn entries(obj: &Value) -> Vec<Entry> {
    let Some(list) = meta(obj)
        .and_then(|m| m.get("managedFields"))
        .and_then(Value::as_array)
    else {
        return vec![];
    };
    list.iter()
        .map(|e| {
            let s = |k: &str| {
                e.get(k)
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string()
            };
            let mut fields = FieldSet::new();
            if let Some(t) = e.get("fieldsV1") {
                from_tree(t, &mut vec![], &mut fields);
            }
            Entry {
                manager: s("manager"),
                operation: s("operation"),
                api_version: s("apiVersion"),
                time: s("time"),
                subresource: e
                    .get("subresource")
                    .and_then(Value::as_str)
                    .map(String::from),
                fields,
            }
        })
        .collect()
}

fn store_entries(obj: &mut Value, list: Vec<Entry>) {
    let out: Vec<Value> = list
        .into_iter()
        .filter(|e| !e.fields.is_empty())
        .map(|e| {
            let mut v = json!({
                "manager": e.manager,
                "operation": e.operation,
                "apiVersion": e.api_version,
                "time": e.time,
                "fieldsType": "FieldsV1",
                "fieldsV1": to_tree(&e.fields),
            });
            if let Some(s) = e.subresource {
                v["subresource"] = json!(s);
            }
            v
        })
        .collect();
    let m = meta_mut(obj);
    if out.is_empty() {
        m.remove("managedFields");
    } else {
        m.insert("managedFields".into(), Value::Array(out));
    }
}

fn entry_mut<'a>(
    list: &'a mut Vec<Entry>,
    manager: &str,
    op: &str,
    sub: Option<&str>,
    api_version: &str,
) -> &'a mut Entry {
    let pos = list
        .iter()
        .position(|e| e.manager == manager && e.operation == op && e.subresource.as_deref() == sub);
    let i = match pos {
        Some(i) => i,
        None => {
            list.push(Entry {
                manager: manager.into(),
                operation: op.into(),
                api_version: api_version.into(),
                time: String::new(),
                subresource: sub.map(String::from),
                fields: FieldSet::new(),
            });
            list.len() - 1
        }
    };
    let e = &mut list[i];
    e.time = now_rfc3339();
    e.api_version = api_version.into();
    e
}

/// Record an Update-operation write: the writer takes ownership of the fields it changed.
pub fn record_update(
    info: &ResourceInfo,
    version: &str,
    old: Option<&Value>,
    new: &mut Value,
    manager: &str,
    sub: Option<&str>,
) {
    let w = Walker { info, version };
    let mut list = entries(new);
    let now_fields = w.fields(new);
    let changed: FieldSet = now_fields
        .iter()
        .filter(|p| p.last().is_none_or(|t| t != "."))
        .filter(|p| old.is_none_or(|o| resolve(o, p) != resolve(new, p)))
        .cloned()
        .collect();
    if !changed.is_empty() {
        for e in list.iter_mut() {
            e.fields.retain(|p| !changed.contains(p));
        }
        let manager = if manager.is_empty() {
            "unknown"
        } else {
            manager
        };
        let e = entry_mut(
            &mut list,
            manager,
            "Update",
            sub,
            &info.api_version(version),
        );
        e.fields.extend(changed);
    }
    for e in list.iter_mut() {
        e.fields.retain(|p| resolve(new, p).is_some());
    }
    store_entries(new, list);
}

/// Server-side apply: merge `applied` into `live` (None: the object is created) for
/// `manager`, with conflict detection and removal of fields the manager dropped.
pub fn apply(
    info: &ResourceInfo,
    version: &str,
    live: Option<&Value>,
    applied: &Value,
    manager: &str,
    force: bool,
    sub: Option<&str>,
) -> ApiResult<Value> {
    let w = Walker { info, version };
    let empty = json!({});
    let live_v = live.unwrap_or(&empty);
    let mut list = entries(live_v);
    // With a status subresource, an apply to the main resource cannot own status (and
    // one to /status owns nothing else), as upstream resets the other part.
    let has_status = info.version(version).is_some_and(|v| v.status);
    let mut scoped = applied.clone();
    if has_status && let Some(o) = scoped.as_object_mut() {
        if sub == Some("status") {
            o.retain(|k, _| matches!(k.as_str(), "apiVersion" | "kind" | "metadata" | "status"));
        } else {
            o.remove("status");
        }
    }
    let applied = &scoped;
    let new_fields = w.fields(applied);
    let mut conflicts = vec![];
    for e in list
        .iter_mut()
        .filter(|e| !(e.manager == manager && e.operation == "Apply"))
    {
        let clashing: Vec<Path> = e
            .fields
            .intersection(&new_fields)
            .filter(|p| p.last().is_none_or(|t| t != "."))
            .filter(|p| resolve(live_v, p) != resolve(applied, p))
            .cloned()
            .collect();
        if clashing.is_empty() {
            continue;
        }
        if force {
            e.fields.retain(|p| !clashing.contains(p));
        } else {
            for p in clashing {
                conflicts.push(Cause {
                    reason: "FieldManagerConflict",
                    message: format!("conflict with \"{}\" using {}", e.manager, e.api_version),
                    field: display_path(&p),
                });
            }
        }
    }
    let name = meta(applied)
        .and_then(|m| m.get("name"))
        .and_then(Value::as_str)
        .unwrap_or_default();
    if !conflicts.is_empty() {
        let listed: Vec<String> = conflicts
            .iter()
            .map(|c| format!("{}: {}", c.message, c.field))
            .collect();
        return Err(ApiError::Conflict {
            target: crate::error::Target {
                group: info.group.clone(),
                kind: info.plural.clone(),
                name: name.into(),
            },
            message: format!(
                "Apply failed with {} conflict{}: {}",
                conflicts.len(),
                if conflicts.len() == 1 { "" } else { "s" },
                listed.join("\n")
            ),
            causes: conflicts,
        });
    }
    let mut merged = live_v.clone();
    let mut body = applied.clone();
    if let Some(m) = body.get_mut("metadata").and_then(Value::as_object_mut) {
        m.remove("managedFields");
        m.remove("resourceVersion");
    }
    apply_merge(info, version, &mut merged, &body);
    let previous = list
        .iter()
        .find(|e| e.manager == manager && e.operation == "Apply" && e.subresource.as_deref() == sub)
        .map(|e| e.fields.clone())
        .unwrap_or_default();
    for p in previous.difference(&new_fields) {
        // A field (or list item) stays while anyone still owns it or something under
        // it: another manager, or this apply itself (a leaf that became a parent).
        let prefix: &[String] = if p.last().is_some_and(|t| t == ".") {
            &p[..p.len() - 1]
        } else {
            p
        };
        let under = |q: &Path| q.starts_with(prefix);
        let owned_elsewhere = list
            .iter()
            .filter(|e| !(e.manager == manager && e.operation == "Apply"))
            .any(|e| e.fields.iter().any(under))
            || new_fields.iter().any(under);
        if !owned_elsewhere && !is_key_field(p) {
            remove_path(&mut merged, p);
            // A struct left empty goes too, as with a real server: `cache: {name: x}`
            // applied once and then left out must not stay behind as `cache: {}`, which a
            // schema with required fields would then refuse.
            for depth in (1..prefix.len()).rev() {
                let parent = &prefix[..depth];
                if parent.last().is_some_and(|t| !t.starts_with("f:")) {
                    break;
                }
                let still_owned = list
                    .iter()
                    .filter(|e| !(e.manager == manager && e.operation == "Apply"))
                    .any(|e| e.fields.iter().any(|q| q.starts_with(parent)))
                    || new_fields.iter().any(|q| q.starts_with(parent));
                let empty = resolve(&merged, parent)
                    .is_some_and(|v| v.as_object().is_some_and(Map::is_empty));
                if still_owned || !empty {
                    break;
                }
                remove_path(&mut merged, parent);
            }
        }
    }
    let e = entry_mut(&mut list, manager, "Apply", sub, &info.api_version(version));
    e.fields = new_fields;
    for e in list.iter_mut() {
        e.fields.retain(|p| resolve(&merged, p).is_some());
    }
    store_entries(&mut merged, list);
    Ok(merged)
}
