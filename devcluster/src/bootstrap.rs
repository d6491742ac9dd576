//! The objects a fresh cluster has before anyone writes to it: what kube-apiserver
//! creates at start (the `kubernetes` Service, the default ClusterRoles) and what
//! kube-controller-manager puts in every namespace (the `default` ServiceAccount by its
//! serviceaccount controller, `kube-root-ca.crt` by its root-ca-cert-publisher).

use serde_json::{Value, json};

use crate::api::{self, WriteOpts};
use crate::state::State;

/// The first address of the service range, which a real API server gives `kubernetes`.
pub const KUBERNETES_SERVICE_IP: &str = "10.96.0.1";

/// A placeholder: the devcluster serves plain HTTP, so there is no CA to publish.
pub const ROOT_CA_PLACEHOLDER: &str = "-----BEGIN CERTIFICATE-----\n\
ZGV2Y2x1c3RlciBzZXJ2ZXMgcGxhaW4gSFRUUDsgdGhpcyBpcyBub3QgYSByZWFsIENB\n\
-----END CERTIFICATE-----\n";

const ROOT_CA_DESCRIPTION: &str = "Contains a CA bundle that can be used to verify the \
kube-apiserver when using internal endpoints such as the internal service IP or \
kubernetes.default.svc. No other usage is guaranteed across distributions of Kubernetes \
clusters.";

/// Create `obj` as `manager` would; a failure is logged, not fatal (a seeded object
/// that already exists is left as it is).
fn create(st: &mut State, group: &str, plural: &str, ns: &str, obj: Value, manager: &str) {
    let Some(info) = st.registry.find(group, "v1", plural) else {
        return;
    };
    if st
        .store
        .get(&info.group_resource(), ns, name_of(&obj))
        .is_some()
    {
        return;
    }
    let opts = WriteOpts {
        manager: manager.into(),
        ..Default::default()
    };
    if let Err(e) = api::create(st, &info, "v1", ns, obj, &opts) {
        tracing::warn!(resource = plural, namespace = ns, error = %e, "could not seed object");
    }
}

fn name_of(obj: &Value) -> &str {
    crate::util::meta_str(obj, "name").unwrap_or_default()
}

/// What kube-controller-manager adds to a namespace as soon as it exists.
pub fn seed_namespace(st: &mut State, ns: &str) {
    let sa = json!({
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": {"name": "default", "namespace": ns},
    });
    create(st, "", "serviceaccounts", ns, sa, "kube-controller-manager");
    let cm = json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": "kube-root-ca.crt",
            "namespace": ns,
            "annotations": {"kubernetes.io/description": ROOT_CA_DESCRIPTION},
        },
        "data": {"ca.crt": ROOT_CA_PLACEHOLDER},
    });
    create(st, "", "configmaps", ns, cm, "kube-controller-manager");
}

/// What kube-apiserver creates at start (the namespaces are seeded before this).
pub fn seed_cluster(st: &mut State) {
    let svc = json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": "kubernetes",
            "namespace": "default",
            "labels": {"component": "apiserver", "provider": "kubernetes"},
        },
        "spec": {
            "type": "ClusterIP",
            "clusterIP": KUBERNETES_SERVICE_IP,
            "sessionAffinity": "None",
            "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": 6443}],
        },
    });
    create(st, "", "services", "default", svc, "kube-apiserver");
    for role in cluster_roles() {
        create(
            st,
            "rbac.authorization.k8s.io",
            "clusterroles",
            "",
            role,
            "kube-apiserver",
        );
    }
    for binding in cluster_role_bindings() {
        create(
            st,
            "rbac.authorization.k8s.io",
            "clusterrolebindings",
            "",
            binding,
            "kube-apiserver",
        );
    }
    for cs in ["scheduler", "controller-manager", "etcd-0"] {
        let obj = json!({
            "apiVersion": "v1",
            "kind": "ComponentStatus",
            "metadata": {"name": cs},
            "conditions": [{"type": "Healthy", "status": "True", "message": "ok"}],
        });
        create(st, "", "componentstatuses", "", obj, "kube-apiserver");
    }
    seed_api_services(st);
}

/// One APIService per served built-in group-version, as kube-apiserver's autoregistration
/// keeps them (local: no `service`), Available.
fn seed_api_services(st: &mut State) {
    let groups: Vec<(String, Vec<String>)> = std::iter::once((String::new(), vec!["v1".into()]))
        .chain(st.registry.groups())
        .collect();
    for (group, versions) in groups {
        let count = versions.len();
        for (i, version) in versions.into_iter().enumerate() {
            let name = format!("{version}.{group}");
            let obj = json!({
                "apiVersion": "apiregistration.k8s.io/v1",
                "kind": "APIService",
                "metadata": {"name": name, "labels": {"kube-aggregator.kubernetes.io/automanaged": "onstart"}},
                "spec": {
                    "group": group,
                    "version": version,
                    "groupPriorityMinimum": if group.is_empty() { 18000 } else { 17000 },
                    "versionPriority": 15 + count - i,
                },
                "status": {"conditions": [{
                    "type": "Available", "status": "True", "reason": "Local",
                    "message": "Local APIServices are always available",
                    "lastTransitionTime": crate::util::now_rfc3339(),
                }]},
            });
            create(
                st,
                "apiregistration.k8s.io",
                "apiservices",
                "",
                obj,
                "kube-apiserver",
            );
        }
    }
}

fn cluster_role_binding(name: &str, groups: &[&str]) -> Value {
    json!({
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRoleBinding",
        "metadata": {
            "name": name,
            "labels": {"kubernetes.io/bootstrapping": "rbac-defaults"},
            "annotations": {"rbac.authorization.kubernetes.io/autoupdate": "true"},
        },
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": name},
        "subjects": groups.iter().map(|g| json!({
            "apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": g,
        })).collect::<Vec<_>>(),
    })
}

/// What every authenticated user may do on a real cluster: discovery, asking what it may do.
fn cluster_role_bindings() -> Vec<Value> {
    vec![
        cluster_role_binding("cluster-admin", &["system:masters"]),
        cluster_role_binding("system:discovery", &["system:authenticated"]),
        cluster_role_binding("system:basic-user", &["system:authenticated"]),
        cluster_role_binding(
            "system:public-info-viewer",
            &["system:authenticated", "system:unauthenticated"],
        ),
    ]
}

fn rule(groups: &[&str], resources: &[&str], verbs: &[&str]) -> Value {
    json!({"apiGroups": groups, "resources": resources, "verbs": verbs})
}

const READ: &[&str] = &["get", "list", "watch"];
const WRITE: &[&str] = &[
    "create",
    "update",
    "patch",
    "delete",
    "deletecollection",
    "get",
    "list",
    "watch",
];

/// The namespaced resources `view` reads and `edit` writes, by group (Secrets are
/// readable from `edit` up, as upstream).
const COMMON: &[(&str, &[&str])] = &[
    (
        "",
        &[
            "pods",
            "pods/log",
            "pods/status",
            "services",
            "services/status",
            "endpoints",
            "configmaps",
            "persistentvolumeclaims",
            "persistentvolumeclaims/status",
            "serviceaccounts",
            "replicationcontrollers",
            "replicationcontrollers/scale",
            "replicationcontrollers/status",
            "resourcequotas",
            "resourcequotas/status",
            "limitranges",
            "events",
            "bindings",
            "namespaces",
            "namespaces/status",
        ],
    ),
    (
        "apps",
        &[
            "deployments",
            "deployments/scale",
            "deployments/status",
            "replicasets",
            "replicasets/scale",
            "replicasets/status",
            "statefulsets",
            "statefulsets/scale",
            "statefulsets/status",
            "daemonsets",
            "daemonsets/status",
            "controllerrevisions",
        ],
    ),
    (
        "batch",
        &["jobs", "jobs/status", "cronjobs", "cronjobs/status"],
    ),
    (
        "autoscaling",
        &[
            "horizontalpodautoscalers",
            "horizontalpodautoscalers/status",
        ],
    ),
    (
        "policy",
        &["poddisruptionbudgets", "poddisruptionbudgets/status"],
    ),
    (
        "networking.k8s.io",
        &["ingresses", "ingresses/status", "networkpolicies"],
    ),
    ("events.k8s.io", &["events"]),
];

/// Core resources only `view` reads and `edit` does not write (namespaces are not edited).
const READ_ONLY: &[&str] = &["namespaces", "namespaces/status", "bindings"];

fn view_rules() -> Vec<Value> {
    COMMON.iter().map(|(g, rs)| rule(&[g], rs, READ)).collect()
}

fn edit_rules() -> Vec<Value> {
    let mut rules = view_rules();
    for (g, rs) in COMMON {
        let writable: Vec<&str> = rs
            .iter()
            .copied()
            .filter(|r| !(g.is_empty() && READ_ONLY.contains(r)))
            .collect();
        rules.push(rule(&[g], &writable, WRITE));
    }
    rules.push(rule(&[""], &["secrets"], WRITE));
    rules.push(rule(
        &[""],
        &["pods/exec", "pods/attach", "pods/portforward"],
        WRITE,
    ));
    rules.push(rule(&["coordination.k8s.io"], &["leases"], WRITE));
    rules
}

fn admin_rules() -> Vec<Value> {
    let mut rules = edit_rules();
    rules.push(rule(
        &["rbac.authorization.k8s.io"],
        &["roles", "rolebindings"],
        WRITE,
    ));
    rules.push(rule(
        &["authorization.k8s.io"],
        &["localsubjectaccessreviews"],
        &["create"],
    ));
    rules
}

fn cluster_role(name: &str, rules: Vec<Value>) -> Value {
    json!({
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRole",
        "metadata": {
            "name": name,
            "labels": {"kubernetes.io/bootstrapping": "rbac-defaults"},
            "annotations": {"rbac.authorization.kubernetes.io/autoupdate": "true"},
        },
        "rules": rules,
    })
}

/// The user-facing default ClusterRoles. Upstream builds `admin`, `edit` and `view` by
/// aggregation; here their rules are spelled out (no aggregation controller).
fn cluster_roles() -> Vec<Value> {
    vec![
        cluster_role(
            "cluster-admin",
            vec![
                rule(&["*"], &["*"], &["*"]),
                json!({"nonResourceURLs": ["*"], "verbs": ["*"]}),
            ],
        ),
        cluster_role("admin", admin_rules()),
        cluster_role("edit", edit_rules()),
        cluster_role("view", view_rules()),
        cluster_role(
            "system:discovery",
            vec![json!({"nonResourceURLs": [
                "/api", "/api/*", "/apis", "/apis/*", "/healthz", "/livez", "/openapi",
                "/openapi/*", "/readyz", "/version", "/version/",
            ], "verbs": ["get"]})],
        ),
        cluster_role(
            "system:basic-user",
            vec![
                rule(
                    &["authorization.k8s.io"],
                    &["selfsubjectaccessreviews", "selfsubjectrulesreviews"],
                    &["create"],
                ),
                rule(
                    &["authentication.k8s.io"],
                    &["selfsubjectreviews"],
                    &["create"],
                ),
            ],
        ),
        cluster_role(
            "system:public-info-viewer",
            vec![json!({"nonResourceURLs": [
                "/healthz", "/livez", "/readyz", "/version", "/version/",
            ], "verbs": ["get"]})],
        ),
    ]
}
