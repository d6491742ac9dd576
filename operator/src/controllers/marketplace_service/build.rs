//! Build: the children a validated MarketplaceService should have, as data. Pure: the
//! tests check them as values, and `apply` sends them as they are.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec};
use k8s_openapi::api::core::v1::{
    Container, ContainerPort, EnvVar, EnvVarSource, HTTPGetAction, PodSpec, PodTemplateSpec, Probe,
    SecretKeySelector, Service, ServicePort, ServiceSpec, TopologySpreadConstraint,
};
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use marketplace_crds::v1alpha1::WhenUnsatisfiable;

use super::validate::Validated;

/// Labels on every child; the first two are the pods' selector and never change.
pub const NAME_LABEL: &str = "app.kubernetes.io/name";
pub const INSTANCE_LABEL: &str = "app.kubernetes.io/instance";
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
pub const DOMAIN_LABEL: &str = "marketplace.dev/domain";
const CONTAINER: &str = "service";
const PORT_NAME: &str = "http";

/// A peer this service calls, resolved to its Service address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Peer {
    pub domain: String,
    pub url: String,
}

impl Peer {
    /// The address of the MarketplaceService `name` serving on `port` in `namespace`.
    pub fn at(domain: &str, name: &str, namespace: &str, port: i32) -> Self {
        Self {
            domain: domain.to_owned(),
            url: format!("http://{name}.{namespace}.svc.cluster.local:{port}"),
        }
    }

    /// A peer with no MarketplaceService yet: by convention a service is named after its
    /// domain and listens on the default port, so the URL is right once the peer appears.
    pub fn conventional(domain: &str, namespace: &str) -> Self {
        Self::at(domain, domain, namespace, 8080)
    }

    /// `inventory` → `INVENTORY_URL`, what service-kit reads.
    pub fn env_name(&self) -> String {
        format!("{}_URL", self.domain.to_uppercase().replace('-', "_"))
    }
}

/// A cache tier wired into a service: its address, the Secret holding its password, and the
/// service's key prefix.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CacheWiring {
    pub url: String,
    pub password_secret: String,
    pub key_prefix: String,
}

impl CacheWiring {
    /// The wiring of the tier `tier` in `namespace`, as its controller names its children.
    pub fn to_tier(tier: &str, namespace: &str, key_prefix: &str) -> Self {
        use crate::controllers::cache_tier::build::{REDIS_PORT, endpoint_host, names};
        Self {
            url: format!("redis://{}:{REDIS_PORT}", endpoint_host(tier, namespace)),
            password_secret: names::secret(tier),
            key_prefix: key_prefix.to_owned(),
        }
    }
}

/// Everything a service should own this round. `None` children are deleted if present.
#[derive(Clone, Debug, PartialEq)]
pub struct Children {
    pub deployment: Deployment,
    pub service: Service,
    pub disruption_budget: Option<PodDisruptionBudget>,
}

pub fn selector_labels(v: &Validated) -> BTreeMap<String, String> {
    BTreeMap::from([
        (NAME_LABEL.to_owned(), v.name.clone()),
        (INSTANCE_LABEL.to_owned(), v.name.clone()),
    ])
}

/// The label selector as a string, for `status.selector` (the scale subresource's).
pub fn selector_string(v: &Validated) -> String {
    selector_labels(v)
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

pub fn labels(v: &Validated) -> BTreeMap<String, String> {
    let mut labels = selector_labels(v);
    labels.insert(
        "app.kubernetes.io/component".to_owned(),
        "domain-service".to_owned(),
    );
    labels.insert(
        "app.kubernetes.io/part-of".to_owned(),
        "marketplace".to_owned(),
    );
    labels.insert(
        MANAGED_BY_LABEL.to_owned(),
        super::super::FIELD_MANAGER.to_owned(),
    );
    labels.insert(DOMAIN_LABEL.to_owned(), v.domain.clone());
    labels
}

fn owner_reference(v: &Validated) -> OwnerReference {
    OwnerReference {
        api_version: "marketplace.dev/v1alpha1".to_owned(),
        kind: "MarketplaceService".to_owned(),
        name: v.name.clone(),
        uid: v.uid.clone(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

fn metadata(v: &Validated) -> ObjectMeta {
    ObjectMeta {
        name: Some(v.name.clone()),
        namespace: Some(v.namespace.clone()),
        labels: Some(labels(v)),
        owner_references: Some(vec![owner_reference(v)]),
        ..ObjectMeta::default()
    }
}

pub fn build(v: &Validated, peers: &[Peer], cache: Option<&CacheWiring>) -> Children {
    Children {
        deployment: build_deployment(v, peers, cache),
        service: build_service(v),
        disruption_budget: build_disruption_budget(v),
    }
}

/// The container's environment: the user's variables, then ours, which win on a clash. The
/// cache's password comes by reference to its Secret, never as a value, and is optional: a
/// service whose tier lost its Secret still starts, and runs without its cache.
fn environment(v: &Validated, peers: &[Peer], cache: Option<&CacheWiring>) -> Vec<EnvVar> {
    let mut ours = vec![EnvVar {
        name: "PORT".to_owned(),
        value: Some(v.port.to_string()),
        value_from: None,
    }];
    ours.extend(peers.iter().map(|p| EnvVar {
        name: p.env_name(),
        value: Some(p.url.clone()),
        value_from: None,
    }));
    if let Some(c) = cache {
        ours.extend([
            EnvVar {
                name: "REDIS_URL".to_owned(),
                value: Some(c.url.clone()),
                value_from: None,
            },
            EnvVar {
                name: "REDIS_PASSWORD".to_owned(),
                value: None,
                value_from: Some(EnvVarSource {
                    secret_key_ref: Some(SecretKeySelector {
                        name: c.password_secret.clone(),
                        key: crate::controllers::cache_tier::build::PASSWORD_KEY.to_owned(),
                        optional: Some(true),
                    }),
                    ..EnvVarSource::default()
                }),
            },
            EnvVar {
                name: "CACHE_KEY_PREFIX".to_owned(),
                value: Some(c.key_prefix.clone()),
                value_from: None,
            },
        ]);
    }
    let mut env: Vec<EnvVar> = v
        .env
        .iter()
        .filter(|e| !ours.iter().any(|o| o.name == e.name))
        .cloned()
        .collect();
    env.extend(ours);
    env
}

fn probe(path: &str, period: i32, failures: i32) -> Probe {
    Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.to_owned()),
            port: IntOrString::String(PORT_NAME.to_owned()),
            ..HTTPGetAction::default()
        }),
        period_seconds: Some(period),
        failure_threshold: Some(failures),
        ..Probe::default()
    }
}

/// The Deployment. With a scaling block it carries no `replicas`: that field belongs to the
/// autoscaler's field manager, and leaving it out here is what keeps the two from fighting.
pub fn build_deployment(v: &Validated, peers: &[Peer], cache: Option<&CacheWiring>) -> Deployment {
    let container = Container {
        name: CONTAINER.to_owned(),
        image: Some(v.image.clone()),
        ports: Some(vec![ContainerPort {
            name: Some(PORT_NAME.to_owned()),
            container_port: v.port,
            protocol: Some("TCP".to_owned()),
            ..ContainerPort::default()
        }]),
        env: Some(environment(v, peers, cache)),
        resources: v.resources.clone(),
        readiness_probe: Some(probe("/readyz", 5, 3)),
        liveness_probe: Some(probe("/healthz", 10, 3)),
        ..Container::default()
    };
    let topology_spread_constraints = v.topology_spread.as_ref().map(|t| {
        vec![TopologySpreadConstraint {
            topology_key: t.topology_key.clone(),
            max_skew: t.max_skew,
            when_unsatisfiable: match t.when_unsatisfiable {
                WhenUnsatisfiable::DoNotSchedule => "DoNotSchedule",
                WhenUnsatisfiable::ScheduleAnyway => "ScheduleAnyway",
            }
            .to_owned(),
            label_selector: Some(LabelSelector {
                match_labels: Some(selector_labels(v)),
                match_expressions: None,
            }),
            ..TopologySpreadConstraint::default()
        }]
    });
    Deployment {
        metadata: metadata(v),
        spec: DeploymentSpec {
            replicas: v.scaling.is_none().then_some(v.replicas),
            selector: LabelSelector {
                match_labels: Some(selector_labels(v)),
                match_expressions: None,
            },
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels(v)),
                    ..ObjectMeta::default()
                }),
                spec: Some(PodSpec {
                    containers: vec![container],
                    topology_spread_constraints,
                    ..PodSpec::default()
                }),
            },
            ..DeploymentSpec::default()
        },
        status: None,
    }
}

pub fn build_service(v: &Validated) -> Service {
    Service {
        metadata: metadata(v),
        spec: Some(ServiceSpec {
            selector: Some(selector_labels(v)),
            ports: Some(vec![ServicePort {
                name: Some(PORT_NAME.to_owned()),
                port: v.port,
                target_port: Some(IntOrString::String(PORT_NAME.to_owned())),
                protocol: Some("TCP".to_owned()),
                ..ServicePort::default()
            }]),
            ..ServiceSpec::default()
        }),
        status: None,
    }
}

/// The PodDisruptionBudget from `disruption`; without one, `maxUnavailable: 1` for a
/// service that can run more than one replica, and none for a single replica (a budget of 0
/// disruptions would block every node drain).
pub fn build_disruption_budget(v: &Validated) -> Option<PodDisruptionBudget> {
    let (min_available, max_unavailable) = match &v.disruption {
        Some(d) => (d.min_available.clone(), d.max_unavailable.clone()),
        None => {
            let most = v.scaling.as_ref().map_or(v.replicas, |s| {
                i32::try_from(s.policy.max_replicas).unwrap_or(i32::MAX)
            });
            if most <= 1 {
                return None;
            }
            (None, Some(IntOrString::Int(1)))
        }
    };
    Some(PodDisruptionBudget {
        metadata: metadata(v),
        spec: Some(PodDisruptionBudgetSpec {
            selector: Some(LabelSelector {
                match_labels: Some(selector_labels(v)),
                match_expressions: None,
            }),
            min_available,
            max_unavailable,
            ..PodDisruptionBudgetSpec::default()
        }),
        status: None,
    })
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
    use marketplace_crds::v1alpha1::DisruptionSpec;

    use super::*;
    use crate::controllers::marketplace_service::fixtures::{Build, service};

    fn env(d: &Deployment) -> Vec<(String, String)> {
        d.spec.template.spec.as_ref().expect("pod spec").containers[0]
            .env
            .iter()
            .flatten()
            .map(|e| (e.name.clone(), e.value.clone().unwrap_or_default()))
            .collect()
    }

    #[test]
    fn a_fixed_size_service_gets_its_replicas_probes_and_port() {
        let v = service("orders").with_replicas(3).valid();
        let c = build(&v, &[], None);
        let d = &c.deployment;
        assert_eq!(d.spec.replicas, Some(3));
        let pod = d.spec.template.spec.as_ref().expect("pod spec");
        let container = &pod.containers[0];
        assert_eq!(
            container.ports.as_ref().expect("ports")[0].container_port,
            8080
        );
        let path = |p: &Option<Probe>| {
            p.as_ref()
                .and_then(|p| p.http_get.as_ref())
                .and_then(|h| h.path.clone())
        };
        assert_eq!(path(&container.readiness_probe).as_deref(), Some("/readyz"));
        assert_eq!(path(&container.liveness_probe).as_deref(), Some("/healthz"));
        assert_eq!(env(d), [("PORT".to_owned(), "8080".to_owned())]);
        let owner = &d.metadata.owner_references.as_ref().expect("owner")[0];
        assert_eq!(
            (owner.uid.as_str(), owner.controller),
            ("uid-orders", Some(true))
        );
        assert_eq!(
            d.spec.selector.match_labels.as_ref(),
            Some(&selector_labels(&v))
        );
    }

    #[test]
    fn an_autoscaled_deployment_leaves_replicas_to_the_autoscaler() {
        let v = service("orders").with_target_rps(50.0).valid();
        assert_eq!(build_deployment(&v, &[], None).spec.replicas, None);
    }

    #[test]
    fn each_peer_is_injected_as_its_domain_url_and_ours_win_a_clash() {
        let mut m = service("orders").depending_on(&["inventory", "fraud-check"]);
        m.spec.env = vec![
            EnvVar {
                name: "PORT".into(),
                value: Some("1".into()),
                value_from: None,
            },
            EnvVar {
                name: "LOG".into(),
                value: Some("debug".into()),
                value_from: None,
            },
        ];
        let v = m.valid();
        let peers = [
            Peer::at("inventory", "inventory-v2", "shop", 9090),
            Peer::conventional("fraud-check", "shop"),
        ];
        assert_eq!(
            env(&build_deployment(&v, &peers, None)),
            [
                ("LOG".to_owned(), "debug".to_owned()),
                ("PORT".to_owned(), "8080".to_owned()),
                (
                    "INVENTORY_URL".to_owned(),
                    "http://inventory-v2.shop.svc.cluster.local:9090".to_owned()
                ),
                (
                    "FRAUD_CHECK_URL".to_owned(),
                    "http://fraud-check.shop.svc.cluster.local:8080".to_owned()
                ),
            ]
        );
    }

    #[test]
    fn a_cache_tier_comes_as_its_url_prefix_and_a_reference_to_its_password() {
        let v = service("orders").valid();
        let wiring = CacheWiring::to_tier("hot", "shop", "orders:");
        let d = build_deployment(&v, &[], Some(&wiring));
        let all = d.spec.template.spec.as_ref().expect("pod spec").containers[0]
            .env
            .clone()
            .unwrap_or_default();
        assert_eq!(
            env(&d)[1..],
            [
                (
                    "REDIS_URL".to_owned(),
                    "redis://hot-redis.shop.svc.cluster.local:6379".to_owned()
                ),
                ("REDIS_PASSWORD".to_owned(), String::new()),
                ("CACHE_KEY_PREFIX".to_owned(), "orders:".to_owned()),
            ]
        );
        let password = all[2]
            .value_from
            .as_ref()
            .and_then(|f| f.secret_key_ref.as_ref());
        assert_eq!(
            password.map(|s| (s.name.as_str(), s.key.as_str(), s.optional)),
            Some(("hot-redis-auth", "password", Some(true)))
        );
    }

    #[test]
    fn a_single_replica_gets_no_disruption_budget_and_more_get_max_unavailable_one() {
        assert_eq!(
            build_disruption_budget(&service("a").with_replicas(1).valid()),
            None
        );
        let pdb = build_disruption_budget(&service("a").with_replicas(3).valid())
            .expect("a budget for 3 replicas");
        let spec = pdb.spec.expect("spec");
        assert_eq!(spec.max_unavailable, Some(IntOrString::Int(1)));
        assert_eq!(spec.min_available, None);
        let autoscaled = service("a")
            .with_target_rps(10.0)
            .with_max_replicas(1)
            .valid();
        assert_eq!(build_disruption_budget(&autoscaled), None);
    }

    #[test]
    fn an_explicit_disruption_budget_is_used_as_given() {
        let v = service("a")
            .with_replicas(1)
            .with_disruption(DisruptionSpec {
                min_available: Some(IntOrString::String("50%".into())),
                max_unavailable: None,
            })
            .valid();
        let spec = build_disruption_budget(&v)
            .expect("budget")
            .spec
            .expect("spec");
        assert_eq!(spec.min_available, Some(IntOrString::String("50%".into())));
        assert_eq!(spec.max_unavailable, None);
    }

    #[test]
    fn the_service_exposes_the_port_by_name_to_the_pods() {
        let v = service("users").valid();
        let s = build_service(&v).spec.expect("spec");
        let port = &s.ports.expect("ports")[0];
        assert_eq!(port.port, 8080);
        assert_eq!(port.target_port, Some(IntOrString::String("http".into())));
        assert_eq!(s.selector, Some(selector_labels(&v)));
        assert_eq!(
            selector_string(&v),
            "app.kubernetes.io/instance=users,app.kubernetes.io/name=users"
        );
    }
}
