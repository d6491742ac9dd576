//! The HPA's replica calculation from the pod list (`replica_calculator.go` and
//! `metrics/utilization.go` of the HPA controller), for a caller that has the pods and their
//! samples: which pods count (ready, unready, missing, ignored), what each requests, and the
//! utilization and raw average the HPA reports. Values are milli-units in `i64` and the
//! arithmetic is the HPA's integer arithmetic, truncations included, so the answers match
//! the controller's to the replica and to the percent.
//!
//! The aggregated input (`MetricReading`) stays for `simulate`, which has no pods.

use std::collections::HashMap;

use super::hpa::Tolerances;
use super::policy::Seconds;

/// A pod's `status.phase`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PodPhase {
    Pending,
    Running,
    Succeeded,
    Failed,
    Unknown,
}

/// A condition's status: only `False` sets a CPU sample aside, so `Unknown` is kept apart.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConditionStatus {
    True,
    False,
    Unknown,
}

/// The pod's `Ready` condition.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ReadyCondition {
    pub status: ConditionStatus,
    pub last_transition: Seconds,
}

/// Which list of the pod spec a container is in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ContainerKind {
    Regular,
    /// An init container that runs to completion: its request does not count.
    Init,
    /// An init container with `restartPolicy: Always` (a sidecar): its request counts.
    Sidecar,
}

/// One container's request for the metric's resource (milli-units), `None` when unset.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Container<'a> {
    pub name: &'a str,
    pub kind: ContainerKind,
    pub request: Option<i64>,
}

/// What the HPA reads of one pod.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Pod<'a> {
    pub name: &'a str,
    pub phase: PodPhase,
    /// `metadata.deletionTimestamp` is set.
    pub deleting: bool,
    /// `None`: the pod has no `Ready` condition.
    pub ready: Option<ReadyCondition>,
    /// `status.startTime`, `None` before the kubelet set it.
    pub start_time: Option<Seconds>,
    pub containers: &'a [Container<'a>],
    /// The pod-level request for the resource (`spec.resources`, KEP-2837), which takes the
    /// place of the containers' sum when set and no container is named.
    pub pod_request: Option<i64>,
}

/// One pod's sample (milli-units), summed over its containers or of the named container,
/// as the metrics client gives it; `window` is the interval it was averaged over.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Sample<'a> {
    pub pod: &'a str,
    pub value: i64,
    pub timestamp: Seconds,
    pub window: Seconds,
}

/// The HPA controller's two pod delays (kube-controller-manager flags).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PodRules {
    /// `--horizontal-pod-autoscaler-cpu-initialization-period`: while a pod is this young,
    /// its CPU sample counts only if it is ready and the sample was taken a whole window
    /// after it became ready.
    pub cpu_initialization_period: Seconds,
    /// `--horizontal-pod-autoscaler-initial-readiness-delay`: after the initialization
    /// period, an unready pod whose readiness last changed within this long of its start has
    /// never been ready, and its CPU sample is set aside.
    pub initial_readiness_delay: Seconds,
}

impl Default for PodRules {
    fn default() -> Self {
        Self {
            cpu_initialization_period: 300.0,
            initial_readiness_delay: 30.0,
        }
    }
}

/// Why the pods gave no replica count. The messages are the HPA's.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PodError {
    #[error("no metrics returned from the metrics API")]
    NoMetrics,
    #[error("no pods returned by selector while calculating replica count")]
    NoPods,
    #[error("did not receive metrics for targeted pods (pods might be unready)")]
    NoTargetedMetrics,
    #[error("missing request for {resource} in container {container} of Pod {pod}")]
    MissingRequest {
        resource: String,
        container: String,
        pod: String,
    },
    #[error("missing pod-level request for {resource} in Pod {pod}")]
    MissingPodRequest { resource: String, pod: String },
    #[error("container {container} not found in Pod {pod}")]
    ContainerNotFound { container: String, pod: String },
    #[error("no metrics returned matched known pods")]
    NoMatchingPods,
}

/// The pods sorted the HPA's way.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Groups<'a> {
    /// Pods whose sample counts as it is.
    pub ready: usize,
    /// Pending pods, and for CPU pods still initializing or never ready: left out, or
    /// counted as idle on a scale-up.
    pub unready: Vec<&'a str>,
    /// Pods without a sample: at the target (or their full request) on a scale-down, idle
    /// on a scale-up, left out at a ratio of exactly 1.
    pub missing: Vec<&'a str>,
    /// Deleted and failed pods: never counted.
    pub ignored: Vec<&'a str>,
}

/// Where `groupPods` puts one pod.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Class {
    Ready,
    Unready,
    Missing,
    Ignored,
}

fn classify(
    pod: &Pod<'_>,
    sample: Option<&Sample<'_>>,
    cpu: bool,
    rules: &PodRules,
    now: Seconds,
) -> Class {
    if pod.deleting || pod.phase == PodPhase::Failed {
        return Class::Ignored;
    }
    if pod.phase == PodPhase::Pending {
        return Class::Unready;
    }
    let Some(sample) = sample else {
        return Class::Missing;
    };
    if !cpu {
        return Class::Ready;
    }
    let unready = match (pod.ready, pod.start_time) {
        (Some(condition), Some(start)) => {
            let not_ready = condition.status == ConditionStatus::False;
            if start + rules.cpu_initialization_period > now {
                // Initializing: a CPU burst at start-up is not load, so the sample counts
                // only once a whole window was collected after readiness.
                not_ready || sample.timestamp < condition.last_transition + sample.window
            } else {
                // Past it: set aside only a pod that has never been ready.
                not_ready && start + rules.initial_readiness_delay > condition.last_transition
            }
        }
        _ => true,
    };
    if unready {
        Class::Unready
    } else {
        Class::Ready
    }
}

/// The HPA's `groupPods`. `cpu` is true for a CPU resource metric, the only one whose
/// samples are set aside for readiness (other metrics count any running pod's sample).
pub fn group_pods<'a>(
    pods: &[Pod<'a>],
    samples: &HashMap<&str, Sample<'_>>,
    cpu: bool,
    rules: &PodRules,
    now: Seconds,
) -> Groups<'a> {
    let mut groups = Groups::default();
    for pod in pods {
        match classify(pod, samples.get(pod.name), cpu, rules, now) {
            Class::Ready => groups.ready += 1,
            Class::Unready => groups.unready.push(pod.name),
            Class::Missing => groups.missing.push(pod.name),
            Class::Ignored => groups.ignored.push(pod.name),
        }
    }
    groups
}

/// The HPA's `calculateRequests` for one pod: the named container's request, else the
/// pod-level request when set, else the sum over the regular containers and sidecars.
pub fn pod_request(
    pod: &Pod<'_>,
    container: Option<&str>,
    resource: &str,
) -> Result<i64, PodError> {
    if container.is_none()
        && let Some(request) = pod.pod_request
    {
        return Ok(request);
    }
    let counted = pod
        .containers
        .iter()
        .filter(|c| c.kind == ContainerKind::Regular)
        .chain(
            pod.containers
                .iter()
                .filter(|c| c.kind == ContainerKind::Sidecar),
        );
    let mut sum = 0i64;
    for c in counted {
        if container.is_none_or(|name| name == c.name) {
            let Some(request) = c.request else {
                return Err(PodError::MissingRequest {
                    resource: resource.to_owned(),
                    container: c.name.to_owned(),
                    pod: pod.name.to_owned(),
                });
            };
            sum = sum.saturating_add(request);
        }
        if container == Some(c.name) {
            return Ok(sum);
        }
    }
    match container {
        Some(name) => Err(PodError::ContainerNotFound {
            container: name.to_owned(),
            pod: pod.name.to_owned(),
        }),
        None => Ok(sum),
    }
}

/// What a resource metric with a `Utilization` target asks for.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ResourceCalculation {
    pub replicas: u32,
    /// Σ usage × 100 / Σ requests over the counted pods, truncated (the HPA's
    /// `currentAverageUtilization`).
    pub utilization: i32,
    /// Σ usage / counted pods, milli-units (the HPA's `currentAverageValue`).
    pub raw_average: i64,
    /// utilization / target, the ratio the decision was made on.
    pub ratio: f64,
    /// Pods whose samples counted as they are.
    pub ready: usize,
}

/// What an `AverageValue` target (a Pods metric, or a resource by raw value) asks for.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PlainCalculation {
    pub replicas: u32,
    /// Σ samples / samples, milli-units, truncated (the HPA's `currentAverageValue`).
    pub usage: i64,
    pub ratio: f64,
    pub ready: usize,
}

/// One metric's pod-level input.
#[derive(Clone, Copy, Debug)]
pub struct PodMetric<'a> {
    pub pods: &'a [Pod<'a>],
    pub samples: &'a [Sample<'a>],
    /// `ContainerResource`: the container whose request and sample count.
    pub container: Option<&'a str>,
    /// The resource name for messages (`cpu`, `memory`); `cpu` turns on the readiness rules.
    pub resource: &'a str,
}

impl PodMetric<'_> {
    fn is_cpu(&self) -> bool {
        self.resource == "cpu"
    }
}

/// The pods and samples sorted once per decision: the metrics client's map (a pod named
/// twice keeps its last sample), each pod's class and sample, and the samples of pods not in
/// the list, which the HPA keeps in its map.
struct Sorted {
    class: Vec<Class>,
    /// The sample of each listed pod, if any.
    value: Vec<Option<i64>>,
    ready: usize,
    unready: usize,
    missing: usize,
    /// Samples of pods not in the list: how many, and their sum.
    extra: usize,
    extra_sum: i64,
}

impl Sorted {
    fn new(input: &PodMetric<'_>, rules: &PodRules, now: Seconds) -> Self {
        let mut index: HashMap<&str, usize> = HashMap::with_capacity(input.samples.len());
        for (i, s) in input.samples.iter().enumerate() {
            index.insert(s.pod, i);
        }
        let mut matched = vec![false; input.samples.len()];
        let cpu = input.is_cpu();
        let mut sorted = Self {
            class: Vec::with_capacity(input.pods.len()),
            value: Vec::with_capacity(input.pods.len()),
            ready: 0,
            unready: 0,
            missing: 0,
            extra: 0,
            extra_sum: 0,
        };
        for pod in input.pods {
            let found = index.get(pod.name).copied();
            if let Some(i) = found {
                matched[i] = true;
            }
            let sample = found.map(|i| &input.samples[i]);
            let class = classify(pod, sample, cpu, rules, now);
            match class {
                Class::Ready => sorted.ready += 1,
                Class::Unready => sorted.unready += 1,
                Class::Missing => sorted.missing += 1,
                Class::Ignored => {}
            }
            sorted.class.push(class);
            sorted.value.push(sample.map(|s| s.value));
        }
        for i in index.into_values() {
            if !matched[i] {
                sorted.extra += 1;
                sorted.extra_sum = sorted.extra_sum.saturating_add(input.samples[i].value);
            }
        }
        sorted
    }

    /// The values the ratio is computed on: the ready pods' samples (unready and ignored
    /// pods' removed, as the HPA removes them), with missing and unready pods filled in
    /// where `fill_missing` / `fill_unready` say.
    fn values<'s>(
        &'s self,
        fill_missing: impl Fn(usize) -> Option<i64> + 's,
        fill_unready: Option<i64>,
    ) -> impl Iterator<Item = (usize, i64)> + 's {
        self.class
            .iter()
            .enumerate()
            .filter_map(move |(i, c)| match c {
                Class::Ready => self.value[i].map(|v| (i, v)),
                Class::Missing => fill_missing(i).map(|v| (i, v)),
                Class::Unready => fill_unready.map(|v| (i, v)),
                Class::Ignored => None,
            })
    }
}

fn ceil_replicas(x: f64) -> u32 {
    if x.is_nan() || x <= 0.0 {
        0
    } else if x >= f64::from(i32::MAX) {
        i32::MAX as u32
    } else {
        x.ceil() as u32
    }
}

fn flipped(before: f64, after: f64) -> bool {
    (before < 1.0 && after > 1.0) || (before > 1.0 && after < 1.0)
}

/// The HPA's `GetResourceReplicas`: a `Resource` or `ContainerResource` metric with a
/// `Utilization` target (percent of the request).
pub fn resource_replicas(
    input: &PodMetric<'_>,
    current: u32,
    target_utilization: i32,
    tol: Tolerances,
    rules: &PodRules,
    now: Seconds,
) -> Result<ResourceCalculation, PodError> {
    if input.samples.is_empty() {
        return Err(PodError::NoMetrics);
    }
    if input.pods.is_empty() {
        return Err(PodError::NoPods);
    }
    let sorted = Sorted::new(input, rules, now);
    if sorted.ready == 0 && sorted.extra == 0 {
        return Err(PodError::NoTargetedMetrics);
    }
    let requests = input
        .pods
        .iter()
        .map(|pod| pod_request(pod, input.container, input.resource))
        .collect::<Result<Vec<i64>, PodError>>()?;
    // Samples of pods not in the list have no request: the HPA leaves them out of the
    // utilization, but counts them in the replicas below.
    let (ratio, utilization, raw_average) =
        utilization_ratio(sorted.values(|_| None, None), &requests, target_utilization)?;

    let scale_up_with_unready = sorted.unready > 0 && ratio > 1.0;
    let answer = |replicas| ResourceCalculation {
        replicas,
        utilization,
        raw_average,
        ratio,
        ready: sorted.ready,
    };
    if !scale_up_with_unready && sorted.missing == 0 {
        if within(tol, ratio) {
            return Ok(answer(current));
        }
        return Ok(answer(ceil_replicas(ratio * sorted.ready as f64)));
    }
    // A pod that stopped reporting may be busy: on a scale-down, its full request (or the
    // target where that is above 100%); on a scale-up, idle; at exactly 1, left out.
    let fallback = i64::from(target_utilization.max(100));
    let fill_missing = |i: usize| {
        if ratio < 1.0 {
            Some(requests[i].saturating_mul(fallback) / 100)
        } else if ratio > 1.0 {
            Some(0)
        } else {
            None
        }
    };
    let fill_unready = scale_up_with_unready.then_some(0);
    let counted = sorted.values(fill_missing, fill_unready).count() + sorted.extra;
    let (new_ratio, _, _) = utilization_ratio(
        sorted.values(fill_missing, fill_unready),
        &requests,
        target_utilization,
    )?;
    if within(tol, new_ratio) || flipped(ratio, new_ratio) {
        return Ok(answer(current));
    }
    let new = ceil_replicas(new_ratio * counted as f64);
    if (new_ratio < 1.0 && new > current) || (new_ratio > 1.0 && new < current) {
        return Ok(answer(current));
    }
    Ok(answer(new))
}

/// The HPA's `GetRawResourceReplicas` and `GetMetricReplicas` (`calcPlainMetricReplicas`):
/// an `AverageValue` target in milli-units, for a resource by raw value or a Pods metric.
pub fn plain_replicas(
    input: &PodMetric<'_>,
    current: u32,
    target: i64,
    tol: Tolerances,
    rules: &PodRules,
    now: Seconds,
) -> Result<PlainCalculation, PodError> {
    if input.samples.is_empty() {
        return Err(PodError::NoMetrics);
    }
    if input.pods.is_empty() {
        return Err(PodError::NoPods);
    }
    let sorted = Sorted::new(input, rules, now);
    if sorted.ready == 0 && sorted.extra == 0 {
        return Err(PodError::NoTargetedMetrics);
    }
    // Samples of pods not in the list stay: the HPA averages over them too.
    let average = |fill_missing: Option<i64>, fill_unready: Option<i64>| {
        let (mut sum, mut n) = (sorted.extra_sum, sorted.extra);
        for (_, v) in sorted.values(|_| fill_missing, fill_unready) {
            sum = sum.saturating_add(v);
            n += 1;
        }
        let usage = sum / n.max(1) as i64;
        (usage as f64 / target as f64, usage, n)
    };
    let (ratio, usage, _) = average(None, None);
    let scale_up_with_unready = sorted.unready > 0 && ratio > 1.0;
    let answer = |replicas| PlainCalculation {
        replicas,
        usage,
        ratio,
        ready: sorted.ready,
    };
    if !scale_up_with_unready && sorted.missing == 0 {
        if within(tol, ratio) {
            return Ok(answer(current));
        }
        return Ok(answer(ceil_replicas(ratio * sorted.ready as f64)));
    }
    let fill = if ratio < 1.0 {
        Some(target)
    } else if ratio > 1.0 {
        Some(0)
    } else {
        None
    };
    let (new_ratio, _, counted) = average(fill, scale_up_with_unready.then_some(0));
    if within(tol, new_ratio) || flipped(ratio, new_ratio) {
        return Ok(answer(current));
    }
    let new = ceil_replicas(new_ratio * counted as f64);
    if (new_ratio < 1.0 && new > current) || (new_ratio > 1.0 && new < current) {
        return Ok(answer(current));
    }
    Ok(answer(new))
}

/// Pods running and ready: what an Object or External `Value` target multiplies its ratio
/// by (the HPA's `getReadyPodsCount`).
pub fn ready_pods(pods: &[Pod<'_>]) -> u32 {
    let ready = pods
        .iter()
        .filter(|p| {
            p.phase == PodPhase::Running
                && p.ready.is_some_and(|c| c.status == ConditionStatus::True)
        })
        .count();
    u32::try_from(ready).unwrap_or(u32::MAX)
}

/// The HPA's `getUsageRatioReplicaCount` for an Object or External metric with a `Value`
/// target: ceil(ratio × ready pods) outside the tolerance; from zero replicas, ceil(ratio).
pub fn value_replicas(
    current: u32,
    usage: i64,
    target: i64,
    tol: Tolerances,
    pods: &[Pod<'_>],
) -> Result<u32, PodError> {
    let ratio = usage as f64 / target as f64;
    if current == 0 {
        return Ok(ceil_replicas(ratio));
    }
    if within(tol, ratio) {
        return Ok(current);
    }
    if pods.is_empty() {
        return Err(PodError::NoPods);
    }
    Ok(ceil_replicas(ratio * f64::from(ready_pods(pods))))
}

/// The HPA's `GetObjectPerPodMetricReplicas` / `GetExternalPerPodMetricReplicas`: an
/// `AverageValue` target on an Object or External metric, divided over the target's
/// replicas. Returns (replicas, the per-pod usage the HPA reports).
pub fn per_pod_value_replicas(
    status_replicas: u32,
    usage: i64,
    target_per_pod: i64,
    tol: Tolerances,
) -> (u32, i64) {
    let ratio = usage as f64 / (target_per_pod as f64 * f64::from(status_replicas));
    let replicas = if within(tol, ratio) {
        status_replicas
    } else {
        ceil_replicas(usage as f64 / target_per_pod as f64)
    };
    let per_pod = if status_replicas == 0 {
        usage
    } else {
        (usage as f64 / f64::from(status_replicas)).ceil() as i64
    };
    (replicas, per_pod)
}

/// An External metric's value: the sum over its series, capped instead of overflowing.
pub fn external_sum(values: &[i64]) -> i64 {
    values.iter().fold(0i64, |acc, v| acc.saturating_add(*v))
}

/// The HPA's tolerance test (k8s ≥ 1.33): 1 − down ≤ ratio ≤ 1 + up.
fn within(tol: Tolerances, ratio: f64) -> bool {
    tol.within(ratio)
}

/// `GetResourceUtilizationRatio` over (pod index, value) pairs of listed pods: samples of
/// pods without a request are extraneous and never reach it.
fn utilization_ratio(
    values: impl Iterator<Item = (usize, i64)>,
    requests: &[i64],
    target: i32,
) -> Result<(f64, i32, i64), PodError> {
    let (mut usage, mut requested, mut entries) = (0i64, 0i64, 0i64);
    for (i, value) in values {
        usage = usage.saturating_add(value);
        requested = requested.saturating_add(requests[i]);
        entries += 1;
    }
    if requested == 0 || entries == 0 {
        return Err(PodError::NoMatchingPods);
    }
    let utilization =
        i32::try_from(i128::from(usage) * 100 / i128::from(requested)).unwrap_or(i32::MAX);
    Ok((
        f64::from(utilization) / f64::from(target),
        utilization,
        usage / entries,
    ))
}

/// A decision's pod-level input for one policy metric (see `Observation::pods`).
pub type PodInput<'a> = Option<PodMetric<'a>>;
