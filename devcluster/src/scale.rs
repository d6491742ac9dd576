//! The scale subresource: an `autoscaling/v1` Scale view over spec/status replica paths.

use serde_json::{Value, json};

use crate::api::{self, WriteOpts};
use crate::error::{ApiError, ApiResult, Cause};
use crate::resources::ResourceInfo;
use crate::selector::LabelSelector;
use crate::state::State;
use crate::util::{get_path, meta, meta_str, set_path};

pub fn view(info: &ResourceInfo, version: &str, obj: &Value) -> Value {
    let Some(spec) = info.version(version).and_then(|v| v.scale.as_ref()) else {
        return json!({});
    };
    let m = meta(obj).cloned().unwrap_or_default();
    let pick = |k: &str| m.get(k).cloned().unwrap_or(Value::Null);
    let selector = spec
        .label_selector_path
        .as_deref()
        .and_then(|p| get_path(obj, p))
        .map(|s| match s {
            // Built-ins keep a LabelSelector object; CRDs point at a string already.
            Value::Object(_) => LabelSelector::from_object(s).to_query(),
            other => crate::util::scalar_string(other),
        });
    let mut status = json!({
        "replicas": get_path(obj, &spec.status_replicas_path).and_then(Value::as_i64).unwrap_or(0),
    });
    if let Some(s) = selector {
        status["selector"] = json!(s);
    }
    json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {
            "name": pick("name"),
            "namespace": pick("namespace"),
            "uid": pick("uid"),
            "resourceVersion": pick("resourceVersion"),
            "creationTimestamp": pick("creationTimestamp"),
        },
        "spec": {"replicas": get_path(obj, &spec.spec_replicas_path).and_then(Value::as_i64).unwrap_or(0)},
        "status": status,
    })
}

/// Write a Scale back: only the replica count moves, through the main resource's
/// write path (so generation bumps and watchers see a MODIFIED object).
pub fn update(
    st: &mut State,
    info: &ResourceInfo,
    version: &str,
    ns: &str,
    name: &str,
    scale: &Value,
    opts: &WriteOpts,
) -> ApiResult<Value> {
    let live = api::get(st, info, ns, name)?;
    let Some(spec) = info.version(version).and_then(|v| v.scale.clone()) else {
        return Err(ApiError::NotFound {
            target: Default::default(),
            message: "no scale subresource".into(),
        });
    };
    if let Some(rv) = meta_str(scale, "resourceVersion").filter(|r| !r.is_empty())
        && meta(&live)
            .and_then(|m| m.get("resourceVersion"))
            .and_then(Value::as_str)
            != Some(rv)
    {
        return Err(ApiError::stale(&info.group, &info.plural, name));
    }
    let replicas = scale.get("spec").and_then(|s| s.get("replicas"));
    let Some(n) = replicas.and_then(Value::as_i64).filter(|n| *n >= 0) else {
        let v = replicas.cloned().unwrap_or(Value::Null);
        return Err(ApiError::invalid(
            "autoscaling",
            "Scale",
            name,
            vec![Cause::invalid(
                "spec.replicas",
                &v,
                "must be greater than or equal to 0",
            )],
        ));
    };
    let mut next = api::versioned(info, version, &live);
    if !set_path(&mut next, &spec.spec_replicas_path, json!(n)) {
        return Err(ApiError::Internal(format!(
            "cannot set {} on {name}",
            spec.spec_replicas_path
        )));
    }
    let stored = api::write(
        st,
        info,
        version,
        &live,
        next,
        &WriteOpts {
            subresource: None,
            ..opts.clone()
        },
    )?;
    Ok(view(info, version, &stored))
}
