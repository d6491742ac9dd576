//! The children of a CacheTier, as data: Redis as a Deployment (`Standalone`) or a
//! StatefulSet (`PrimaryReplica`), its Services, the redis.conf ConfigMap, the password
//! Secret and a PodDisruptionBudget. Pure: tests check them as values.
//!
//! The pods read redis.conf only at start; the operator changes memory, eviction and the
//! allowed settings live with `CONFIG SET`, so nothing in the pod template depends on them and
//! such a change never restarts Redis. What Redis cannot change live (image, mode, resources,
//! the exporter) is in the template and rolls the pods.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::apps::v1::{
    Deployment, DeploymentSpec, DeploymentStrategy, StatefulSet, StatefulSetSpec,
};
use k8s_openapi::api::core::v1::{
    Capabilities, ConfigMap, ConfigMapVolumeSource, Container, ContainerPort, EmptyDirVolumeSource,
    EnvVar, EnvVarSource, ExecAction, PodSecurityContext, PodSpec, PodTemplateSpec, Probe,
    ResourceRequirements, Secret, SecretKeySelector, SecurityContext, Service, ServicePort,
    ServiceSpec, TCPSocketAction, Volume, VolumeMount,
};
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use marketplace_crds::v1alpha1::{CacheMode, CacheTier, EvictionPolicy, parse_redis_memory};
use marketplace_crds::{FieldError, ValidationErrors};

use crate::controllers::FIELD_MANAGER;
use crate::controllers::marketplace_service::build::{
    INSTANCE_LABEL, MANAGED_BY_LABEL, NAME_LABEL,
};

pub const REDIS_PORT: u16 = 6379;
const EXPORTER_PORT: i32 = 9121;
pub const DEFAULT_EXPORTER_IMAGE: &str = "oliver006/redis_exporter:v1.62.0";
/// The Secret's key holding the password.
pub const PASSWORD_KEY: &str = "password";
/// The label naming the tier on every child, so no other workload's pods match its selector.
pub const TIER_LABEL: &str = "marketplace.dev/cache-tier";
/// The longest tier name whose children's names (`<name>-redis-headless`) stay DNS labels.
pub const MAX_NAME_LENGTH: usize = 63 - "-redis-headless".len();
const CONFIG_FILE: &str = "redis.conf";
/// The redis image's own user: Redis never runs as root.
const REDIS_UID: i64 = 999;

/// A CacheTier that passed every check.
#[derive(Clone, Debug, PartialEq)]
pub struct Tier {
    pub name: String,
    pub namespace: String,
    pub uid: String,
    pub generation: Option<i64>,
    pub image: String,
    pub mode: CacheMode,
    pub read_replicas: i32,
    pub max_memory_bytes: u64,
    pub eviction_policy: EvictionPolicy,
    pub resources: Option<ResourceRequirements>,
    pub config: BTreeMap<String, String>,
    pub exporter_image: Option<String>,
}

pub use crate::controllers::Invalid;

pub fn validate(tier: &CacheTier) -> Result<Tier, Invalid> {
    let meta = &tier.metadata;
    let name = meta.name.clone().ok_or(Invalid::Metadata("name"))?;
    let namespace = meta
        .namespace
        .clone()
        .ok_or(Invalid::Metadata("namespace"))?;
    let uid = meta.uid.clone().ok_or(Invalid::Metadata("uid"))?;
    let spec = &tier.spec;
    let mut errors = match spec.validate() {
        Ok(()) => Vec::new(),
        Err(ValidationErrors(errors)) => errors,
    };
    if name.len() > MAX_NAME_LENGTH {
        errors.push(FieldError {
            field: "metadata.name".to_owned(),
            message: format!(
                "at most {MAX_NAME_LENGTH} characters, so that its Services' names (\
                 <name>-redis-headless) stay DNS labels"
            ),
        });
    }
    // The values are written into redis.conf: a line break would let a value add directives
    // of its own (a `rename-command`, a `requirepass`).
    for (key, value) in &spec.config {
        if value.is_empty() || value.len() > 256 || value.chars().any(char::is_control) {
            errors.push(FieldError {
                field: format!("spec.config[{key}]"),
                message: "must be one line of 1 to 256 printable characters".to_owned(),
            });
        }
    }
    // Redis past its container's memory limit is killed, not evicting: maxmemory must
    // leave Redis room for its own overhead (about a quarter) under the limit.
    let limit = spec
        .resources
        .as_ref()
        .and_then(|r| r.limits.as_ref())
        .and_then(|l| l.get("memory"));
    if let (Some(limit), Some(max)) = (limit, parse_redis_memory(&spec.max_memory)) {
        match memory_bytes(limit) {
            Some(bytes) if max.saturating_add(max / 4) > bytes => errors.push(FieldError {
                field: "spec.maxMemory".to_owned(),
                message: format!(
                    "{} plus a quarter for Redis's own use exceeds the memory limit {}; the \
                     pod would be killed before Redis evicts",
                    spec.max_memory, limit.0
                ),
            }),
            Some(_) => {}
            None => errors.push(FieldError {
                field: "spec.resources.limits.memory".to_owned(),
                message: format!("{:?} is not a memory quantity", limit.0),
            }),
        }
    }
    if !errors.is_empty() {
        return Err(Invalid::Spec(ValidationErrors(errors)));
    }
    let max_memory_bytes = parse_redis_memory(&spec.max_memory).ok_or_else(|| {
        Invalid::Spec(ValidationErrors(vec![FieldError {
            field: "spec.maxMemory".to_owned(),
            message: format!("{:?} is not a Redis memory size", spec.max_memory),
        }]))
    })?;
    Ok(Tier {
        name,
        namespace,
        uid,
        generation: meta.generation,
        image: spec.image.clone(),
        mode: spec.mode,
        read_replicas: spec.replicas,
        max_memory_bytes,
        eviction_policy: spec.eviction_policy,
        resources: spec.resources.clone(),
        config: spec.config.clone(),
        exporter_image: spec.exporter.enabled.then(|| {
            spec.exporter
                .image
                .clone()
                .unwrap_or_else(|| DEFAULT_EXPORTER_IMAGE.to_owned())
        }),
    })
}

/// The names of a tier's children.
pub mod names {
    /// The Service services connect to, the workload and the disruption budget.
    pub fn server(tier: &str) -> String {
        format!("{tier}-redis")
    }
    /// In `PrimaryReplica`: the Service spreading reads over every pod.
    pub fn read(tier: &str) -> String {
        format!("{tier}-redis-read")
    }
    /// In `PrimaryReplica`: the StatefulSet's headless Service, which names each pod.
    pub fn headless(tier: &str) -> String {
        format!("{tier}-redis-headless")
    }
    pub fn config(tier: &str) -> String {
        format!("{tier}-redis-config")
    }
    pub fn secret(tier: &str) -> String {
        format!("{tier}-redis-auth")
    }
}

/// The host services connect to.
pub fn endpoint_host(tier: &str, namespace: &str) -> String {
    format!("{}.{namespace}.svc.cluster.local", names::server(tier))
}

/// The address of each pod in `PrimaryReplica` mode, the primary first.
pub fn pod_hosts(t: &Tier) -> Vec<String> {
    (0..=t.read_replicas)
        .map(|i| {
            format!(
                "{}-{i}.{}.{}.svc.cluster.local",
                names::server(&t.name),
                names::headless(&t.name),
                t.namespace
            )
        })
        .collect()
}

/// The settings the operator sets live: memory, eviction, then the tier's own `config`.
pub fn live_settings(t: &Tier) -> Vec<(String, String)> {
    let mut settings = vec![
        ("maxmemory".to_owned(), t.max_memory_bytes.to_string()),
        (
            "maxmemory-policy".to_owned(),
            t.eviction_policy.as_redis().to_owned(),
        ),
    ];
    settings.extend(t.config.iter().map(|(k, v)| (k.clone(), v.clone())));
    settings
}

/// Everything a tier should own this round. `None` children are deleted if present.
#[derive(Clone, Debug, PartialEq)]
pub struct Children {
    pub config: ConfigMap,
    pub deployment: Option<Deployment>,
    pub stateful_set: Option<StatefulSet>,
    pub service: Service,
    pub read_service: Option<Service>,
    pub headless_service: Option<Service>,
    pub disruption_budget: PodDisruptionBudget,
}

pub fn build(t: &Tier) -> Children {
    let replicated = t.mode == CacheMode::PrimaryReplica;
    Children {
        config: build_config(t),
        deployment: (!replicated).then(|| build_deployment(t)),
        stateful_set: replicated.then(|| build_stateful_set(t)),
        service: build_service(t, names::server(&t.name), Role::Primary),
        read_service: replicated.then(|| build_service(t, names::read(&t.name), Role::Any)),
        headless_service: replicated
            .then(|| build_service(t, names::headless(&t.name), Role::Headless)),
        disruption_budget: build_disruption_budget(t),
    }
}

pub fn selector_labels(t: &Tier) -> BTreeMap<String, String> {
    BTreeMap::from([
        (NAME_LABEL.to_owned(), "redis".to_owned()),
        (INSTANCE_LABEL.to_owned(), t.name.clone()),
        (TIER_LABEL.to_owned(), t.name.clone()),
    ])
}

fn labels(t: &Tier) -> BTreeMap<String, String> {
    let mut labels = selector_labels(t);
    labels.insert("app.kubernetes.io/component".to_owned(), "cache".to_owned());
    labels.insert(
        "app.kubernetes.io/part-of".to_owned(),
        "marketplace".to_owned(),
    );
    labels.insert(MANAGED_BY_LABEL.to_owned(), FIELD_MANAGER.to_owned());
    labels
}

fn owner_reference(t: &Tier) -> OwnerReference {
    OwnerReference {
        api_version: "marketplace.dev/v1alpha1".to_owned(),
        kind: "CacheTier".to_owned(),
        name: t.name.clone(),
        uid: t.uid.clone(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

fn metadata(t: &Tier, name: String) -> ObjectMeta {
    ObjectMeta {
        name: Some(name),
        namespace: Some(t.namespace.clone()),
        labels: Some(labels(t)),
        owner_references: Some(vec![owner_reference(t)]),
        ..ObjectMeta::default()
    }
}

/// A redis.conf value, quoted so spaces and quotes stay inside it.
fn quote(value: &str) -> String {
    format!("\"{}\"", value.replace('\\', "\\\\").replace('"', "\\\""))
}

pub fn build_config(t: &Tier) -> ConfigMap {
    let mut conf = format!(
        "# Written by the marketplace operator from CacheTier {ns}/{name}; edits here are \
         overwritten.\n\
         # The password comes from the Secret {secret}, on the command line, never from here.\n\
         port {REDIS_PORT}\n\
         protected-mode no\n\
         dir /data\n\
         # A cache: nothing is persisted.\n\
         save \"\"\n\
         appendonly no\n\
         maxmemory {max_memory}\n\
         maxmemory-policy {policy}\n",
        ns = t.namespace,
        name = t.name,
        secret = names::secret(&t.name),
        max_memory = t.max_memory_bytes,
        policy = t.eviction_policy.as_redis(),
    );
    for (key, value) in &t.config {
        conf.push_str(&format!("{key} {}\n", quote(value)));
    }
    ConfigMap {
        metadata: metadata(t, names::config(&t.name)),
        data: Some(BTreeMap::from([(CONFIG_FILE.to_owned(), conf)])),
        ..ConfigMap::default()
    }
}

/// The password Secret, created once and never applied again: a reconcile must not rotate
/// the password under running clients.
pub fn build_secret(t: &Tier, password: &str) -> Secret {
    Secret {
        metadata: metadata(t, names::secret(&t.name)),
        type_: Some("Opaque".to_owned()),
        data: Some(BTreeMap::from([(
            PASSWORD_KEY.to_owned(),
            ByteString(password.as_bytes().to_vec()),
        )])),
        ..Secret::default()
    }
}

/// A fresh password: 32 characters from a 62-letter alphabet, about 190 bits.
pub fn generate_password() -> Result<String, getrandom::Error> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut out = String::with_capacity(32);
    while out.len() < 32 {
        let mut bytes = [0u8; 64];
        getrandom::fill(&mut bytes)?;
        // Rejection sampling keeps every letter equally likely (248 = 4 × 62).
        out.extend(
            bytes
                .iter()
                .filter(|b| **b < 248)
                .map(|b| char::from(ALPHABET[usize::from(*b % 62)]))
                .take(32 - out.len()),
        );
    }
    Ok(out)
}

fn password_env(t: &Tier, name: &str) -> EnvVar {
    EnvVar {
        name: name.to_owned(),
        value: None,
        value_from: Some(EnvVarSource {
            secret_key_ref: Some(SecretKeySelector {
                name: names::secret(&t.name),
                key: PASSWORD_KEY.to_owned(),
                optional: Some(false),
            }),
            ..EnvVarSource::default()
        }),
    }
}

/// How Redis starts: the config file, the password from the environment, and in a
/// StatefulSet, every pod but the first following the first.
fn start_script(t: &Tier) -> String {
    let base = format!(
        "exec redis-server /etc/redis/{CONFIG_FILE} --requirepass \"$REDIS_PASSWORD\" \
         --masterauth \"$REDIS_PASSWORD\""
    );
    match t.mode {
        CacheMode::Standalone => base,
        CacheMode::PrimaryReplica => format!(
            "if [ \"${{HOSTNAME##*-}}\" != 0 ]; then set -- --replicaof {primary}-0.{headless} \
             {REDIS_PORT}; fi\n{base} \"$@\"",
            primary = names::server(&t.name),
            headless = names::headless(&t.name),
        ),
    }
}

fn restricted() -> SecurityContext {
    SecurityContext {
        allow_privilege_escalation: Some(false),
        read_only_root_filesystem: Some(true),
        run_as_non_root: Some(true),
        capabilities: Some(Capabilities {
            drop: Some(vec!["ALL".to_owned()]),
            add: None,
        }),
        ..SecurityContext::default()
    }
}

/// Without resources given: a small request and no memory limit. `maxmemory` bounds Redis;
/// a default limit derived from it would put it in the pod template, and every live
/// `maxMemory` change would then restart Redis and empty the cache.
fn default_resources() -> ResourceRequirements {
    ResourceRequirements {
        requests: Some(BTreeMap::from([
            ("cpu".to_owned(), Quantity("100m".to_owned())),
            ("memory".to_owned(), Quantity("64Mi".to_owned())),
        ])),
        ..ResourceRequirements::default()
    }
}

/// A memory quantity in bytes (`512Mi`, `1G`, `1048576`); `None` for forms a memory limit
/// does not take.
fn memory_bytes(q: &Quantity) -> Option<u64> {
    let s = q.0.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (number, suffix) = s.split_at(split);
    let n: f64 = number.parse().ok()?;
    let mult: f64 = match suffix {
        "" => 1.0,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "Ki" => 1024.0,
        "Mi" => 1024.0 * 1024.0,
        "Gi" => 1024.0 * 1024.0 * 1024.0,
        "Ti" => 1024.0 * 1024.0 * 1024.0 * 1024.0,
        _ => return None,
    };
    let bytes = n * mult;
    (bytes.is_finite() && bytes >= 0.0).then_some(bytes as u64)
}

fn pod_template(t: &Tier) -> PodTemplateSpec {
    let redis = Container {
        name: "redis".to_owned(),
        image: Some(t.image.clone()),
        command: Some(vec!["sh".to_owned(), "-c".to_owned(), start_script(t)]),
        ports: Some(vec![ContainerPort {
            name: Some("redis".to_owned()),
            container_port: i32::from(REDIS_PORT),
            protocol: Some("TCP".to_owned()),
            ..ContainerPort::default()
        }]),
        // redis-cli reads REDISCLI_AUTH, so the probe never puts the password on a command
        // line.
        env: Some(vec![
            password_env(t, "REDIS_PASSWORD"),
            password_env(t, "REDISCLI_AUTH"),
        ]),
        resources: Some(t.resources.clone().unwrap_or_else(default_resources)),
        readiness_probe: Some(Probe {
            exec: Some(ExecAction {
                command: Some(vec![
                    "sh".to_owned(),
                    "-c".to_owned(),
                    "redis-cli ping | grep -q PONG".to_owned(),
                ]),
            }),
            period_seconds: Some(5),
            failure_threshold: Some(3),
            ..Probe::default()
        }),
        liveness_probe: Some(Probe {
            tcp_socket: Some(TCPSocketAction {
                port: IntOrString::String("redis".to_owned()),
                host: None,
            }),
            period_seconds: Some(10),
            failure_threshold: Some(3),
            ..Probe::default()
        }),
        volume_mounts: Some(vec![
            VolumeMount {
                name: "config".to_owned(),
                mount_path: "/etc/redis".to_owned(),
                read_only: Some(true),
                ..VolumeMount::default()
            },
            VolumeMount {
                name: "data".to_owned(),
                mount_path: "/data".to_owned(),
                ..VolumeMount::default()
            },
        ]),
        security_context: Some(restricted()),
        ..Container::default()
    };
    let mut containers = vec![redis];
    if let Some(image) = &t.exporter_image {
        containers.push(Container {
            name: "exporter".to_owned(),
            image: Some(image.clone()),
            env: Some(vec![
                EnvVar {
                    name: "REDIS_ADDR".to_owned(),
                    value: Some(format!("redis://localhost:{REDIS_PORT}")),
                    value_from: None,
                },
                password_env(t, "REDIS_PASSWORD"),
            ]),
            ports: Some(vec![ContainerPort {
                name: Some("metrics".to_owned()),
                container_port: EXPORTER_PORT,
                protocol: Some("TCP".to_owned()),
                ..ContainerPort::default()
            }]),
            resources: Some(ResourceRequirements {
                requests: Some(BTreeMap::from([
                    ("cpu".to_owned(), Quantity("10m".to_owned())),
                    ("memory".to_owned(), Quantity("32Mi".to_owned())),
                ])),
                limits: Some(BTreeMap::from([(
                    "memory".to_owned(),
                    Quantity("64Mi".to_owned()),
                )])),
                ..ResourceRequirements::default()
            }),
            security_context: Some(restricted()),
            ..Container::default()
        });
    }
    PodTemplateSpec {
        metadata: Some(ObjectMeta {
            labels: Some(labels(t)),
            ..ObjectMeta::default()
        }),
        spec: Some(PodSpec {
            containers,
            // No API access: the pods never need a token.
            automount_service_account_token: Some(false),
            security_context: Some(PodSecurityContext {
                run_as_non_root: Some(true),
                run_as_user: Some(REDIS_UID),
                run_as_group: Some(REDIS_UID),
                fs_group: Some(REDIS_UID),
                ..PodSecurityContext::default()
            }),
            volumes: Some(vec![
                Volume {
                    name: "config".to_owned(),
                    config_map: Some(ConfigMapVolumeSource {
                        name: names::config(&t.name),
                        ..ConfigMapVolumeSource::default()
                    }),
                    ..Volume::default()
                },
                Volume {
                    name: "data".to_owned(),
                    empty_dir: Some(EmptyDirVolumeSource::default()),
                    ..Volume::default()
                },
            ]),
            ..PodSpec::default()
        }),
    }
}

fn selector(t: &Tier) -> LabelSelector {
    LabelSelector {
        match_labels: Some(selector_labels(t)),
        match_expressions: None,
    }
}

pub fn build_deployment(t: &Tier) -> Deployment {
    Deployment {
        metadata: metadata(t, names::server(&t.name)),
        spec: DeploymentSpec {
            replicas: Some(1),
            selector: selector(t),
            // One Redis at a time: two would split the clients between two empty caches.
            strategy: Some(DeploymentStrategy {
                type_: Some("Recreate".to_owned()),
                rolling_update: None,
            }),
            template: pod_template(t),
            ..DeploymentSpec::default()
        },
        status: None,
    }
}

pub fn build_stateful_set(t: &Tier) -> StatefulSet {
    StatefulSet {
        metadata: metadata(t, names::server(&t.name)),
        spec: StatefulSetSpec {
            replicas: Some(1 + t.read_replicas),
            selector: selector(t),
            service_name: Some(names::headless(&t.name)),
            // Replicas retry their primary until it answers; starting them one by one would
            // only delay the tier.
            pod_management_policy: Some("Parallel".to_owned()),
            template: pod_template(t),
            ..StatefulSetSpec::default()
        },
        status: None,
    }
}

enum Role {
    /// Writes go to the primary: in a StatefulSet, pod 0.
    Primary,
    /// Reads spread over every pod.
    Any,
    /// The StatefulSet's headless Service: one DNS name per pod, ready or not.
    Headless,
}

fn build_service(t: &Tier, name: String, role: Role) -> Service {
    let mut selector = selector_labels(t);
    if matches!(role, Role::Primary) && t.mode == CacheMode::PrimaryReplica {
        selector.insert(
            "statefulset.kubernetes.io/pod-name".to_owned(),
            format!("{}-0", names::server(&t.name)),
        );
    }
    let mut ports = vec![ServicePort {
        name: Some("redis".to_owned()),
        port: i32::from(REDIS_PORT),
        target_port: Some(IntOrString::String("redis".to_owned())),
        protocol: Some("TCP".to_owned()),
        ..ServicePort::default()
    }];
    if matches!(role, Role::Primary) && t.exporter_image.is_some() {
        ports.push(ServicePort {
            name: Some("metrics".to_owned()),
            port: EXPORTER_PORT,
            target_port: Some(IntOrString::String("metrics".to_owned())),
            protocol: Some("TCP".to_owned()),
            ..ServicePort::default()
        });
    }
    let headless = matches!(role, Role::Headless);
    Service {
        metadata: metadata(t, name),
        spec: Some(ServiceSpec {
            selector: Some(selector),
            ports: Some(ports),
            cluster_ip: headless.then(|| "None".to_owned()),
            publish_not_ready_addresses: headless.then_some(true),
            ..ServiceSpec::default()
        }),
        status: None,
    }
}

/// One pod down at a time: a drain never takes the primary and a replica together, and a
/// standalone tier is never held undrainable (a budget of zero disruptions would).
pub fn build_disruption_budget(t: &Tier) -> PodDisruptionBudget {
    PodDisruptionBudget {
        metadata: metadata(t, names::server(&t.name)),
        spec: Some(PodDisruptionBudgetSpec {
            selector: Some(selector(t)),
            max_unavailable: Some(IntOrString::Int(1)),
            ..PodDisruptionBudgetSpec::default()
        }),
        status: None,
    }
}

#[cfg(test)]
mod tests {
    use marketplace_crds::v1alpha1::{CacheTierSpec, ExporterSpec};

    use super::*;

    fn tier(spec: serde_json::Value) -> CacheTier {
        let mut t = CacheTier::new(
            "hot",
            serde_json::from_value::<CacheTierSpec>(spec).expect("spec"),
        );
        t.metadata.namespace = Some("shop".into());
        t.metadata.uid = Some("uid-hot".into());
        t.metadata.generation = Some(2);
        t
    }

    fn container<'a>(template: &'a PodTemplateSpec, name: &str) -> Option<&'a Container> {
        template
            .spec
            .as_ref()?
            .containers
            .iter()
            .find(|c| c.name == name)
    }

    #[test]
    fn a_standalone_tier_is_one_recreated_redis_with_its_config_service_and_budget() {
        let t = validate(&tier(serde_json::json!({"maxMemory": "256mb"}))).expect("valid");
        let c = build(&t);
        assert!(c.stateful_set.is_none() && c.read_service.is_none());
        let d = c.deployment.expect("a Deployment");
        let spec = d.spec;
        assert_eq!(spec.replicas, Some(1));
        assert_eq!(
            spec.strategy.and_then(|s| s.type_).as_deref(),
            Some("Recreate")
        );
        let conf = &c.config.data.expect("data")[CONFIG_FILE];
        assert!(conf.contains("maxmemory 268435456\n"), "{conf}");
        assert!(conf.contains("maxmemory-policy allkeys-lru\n"));
        assert!(conf.contains("save \"\"\nappendonly no\n"));
        let redis = container(&spec.template, "redis").expect("redis container");
        // The password reaches Redis from the Secret only.
        let env = redis.env.as_ref().expect("env");
        assert!(env.iter().all(|e| e.value.is_none()));
        assert_eq!(
            env[0]
                .value_from
                .as_ref()
                .and_then(|v| v.secret_key_ref.as_ref())
                .map(|s| (s.name.as_str(), s.key.as_str())),
            Some(("hot-redis-auth", "password"))
        );
        assert!(container(&spec.template, "exporter").is_some());
        let owner = &c.config.metadata.owner_references.expect("owner")[0];
        assert_eq!(
            (owner.kind.as_str(), owner.uid.as_str()),
            ("CacheTier", "uid-hot")
        );
        assert_eq!(
            c.disruption_budget.spec.and_then(|s| s.max_unavailable),
            Some(IntOrString::Int(1))
        );
        assert_eq!(
            c.service.spec.and_then(|s| s.ports).map(|p| p.len()),
            Some(2)
        );
    }

    #[test]
    fn primary_replica_runs_a_stateful_set_and_writes_go_to_pod_zero() {
        let t = validate(&tier(serde_json::json!({
            "mode": "PrimaryReplica", "replicas": 2, "exporter": {"enabled": false}
        })))
        .expect("valid");
        let c = build(&t);
        assert!(c.deployment.is_none());
        let sts = c.stateful_set.expect("a StatefulSet").spec;
        assert_eq!(sts.replicas, Some(3));
        assert_eq!(sts.service_name.as_deref(), Some("hot-redis-headless"));
        assert!(container(&sts.template, "exporter").is_none());
        let script = &container(&sts.template, "redis")
            .expect("redis")
            .command
            .as_ref()
            .expect("command")[2];
        assert!(
            script.contains("--replicaof hot-redis-0.hot-redis-headless 6379"),
            "{script}"
        );
        let primary = c.service.spec.expect("spec").selector.expect("selector");
        assert_eq!(
            primary
                .get("statefulset.kubernetes.io/pod-name")
                .map(String::as_str),
            Some("hot-redis-0")
        );
        let read = c
            .read_service
            .expect("read")
            .spec
            .expect("spec")
            .selector
            .expect("selector");
        assert!(!read.contains_key("statefulset.kubernetes.io/pod-name"));
        let headless = c.headless_service.expect("headless").spec.expect("spec");
        assert_eq!(headless.cluster_ip.as_deref(), Some("None"));
        assert_eq!(
            pod_hosts(&t)[2],
            "hot-redis-2.hot-redis-headless.shop.svc.cluster.local"
        );
    }

    #[test]
    fn config_values_cannot_break_out_of_their_line() {
        let bad = tier(serde_json::json!({"config": {"timeout": "0\nrename-command CONFIG \"\""}}));
        let Err(Invalid::Spec(errors)) = validate(&bad) else {
            panic!("a multi-line value was accepted");
        };
        assert_eq!(errors.0[0].field, "spec.config[timeout]");
        let ok = validate(&tier(
            serde_json::json!({"config": {"notify-keyspace-events": "Ex \"q\""}}),
        ))
        .expect("valid");
        let conf = build_config(&ok).data.expect("data")[CONFIG_FILE].clone();
        assert!(
            conf.contains("notify-keyspace-events \"Ex \\\"q\\\"\"\n"),
            "{conf}"
        );
    }

    #[test]
    fn settings_outside_the_allow_list_and_long_names_are_named() {
        let mut t = tier(serde_json::json!({"config": {"requirepass": "x"}}));
        t.metadata.name = Some("a".repeat(60));
        let Err(Invalid::Spec(errors)) = validate(&t) else {
            panic!("accepted");
        };
        let fields: Vec<&str> = errors.0.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["spec.config[requirepass]", "metadata.name"]);
    }

    #[test]
    fn live_settings_are_memory_eviction_then_the_allowed_config() {
        let t = validate(&tier(serde_json::json!({
            "maxMemory": "1gb", "evictionPolicy": "volatile-ttl", "config": {"hz": "20"}
        })))
        .expect("valid");
        assert_eq!(
            live_settings(&t),
            [
                ("maxmemory".to_owned(), (1u64 << 30).to_string()),
                ("maxmemory-policy".to_owned(), "volatile-ttl".to_owned()),
                ("hz".to_owned(), "20".to_owned()),
            ]
        );
        assert_eq!(t.exporter_image.as_deref(), Some(DEFAULT_EXPORTER_IMAGE));
        let _ = ExporterSpec::default();
    }

    #[test]
    fn max_memory_must_fit_under_the_memory_limit_with_room_to_spare() {
        let tight = tier(serde_json::json!({
            "maxMemory": "512mb",
            "resources": {"limits": {"memory": "600Mi"}}
        }));
        let Err(Invalid::Spec(errors)) = validate(&tight) else {
            panic!("accepted");
        };
        assert_eq!(errors.0[0].field, "spec.maxMemory");
        let roomy = tier(serde_json::json!({
            "maxMemory": "512mb",
            "resources": {"limits": {"memory": "1Gi"}}
        }));
        assert!(validate(&roomy).is_ok());
        assert_eq!(memory_bytes(&Quantity("1.5G".into())), Some(1_500_000_000));
        assert_eq!(memory_bytes(&Quantity("2Ki".into())), Some(2048));
        assert_eq!(memory_bytes(&Quantity("lots".into())), None);
    }

    #[test]
    fn passwords_are_long_random_and_alphanumeric() {
        let a = generate_password().expect("entropy");
        let b = generate_password().expect("entropy");
        assert_eq!(a.len(), 32);
        assert!(a.bytes().all(|c| c.is_ascii_alphanumeric()));
        assert_ne!(a, b);
    }
}
