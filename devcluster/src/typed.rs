//! Decoding checks for the built-in kinds, done the way the real API server decodes
//! them: into the typed structs (k8s-openapi's, the same shapes as k8s.io/api). A value
//! of the wrong type is a 400; a field the type does not have is an unknown field,
//! an error under `fieldValidation=Strict` (kubectl's default) and dropped otherwise.
//! The stored object stays the client's JSON (minus unknown fields), so nothing is
//! re-rendered.

use k8s_openapi::api::{apps, coordination, core, networking, policy, rbac};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::schemars::JsonSchema;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::error::{ApiError, ApiResult};

#[derive(Clone, Debug, PartialEq)]
enum Seg {
    Key(String),
    Index(usize),
}

fn display(path: &[Seg]) -> String {
    let mut s = String::new();
    for seg in path {
        match seg {
            Seg::Key(k) => {
                if !s.is_empty() {
                    s.push('.');
                }
                s.push_str(k);
            }
            Seg::Index(i) => s.push_str(&format!("[{i}]")),
        }
    }
    s
}

/// Paths present (and not null) in `input` that the typed round trip dropped.
fn unknown(input: &Value, typed: &Value, path: &mut Vec<Seg>, out: &mut Vec<Vec<Seg>>) {
    match (input, typed) {
        (Value::Object(i), Value::Object(t)) => {
            for (k, v) in i {
                path.push(Seg::Key(k.clone()));
                match t.get(k) {
                    None if !v.is_null() => out.push(path.clone()),
                    Some(tv) => unknown(v, tv, path, out),
                    None => {}
                }
                path.pop();
            }
        }
        (Value::Array(i), Value::Array(t)) => {
            for (n, (iv, tv)) in i.iter().zip(t).enumerate() {
                path.push(Seg::Index(n));
                unknown(iv, tv, path, out);
                path.pop();
            }
        }
        _ => {}
    }
}

fn remove(obj: &mut Value, path: &[Seg]) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let mut cur = obj;
    for seg in parents {
        let next = match seg {
            Seg::Key(k) => cur.get_mut(k.as_str()),
            Seg::Index(i) => cur.get_mut(*i),
        };
        let Some(n) = next else { return };
        cur = n;
    }
    if let (Seg::Key(k), Some(m)) = (last, cur.as_object_mut()) {
        m.remove(k);
    }
}

/// Something to do with the Rust type of a built-in kind (decode it, describe it).
pub trait KindVisitor {
    type Out;
    fn visit<T: DeserializeOwned + Serialize + JsonSchema>(self) -> Self::Out;
}

/// Call `v` with the typed struct of a built-in (group, resource); None for others.
pub fn with_type<V: KindVisitor>(group: &str, plural: &str, v: V) -> Option<V::Out> {
    Some(match (group, plural) {
        ("", "namespaces") => v.visit::<core::v1::Namespace>(),
        ("", "pods") => v.visit::<core::v1::Pod>(),
        ("", "services") => v.visit::<core::v1::Service>(),
        ("", "configmaps") => v.visit::<core::v1::ConfigMap>(),
        ("", "secrets") => v.visit::<core::v1::Secret>(),
        ("", "resourcequotas") => v.visit::<core::v1::ResourceQuota>(),
        ("", "limitranges") => v.visit::<core::v1::LimitRange>(),
        ("", "events") => v.visit::<core::v1::Event>(),
        ("events.k8s.io", "events") => v.visit::<k8s_openapi::api::events::v1::Event>(),
        ("", "serviceaccounts") => v.visit::<core::v1::ServiceAccount>(),
        ("", "endpoints") => v.visit::<core::v1::Endpoints>(),
        ("apps", "deployments") => v.visit::<apps::v1::Deployment>(),
        ("apps", "replicasets") => v.visit::<apps::v1::ReplicaSet>(),
        ("apps", "statefulsets") => v.visit::<apps::v1::StatefulSet>(),
        ("apps", "daemonsets") => v.visit::<apps::v1::DaemonSet>(),
        ("batch", "jobs") => v.visit::<k8s_openapi::api::batch::v1::Job>(),
        ("batch", "cronjobs") => v.visit::<k8s_openapi::api::batch::v1::CronJob>(),
        ("autoscaling", "horizontalpodautoscalers") => {
            v.visit::<k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler>()
        }
        ("", "nodes") => v.visit::<core::v1::Node>(),
        ("", "persistentvolumeclaims") => v.visit::<core::v1::PersistentVolumeClaim>(),
        ("policy", "poddisruptionbudgets") => v.visit::<policy::v1::PodDisruptionBudget>(),
        ("networking.k8s.io", "networkpolicies") => v.visit::<networking::v1::NetworkPolicy>(),
        ("networking.k8s.io", "ingresses") => v.visit::<networking::v1::Ingress>(),
        ("coordination.k8s.io", "leases") => v.visit::<coordination::v1::Lease>(),
        ("rbac.authorization.k8s.io", "roles") => v.visit::<rbac::v1::Role>(),
        ("rbac.authorization.k8s.io", "rolebindings") => v.visit::<rbac::v1::RoleBinding>(),
        ("rbac.authorization.k8s.io", "clusterroles") => v.visit::<rbac::v1::ClusterRole>(),
        ("rbac.authorization.k8s.io", "clusterrolebindings") => {
            v.visit::<rbac::v1::ClusterRoleBinding>()
        }
        ("apiextensions.k8s.io", "customresourcedefinitions") => {
            v.visit::<CustomResourceDefinition>()
        }
        _ => return None,
    })
}

struct RoundTrip<'a>(&'a Value);

impl KindVisitor for RoundTrip<'_> {
    type Out = Result<Value, String>;
    fn visit<T: DeserializeOwned + Serialize + JsonSchema>(self) -> Self::Out {
        let typed: T = serde_json::from_value(self.0.clone()).map_err(|e| e.to_string())?;
        serde_json::to_value(&typed).map_err(|e| e.to_string())
    }
}

/// Check a built-in object (in its stored form) against its type.
pub fn check(
    group: &str,
    plural: &str,
    kind: &str,
    obj: &mut Value,
    strict: bool,
) -> ApiResult<()> {
    // events.k8s.io Events are stored as core Events by the time they get here.
    let group = if plural == "events" { "" } else { group };
    let Some(typed) = with_type(group, plural, RoundTrip(obj)) else {
        return Ok(());
    };
    let typed = typed
        .map_err(|e| ApiError::BadRequest(format!("{kind} cannot be handled as a {kind}: {e}")))?;
    let mut found = vec![];
    unknown(obj, &typed, &mut vec![], &mut found);
    if found.is_empty() {
        return Ok(());
    }
    if strict {
        let listed: Vec<String> = found
            .iter()
            .map(|p| format!("unknown field \"{}\"", display(p)))
            .collect();
        return Err(ApiError::BadRequest(format!(
            "strict decoding error: {}",
            listed.join(", ")
        )));
    }
    for p in &found {
        remove(obj, p);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn deployment(spec: Value) -> Value {
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"}, "spec": spec})
    }

    #[test]
    fn unknown_fields_are_errors_when_strict_and_dropped_otherwise() {
        let mut d = deployment(
            json!({"replcas": 2, "template": {"spec": {"containers": [{"name": "a", "imag": "x"}]}}}),
        );
        let err = check("apps", "deployments", "Deployment", &mut d.clone(), true).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("spec.replcas") && msg.contains("spec.template.spec.containers[0].imag"),
            "{msg}"
        );
        check("apps", "deployments", "Deployment", &mut d, false).unwrap();
        assert_eq!(
            d["spec"],
            json!({"template": {"spec": {"containers": [{"name": "a"}]}}})
        );
    }

    #[test]
    fn wrong_types_are_bad_requests() {
        let mut d = deployment(json!({"replicas": "two"}));
        assert!(matches!(
            check("apps", "deployments", "Deployment", &mut d, false),
            Err(ApiError::BadRequest(_))
        ));
        let mut s = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}, "data": {"k": "not base64!"}});
        assert!(check("", "secrets", "Secret", &mut s, false).is_err());
    }
}
