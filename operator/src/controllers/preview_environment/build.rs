//! Build: the namespace and everything in it, as data. Pure: the tests check them as values,
//! and `apply` sends them as they are.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    LimitRange, LimitRangeItem, LimitRangeSpec, Namespace, ResourceQuota, ResourceQuotaSpec,
};
use k8s_openapi::api::networking::v1::{
    HTTPIngressPath, HTTPIngressRuleValue, Ingress, IngressBackend, IngressRule,
    IngressServiceBackend, IngressSpec, NetworkPolicy, NetworkPolicyEgressRule,
    NetworkPolicyIngressRule, NetworkPolicyPeer, NetworkPolicyPort, NetworkPolicySpec,
    ServiceBackendPort,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use marketplace_crds::v1alpha1::{MarketplaceService, NetworkIsolation};
use serde_json::{Value, json};

use super::validate::{
    CACHE_CPU_REQUEST, CACHE_MAX_MEMORY, CACHE_MEMORY_LIMIT, CACHE_MEMORY_REQUEST, CACHE_NAME,
    DEFAULT_CPU_REQUEST, DEFAULT_MEMORY_REQUEST, Plan, Validated,
};
use crate::controllers::FIELD_MANAGER;

pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
pub const PART_OF_LABEL: &str = "app.kubernetes.io/part-of";
/// The uid of the PreviewEnvironment an object belongs to: a name can be longer than a label
/// value may be, and a uid also tells a re-created environment from the one before.
pub const PREVIEW_UID_LABEL: &str = "marketplace.dev/preview-uid";
/// On the namespace: the branch as a label value (slug and hash, see `branch_label`).
pub const BRANCH_LABEL: &str = "marketplace.dev/branch";
/// On the namespace: the exact branch, which a label value often cannot hold.
pub const BRANCH_ANNOTATION: &str = "marketplace.dev/branch";
/// On the namespace: the PreviewEnvironment's name.
pub const PREVIEW_ANNOTATION: &str = "marketplace.dev/preview";
/// On each copy: `<namespace>/<name>` of its source.
pub const COPIED_FROM_ANNOTATION: &str = "marketplace.dev/copied-from";
/// Previews run a branch's code: the namespace refuses privileged pods.
const POD_SECURITY_LABEL: &str = "pod-security.kubernetes.io/enforce";
const POD_SECURITY_LEVEL: &str = "baseline";

pub const QUOTA_NAME: &str = "preview-quota";
pub const LIMITS_NAME: &str = "preview-limits";
pub const INGRESS_POLICY_NAME: &str = "preview-ingress";
pub const EGRESS_POLICY_NAME: &str = "preview-egress";
/// Where cluster DNS runs, and the label of its pods (kube-dns and CoreDNS alike).
const DNS_NAMESPACE: &str = "kube-system";
const DNS_POD_LABEL: (&str, &str) = ("k8s-app", "kube-dns");
/// The label every namespace carries with its own name (Kubernetes 1.21+).
const NAMESPACE_NAME_LABEL: &str = "kubernetes.io/metadata.name";

/// Everything the environment should hold this round. Children of a kind that are not built
/// are deleted if present.
#[derive(Clone, Debug, PartialEq)]
pub struct Children {
    pub namespace: Namespace,
    pub quota: ResourceQuota,
    pub limits: LimitRange,
    pub policies: Vec<NetworkPolicy>,
    /// A CacheTier, as JSON: its type belongs to the cache controller, and the environment
    /// sets only the few fields below.
    pub cache: Option<Value>,
    pub services: Vec<MarketplaceService>,
    pub ingresses: Vec<Ingress>,
}

/// The labels of the namespace and of every child.
pub fn labels(v: &Validated) -> BTreeMap<String, String> {
    BTreeMap::from([
        (MANAGED_BY_LABEL.to_owned(), FIELD_MANAGER.to_owned()),
        (PART_OF_LABEL.to_owned(), "marketplace".to_owned()),
        (PREVIEW_UID_LABEL.to_owned(), v.uid.clone()),
        (BRANCH_LABEL.to_owned(), v.branch_label.clone()),
    ])
}

/// The selector of every child of the environment `uid`.
pub fn selector(uid: &str) -> String {
    format!("{MANAGED_BY_LABEL}={FIELD_MANAGER},{PREVIEW_UID_LABEL}={uid}")
}

pub fn owner_reference(v: &Validated) -> OwnerReference {
    OwnerReference {
        api_version: "marketplace.dev/v1alpha1".to_owned(),
        kind: "PreviewEnvironment".to_owned(),
        name: v.name.clone(),
        uid: v.uid.clone(),
        controller: Some(true),
        // Unset: blocking the owner's deletion would need update rights on its finalizers,
        // and the namespace's deletion is the finalizer's job anyway.
        block_owner_deletion: None,
    }
}

fn metadata(v: &Validated, name: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.to_owned()),
        namespace: Some(v.namespace.clone()),
        labels: Some(labels(v)),
        owner_references: Some(vec![owner_reference(v)]),
        ..ObjectMeta::default()
    }
}

pub fn build(v: &Validated, plan: &Plan) -> Children {
    Children {
        namespace: build_namespace(v),
        quota: build_quota(v),
        limits: build_limits(v),
        policies: build_policies(v),
        cache: plan.cache.then(|| build_cache(v)),
        services: plan
            .copies
            .iter()
            .map(|c| build_copy(v, &c.name, &c.spec))
            .collect(),
        ingresses: plan
            .copies
            .iter()
            .map(|c| build_ingress(v, &c.name, &c.host, c.spec.port))
            .collect(),
    }
}

pub fn build_namespace(v: &Validated) -> Namespace {
    let mut labels = labels(v);
    labels.insert(POD_SECURITY_LABEL.to_owned(), POD_SECURITY_LEVEL.to_owned());
    Namespace {
        metadata: ObjectMeta {
            name: Some(v.namespace.clone()),
            labels: Some(labels),
            annotations: Some(BTreeMap::from([
                (BRANCH_ANNOTATION.to_owned(), v.branch.clone()),
                (PREVIEW_ANNOTATION.to_owned(), v.name.clone()),
            ])),
            owner_references: Some(vec![owner_reference(v)]),
            ..ObjectMeta::default()
        },
        ..Namespace::default()
    }
}

pub fn build_quota(v: &Validated) -> ResourceQuota {
    ResourceQuota {
        metadata: metadata(v, QUOTA_NAME),
        spec: Some(ResourceQuotaSpec {
            hard: Some(BTreeMap::from([
                ("requests.cpu".to_owned(), v.quota.cpu.clone()),
                ("requests.memory".to_owned(), v.quota.memory.clone()),
                ("pods".to_owned(), Quantity(v.quota.pods.to_string())),
            ])),
            ..ResourceQuotaSpec::default()
        }),
        ..ResourceQuota::default()
    }
}

/// Default requests only: a default limit below a container's own request would make its
/// pods invalid, and the quota counts requests.
pub fn build_limits(v: &Validated) -> LimitRange {
    LimitRange {
        metadata: metadata(v, LIMITS_NAME),
        spec: Some(LimitRangeSpec {
            limits: vec![LimitRangeItem {
                type_: "Container".to_owned(),
                default_request: Some(BTreeMap::from([
                    ("cpu".to_owned(), Quantity(DEFAULT_CPU_REQUEST.to_owned())),
                    (
                        "memory".to_owned(),
                        Quantity(DEFAULT_MEMORY_REQUEST.to_owned()),
                    ),
                ])),
                ..LimitRangeItem::default()
            }],
        }),
    }
}

fn namespace_peer(namespace: &str, pods: Option<(&str, &str)>) -> NetworkPolicyPeer {
    NetworkPolicyPeer {
        namespace_selector: Some(LabelSelector {
            match_labels: Some(BTreeMap::from([(
                NAMESPACE_NAME_LABEL.to_owned(),
                namespace.to_owned(),
            )])),
            ..LabelSelector::default()
        }),
        pod_selector: pods.map(|(k, v)| LabelSelector {
            match_labels: Some(BTreeMap::from([(k.to_owned(), v.to_owned())])),
            ..LabelSelector::default()
        }),
        ..NetworkPolicyPeer::default()
    }
}

fn same_namespace() -> NetworkPolicyPeer {
    NetworkPolicyPeer {
        pod_selector: Some(LabelSelector::default()),
        ..NetworkPolicyPeer::default()
    }
}

/// `Isolated`: every pod of the namespace accepts traffic only from the namespace and the
/// ingress controller, and reaches only the namespace and cluster DNS. `Open`: none.
pub fn build_policies(v: &Validated) -> Vec<NetworkPolicy> {
    if v.isolation == NetworkIsolation::Open {
        return Vec::new();
    }
    let ingress = NetworkPolicy {
        metadata: metadata(v, INGRESS_POLICY_NAME),
        spec: Some(NetworkPolicySpec {
            pod_selector: Some(LabelSelector::default()),
            policy_types: Some(vec!["Ingress".to_owned()]),
            ingress: Some(vec![NetworkPolicyIngressRule {
                from: Some(vec![
                    same_namespace(),
                    namespace_peer(&v.ingress_namespace, None),
                ]),
                ports: None,
            }]),
            egress: None,
        }),
    };
    let dns_port = |protocol: &str| NetworkPolicyPort {
        port: Some(IntOrString::Int(53)),
        protocol: Some(protocol.to_owned()),
        end_port: None,
    };
    let egress = NetworkPolicy {
        metadata: metadata(v, EGRESS_POLICY_NAME),
        spec: Some(NetworkPolicySpec {
            pod_selector: Some(LabelSelector::default()),
            policy_types: Some(vec!["Egress".to_owned()]),
            ingress: None,
            egress: Some(vec![
                NetworkPolicyEgressRule {
                    to: Some(vec![same_namespace()]),
                    ports: None,
                },
                NetworkPolicyEgressRule {
                    to: Some(vec![namespace_peer(DNS_NAMESPACE, Some(DNS_POD_LABEL))]),
                    ports: Some(vec![dns_port("UDP"), dns_port("TCP")]),
                },
            ]),
        }),
    };
    vec![ingress, egress]
}

/// A small standalone Redis without the exporter (nobody scrapes a preview).
pub fn build_cache(v: &Validated) -> Value {
    json!({
        "apiVersion": "marketplace.dev/v1alpha1",
        "kind": "CacheTier",
        "metadata": metadata(v, CACHE_NAME),
        "spec": {
            "mode": "Standalone",
            "maxMemory": CACHE_MAX_MEMORY,
            "resources": {
                "requests": {"cpu": CACHE_CPU_REQUEST, "memory": CACHE_MEMORY_REQUEST},
                "limits": {"memory": CACHE_MEMORY_LIMIT},
            },
            "exporter": {"enabled": false},
        },
    })
}

pub fn build_copy(
    v: &Validated,
    name: &str,
    spec: &marketplace_crds::v1alpha1::MarketplaceServiceSpec,
) -> MarketplaceService {
    let mut meta = metadata(v, name);
    meta.annotations = Some(BTreeMap::from([(
        COPIED_FROM_ANNOTATION.to_owned(),
        format!("{}/{name}", v.source_namespace),
    )]));
    MarketplaceService {
        metadata: meta,
        spec: spec.clone(),
        status: None,
    }
}

/// The MarketplaceService controller names a service's Service after it.
pub fn build_ingress(v: &Validated, name: &str, host: &str, port: i32) -> Ingress {
    Ingress {
        metadata: metadata(v, name),
        spec: Some(IngressSpec {
            rules: Some(vec![IngressRule {
                host: Some(host.to_owned()),
                http: Some(HTTPIngressRuleValue {
                    paths: vec![HTTPIngressPath {
                        path: Some("/".to_owned()),
                        path_type: "Prefix".to_owned(),
                        backend: IngressBackend {
                            service: Some(IngressServiceBackend {
                                name: name.to_owned(),
                                port: Some(ServiceBackendPort {
                                    number: Some(port),
                                    name: None,
                                }),
                            }),
                            resource: None,
                        },
                    }],
                }),
            }]),
            ..IngressSpec::default()
        }),
        status: None,
    }
}

#[cfg(test)]
mod tests {
    use super::super::validate::tests::{env, source};
    use super::super::validate::{plan, validate};
    use super::*;
    use serde_json::json;

    fn children(spec: Value) -> (Validated, Children) {
        let v = validate(&env(spec)).expect("valid");
        let sources = [
            source(
                "orders",
                json!({"domain": "orders", "image": "r/orders:1.0", "port": 9000,
                "cache": {"name": "shared"}}),
            ),
            source("users", json!({"domain": "users", "image": "r/users:1.0"})),
        ];
        let p = plan(&v, &sources).expect("a plan");
        let c = build(&v, &p);
        (v, c)
    }

    #[test]
    fn the_namespace_carries_the_branch_in_full_and_as_a_label() {
        let branch = "feature/Checkout_Redesign--Über-Long-Name-That-Keeps-Going-And-Going-Well-Past-Sixty-Three-Characters";
        let (v, c) = children(json!({"branch": branch}));
        let meta = &c.namespace.metadata;
        assert_eq!(meta.name.as_deref(), Some(v.namespace.as_str()));
        assert!(v.namespace.len() <= 63);
        let annotations = meta.annotations.clone().unwrap_or_default();
        assert_eq!(
            annotations.get(BRANCH_ANNOTATION).map(String::as_str),
            Some(branch)
        );
        let labels = meta.labels.clone().unwrap_or_default();
        let label = labels.get(BRANCH_LABEL).expect("a branch label");
        assert!(
            label.len() <= 63 && v.namespace.ends_with(label.as_str()),
            "{label}"
        );
        assert_eq!(
            labels.get(PREVIEW_UID_LABEL).map(String::as_str),
            Some("uid-1")
        );
        let owner = &meta.owner_references.as_ref().expect("an owner")[0];
        assert_eq!(
            (owner.kind.as_str(), owner.uid.as_str()),
            ("PreviewEnvironment", "uid-1")
        );
    }

    #[test]
    fn quota_and_limits_come_from_the_spec() {
        let (v, c) =
            children(json!({"branch": "main", "quota": {"cpu": "3", "memory": "6Gi", "pods": 9}}));
        let hard = c.quota.spec.and_then(|s| s.hard).unwrap_or_default();
        assert_eq!(hard.get("requests.cpu"), Some(&Quantity("3".into())));
        assert_eq!(hard.get("requests.memory"), Some(&Quantity("6Gi".into())));
        assert_eq!(hard.get("pods"), Some(&Quantity("9".into())));
        assert_eq!(
            c.quota.metadata.namespace.as_deref(),
            Some(v.namespace.as_str())
        );
        let item = &c.limits.spec.expect("a spec").limits[0];
        assert_eq!(item.type_, "Container");
        let defaults = item.default_request.clone().unwrap_or_default();
        assert_eq!(
            defaults.get("cpu"),
            Some(&Quantity(DEFAULT_CPU_REQUEST.into()))
        );
        assert!(item.default.is_none(), "no default limit");
    }

    #[test]
    fn isolation_admits_the_namespace_and_the_ingress_controller_and_dns() {
        let (_, c) = children(json!({"branch": "main", "ingressNamespace": "traefik"}));
        let json = serde_json::to_value(&c.policies).expect("serializes");
        assert_eq!(json[0]["spec"]["policyTypes"], json!(["Ingress"]));
        assert_eq!(json[0]["spec"]["podSelector"], json!({}));
        assert_eq!(
            json[0]["spec"]["ingress"][0]["from"],
            json!([{"podSelector": {}},
                   {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "traefik"}}}])
        );
        assert_eq!(json[1]["spec"]["policyTypes"], json!(["Egress"]));
        let egress = &json[1]["spec"]["egress"];
        assert_eq!(egress[0]["to"], json!([{"podSelector": {}}]));
        assert_eq!(
            egress[1]["to"][0]["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"],
            "kube-system"
        );
        assert_eq!(
            egress[1]["to"][0]["podSelector"]["matchLabels"]["k8s-app"],
            "kube-dns"
        );
        assert_eq!(
            egress[1]["ports"],
            json!([{"port": 53, "protocol": "UDP"}, {"port": 53, "protocol": "TCP"}])
        );
        let (_, open) = children(json!({"branch": "main", "networkIsolation": "Open"}));
        assert!(open.policies.is_empty());
    }

    #[test]
    fn each_copy_gets_an_ingress_to_its_service_port_and_the_cache() {
        let (v, c) = children(json!({"branch": "main"}));
        let ingress = serde_json::to_value(&c.ingresses[0]).expect("serializes");
        let rule = &ingress["spec"]["rules"][0];
        assert_eq!(
            rule["host"],
            format!("orders.{}.preview.marketplace.dev", v.branch_label)
        );
        let backend = &rule["http"]["paths"][0]["backend"]["service"];
        assert_eq!(
            (backend["name"].as_str(), backend["port"]["number"].as_i64()),
            (Some("orders"), Some(9000))
        );
        let orders = &c.services[0];
        assert_eq!(
            orders
                .metadata
                .annotations
                .clone()
                .unwrap_or_default()
                .get(COPIED_FROM_ANNOTATION),
            Some(&"marketplace/orders".to_owned())
        );
        let cache = c.cache.expect("a cache tier");
        assert_eq!(cache["metadata"]["name"], CACHE_NAME);
        assert_eq!(cache["spec"]["maxMemory"], CACHE_MAX_MEMORY);
        assert_eq!(cache["metadata"]["namespace"], v.namespace);
        assert_eq!(
            orders.spec.cache.as_ref().map(|r| r.name.as_str()),
            Some(CACHE_NAME)
        );
    }
}
