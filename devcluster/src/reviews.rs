//! Reviews: resources a client POSTs to ask a question, answered in `status` and never
//! stored. Access reviews (`kubectl auth can-i`, SelfSubjectAccessReview and friends) ask
//! the same RBAC evaluator that guards requests; with authorization off every access is
//! allowed, as an AlwaysAllow server answers. TokenReview checks tokens this server issued.

use serde_json::{Value, json};

use crate::auth::{self, Attributes, User};
use crate::error::{ApiError, ApiResult};
use crate::resources::ResourceInfo;
use crate::state::State;

/// The answer to a review of kind `info`, posted by `user` (in `ns` for local reviews).
pub fn review(
    st: &State,
    info: &ResourceInfo,
    ns: &str,
    mut body: Value,
    user: &User,
    authz: bool,
) -> ApiResult<Value> {
    if !body.is_object() {
        return Err(ApiError::BadRequest(
            "the body of the request must be an object".into(),
        ));
    }
    let spec = body.get("spec").cloned().unwrap_or_else(|| json!({}));
    let status = match info.plural.as_str() {
        "selfsubjectaccessreviews" => {
            access(st, user, &Attributes::from_review(&spec, None), authz)
        }
        "localsubjectaccessreviews" | "subjectaccessreviews" => {
            let namespaced = info.plural == "localsubjectaccessreviews";
            if namespaced
                && spec
                    .pointer("/resourceAttributes/namespace")
                    .and_then(Value::as_str)
                    .is_some_and(|n| n != ns)
            {
                return Err(ApiError::BadRequest(format!(
                    "spec.resourceAttributes.namespace must match the namespace of the request ({ns})"
                )));
            }
            let subject = subject_of(&spec)?;
            let attrs = Attributes::from_review(&spec, namespaced.then_some(ns));
            access(st, &subject, &attrs, authz)
        }
        "selfsubjectrulesreviews" => {
            let namespace = spec
                .get("namespace")
                .and_then(Value::as_str)
                .unwrap_or_default();
            let (resource, non_resource) = if authz {
                auth::rules_of(st, user, namespace)
            } else {
                auth::rules_of(st, &User::admin(), namespace)
            };
            json!({"resourceRules": resource, "nonResourceRules": non_resource, "incomplete": false})
        }
        "tokenreviews" => token_review(st, &spec),
        "selfsubjectreviews" => json!({"userInfo": user.to_json()}),
        other => {
            return Err(ApiError::NotFound {
                target: Default::default(),
                message: format!("no review named {other}"),
            });
        }
    };
    if let Some(o) = body.as_object_mut() {
        o.insert("apiVersion".into(), json!(info.api_version("v1")));
        o.insert("kind".into(), json!(info.kind));
        o.entry("metadata").or_insert_with(|| json!({}));
        if info.plural == "selfsubjectreviews" {
            o.remove("spec");
        }
        o.insert("status".into(), status);
    }
    Ok(body)
}

fn subject_of(spec: &Value) -> ApiResult<User> {
    let name = spec.get("user").and_then(Value::as_str).unwrap_or_default();
    let groups: Vec<String> = spec
        .get("groups")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(String::from)
                .collect()
        })
        .unwrap_or_default();
    if name.is_empty() && groups.is_empty() {
        return Err(ApiError::invalid(
            "authorization.k8s.io",
            "SubjectAccessReview",
            "",
            vec![crate::error::Cause::invalid(
                "spec.user",
                &json!(""),
                "at least one of user or group must be specified",
            )],
        ));
    }
    Ok(User {
        name: name.into(),
        uid: spec
            .get("uid")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .into(),
        groups,
        extra: Default::default(),
    })
}

fn access(st: &State, user: &User, attrs: &Attributes, authz: bool) -> Value {
    if !authz {
        return json!({"allowed": true, "reason": "devcluster: authorization is off"});
    }
    let d = auth::authorize(st, user, attrs);
    let mut status = json!({"allowed": d.allowed});
    if !d.reason.is_empty() {
        status["reason"] = json!(d.reason);
    }
    status
}

fn token_review(st: &State, spec: &Value) -> Value {
    let token = spec
        .get("token")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let wanted: Vec<String> = spec
        .get("audiences")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(String::from)
                .collect()
        })
        .unwrap_or_default();
    let Some((user, audiences)) = auth::token_user(st, token) else {
        return json!({"authenticated": false, "error": "invalid bearer token", "user": {}});
    };
    // A token issued for no audience is good for the API server's own.
    let granted: Vec<String> = if wanted.is_empty() {
        audiences
    } else if audiences.is_empty() {
        wanted
    } else {
        wanted
            .into_iter()
            .filter(|w| audiences.contains(w))
            .collect()
    };
    if granted.is_empty()
        && spec
            .get("audiences")
            .is_some_and(|a| a.as_array().is_some_and(|a| !a.is_empty()))
    {
        return json!({"authenticated": false, "error": "token audiences do not match", "user": {}});
    }
    json!({"authenticated": true, "user": user.to_json(), "audiences": granted})
}
