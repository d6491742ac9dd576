//! `meta.k8s.io/v1` Table responses for `kubectl get` (Accept: ...;as=Table): a CRD's
//! additionalPrinterColumns, or Name/Age (and a few well-known columns) for built-ins.

use serde_json::{Value, json};

use crate::api::{ListPage, versioned};
use crate::resources::{PrinterColumn, ResourceInfo};
use crate::util::{human_age, meta, scalar_string};

fn col(name: &str, type_: &str, format: &str, path: &str, description: &str) -> PrinterColumn {
    PrinterColumn {
        name: name.into(),
        type_: type_.into(),
        format: format.into(),
        description: description.into(),
        json_path: path.into(),
        priority: 0,
    }
}

fn columns(info: &ResourceInfo, version: &str) -> Vec<PrinterColumn> {
    let name = col(
        "Name",
        "string",
        "name",
        ".metadata.name",
        "Name must be unique within a namespace.",
    );
    if let Some(v) = info.version(version).filter(|_| !info.builtin) {
        let mut cols = vec![name];
        cols.extend(v.columns.iter().cloned());
        return cols;
    }
    // The columns kubectl users know for the built-ins; `#` paths are computed cells.
    let age = col(
        "Age",
        "date",
        "",
        ".metadata.creationTimestamp",
        "Time since creation.",
    );
    let int = |n: &str, p: &str| col(n, "integer", "", p, n);
    let text = |n: &str, p: &str| col(n, "string", "", p, n);
    let mut cols = match (info.group.as_str(), info.plural.as_str()) {
        ("", "namespaces") => vec![name, text("Status", ".status.phase")],
        ("", "pods") => vec![
            name,
            text("Ready", "#pod-ready"),
            text("Status", "#pod-status"),
            int("Restarts", "#pod-restarts"),
        ],
        ("", "services") => vec![
            name,
            text("Type", ".spec.type"),
            text("Cluster-IP", ".spec.clusterIP"),
            text("External-IP", "#external-ip"),
            text("Port(s)", "#service-ports"),
        ],
        ("", "configmaps") => vec![name, int("Data", "#data-count")],
        ("", "secrets") => vec![name, text("Type", ".type"), int("Data", "#data-count")],
        ("", "events") => {
            return vec![
                text("Last Seen", "#event-age"),
                text("Type", ".type"),
                text("Reason", ".reason"),
                text("Object", "#event-object"),
                text("Message", ".message"),
            ];
        }
        ("apps", "deployments") => vec![
            name,
            text("Ready", "#ready-of-replicas"),
            int("Up-to-date", ".status.updatedReplicas"),
            int("Available", ".status.availableReplicas"),
        ],
        ("apps", "statefulsets") => vec![name, text("Ready", "#ready-of-replicas")],
        ("apps", "replicasets") => vec![
            name,
            int("Desired", ".spec.replicas"),
            int("Current", ".status.replicas"),
            int("Ready", ".status.readyReplicas"),
        ],
        _ => vec![name],
    };
    cols.push(age);
    cols
}

fn count(v: Option<&Value>) -> usize {
    match v {
        Some(Value::Array(a)) => a.len(),
        Some(Value::Object(o)) => o.len(),
        _ => 0,
    }
}

/// Cells kubectl's own printers compute from several fields.
fn computed(which: &str, obj: &Value) -> Value {
    let int = |v: Option<&Value>| v.and_then(Value::as_i64).unwrap_or(0);
    let statuses = obj
        .get("status")
        .and_then(|s| s.get("containerStatuses"))
        .and_then(Value::as_array);
    match which {
        "#pod-ready" => {
            let total = count(obj.get("spec").and_then(|s| s.get("containers")));
            let ready = statuses
                .into_iter()
                .flatten()
                .filter(|c| c.get("ready") == Some(&json!(true)))
                .count();
            json!(format!("{ready}/{total}"))
        }
        "#pod-status" => {
            if meta(obj).is_some_and(|m| m.contains_key("deletionTimestamp")) {
                json!("Terminating")
            } else {
                json!(
                    obj.get("status")
                        .and_then(|s| s.get("phase"))
                        .and_then(Value::as_str)
                        .unwrap_or("Pending")
                )
            }
        }
        "#pod-restarts" => json!(
            statuses
                .into_iter()
                .flatten()
                .map(|c| int(c.get("restartCount")))
                .sum::<i64>()
        ),
        "#external-ip" => json!("<none>"),
        "#service-ports" => {
            let ports = obj
                .get("spec")
                .and_then(|s| s.get("ports"))
                .and_then(Value::as_array);
            let listed: Vec<String> = ports
                .into_iter()
                .flatten()
                .map(|p| {
                    let proto = p.get("protocol").and_then(Value::as_str).unwrap_or("TCP");
                    format!("{}/{proto}", int(p.get("port")))
                })
                .collect();
            json!(if listed.is_empty() {
                "<none>".to_string()
            } else {
                listed.join(",")
            })
        }
        "#data-count" => json!(count(obj.get("data")) + count(obj.get("binaryData"))),
        "#ready-of-replicas" => {
            let st = obj.get("status");
            let ready = int(st.and_then(|s| s.get("readyReplicas")));
            let want = int(obj.get("spec").and_then(|s| s.get("replicas")));
            json!(format!("{ready}/{want}"))
        }
        "#event-age" => {
            let t = ["lastTimestamp", "eventTime"]
                .iter()
                .find_map(|k| obj.get(*k).and_then(Value::as_str))
                .or_else(|| {
                    meta(obj)
                        .and_then(|m| m.get("creationTimestamp"))
                        .and_then(Value::as_str)
                });
            json!(t.map(human_age).unwrap_or_default())
        }
        "#event-object" => {
            let io = obj.get("involvedObject");
            let kind = io
                .and_then(|i| i.get("kind"))
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_lowercase();
            let name = io
                .and_then(|i| i.get("name"))
                .and_then(Value::as_str)
                .unwrap_or_default();
            json!(format!("{kind}/{name}"))
        }
        _ => Value::Null,
    }
}

/// A small JSONPath subset: `.a.b`, `.a[0]`, `.a[*].b`, `.a[?(@.type=="Ready")].status`.
pub fn json_path<'a>(obj: &'a Value, path: &str) -> Vec<&'a Value> {
    let path = path
        .trim()
        .trim_start_matches('{')
        .trim_end_matches('}')
        .trim_start_matches('$');
    let mut cur: Vec<&Value> = vec![obj];
    let mut rest = path;
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix('.') {
            let end = r.find(['.', '[']).unwrap_or(r.len());
            let key = &r[..end];
            cur = cur.into_iter().filter_map(|v| v.get(key)).collect();
            rest = &r[end..];
        } else if let Some(r) = rest.strip_prefix('[') {
            let Some(end) = r.find(']') else {
                return vec![];
            };
            let sel = &r[..end];
            rest = &r[end + 1..];
            let items = cur.into_iter().filter_map(Value::as_array).flatten();
            cur = if sel == "*" {
                items.collect()
            } else if let Ok(i) = sel.parse::<usize>() {
                items
                    .enumerate()
                    .filter(|(n, _)| *n == i)
                    .map(|(_, v)| v)
                    .collect()
            } else if let Some(cond) = sel.strip_prefix("?(@.").and_then(|c| c.strip_suffix(')')) {
                let Some((field, want)) = cond.split_once("==") else {
                    return vec![];
                };
                let want = want.trim().trim_matches('"').trim_matches('\'');
                items
                    .filter(|it| it.get(field.trim()).map(scalar_string).as_deref() == Some(want))
                    .collect()
            } else {
                return vec![];
            };
        } else {
            return vec![];
        }
    }
    cur
}

fn cell(column: &PrinterColumn, obj: &Value) -> Value {
    if column.json_path.starts_with('#') {
        return computed(&column.json_path, obj);
    }
    let found = json_path(obj, &column.json_path);
    let Some(first) = found.first() else {
        return Value::Null;
    };
    match column.type_.as_str() {
        "date" => first
            .as_str()
            .map(|s| json!(human_age(s)))
            .unwrap_or(Value::Null),
        "integer" | "number" | "boolean" if !first.is_object() && !first.is_array() => {
            (*first).clone()
        }
        _ => {
            let parts: Vec<String> = found
                .iter()
                .map(|v| {
                    if v.is_object() || v.is_array() {
                        v.to_string()
                    } else {
                        scalar_string(v)
                    }
                })
                .collect();
            json!(parts.join(","))
        }
    }
}

/// `meta.k8s.io/v1` PartialObjectMetadata: the object's metadata alone.
pub fn partial(obj: &Value) -> Value {
    json!({
        "kind": "PartialObjectMetadata",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": meta(obj).cloned().unwrap_or_default(),
    })
}

pub fn metadata_list(page: &ListPage) -> Value {
    let mut metadata = json!({"resourceVersion": page.rv.to_string()});
    if let Some(c) = &page.continue_ {
        metadata["continue"] = json!(c);
    }
    json!({
        "kind": "PartialObjectMetadataList",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": metadata,
        "items": page.items.iter().map(|o| partial(o)).collect::<Vec<_>>(),
    })
}

fn row(
    info: &ResourceInfo,
    version: &str,
    cols: &[PrinterColumn],
    obj: &Value,
    include: Option<&str>,
) -> Value {
    let cells: Vec<Value> = cols.iter().map(|c| cell(c, obj)).collect();
    let object = match include.unwrap_or("Metadata") {
        "None" => Value::Null,
        "Object" => versioned(info, version, obj),
        _ => partial(obj),
    };
    let mut r = json!({"cells": cells});
    if !object.is_null() {
        r["object"] = object;
    }
    r
}

fn definitions(cols: &[PrinterColumn]) -> Vec<Value> {
    cols.iter()
        .map(|c| {
            json!({"name": c.name, "type": c.type_, "format": c.format, "description": c.description, "priority": c.priority})
        })
        .collect()
}

pub fn list_table(
    info: &ResourceInfo,
    version: &str,
    page: &ListPage,
    include: Option<&str>,
) -> Value {
    let cols = columns(info, version);
    let mut metadata = json!({"resourceVersion": page.rv.to_string()});
    if let Some(c) = &page.continue_ {
        metadata["continue"] = json!(c);
    }
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": metadata,
        "columnDefinitions": definitions(&cols),
        "rows": page.items.iter().map(|o| row(info, version, &cols, o, include)).collect::<Vec<_>>(),
    })
}

pub fn object_table(
    info: &ResourceInfo,
    version: &str,
    obj: &Value,
    include: Option<&str>,
) -> Value {
    let cols = columns(info, version);
    let rv = meta(obj)
        .and_then(|m| m.get("resourceVersion"))
        .cloned()
        .unwrap_or(json!(""));
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": {"resourceVersion": rv},
        "columnDefinitions": definitions(&cols),
        "rows": [row(info, version, &cols, obj, include)],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_path_filters_conditions() {
        let o = json!({"status": {"conditions": [{"type": "A", "status": "False"}, {"type": "Ready", "status": "True"}]}});
        let got = json_path(&o, ".status.conditions[?(@.type==\"Ready\")].status");
        assert_eq!(got, vec![&json!("True")]);
        assert_eq!(
            json_path(&o, ".status.conditions[0].type"),
            vec![&json!("A")]
        );
        assert!(json_path(&o, ".spec.missing").is_empty());
    }
}
