//! Defaults and validation of the built-in kinds, the part of upstream's registry
//! strategies that controllers notice: Services get a cluster IP, workloads get their
//! defaulted strategy and pod template, selectors must match template labels and stay
//! immutable. Not the whole of k8s.io/kubernetes validation: the mistakes operators make.

use serde_json::{Map, Value, json};

use crate::error::Cause;
use crate::selector::LabelSelector;
use crate::util::base64_encode;

fn obj_mut<'a>(v: &'a mut Value, key: &str) -> Option<&'a mut Map<String, Value>> {
    v.get_mut(key).and_then(Value::as_object_mut)
}

fn default(m: &mut Map<String, Value>, key: &str, v: Value) {
    if m.get(key).is_none_or(Value::is_null) {
        m.insert(key.into(), v);
    }
}

/// Apply defaults and collect validation causes for a built-in object.
/// `seq` is a number unique to this write (the next resourceVersion), for allocations.
pub fn admit(
    group: &str,
    plural: &str,
    old: Option<&Value>,
    obj: &mut Value,
    seq: u64,
    causes: &mut Vec<Cause>,
) {
    match (group, plural) {
        ("", "secrets") => secret(obj),
        ("", "namespaces") if obj.get("status").and_then(|s| s.get("phase")).is_none() => {
            obj["status"] = json!({"phase": "Active"});
        }
        ("", "services") => service(old, obj, seq),
        ("", "pods") => {
            if let Some(spec) = obj_mut(obj, "spec") {
                pod_spec(spec, "spec", causes);
            }
        }
        ("apps", "deployments" | "replicasets" | "statefulsets") => {
            workload(plural, old, obj, causes)
        }
        _ => {}
    }
}

/// `stringData` is a write-only convenience: the server folds it into `data`.
fn secret(obj: &mut Value) {
    let Some(o) = obj.as_object_mut() else { return };
    default(o, "type", json!("Opaque"));
    let Some(Value::Object(sd)) = o.remove("stringData") else {
        return;
    };
    let data = o.entry("data").or_insert_with(|| json!({}));
    if let Some(d) = data.as_object_mut() {
        for (k, v) in sd {
            if let Some(s) = v.as_str() {
                d.insert(k, json!(base64_encode(s.as_bytes())));
            }
        }
    }
}

fn service(old: Option<&Value>, obj: &mut Value, seq: u64) {
    let old_ip = old
        .and_then(|o| o.get("spec"))
        .and_then(|s| s.get("clusterIP"))
        .cloned();
    let Some(spec) = obj_mut(obj, "spec") else {
        return;
    };
    default(spec, "type", json!("ClusterIP"));
    default(spec, "sessionAffinity", json!("None"));
    if spec.get("type").and_then(Value::as_str) != Some("ExternalName") {
        // The cluster IP is allocated once and kept (clients that omit it keep it).
        let ip = old_ip
            .unwrap_or_else(|| json!(format!("10.96.{}.{}", (seq / 250) % 250, seq % 250 + 1)));
        default(spec, "clusterIP", ip.clone());
        if spec.get("clusterIP").and_then(Value::as_str) != Some("None") {
            default(
                spec,
                "clusterIPs",
                json!([spec.get("clusterIP").cloned().unwrap_or(ip)]),
            );
        }
        default(spec, "ipFamilies", json!(["IPv4"]));
        default(spec, "ipFamilyPolicy", json!("SingleStack"));
        default(spec, "internalTrafficPolicy", json!("Cluster"));
    }
    let node_ports = matches!(
        spec.get("type").and_then(Value::as_str),
        Some("NodePort" | "LoadBalancer")
    );
    if let Some(ports) = spec.get_mut("ports").and_then(Value::as_array_mut) {
        for (i, p) in ports
            .iter_mut()
            .enumerate()
            .filter_map(|(i, p)| p.as_object_mut().map(|p| (i, p)))
        {
            if node_ports {
                // From the default node-port range; unique enough for a cluster without nodes.
                default(p, "nodePort", json!(30000 + (seq * 7 + i as u64) % 2768));
            }
            default(p, "protocol", json!("TCP"));
            if let Some(port) = p.get("port").cloned() {
                default(p, "targetPort", port);
            }
        }
    }
}

fn workload(plural: &str, old: Option<&Value>, obj: &mut Value, causes: &mut Vec<Cause>) {
    let Some(spec) = obj_mut(obj, "spec") else {
        causes.push(Cause::required("spec"));
        return;
    };
    default(spec, "replicas", json!(1));
    default(spec, "revisionHistoryLimit", json!(10));
    match plural {
        "deployments" => {
            default(spec, "progressDeadlineSeconds", json!(600));
            default(spec, "strategy", json!({}));
            if let Some(st) = spec.get_mut("strategy").and_then(Value::as_object_mut) {
                default(st, "type", json!("RollingUpdate"));
                if st.get("type").and_then(Value::as_str) == Some("RollingUpdate") {
                    default(
                        st,
                        "rollingUpdate",
                        json!({"maxUnavailable": "25%", "maxSurge": "25%"}),
                    );
                }
            }
        }
        "statefulsets" => {
            default(spec, "podManagementPolicy", json!("OrderedReady"));
            default(
                spec,
                "updateStrategy",
                json!({"type": "RollingUpdate", "rollingUpdate": {"partition": 0}}),
            );
            default(
                spec,
                "persistentVolumeClaimRetentionPolicy",
                json!({"whenDeleted": "Retain", "whenScaled": "Retain"}),
            );
        }
        _ => {}
    }
    if spec
        .get("replicas")
        .and_then(Value::as_i64)
        .is_some_and(|r| r < 0)
    {
        let v = spec.get("replicas").cloned().unwrap_or_default();
        causes.push(Cause::invalid(
            "spec.replicas",
            &v,
            "must be greater than or equal to 0",
        ));
    }
    match spec.get("selector") {
        None | Some(Value::Null) => causes.push(Cause::required("spec.selector")),
        Some(sel) => {
            let labels = spec
                .get("template")
                .and_then(|t| t.get("metadata"))
                .and_then(|m| m.get("labels"))
                .cloned()
                .unwrap_or(json!({}));
            let probe = json!({"metadata": {"labels": labels}});
            let selector = LabelSelector::from_object(sel);
            if selector.is_empty() {
                causes.push(Cause::invalid(
                    "spec.selector",
                    sel,
                    "empty selector is invalid for deployment",
                ));
            } else if !selector.matches(&probe) {
                causes.push(Cause::invalid(
                    "spec.template.metadata.labels",
                    &labels,
                    "`selector` does not match template `labels`",
                ));
            }
            let old_sel = old
                .and_then(|o| o.get("spec"))
                .and_then(|s| s.get("selector"));
            if old_sel.is_some_and(|o| o != sel) {
                causes.push(Cause::invalid("spec.selector", sel, "field is immutable"));
            }
        }
    }
    match spec
        .get_mut("template")
        .and_then(|t| t.get_mut("spec"))
        .and_then(Value::as_object_mut)
    {
        Some(pod) => pod_spec(pod, "spec.template.spec", causes),
        None => causes.push(Cause::required("spec.template.spec.containers")),
    }
}

fn pod_spec(spec: &mut Map<String, Value>, path: &str, causes: &mut Vec<Cause>) {
    default(spec, "restartPolicy", json!("Always"));
    default(spec, "dnsPolicy", json!("ClusterFirst"));
    default(spec, "schedulerName", json!("default-scheduler"));
    default(spec, "terminationGracePeriodSeconds", json!(30));
    default(spec, "securityContext", json!({}));
    let containers = spec.get_mut("containers").and_then(Value::as_array_mut);
    let Some(containers) = containers.filter(|c| !c.is_empty()) else {
        causes.push(Cause::required(format!("{path}.containers")));
        return;
    };
    for (i, c) in containers.iter_mut().enumerate() {
        let Some(c) = c.as_object_mut() else { continue };
        if c.get("name")
            .and_then(Value::as_str)
            .is_none_or(str::is_empty)
        {
            causes.push(Cause::required(format!("{path}.containers[{i}].name")));
        }
        let image = c
            .get("image")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        if image.is_empty() {
            causes.push(Cause::required(format!("{path}.containers[{i}].image")));
        }
        let latest = image.ends_with(":latest")
            || !image.rsplit('/').next().unwrap_or_default().contains(':');
        default(
            c,
            "imagePullPolicy",
            json!(if latest { "Always" } else { "IfNotPresent" }),
        );
        default(c, "terminationMessagePath", json!("/dev/termination-log"));
        default(c, "terminationMessagePolicy", json!("File"));
        if let Some(ports) = c.get_mut("ports").and_then(Value::as_array_mut) {
            for p in ports.iter_mut().filter_map(Value::as_object_mut) {
                default(p, "protocol", json!("TCP"));
            }
        }
    }
}

/// core/v1 Event field <-> events.k8s.io/v1 Event field. Upstream stores both APIs in
/// one resource; so do we (as core/v1), so that `kubectl describe` (core API) shows
/// the Events a kube-rs Recorder (events.k8s.io API) wrote.
const EVENT_FIELDS: &[(&str, &str)] = &[
    ("involvedObject", "regarding"),
    ("message", "note"),
    ("count", "deprecatedCount"),
    ("firstTimestamp", "deprecatedFirstTimestamp"),
    ("lastTimestamp", "deprecatedLastTimestamp"),
    ("source", "deprecatedSource"),
    ("reportingComponent", "reportingController"),
];

pub fn is_events_v1(group: &str, plural: &str) -> bool {
    group == "events.k8s.io" && plural == "events"
}

fn rename(obj: &mut Value, to_core: bool) {
    let Some(o) = obj.as_object_mut() else { return };
    for (core, new) in EVENT_FIELDS {
        let (from, to) = if to_core { (new, core) } else { (core, new) };
        if let Some(v) = o.remove(*from) {
            o.insert(to.to_string(), v);
        }
    }
}

pub fn event_to_core(mut obj: Value) -> Value {
    rename(&mut obj, true);
    obj
}

pub fn event_from_core(mut obj: Value) -> Value {
    rename(&mut obj, false);
    obj
}
