//! The resource registry: built-in kinds from a static table, plus whatever CRDs
//! register at run time. Everything that routes, discovers or validates looks here.

use std::sync::Arc;

use serde_json::Value;

#[derive(Clone, Debug, PartialEq)]
pub struct ScaleSpec {
    pub spec_replicas_path: String,
    pub status_replicas_path: String,
    pub label_selector_path: Option<String>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct PrinterColumn {
    pub name: String,
    pub type_: String,
    pub format: String,
    pub description: String,
    pub json_path: String,
    pub priority: i64,
}

#[derive(Clone, Debug)]
pub struct VersionInfo {
    pub name: String,
    pub served: bool,
    pub storage: bool,
    /// openAPIV3Schema for CRD versions; None for built-ins (no server-side schema).
    pub schema: Option<Value>,
    /// Content hash of `schema` when it has CEL rules: the key of the compiled-rule cache.
    pub cel_key: Option<u64>,
    pub columns: Vec<PrinterColumn>,
    pub status: bool,
    pub scale: Option<ScaleSpec>,
}

#[derive(Clone, Debug)]
pub struct ResourceInfo {
    pub group: String,
    pub kind: String,
    pub list_kind: String,
    pub plural: String,
    pub singular: String,
    pub namespaced: bool,
    pub short_names: Vec<String>,
    pub categories: Vec<String>,
    pub versions: Vec<VersionInfo>,
    /// Built-ins accept strategic merge patch; custom resources do not (as upstream).
    pub builtin: bool,
}

impl ResourceInfo {
    pub fn version(&self, v: &str) -> Option<&VersionInfo> {
        self.versions.iter().find(|x| x.name == v && x.served)
    }
    pub fn storage_version(&self) -> &str {
        self.versions
            .iter()
            .find(|v| v.storage)
            .or(self.versions.first())
            .map(|v| v.name.as_str())
            .unwrap_or("v1")
    }
    pub fn api_version(&self, v: &str) -> String {
        if self.group.is_empty() {
            v.to_string()
        } else {
            format!("{}/{v}", self.group)
        }
    }
    /// Where objects are stored: events.k8s.io Events live with core Events, as upstream.
    pub fn group_resource(&self) -> GroupResource {
        if crate::builtin::is_events_v1(&self.group, &self.plural) {
            return GroupResource {
                group: String::new(),
                resource: "events".into(),
            };
        }
        GroupResource {
            group: self.group.clone(),
            resource: self.plural.clone(),
        }
    }
}

/// The storage identity of a resource: objects are stored once, whatever version asked.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct GroupResource {
    pub group: String,
    pub resource: String,
}

struct Builtin {
    group: &'static str,
    version: &'static str,
    kind: &'static str,
    plural: &'static str,
    namespaced: bool,
    short_names: &'static [&'static str],
    status: bool,
    scale: bool,
    all: bool,
}

#[allow(clippy::too_many_arguments)] // a table row, read positionally
const fn b(
    group: &'static str,
    version: &'static str,
    kind: &'static str,
    plural: &'static str,
    namespaced: bool,
    short_names: &'static [&'static str],
    status: bool,
    scale: bool,
    all: bool,
) -> Builtin {
    Builtin {
        group,
        version,
        kind,
        plural,
        namespaced,
        short_names,
        status,
        scale,
        all,
    }
}

/// (group, version, kind, plural, namespaced, shortnames, status, scale, in category "all")
#[rustfmt::skip] // a table: one row per kind reads better than rustfmt's one value per line
const BUILTINS: &[Builtin] = &[
    b("", "v1", "Namespace", "namespaces", false, &["ns"], true, false, false),
    b("", "v1", "Node", "nodes", false, &["no"], true, false, false),
    b("", "v1", "Pod", "pods", true, &["po"], true, false, true),
    b("", "v1", "Service", "services", true, &["svc"], true, false, true),
    b("", "v1", "ConfigMap", "configmaps", true, &["cm"], false, false, false),
    b("", "v1", "Secret", "secrets", true, &[], false, false, false),
    b("", "v1", "PersistentVolumeClaim", "persistentvolumeclaims", true, &["pvc"], true, false, false),
    b("", "v1", "ResourceQuota", "resourcequotas", true, &["quota"], true, false, false),
    b("", "v1", "LimitRange", "limitranges", true, &["limits"], false, false, false),
    b("", "v1", "Event", "events", true, &["ev"], false, false, false),
    b("", "v1", "ServiceAccount", "serviceaccounts", true, &["sa"], false, false, false),
    b("", "v1", "Endpoints", "endpoints", true, &["ep"], false, false, false),
    b("apps", "v1", "Deployment", "deployments", true, &["deploy"], true, true, true),
    b("apps", "v1", "ReplicaSet", "replicasets", true, &["rs"], true, true, true),
    b("apps", "v1", "StatefulSet", "statefulsets", true, &["sts"], true, true, true),
    b("apps", "v1", "DaemonSet", "daemonsets", true, &["ds"], true, false, true),
    b("batch", "v1", "Job", "jobs", true, &[], true, false, true),
    b("batch", "v1", "CronJob", "cronjobs", true, &["cj"], true, false, true),
    b("autoscaling", "v2", "HorizontalPodAutoscaler", "horizontalpodautoscalers", true, &["hpa"], true, false, true),
    // A second row of a resource is another served version (converted in convert.rs).
    b("autoscaling", "v1", "HorizontalPodAutoscaler", "horizontalpodautoscalers", true, &["hpa"], true, false, true),
    b("policy", "v1", "PodDisruptionBudget", "poddisruptionbudgets", true, &["pdb"], true, false, false),
    b("networking.k8s.io", "v1", "NetworkPolicy", "networkpolicies", true, &["netpol"], false, false, false),
    b("networking.k8s.io", "v1", "Ingress", "ingresses", true, &["ing"], true, false, false),
    b("coordination.k8s.io", "v1", "Lease", "leases", true, &[], false, false, false),
    b("events.k8s.io", "v1", "Event", "events", true, &["ev"], false, false, false),
    b("rbac.authorization.k8s.io", "v1", "Role", "roles", true, &[], false, false, false),
    b("rbac.authorization.k8s.io", "v1", "RoleBinding", "rolebindings", true, &[], false, false, false),
    b("rbac.authorization.k8s.io", "v1", "ClusterRole", "clusterroles", false, &[], false, false, false),
    b("rbac.authorization.k8s.io", "v1", "ClusterRoleBinding", "clusterrolebindings", false, &[], false, false, false),
    b("apiextensions.k8s.io", "v1", "CustomResourceDefinition", "customresourcedefinitions", false, &["crd", "crds"], true, false, false),
    b("", "v1", "ComponentStatus", "componentstatuses", false, &["cs"], false, false, false),
    b("apps", "v1", "ControllerRevision", "controllerrevisions", true, &[], false, false, false),
    b("scheduling.k8s.io", "v1", "PriorityClass", "priorityclasses", false, &["pc"], false, false, false),
    b("certificates.k8s.io", "v1", "CertificateSigningRequest", "certificatesigningrequests", false, &["csr"], true, false, false),
    b("apiregistration.k8s.io", "v1", "APIService", "apiservices", false, &[], true, false, false),
    // Reviews: answered, never stored (POST only; see reviews.rs).
    b("authorization.k8s.io", "v1", "SelfSubjectAccessReview", "selfsubjectaccessreviews", false, &[], false, false, false),
    b("authorization.k8s.io", "v1", "SelfSubjectRulesReview", "selfsubjectrulesreviews", false, &[], false, false, false),
    b("authorization.k8s.io", "v1", "SubjectAccessReview", "subjectaccessreviews", false, &[], false, false, false),
    b("authorization.k8s.io", "v1", "LocalSubjectAccessReview", "localsubjectaccessreviews", true, &[], false, false, false),
    b("authentication.k8s.io", "v1", "TokenReview", "tokenreviews", false, &[], false, false, false),
    b("authentication.k8s.io", "v1", "SelfSubjectReview", "selfsubjectreviews", false, &[], false, false, false),
];

fn builtin_info(x: &Builtin) -> ResourceInfo {
    ResourceInfo {
        group: x.group.into(),
        kind: x.kind.into(),
        list_kind: format!("{}List", x.kind),
        plural: x.plural.into(),
        singular: x.kind.to_lowercase(),
        namespaced: x.namespaced,
        short_names: x.short_names.iter().map(|s| s.to_string()).collect(),
        categories: if x.all { vec!["all".into()] } else { vec![] },
        versions: vec![VersionInfo {
            name: x.version.into(),
            served: true,
            storage: true,
            schema: None,
            cel_key: None,
            columns: vec![],
            status: x.status,
            scale: x.scale.then(|| ScaleSpec {
                spec_replicas_path: ".spec.replicas".into(),
                status_replicas_path: ".status.replicas".into(),
                label_selector_path: Some(".spec.selector".into()),
            }),
        }],
        builtin: true,
    }
}

/// One entry per resource: later rows of a resource add served, non-storage versions.
fn builtins() -> Vec<Arc<ResourceInfo>> {
    let mut out: Vec<ResourceInfo> = vec![];
    for row in BUILTINS {
        let info = builtin_info(row);
        match out
            .iter_mut()
            .find(|r| r.group == info.group && r.plural == info.plural)
        {
            Some(first) => first
                .versions
                .extend(info.versions.into_iter().map(|mut v| {
                    v.storage = false;
                    v
                })),
            None => out.push(info),
        }
    }
    out.into_iter().map(Arc::new).collect()
}

/// The set of served resources. Cheap to clone (Arcs), so handlers can take a snapshot.
#[derive(Clone, Debug)]
pub struct Registry {
    resources: Vec<Arc<ResourceInfo>>,
    /// Bumped on every change, so derived documents (OpenAPI) know when to rebuild.
    generation: u64,
}

impl Default for Registry {
    fn default() -> Self {
        Registry {
            resources: builtins(),
            generation: 0,
        }
    }
}

impl Registry {
    pub fn all(&self) -> &[Arc<ResourceInfo>] {
        &self.resources
    }

    pub fn find(&self, group: &str, version: &str, plural: &str) -> Option<Arc<ResourceInfo>> {
        self.resources
            .iter()
            .find(|r| r.group == group && r.plural == plural && r.version(version).is_some())
            .cloned()
    }

    pub fn by_group_resource(&self, gr: &GroupResource) -> Option<Arc<ResourceInfo>> {
        self.resources
            .iter()
            .find(|r| r.group == gr.group && r.plural == gr.resource)
            .cloned()
    }

    /// Replace (or add) a custom resource; built-ins cannot be shadowed.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    pub fn upsert(&mut self, info: ResourceInfo) {
        self.generation += 1;
        if let Some(pos) = self
            .resources
            .iter()
            .position(|r| r.group == info.group && r.plural == info.plural)
        {
            if !self.resources[pos].builtin {
                self.resources[pos] = Arc::new(info);
            }
        } else {
            self.resources.push(Arc::new(info));
        }
    }

    pub fn remove(&mut self, gr: &GroupResource) {
        self.generation += 1;
        self.resources
            .retain(|r| r.builtin || !(r.group == gr.group && r.plural == gr.resource));
    }

    /// (group, [versions]) in a stable order: the legacy core group is not included.
    pub fn groups(&self) -> Vec<(String, Vec<String>)> {
        let mut out: Vec<(String, Vec<String>)> = vec![];
        for r in self.resources.iter().filter(|r| !r.group.is_empty()) {
            let entry = match out.iter_mut().position(|(g, _)| *g == r.group) {
                Some(i) => &mut out[i],
                None => {
                    out.push((r.group.clone(), vec![]));
                    let last = out.len() - 1;
                    &mut out[last]
                }
            };
            for v in r.versions.iter().filter(|v| v.served) {
                if !entry.1.contains(&v.name) {
                    entry.1.push(v.name.clone());
                }
            }
        }
        for (_, versions) in &mut out {
            versions.sort_by_key(|v| std::cmp::Reverse(version_priority(v)));
        }
        out
    }

    pub fn in_group_version<'a>(
        &'a self,
        group: &'a str,
        version: &'a str,
    ) -> impl Iterator<Item = &'a Arc<ResourceInfo>> {
        self.resources
            .iter()
            .filter(move |r| r.group == group && r.version(version).is_some())
    }
}

pub fn split_api_version(api_version: &str) -> (&str, &str) {
    match api_version.split_once('/') {
        Some((g, v)) => (g, v),
        None => ("", api_version),
    }
}

/// Kubernetes version ordering: GA > beta > alpha, higher numbers first.
pub fn version_priority(v: &str) -> (u8, u32, u32) {
    let rest = v.strip_prefix('v').unwrap_or(v);
    let digits: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
    let major = digits.parse().unwrap_or(0);
    let tail = &rest[digits.len()..];
    let (level, minor) = if tail.is_empty() {
        (3, 0)
    } else if let Some(n) = tail.strip_prefix("beta") {
        (2, n.parse().unwrap_or(0))
    } else if let Some(n) = tail.strip_prefix("alpha") {
        (1, n.parse().unwrap_or(0))
    } else {
        (0, 0)
    };
    (level, major, minor)
}

/// Resources answered rather than stored: a POST gets the request back with its `status`.
pub fn is_review(info: &ResourceInfo) -> bool {
    matches!(
        info.group.as_str(),
        "authorization.k8s.io" | "authentication.k8s.io"
    )
}

/// The verbs discovery lists for a resource.
pub fn verbs(info: &ResourceInfo) -> &'static [&'static str] {
    if is_review(info) {
        &["create"]
    } else if info.group.is_empty() && info.plural == "componentstatuses" {
        &["get", "list"]
    } else {
        &[
            "create",
            "delete",
            "deletecollection",
            "get",
            "list",
            "patch",
            "update",
            "watch",
        ]
    }
}

/// Kinds whose registry answers an immediate DELETE with the deleted object (upstream's
/// `ReturnDeletedObject`); the rest answer a `Status`.
pub fn returns_deleted_object(info: &ResourceInfo) -> bool {
    info.group.is_empty() && matches!(info.plural.as_str(), "pods" | "services")
}

/// A subresource beyond status and scale: (name, its kind as group/version/kind, verbs).
pub struct Subresource {
    pub name: &'static str,
    pub group: &'static str,
    pub version: &'static str,
    pub kind: &'static str,
    pub verbs: &'static [&'static str],
}

const fn sub(
    name: &'static str,
    group: &'static str,
    version: &'static str,
    kind: &'static str,
    verbs: &'static [&'static str],
) -> Subresource {
    Subresource {
        name,
        group,
        version,
        kind,
        verbs,
    }
}

const POD_SUBRESOURCES: &[Subresource] = &[
    sub("attach", "", "v1", "PodAttachOptions", &["create", "get"]),
    sub("binding", "", "v1", "Binding", &["create"]),
    sub(
        "ephemeralcontainers",
        "",
        "v1",
        "Pod",
        &["get", "patch", "update"],
    ),
    sub("eviction", "policy", "v1", "Eviction", &["create"]),
    sub("exec", "", "v1", "PodExecOptions", &["create", "get"]),
    sub("log", "", "v1", "Pod", &["get"]),
    sub(
        "portforward",
        "",
        "v1",
        "PodPortForwardOptions",
        &["create", "get"],
    ),
];

const SERVICE_ACCOUNT_SUBRESOURCES: &[Subresource] = &[sub(
    "token",
    "authentication.k8s.io",
    "v1",
    "TokenRequest",
    &["create"],
)];

const CSR_SUBRESOURCES: &[Subresource] = &[sub(
    "approval",
    "certificates.k8s.io",
    "v1",
    "CertificateSigningRequest",
    &["get", "patch", "update"],
)];

/// The subresources a built-in serves besides status and scale (subresources.rs).
pub fn extra_subresources(info: &ResourceInfo) -> &'static [Subresource] {
    match (info.group.as_str(), info.plural.as_str()) {
        ("", "pods") => POD_SUBRESOURCES,
        ("", "serviceaccounts") => SERVICE_ACCOUNT_SUBRESOURCES,
        ("certificates.k8s.io", "certificatesigningrequests") => CSR_SUBRESOURCES,
        _ => &[],
    }
}
