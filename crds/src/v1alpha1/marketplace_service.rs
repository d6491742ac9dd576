//! MarketplaceService: one domain service of the marketplace, and how it scales.

use std::collections::BTreeSet;

use k8s_openapi::api::core::v1::{EnvVar, ResourceRequirements};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::validation::{DNS_LABEL_PATTERN, ValidationErrors, is_dns_label};

/// How many scaling decisions `status.recentDecisions` keeps; the schema allows a little more so
/// an older operator's status still validates after a downgrade.
pub const MAX_RECENT_DECISIONS: usize = 10;

/// A domain service of the marketplace (orders, inventory, users, payments, …). The operator
/// runs it as a Deployment with a Service and a PodDisruptionBudget, and is its autoscaler: it
/// reads the service's traffic from Prometheus and sets its replicas, explaining every decision
/// in `status.recentDecisions`.
// Each printcolumn(...) repeats `type_ = ...`; clippy reads that as a duplicated attribute.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "marketplace.dev",
    version = "v1alpha1",
    kind = "MarketplaceService",
    plural = "marketplaceservices",
    shortname = "msvc",
    category = "marketplace",
    namespaced,
    status = "MarketplaceServiceStatus",
    derive = "PartialEq",
    doc = "A domain service of the marketplace, run and autoscaled by the marketplace operator.",
    scale(
        spec_replicas_path = ".spec.replicas",
        status_replicas_path = ".status.replicas",
        label_selector_path = ".status.selector"
    ),
    printcolumn(name = "Domain", type_ = "string", json_path = ".spec.domain"),
    printcolumn(
        name = "Desired",
        type_ = "integer",
        json_path = ".status.desiredReplicas"
    ),
    printcolumn(name = "Ready", type_ = "integer", json_path = ".status.readyReplicas"),
    printcolumn(
        name = "Metric",
        type_ = "string",
        json_path = ".status.keyMetric",
        description = "The metric that drove the last decision, as current/target"
    ),
    printcolumn(
        name = "Mode",
        type_ = "string",
        json_path = ".status.mode",
        description = "Scaling mode of the last decision"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[x_kube(validation = Rule::new("!has(self.scaling) || !has(self.replicas)").message("spec.replicas cannot be set together with spec.scaling: with a scaling block the operator sets the replica count; remove one of them"))]
#[serde(rename_all = "camelCase")]
pub struct MarketplaceServiceSpec {
    /// The business domain this service implements, such as `orders` or `payments`. Peers name
    /// each other by domain in `dependsOn`, and the operator labels every child with it.
    #[schemars(length(min = 1, max = 63), regex(pattern = DNS_LABEL_PATTERN))]
    pub domain: String,

    /// The container image to run, e.g. `registry.example/orders:1.4.2`.
    #[schemars(length(min = 1, max = 512))]
    pub image: String,

    /// The port the service's HTTP API listens on, inside the container and on its Service.
    #[serde(default = "default_port")]
    #[schemars(range(min = 1, max = 65535))]
    pub port: i32,

    /// Extra environment variables for the service container. The operator adds its own
    /// (`PORT`, `REDIS_URL`, peer URLs) and those win on a name clash.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<EnvVar>,

    /// CPU and memory requests and limits of the service container. CPU-based scaling needs a
    /// CPU request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,

    /// A fixed replica count, used only when there is no `scaling` block. It is also the scale
    /// subresource's field, so `kubectl scale`, an HPA or KEDA can drive such a service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 10000))]
    pub replicas: Option<i32>,

    /// Autoscaling by the operator. Absent: the replica count is `replicas` (default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scaling: Option<ScalingSpec>,

    /// The Redis cache tier this service uses. The operator injects its address as `REDIS_URL`,
    /// its password as `REDIS_PASSWORD` (a reference to the tier's Secret, never a value) and
    /// the key prefix as `CACHE_KEY_PREFIX`; `CacheReady` in status follows the tier.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache: Option<CacheReference>,

    /// The domains of the peer services this one calls (e.g. orders calls `inventory` and
    /// `payments`). Each peer's URL is injected as `<DOMAIN>_URL`: the domain upper-cased, `-`
    /// turned into `_` (e.g. `INVENTORY_URL`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32), inner(length(min = 1, max = 63), regex(pattern = DNS_LABEL_PATTERN)))]
    pub depends_on: Vec<String>,

    /// The PodDisruptionBudget the operator keeps for this service. Absent: `maxUnavailable: 1`
    /// when the service runs more than one replica, none otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disruption: Option<DisruptionSpec>,

    /// How the service's pods are spread across a topology domain (zones by default). Absent:
    /// no spread constraint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topology_spread: Option<TopologySpreadSpec>,
}

fn default_port() -> i32 {
    8080
}

/// Horizontal autoscaling of a service. With only `minReplicas`, `maxReplicas` and `metrics`
/// set it decides as the Kubernetes HPA (v2) would; `burst`, `schedules`, `predictive` and
/// `fallback` each add one capability the HPA lacks.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[x_kube(validation = Rule::new("self.minReplicas <= self.maxReplicas").message("minReplicas must not exceed maxReplicas"))]
#[x_kube(validation = Rule::new("!has(self.fallback) || (self.fallback.replicas >= self.minReplicas && self.fallback.replicas <= self.maxReplicas)").message("fallback.replicas must lie between minReplicas and maxReplicas"))]
#[x_kube(validation = Rule::new("!has(self.schedules) || self.schedules.all(s, s.minReplicas <= self.maxReplicas)").message("a schedule's minReplicas must not exceed maxReplicas"))]
#[serde(rename_all = "camelCase")]
pub struct ScalingSpec {
    /// The fewest replicas the operator keeps, whatever the load.
    #[serde(default = "default_min_replicas")]
    #[schemars(range(min = 1, max = 10000))]
    pub min_replicas: i32,

    /// The most replicas the operator runs, whatever the load.
    #[schemars(range(min = 1, max = 10000))]
    pub max_replicas: i32,

    /// The metrics to scale on. Each proposes a replica count; the largest wins, as in the HPA.
    #[schemars(length(min = 1, max = 8))]
    pub metrics: Vec<MetricSpec>,

    /// Rate limits and stabilization windows, shaped like the HPA's `behavior`. Absent parts
    /// take the HPA's defaults: scale up by max(100%, 4 pods) per 15 s with no stabilization;
    /// scale down by 100% per 15 s after a 300 s stabilization window.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub behavior: Option<ScalingBehavior>,

    /// The relative change of a metric from its target below which no scaling happens
    /// (default 0.1, the HPA's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.0, max = 1.0))]
    pub tolerance: Option<f64>,

    /// Burst ("panic") mode: when load over a short window jumps past a threshold, scale up at
    /// once and hold, as Knative's autoscaler does. Absent: off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub burst: Option<BurstSpec>,

    /// Replica floors for known peak events (a sale, a match, a launch).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 16))]
    pub schedules: Option<Vec<ScheduledFloor>>,

    /// Predictive pre-scaling from the load recorded in past seasons. Absent: off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub predictive: Option<PredictiveSpec>,

    /// What to do when metrics cannot be read. Whatever is set here, the operator never scales
    /// down on missing data.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fallback: Option<FallbackSpec>,

    /// How often, in seconds, the operator reads metrics and decides (default 15, the HPA's
    /// sync period).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 600))]
    pub poll_interval_seconds: Option<i32>,
}

fn default_min_replicas() -> i32 {
    1
}

/// One metric to scale on and its target.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[x_kube(validation = Rule::new("self.type == 'Custom' ? has(self.query) : !has(self.query)").message("query is required for type Custom and not allowed for the other types"))]
#[x_kube(validation = Rule::new("!has(self.targetType) || self.type == 'Custom'").message("targetType can only be set for type Custom; the other types have a fixed target type"))]
#[serde(rename_all = "camelCase")]
pub struct MetricSpec {
    /// What to measure: `RequestsPerSecond` (HTTP requests per second per replica),
    /// `InFlight` (requests in flight per replica), `LatencyP99` (99th percentile request
    /// latency of the service, in milliseconds), `Cpu` (CPU utilization, percent of the
    /// request), or `Custom` (the PromQL in `query`).
    #[serde(rename = "type")]
    pub type_: MetricType,

    /// The target value. Per replica for `RequestsPerSecond` and `InFlight` (the HPA's
    /// AverageValue), milliseconds for `LatencyP99` (a Value target: replicas grow with the
    /// ratio of current to target latency), percent for `Cpu` (Utilization); for `Custom`, as
    /// `targetType` says.
    #[schemars(range(min = 0.001))]
    pub target: f64,

    /// For `Custom` only: how `target` is compared with the query's result. `AverageValue`
    /// (default) divides the result by the ready replicas; `Value` compares it whole.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_type: Option<TargetType>,

    /// For `Custom` only: a PromQL expression returning one number. `{namespace}` and
    /// `{service}` are replaced by the service's namespace and name before it is sent, e.g.
    /// `sum(rate(queue_jobs_total{namespace="{namespace}",service="{service}"}[1m]))`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 4096))]
    pub query: Option<String>,
}

/// The kinds of metric a service can scale on.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MetricType {
    RequestsPerSecond,
    InFlight,
    LatencyP99,
    Cpu,
    Custom,
}

/// How a metric's value is compared with its target.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum TargetType {
    AverageValue,
    Value,
    Utilization,
}

impl MetricSpec {
    /// The target type the engine uses for this metric: fixed per type, chosen for `Custom`.
    pub fn effective_target_type(&self) -> TargetType {
        match self.type_ {
            MetricType::RequestsPerSecond | MetricType::InFlight => TargetType::AverageValue,
            MetricType::LatencyP99 => TargetType::Value,
            MetricType::Cpu => TargetType::Utilization,
            MetricType::Custom => self.target_type.unwrap_or(TargetType::AverageValue),
        }
    }
}

/// Scale-up and scale-down rules, as in the HPA's `behavior`.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct ScalingBehavior {
    /// Rules for adding replicas. Absent: no stabilization, at most max(100%, 4 pods) more
    /// per 15 s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scale_up: Option<ScalingRules>,

    /// Rules for removing replicas. Absent: a 300 s stabilization window, at most 100% fewer
    /// per 15 s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scale_down: Option<ScalingRules>,
}

/// The rules for one scaling direction.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct ScalingRules {
    /// Seconds of past recommendations considered: scaling up uses the lowest of them, scaling
    /// down the highest, which damps flapping. Defaults: 0 up, 300 down.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 3600))]
    pub stabilization_window_seconds: Option<i32>,

    /// Which policy applies when several allow different changes: `Max` (default, the largest
    /// change), `Min` (the smallest) or `Disabled` (no scaling in this direction).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub select_policy: Option<SelectPolicy>,

    /// The change allowed per period. Absent: the HPA's default policies for this direction.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 10))]
    pub policies: Option<Vec<ScalingPolicy>>,
}

/// How several scaling policies combine.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum SelectPolicy {
    Max,
    Min,
    Disabled,
}

/// One limit on how fast replicas change.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ScalingPolicy {
    /// `Pods` (an absolute number of replicas) or `Percent` (of the replicas at the start of
    /// the period).
    #[serde(rename = "type")]
    pub type_: ScalingPolicyType,

    /// How many pods, or what percentage, may be added or removed per period.
    #[schemars(range(min = 1))]
    pub value: i32,

    /// The length of the period, in seconds.
    #[schemars(range(min = 1, max = 1800))]
    pub period_seconds: i32,
}

/// The unit of a scaling policy's value.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScalingPolicyType {
    Pods,
    Percent,
}

/// Burst ("panic") mode, after Knative's autoscaler.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct BurstSpec {
    /// The short window, in seconds, over which load is averaged to detect a burst (default 6).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 300))]
    pub window_seconds: Option<i32>,

    /// Burst mode starts when the short-window load needs this percentage of the ready
    /// replicas or more (default 200: twice the capacity that is ready).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 101, max = 1000))]
    pub threshold_percent: Option<i32>,

    /// How long burst mode holds, in seconds, after the load last crossed the threshold. No
    /// replica is removed meanwhile (default 60).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 3600))]
    pub hold_seconds: Option<i32>,
}

/// A replica floor during a recurring known peak.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ScheduledFloor {
    /// A name for this schedule, shown in decisions it causes.
    #[schemars(length(min = 1, max = 63), regex(pattern = DNS_LABEL_PATTERN))]
    pub name: String,

    /// When the peak starts, as a five-field cron expression (minute hour day-of-month month
    /// day-of-week), e.g. `0 14 * * 5` for Fridays at 14:00.
    #[schemars(length(min = 9, max = 128))]
    pub cron: String,

    /// The IANA time zone `cron` is read in, e.g. `Europe/Paris` (default `UTC`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 64))]
    pub time_zone: Option<String>,

    /// How long the floor holds after each start, in seconds.
    #[schemars(range(min = 60, max = 604800))]
    pub duration_seconds: i32,

    /// The fewest replicas during the peak. The operator starts scaling to it early enough
    /// for the pods to be ready when the peak starts.
    #[schemars(range(min = 1, max = 10000))]
    pub min_replicas: i32,
}

/// Predictive pre-scaling from recorded seasonality.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PredictiveSpec {
    /// The length of one season, in seconds: 86400 for a daily pattern (default), 604800 for
    /// a weekly one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 3600, max = 604800))]
    pub season_seconds: Option<i32>,

    /// How many past seasons the forecast draws on (default 3). The forecast is used only once
    /// one full season has been recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 8))]
    pub seasons: Option<i32>,

    /// How far ahead to scale, in seconds: the time a new pod needs to become ready
    /// (default 30).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 3600))]
    pub startup_seconds: Option<i32>,

    /// Headroom above the forecast mean, in standard deviations of the recent load noise
    /// (default 2.75). Higher: fewer seconds under capacity for more replicas; lower: the
    /// reverse. bench/RESULTS.md shows the trade-off measured on real traces.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.0, max = 6.0))]
    pub headroom_sigmas: Option<f64>,
}

/// Behaviour when metrics cannot be read.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct FallbackSpec {
    /// Consecutive failed metric reads after which `replicas` applies (default 3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 100))]
    pub failure_threshold: Option<i32>,

    /// The replica count to run while metrics stay unavailable. The current count is kept if
    /// it is higher: missing data never scales a service down.
    #[schemars(range(min = 1, max = 10000))]
    pub replicas: i32,
}

/// The cache tier a service uses.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CacheReference {
    /// The name of a CacheTier in the service's namespace.
    #[schemars(length(min = 1, max = 63), regex(pattern = DNS_LABEL_PATTERN))]
    pub name: String,

    /// The prefix of every key this service writes, so services can share a tier and be
    /// flushed apart (default `<domain>:`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 128), regex(pattern = r"^[^*?\[\]\s]+$"))]
    pub key_prefix: Option<String>,
}

/// The PodDisruptionBudget of a service: exactly one of the two fields.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[x_kube(validation = Rule::new("has(self.minAvailable) != has(self.maxUnavailable)").message("set exactly one of minAvailable and maxUnavailable"))]
#[serde(rename_all = "camelCase")]
pub struct DisruptionSpec {
    /// Pods that must stay available during voluntary disruptions: a number or a percentage
    /// such as `50%`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_available: Option<IntOrString>,

    /// Pods that may be unavailable during voluntary disruptions: a number or a percentage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_unavailable: Option<IntOrString>,
}

/// Spreading of a service's pods across topology domains.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct TopologySpreadSpec {
    /// The node label whose values are the domains (default `topology.kubernetes.io/zone`).
    #[serde(default = "default_topology_key")]
    #[schemars(length(min = 1, max = 316))]
    pub topology_key: String,

    /// The largest allowed difference in pod count between two domains (default 1).
    #[serde(default = "default_max_skew")]
    #[schemars(range(min = 1, max = 100))]
    pub max_skew: i32,

    /// `DoNotSchedule` (default) keeps a pod pending rather than break the spread;
    /// `ScheduleAnyway` prefers the spread but schedules regardless.
    #[serde(default = "default_when_unsatisfiable")]
    pub when_unsatisfiable: WhenUnsatisfiable,
}

fn default_topology_key() -> String {
    "topology.kubernetes.io/zone".to_owned()
}

fn default_max_skew() -> i32 {
    1
}

fn default_when_unsatisfiable() -> WhenUnsatisfiable {
    WhenUnsatisfiable::DoNotSchedule
}

/// What the scheduler does with a pod that would break the spread.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum WhenUnsatisfiable {
    DoNotSchedule,
    ScheduleAnyway,
}

/// The observed state of a MarketplaceService, written by the operator.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct MarketplaceServiceStatus {
    /// The `metadata.generation` this status describes; older than the object's generation
    /// means the operator has not caught up with the latest spec.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,

    /// Replicas of the service's Deployment (the scale subresource's status).
    #[serde(default)]
    pub replicas: i32,

    /// Replicas that are ready to serve.
    #[serde(default)]
    pub ready_replicas: i32,

    /// The replica count the operator last decided on.
    #[serde(default)]
    pub desired_replicas: i32,

    /// The label selector of the service's pods, as a string (used by the scale subresource).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<String>,

    /// When the operator last changed the replica count.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_scale_time: Option<Time>,

    /// The mode of the last decision: Stable, ScaleUp, ScaleDown, Burst, Scheduled,
    /// Predictive, Fallback or Limited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,

    /// The metric that drove the last decision, as `current/target unit`, for `kubectl get`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_metric: Option<String>,

    /// The latest value of every metric in `spec.scaling.metrics`, with its target.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub current_metrics: Vec<MetricStatus>,

    /// Standard conditions: `Ready` (every desired replica is updated and ready; reason
    /// `InvalidSpec`, with the fields named, when the spec fails validation), `ScalingActive`
    /// (the autoscaler reads metrics and decides; `ScalingDisabled` without `scaling`),
    /// `MetricsAvailable` (every metric was read on the last poll) and `ScalingLimited`
    /// (minReplicas, maxReplicas or a rate policy cut the last decision).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,

    /// The most recent scaling decisions, newest first, each with its reason.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 20))]
    pub recent_decisions: Vec<ScalingDecisionRecord>,
}

/// The latest reading of one metric.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct MetricStatus {
    /// The metric's type, as in the spec.
    #[serde(rename = "type")]
    pub type_: MetricType,

    /// The value read, in the target's unit; absent when the read failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current: Option<f64>,

    /// The target from the spec.
    pub target: f64,
}

/// One scaling decision and why it was made.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ScalingDecisionRecord {
    /// When the decision was made.
    pub time: Time,

    /// Replicas before the decision.
    pub from_replicas: i32,

    /// Replicas decided on.
    pub to_replicas: i32,

    /// The decision's mode (Stable, ScaleUp, ScaleDown, Burst, Scheduled, Predictive,
    /// Fallback, Limited).
    pub mode: String,

    /// Why, with the numbers used.
    #[schemars(length(max = 1024))]
    pub reason: String,
}

impl MarketplaceServiceSpec {
    /// The checks the API server runs through the schema and CEL rules, mirrored for the
    /// controllers, plus those CEL cannot express (cron syntax, time zones).
    pub fn validate(&self) -> Result<(), ValidationErrors> {
        let mut errors = ValidationErrors::default();
        if !is_dns_label(&self.domain) {
            errors.push(
                "spec.domain",
                "must be a DNS label: lowercase letters, digits and '-', at most 63 characters",
            );
        }
        if self.image.trim().is_empty() {
            errors.push("spec.image", "must not be empty");
        }
        if !(1..=65535).contains(&self.port) {
            errors.push("spec.port", "must be between 1 and 65535");
        }
        if let Some(r) = self.replicas {
            if r < 0 {
                errors.push("spec.replicas", "must not be negative");
            }
            if self.scaling.is_some() {
                errors.push(
                    "spec.replicas",
                    "cannot be set together with spec.scaling: with a scaling block the operator sets the replica count",
                );
            }
        }
        if let Some(scaling) = &self.scaling {
            scaling.validate_into("spec.scaling", &mut errors);
        }
        if let Some(cache) = &self.cache
            && !is_dns_label(&cache.name)
        {
            errors.push(
                "spec.cache.name",
                "must be the name of a CacheTier (a DNS label)",
            );
        }
        let mut seen = BTreeSet::new();
        for (i, peer) in self.depends_on.iter().enumerate() {
            if !is_dns_label(peer) {
                errors.push(
                    format!("spec.dependsOn[{i}]"),
                    "must be a domain name (a DNS label)",
                );
            } else if peer == &self.domain {
                errors.push(
                    format!("spec.dependsOn[{i}]"),
                    "a service cannot depend on itself",
                );
            } else if !seen.insert(peer) {
                errors.push(
                    format!("spec.dependsOn[{i}]"),
                    format!("duplicate peer {peer:?}"),
                );
            }
        }
        if let Some(d) = &self.disruption
            && d.min_available.is_some() == d.max_unavailable.is_some()
        {
            errors.push(
                "spec.disruption",
                "set exactly one of minAvailable and maxUnavailable",
            );
        }
        errors.into_result()
    }
}

impl ScalingSpec {
    /// Validates this block alone, naming fields from `spec.scaling`.
    pub fn validate(&self) -> Result<(), ValidationErrors> {
        let mut errors = ValidationErrors::default();
        self.validate_into("spec.scaling", &mut errors);
        errors.into_result()
    }

    fn validate_into(&self, at: &str, errors: &mut ValidationErrors) {
        if self.min_replicas < 1 {
            errors.push(format!("{at}.minReplicas"), "must be at least 1");
        }
        if self.max_replicas < 1 {
            errors.push(format!("{at}.maxReplicas"), "must be at least 1");
        }
        if self.min_replicas > self.max_replicas {
            errors.push(
                format!("{at}.minReplicas"),
                format!(
                    "minReplicas ({}) must not exceed maxReplicas ({})",
                    self.min_replicas, self.max_replicas
                ),
            );
        }
        if self.metrics.is_empty() {
            errors.push(format!("{at}.metrics"), "at least one metric is required");
        }
        for (i, m) in self.metrics.iter().enumerate() {
            let f = format!("{at}.metrics[{i}]");
            if !(m.target.is_finite() && m.target > 0.0) {
                errors.push(
                    format!("{f}.target"),
                    format!("must be a positive number, got {}", m.target),
                );
            }
            match (m.type_, &m.query) {
                (MetricType::Custom, None) => {
                    errors.push(format!("{f}.query"), "is required for type Custom")
                }
                (MetricType::Custom, Some(q)) if q.trim().is_empty() => {
                    errors.push(format!("{f}.query"), "must not be empty")
                }
                (t, Some(_)) if t != MetricType::Custom => {
                    errors.push(format!("{f}.query"), "is only allowed for type Custom")
                }
                _ => {}
            }
            if m.target_type.is_some() && m.type_ != MetricType::Custom {
                errors.push(format!("{f}.targetType"), "can only be set for type Custom");
            }
        }
        if let Some(t) = self.tolerance
            && !(0.0..=1.0).contains(&t)
        {
            errors.push(
                format!("{at}.tolerance"),
                format!("must be between 0 and 1, got {t}"),
            );
        }
        if let Some(b) = &self.behavior {
            for (name, rules) in [("scaleUp", &b.scale_up), ("scaleDown", &b.scale_down)] {
                let Some(rules) = rules else { continue };
                let f = format!("{at}.behavior.{name}");
                if let Some(w) = rules.stabilization_window_seconds
                    && !(0..=3600).contains(&w)
                {
                    errors.push(
                        format!("{f}.stabilizationWindowSeconds"),
                        "must be between 0 and 3600",
                    );
                }
                for (i, p) in rules.policies.iter().flatten().enumerate() {
                    if p.value < 1 {
                        errors.push(format!("{f}.policies[{i}].value"), "must be at least 1");
                    }
                    if !(1..=1800).contains(&p.period_seconds) {
                        errors.push(
                            format!("{f}.policies[{i}].periodSeconds"),
                            "must be between 1 and 1800",
                        );
                    }
                }
            }
        }
        if let Some(burst) = &self.burst
            && let Some(t) = burst.threshold_percent
            && t <= 100
        {
            errors.push(format!("{at}.burst.thresholdPercent"), "must be above 100");
        }
        for (i, s) in self.schedules.iter().flatten().enumerate() {
            let f = format!("{at}.schedules[{i}]");
            if let Err(e) = s.cron.parse::<croner::Cron>() {
                errors.push(
                    format!("{f}.cron"),
                    format!("not a valid cron expression: {e}"),
                );
            }
            if let Some(tz) = &s.time_zone
                && tz.parse::<chrono_tz::Tz>().is_err()
            {
                errors.push(
                    format!("{f}.timeZone"),
                    format!("unknown IANA time zone {tz:?}"),
                );
            }
            if s.min_replicas > self.max_replicas {
                errors.push(format!("{f}.minReplicas"), "must not exceed maxReplicas");
            }
            if !(60..=604_800).contains(&s.duration_seconds) {
                errors.push(
                    format!("{f}.durationSeconds"),
                    "must be between 60 and 604800",
                );
            }
        }
        if let Some(sigmas) = self.predictive.as_ref().and_then(|p| p.headroom_sigmas)
            && !(0.0..=6.0).contains(&sigmas)
        {
            errors.push(
                format!("{at}.predictive.headroomSigmas"),
                format!("must be between 0 and 6, got {sigmas}"),
            );
        }
        if let Some(fb) = &self.fallback
            && (fb.replicas < self.min_replicas || fb.replicas > self.max_replicas)
        {
            errors.push(
                format!("{at}.fallback.replicas"),
                "must lie between minReplicas and maxReplicas",
            );
        }
        if let Some(p) = self.poll_interval_seconds
            && !(1..=600).contains(&p)
        {
            errors.push(
                format!("{at}.pollIntervalSeconds"),
                "must be between 1 and 600",
            );
        }
    }
}
