//! Subresources that are actions rather than views of the object: a ServiceAccount's
//! `token` (TokenRequest), a Pod's `eviction` (honouring PodDisruptionBudgets), `log`
//! (the simulated kubelet's lines) and `exec` / `attach` / `portforward` (501: there is no
//! node to run them on). `ephemeralcontainers` and a CSR's `approval` are writes of one
//! field and go through the ordinary write path (`is_write_path`).

use std::sync::Arc;

use bytes::Bytes;
use http::{Method, Response, StatusCode, header};
use serde_json::{Value, json};

use crate::api;
use crate::error::{ApiError, ApiResult};
use crate::gc::{self, DeleteOpts};
use crate::handlers::{Body, Req, full, json_response, parse_body};
use crate::resources::{GroupResource, ResourceInfo};
use crate::selector::LabelSelector;
use crate::state::{Shared, State};
use crate::util::{get_path, meta_str};

/// Subresources written like `status`: the verbs apply to the object, one field changes.
pub fn is_write_path(info: &ResourceInfo, sub: &str) -> bool {
    matches!(
        (info.group.as_str(), info.plural.as_str(), sub),
        ("", "pods", "ephemeralcontainers")
            | (
                "certificates.k8s.io",
                "certificatesigningrequests",
                "approval"
            )
    )
}

fn not_found() -> ApiError {
    ApiError::NotFound {
        target: Default::default(),
        message: "the server could not find the requested resource".into(),
    }
}

pub fn serve(
    shared: &Arc<Shared>,
    info: &ResourceInfo,
    _version: &str,
    ns: &str,
    name: &str,
    sub: &str,
    r: &Req,
) -> ApiResult<Response<Body>> {
    let known = crate::resources::extra_subresources(info)
        .iter()
        .any(|x| x.name == sub);
    if !known {
        return Err(not_found());
    }
    match (sub, &r.method) {
        ("token", &Method::POST) => token(shared, ns, name, r),
        ("eviction", &Method::POST) => evict(shared, ns, name, r),
        ("log", &Method::GET) => log(&shared.lock(), ns, name, r),
        ("exec" | "attach" | "portforward", _) => {
            let pod = api::get(&shared.lock(), info, ns, name)?;
            let node = get_path(&pod, "spec.nodeName")
                .and_then(Value::as_str)
                .unwrap_or("devcluster-node");
            Err(ApiError::NotImplemented(format!(
                "{sub} is not available: pod {ns}/{name} runs on the simulated node {node:?}, \
                 which has no container runtime (devcluster simulates Pods; use a real cluster \
                 to {sub})"
            )))
        }
        ("binding", &Method::POST) => Err(ApiError::NotImplemented(
            "devcluster schedules nothing: Pods run on its simulated node".into(),
        )),
        _ => Err(ApiError::MethodNotAllowed(format!(
            "{} is not supported on the {sub} subresource",
            r.method
        ))),
    }
}

/// TokenRequest: a token for the ServiceAccount, as the kubelet and `kubectl create token` get.
fn token(shared: &Arc<Shared>, ns: &str, name: &str, r: &Req) -> ApiResult<Response<Body>> {
    let body = if r.body.iter().all(u8::is_ascii_whitespace) {
        json!({})
    } else {
        parse_body(r.header(header::CONTENT_TYPE), &r.body)?
    };
    let audiences: Vec<String> = body
        .pointer("/spec/audiences")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(String::from)
                .collect()
        })
        .unwrap_or_default();
    let expiration = body
        .pointer("/spec/expirationSeconds")
        .and_then(Value::as_i64)
        .unwrap_or(3600);
    let (token, exp) = crate::auth::service_account_token(
        &mut shared.lock(),
        ns,
        name,
        audiences.clone(),
        expiration,
    )?;
    let expires = chrono::DateTime::from_timestamp(exp, 0)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_default();
    let mut spec = body.get("spec").cloned().unwrap_or_else(|| json!({}));
    spec["audiences"] = json!(audiences);
    spec["expirationSeconds"] = json!(exp - chrono::Utc::now().timestamp());
    Ok(json_response(
        StatusCode::CREATED,
        &json!({
            "kind": "TokenRequest",
            "apiVersion": "authentication.k8s.io/v1",
            "metadata": {"name": name, "namespace": ns, "creationTimestamp": crate::util::now_rfc3339()},
            "spec": spec,
            "status": {"token": token, "expirationTimestamp": expires},
        }),
    ))
}

fn is_ready(pod: &Value) -> bool {
    pod.pointer("/status/conditions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .any(|c| c.get("type") == Some(&json!("Ready")) && c.get("status") == Some(&json!("True")))
}

/// An IntOrString of a budget against `expected` pods (percentages round up, as upstream).
fn scaled(v: &Value, expected: i64) -> i64 {
    match v {
        Value::String(s) => {
            let pct: i64 = s.trim_end_matches('%').parse().unwrap_or(0);
            (pct * expected + 99) / 100
        }
        other => other.as_i64().unwrap_or(0),
    }
}

/// The eviction API: delete the Pod unless a PodDisruptionBudget covering it would drop
/// below its healthy minimum, which is a 429 naming the budget (kubectl drain retries it).
fn evict(shared: &Arc<Shared>, ns: &str, name: &str, r: &Req) -> ApiResult<Response<Body>> {
    let body = if r.body.iter().all(u8::is_ascii_whitespace) {
        json!({})
    } else {
        parse_body(r.header(header::CONTENT_TYPE), &r.body)?
    };
    let mut st = shared.lock();
    let pods = GroupResource {
        group: String::new(),
        resource: "pods".into(),
    };
    let pod = st
        .store
        .get(&pods, ns, name)
        .cloned()
        .ok_or_else(|| ApiError::not_found("", "pods", name))?;
    let phase = get_path(&pod, "status.phase").and_then(Value::as_str);
    let terminal = matches!(phase, Some("Succeeded" | "Failed"));
    if !terminal {
        check_budgets(&st, ns, &pod)?;
    }
    let opts = DeleteOpts::parse(
        body.get("deleteOptions"),
        None,
        r.q("dryRun") == Some("All"),
    )?;
    let info = st.registry.find("", "v1", "pods").ok_or_else(not_found)?;
    gc::delete(&mut st, &info, ns, name, &opts)?;
    Ok(json_response(
        StatusCode::CREATED,
        &json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}),
    ))
}

fn check_budgets(st: &State, ns: &str, pod: &Value) -> ApiResult<()> {
    let pdbs = GroupResource {
        group: "policy".into(),
        resource: "poddisruptionbudgets".into(),
    };
    let covering: Vec<&Arc<Value>> = st
        .store
        .list(&pdbs, Some(ns), None)
        .filter(|b| {
            // A null selector selects nothing; an empty one, every Pod (policy/v1).
            b.pointer("/spec/selector")
                .is_some_and(|s| LabelSelector::from_object(s).matches(pod))
        })
        .collect();
    let budget = match covering.as_slice() {
        [] => return Ok(()),
        [one] => *one,
        _ => {
            return Err(ApiError::Internal(
                "This pod has more than one PodDisruptionBudget, which the eviction subresource does not support.".into(),
            ));
        }
    };
    let selector = budget
        .pointer("/spec/selector")
        .map(LabelSelector::from_object)
        .unwrap_or_default();
    let pods = GroupResource {
        group: String::new(),
        resource: "pods".into(),
    };
    let matched: Vec<&Arc<Value>> = st
        .store
        .list(&pods, Some(ns), None)
        .filter(|p| {
            selector.matches(p)
                && crate::util::meta(p).is_none_or(|m| !m.contains_key("deletionTimestamp"))
        })
        .collect();
    let expected = matched.len() as i64;
    let healthy = matched.iter().filter(|p| is_ready(p)).count() as i64;
    let spec = budget.get("spec").cloned().unwrap_or_default();
    let desired = match (spec.get("minAvailable"), spec.get("maxUnavailable")) {
        (Some(min), _) => scaled(min, expected),
        (None, Some(max)) => expected - scaled(max, expected),
        (None, None) => 1,
    };
    // An unready Pod does not count towards the budget: evicting it costs nothing while
    // the budget holds (upstream's IfHealthyBudget).
    let allowed = if is_ready(pod) {
        healthy - desired >= 1
    } else {
        healthy >= desired
    };
    if allowed {
        return Ok(());
    }
    Err(ApiError::DisruptionBudget {
        cause: format!(
            "The disruption budget {} needs {desired} healthy pods and has {healthy} currently",
            meta_str(budget, "name").unwrap_or_default()
        ),
    })
}

/// pods/log: what the simulated kubelet did with each container, one line per step.
fn log(st: &State, ns: &str, name: &str, r: &Req) -> ApiResult<Response<Body>> {
    let pods = GroupResource {
        group: String::new(),
        resource: "pods".into(),
    };
    let pod = st
        .store
        .get(&pods, ns, name)
        .ok_or_else(|| ApiError::not_found("", "pods", name))?;
    let containers: Vec<&Value> = pod
        .pointer("/spec/containers")
        .and_then(Value::as_array)
        .map(|a| a.iter().collect())
        .unwrap_or_default();
    let names: Vec<&str> = containers
        .iter()
        .filter_map(|c| c.get("name").and_then(Value::as_str))
        .collect();
    let container = match r.q("container") {
        Some(c) if names.contains(&c) => c,
        Some(c) => {
            return Err(ApiError::BadRequest(format!(
                "container {c} is not valid for pod {name}"
            )));
        }
        None if names.len() == 1 => names[0],
        None => {
            return Err(ApiError::BadRequest(format!(
                "a container name must be specified for pod {name}, choose one of: [{}]",
                names.join(" ")
            )));
        }
    };
    let status = pod
        .pointer("/status/containerStatuses")
        .and_then(Value::as_array)
        .and_then(|a| {
            a.iter()
                .find(|s| s.get("name").and_then(Value::as_str) == Some(container))
        });
    let started = status.and_then(|s| {
        s.pointer("/state/running/startedAt")
            .and_then(Value::as_str)
    });
    let Some(started) = started else {
        let reason = status
            .and_then(|s| s.pointer("/state/waiting/reason"))
            .and_then(Value::as_str)
            .unwrap_or("ContainerCreating");
        return Err(ApiError::BadRequest(format!(
            "container \"{container}\" in pod \"{name}\" is waiting to start: {reason}"
        )));
    };
    let image = containers
        .iter()
        .find(|c| c.get("name").and_then(Value::as_str) == Some(container))
        .and_then(|c| c.get("image"))
        .and_then(Value::as_str)
        .unwrap_or_default();
    let node = get_path(pod, "spec.nodeName")
        .and_then(Value::as_str)
        .unwrap_or("devcluster-node");
    let ip = get_path(pod, "status.podIP")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let mut lines = vec![
        (
            started,
            format!("devcluster: pulled image {image:?} for container {container}"),
        ),
        (
            started,
            format!("devcluster: started container {container} on node {node}"),
        ),
    ];
    if is_ready(pod) {
        lines.push((
            started,
            format!("devcluster: container {container} is ready at {ip}"),
        ));
    }
    if let Some(n) = r.q("tailLines").and_then(|n| n.parse::<usize>().ok()) {
        let skip = lines.len().saturating_sub(n);
        lines.drain(..skip);
    }
    let timestamps = matches!(r.q("timestamps"), Some("true" | "1"));
    let mut text = String::new();
    for (at, line) in lines {
        if timestamps {
            text.push_str(at);
            text.push(' ');
        }
        text.push_str(&line);
        text.push('\n');
    }
    let mut res = Response::new(full(Bytes::from(text)));
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain"),
    );
    Ok(res)
}
