//! CacheTier: a Redis cache tier run by the operator and shared by services.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ResourceRequirements;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::validation::ValidationErrors;

/// The redis.conf settings a CacheTier may set in `config`. The rest are the operator's
/// (memory, eviction, persistence, replication, security) or unsafe to change live.
pub const ALLOWED_REDIS_SETTINGS: &[&str] = &[
    "activedefrag",
    "hz",
    "latency-tracking",
    "lazyfree-lazy-eviction",
    "lazyfree-lazy-expire",
    "lfu-decay-time",
    "lfu-log-factor",
    "maxclients",
    "maxmemory-samples",
    "notify-keyspace-events",
    "slowlog-log-slower-than",
    "slowlog-max-len",
    "tcp-keepalive",
    "timeout",
];

/// A Redis cache tier. The operator runs Redis (with read replicas if asked), its Service,
/// configuration and password Secret, and a metrics exporter; it tunes Redis live with
/// `CONFIG SET`, reports memory and hit ratio in status, and wires the tier into the
/// MarketplaceServices that reference it.
// Each printcolumn(...) repeats `type_ = ...`; clippy reads that as a duplicated attribute.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "marketplace.dev",
    version = "v1alpha1",
    kind = "CacheTier",
    plural = "cachetiers",
    shortname = "ctier",
    category = "marketplace",
    namespaced,
    status = "CacheTierStatus",
    derive = "PartialEq",
    doc = "A Redis cache tier run by the marketplace operator.",
    printcolumn(name = "Mode", type_ = "string", json_path = ".spec.mode"),
    printcolumn(name = "Max Memory", type_ = "string", json_path = ".spec.maxMemory"),
    printcolumn(name = "Used", type_ = "string", json_path = ".status.memoryUsed"),
    printcolumn(name = "Hit Ratio", type_ = "number", json_path = ".status.hitRatio"),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[x_kube(validation = Rule::new("self.mode == 'PrimaryReplica' || self.replicas == 0").message("replicas (read replicas) can only be set in mode PrimaryReplica"))]
#[x_kube(validation = Rule::new("!has(self.config) || self.config.all(k, k in ['activedefrag', 'hz', 'latency-tracking', 'lazyfree-lazy-eviction', 'lazyfree-lazy-expire', 'lfu-decay-time', 'lfu-log-factor', 'maxclients', 'maxmemory-samples', 'notify-keyspace-events', 'slowlog-log-slower-than', 'slowlog-max-len', 'tcp-keepalive', 'timeout'])").message("config may only set: activedefrag, hz, latency-tracking, lazyfree-lazy-eviction, lazyfree-lazy-expire, lfu-decay-time, lfu-log-factor, maxclients, maxmemory-samples, notify-keyspace-events, slowlog-log-slower-than, slowlog-max-len, tcp-keepalive, timeout"))]
#[x_kube(validation = Rule::new("!has(self.flushes) || self.flushes.all(f, self.flushes.exists_one(g, g.id == f.id))").message("every flush id must be unique"))]
#[serde(rename_all = "camelCase")]
pub struct CacheTierSpec {
    /// The Redis container image (default `redis:7.2`).
    #[serde(default = "default_image")]
    #[schemars(length(min = 1, max = 512))]
    pub image: String,

    /// `Standalone` (default): one Redis. `PrimaryReplica`: one primary taking writes and
    /// `replicas` read replicas.
    #[serde(default)]
    pub mode: CacheMode,

    /// The number of read replicas in mode `PrimaryReplica` (default 0).
    #[serde(default)]
    #[schemars(range(min = 0, max = 5))]
    pub replicas: i32,

    /// Redis `maxmemory`: a byte count with an optional unit (`b`, `kb`, `mb`, `gb`), e.g.
    /// `256mb` (default). Changed live, without a restart.
    #[serde(default = "default_max_memory")]
    #[schemars(regex(pattern = r"^[1-9][0-9]*(b|kb|mb|gb)?$"))]
    pub max_memory: String,

    /// Redis `maxmemory-policy`, which keys go when memory is full: `noeviction`,
    /// `allkeys-lru` (default), `allkeys-lfu`, `allkeys-random`, `volatile-lru`,
    /// `volatile-lfu`, `volatile-random` or `volatile-ttl`. Changed live.
    #[serde(default)]
    pub eviction_policy: EvictionPolicy,

    /// CPU and memory requests and limits of the Redis container. The memory limit should
    /// leave room above `maxMemory` for Redis's own overhead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,

    /// Extra redis.conf settings, applied live with `CONFIG SET`. Only the settings in the
    /// allow-list may be set (see the validation message for the list).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("maxProperties" = 32))]
    pub config: BTreeMap<String, String>,

    /// The Prometheus exporter sidecar (redis_exporter).
    #[serde(default)]
    pub exporter: ExporterSpec,

    /// Requests to delete every key under a prefix. Each runs once per `id`: add an entry with
    /// a new id to flush again. Completed ids are listed in `status.completedFlushes`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    pub flushes: Vec<FlushRequest>,
}

fn default_image() -> String {
    "redis:7.2".to_owned()
}

fn default_max_memory() -> String {
    "256mb".to_owned()
}

/// How a cache tier is laid out.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum CacheMode {
    #[default]
    Standalone,
    PrimaryReplica,
}

/// Redis's `maxmemory-policy` values.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "kebab-case")]
pub enum EvictionPolicy {
    Noeviction,
    #[default]
    AllkeysLru,
    AllkeysLfu,
    AllkeysRandom,
    VolatileLru,
    VolatileLfu,
    VolatileRandom,
    VolatileTtl,
}

impl EvictionPolicy {
    /// The value Redis's `CONFIG SET maxmemory-policy` takes.
    pub fn as_redis(self) -> &'static str {
        match self {
            Self::Noeviction => "noeviction",
            Self::AllkeysLru => "allkeys-lru",
            Self::AllkeysLfu => "allkeys-lfu",
            Self::AllkeysRandom => "allkeys-random",
            Self::VolatileLru => "volatile-lru",
            Self::VolatileLfu => "volatile-lfu",
            Self::VolatileRandom => "volatile-random",
            Self::VolatileTtl => "volatile-ttl",
        }
    }
}

/// The metrics exporter beside Redis.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ExporterSpec {
    /// Whether to run the exporter (default true).
    #[serde(default = "default_true")]
    pub enabled: bool,

    /// The exporter image (default `oliver006/redis_exporter:v1.62.0`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 512))]
    pub image: Option<String>,
}

impl Default for ExporterSpec {
    fn default() -> Self {
        Self {
            enabled: true,
            image: None,
        }
    }
}

fn default_true() -> bool {
    true
}

/// One request to delete the keys under a prefix.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct FlushRequest {
    /// Identifies this request; it runs once per id.
    #[schemars(
        length(min = 1, max = 63),
        regex(pattern = r"^[A-Za-z0-9][-A-Za-z0-9_.]*$")
    )]
    pub id: String,

    /// Every key starting with this prefix is deleted, e.g. `orders:catalog:`. Glob characters
    /// (`*`, `?`, `[`, `]`) and whitespace are not allowed.
    #[schemars(length(min = 1, max = 128), regex(pattern = r"^[^*?\[\]\s]+$"))]
    pub prefix: String,
}

/// The observed state of a CacheTier, written by the operator.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct CacheTierStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,

    /// The address services connect to, `host:port`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,

    /// The Secret (same namespace) holding the Redis password under key `password`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_secret_name: Option<String>,

    /// Memory Redis uses, human-readable (Redis's `used_memory_human`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_used: Option<String>,

    /// Memory Redis uses, in bytes (`used_memory`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_used_bytes: Option<i64>,

    /// keyspace_hits / (keyspace_hits + keyspace_misses) since Redis started, 0 to 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hit_ratio: Option<f64>,

    /// Keys evicted for lack of memory since Redis started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evicted_keys: Option<i64>,

    /// Clients connected now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connected_clients: Option<i32>,

    /// Commands per second (Redis's `instantaneous_ops_per_sec`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ops_per_second: Option<f64>,

    /// Standard conditions: `Ready` (Redis answers), `Configured` (the live settings match the
    /// spec).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,

    /// Flush requests that have run, by id.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub completed_flushes: Vec<CompletedFlush>,
}

/// A flush request that has run.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CompletedFlush {
    /// The request's id.
    pub id: String,

    /// The prefix flushed.
    pub prefix: String,

    /// How many keys were deleted.
    pub keys_deleted: i64,

    /// When the flush finished.
    pub completed_at: Time,
}

impl CacheTierSpec {
    /// The schema and CEL checks, mirrored for the controllers.
    pub fn validate(&self) -> Result<(), ValidationErrors> {
        let mut errors = ValidationErrors::default();
        if self.image.trim().is_empty() {
            errors.push("spec.image", "must not be empty");
        }
        if self.mode == CacheMode::Standalone && self.replicas != 0 {
            errors.push(
                "spec.replicas",
                "read replicas can only be set in mode PrimaryReplica",
            );
        }
        if !(0..=5).contains(&self.replicas) {
            errors.push("spec.replicas", "must be between 0 and 5");
        }
        if parse_redis_memory(&self.max_memory).is_none() {
            errors.push(
                "spec.maxMemory",
                format!(
                    "{:?} is not a Redis memory size such as 256mb (units: b, kb, mb, gb)",
                    self.max_memory
                ),
            );
        }
        for key in self.config.keys() {
            if !ALLOWED_REDIS_SETTINGS.contains(&key.as_str()) {
                errors.push(
                    format!("spec.config[{key}]"),
                    format!(
                        "{key:?} may not be set; allowed: {}",
                        ALLOWED_REDIS_SETTINGS.join(", ")
                    ),
                );
            }
        }
        let mut ids = std::collections::BTreeSet::new();
        for (i, f) in self.flushes.iter().enumerate() {
            if !ids.insert(&f.id) {
                errors.push(
                    format!("spec.flushes[{i}].id"),
                    format!("duplicate id {:?}", f.id),
                );
            }
            if f.prefix.is_empty()
                || f.prefix
                    .chars()
                    .any(|c| matches!(c, '*' | '?' | '[' | ']') || c.is_whitespace())
            {
                errors.push(
                    format!("spec.flushes[{i}].prefix"),
                    "must be non-empty, without glob characters or whitespace",
                );
            }
        }
        errors.into_result()
    }
}

/// Parses a Redis memory size (`256mb`, `1gb`, `1048576`) into bytes, as Redis reads it
/// (units are powers of 1024).
pub fn parse_redis_memory(s: &str) -> Option<u64> {
    let lower = s.to_ascii_lowercase();
    let (digits, unit) = match lower.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => lower.split_at(i),
        None => (lower.as_str(), ""),
    };
    let n: u64 = digits.parse().ok().filter(|n| *n > 0)?;
    let mult = match unit {
        "" | "b" => 1,
        "kb" => 1 << 10,
        "mb" => 1 << 20,
        "gb" => 1 << 30,
        _ => return None,
    };
    n.checked_mul(mult)
}
