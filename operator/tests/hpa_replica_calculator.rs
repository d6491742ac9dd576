//! The HPA controller's replica-calculator table (pkg/controller/podautoscaler,
//! `replica_calculator_test.go`) as our own fixtures: the same pods, samples, requests and
//! expectations, built the way that test's fake clients build them (two containers per pod,
//! both requesting the listed amount; samples per container; a pod-metrics window of one
//! minute; readiness conditions without a transition time), run through `scaling::pods`.

use marketplace_operator::scaling::Tolerances;
use marketplace_operator::scaling::pods::{
    self, ConditionStatus, Container, ContainerKind, Groups, Pod, PodError, PodMetric, PodPhase,
    PodRules, ReadyCondition, Sample,
};

const NOW: f64 = 1_800_000_000.0;
/// Go's zero `time.Time`, which the fixtures leave in start times, transition times and
/// sample timestamps they do not set: long before anything.
const ZERO: f64 = -62_135_596_800.0;
/// The upstream test's delays: 2 minutes of CPU initialization, 10 s readiness delay.
const RULES: PodRules = PodRules {
    cpu_initialization_period: 120.0,
    initial_readiness_delay: 10.0,
};
const TOL: Tolerances = Tolerances { up: 0.1, down: 0.1 };

fn hot() -> f64 {
    NOW
}

fn cool() -> f64 {
    NOW - 180.0
}

use ConditionStatus::{False as F, True as T};
use PodPhase::{Failed, Pending, Running};

#[derive(Clone, Default)]
struct Case {
    current: u32,
    readiness: Vec<ConditionStatus>,
    start: Vec<f64>,
    phase: Vec<PodPhase>,
    deleting: Vec<bool>,
    container: Option<&'static str>,
    /// Per pod, milli-units, both containers.
    requests: Vec<i64>,
    /// Per pod, per container.
    levels: Vec<Vec<i64>>,
    pod_names: Vec<&'static str>,
}

fn each(levels: &[i64]) -> Vec<Vec<i64>> {
    levels.iter().map(|l| vec![*l, *l]).collect()
}

struct Built {
    names: Vec<String>,
    containers: Vec<[Container<'static>; 2]>,
    sample_names: Vec<String>,
}

impl Case {
    fn pod_count(&self) -> usize {
        (self.current as usize).max(self.phase.len())
    }

    fn build(&self) -> Built {
        let n = self.pod_count();
        let names = (0..n).map(|i| format!("test-pod-{i}")).collect();
        let containers = (0..n)
            .map(|i| {
                let request = self.requests.get(i).copied();
                [
                    Container {
                        name: "container1",
                        kind: ContainerKind::Regular,
                        request,
                    },
                    Container {
                        name: "container2",
                        kind: ContainerKind::Regular,
                        request,
                    },
                ]
            })
            .collect();
        let sample_names = (0..self.levels.len())
            .map(|i| {
                self.pod_names
                    .get(i)
                    .map_or_else(|| format!("test-pod-{i}"), |s| (*s).to_owned())
            })
            .collect();
        Built {
            names,
            containers,
            sample_names,
        }
    }

    fn pods<'a>(&self, b: &'a Built) -> Vec<Pod<'a>> {
        (0..self.pod_count())
            .map(|i| Pod {
                name: &b.names[i],
                phase: self.phase.get(i).copied().unwrap_or(Running),
                deleting: self.deleting.get(i).copied().unwrap_or(false),
                ready: Some(ReadyCondition {
                    status: self.readiness.get(i).copied().unwrap_or(T),
                    last_transition: ZERO,
                }),
                start_time: Some(self.start.get(i).copied().unwrap_or(ZERO)),
                containers: &b.containers[i],
                pod_request: None,
            })
            .collect()
    }

    /// The resource metrics client: a pod's containers summed, a pod with a container
    /// lacking the resource dropped; with a container named, that container's value only.
    fn samples<'a>(&self, b: &'a Built) -> Vec<Sample<'a>> {
        let mut out = Vec::new();
        for (i, containers) in self.levels.iter().enumerate() {
            // The fake lists two containers per pod; entries beyond the levels given have
            // no name and no usage.
            let value = match self.container {
                Some(name) => {
                    let index = if name == "container1" { 0 } else { 1 };
                    containers.get(index).copied()
                }
                None if containers.len() == 2 => Some(containers.iter().sum()),
                None => None,
            };
            if let Some(value) = value {
                out.push(Sample {
                    pod: &b.sample_names[i],
                    value,
                    timestamp: ZERO,
                    window: 60.0,
                });
            }
        }
        out
    }

    /// (replicas, utilization, raw average) or the error.
    fn cpu(&self, target: i32) -> Result<(u32, i32, i64), PodError> {
        let b = self.build();
        let pod_list = self.pods(&b);
        let samples = self.samples(&b);
        let input = PodMetric {
            pods: &pod_list,
            samples: &samples,
            container: self.container,
            resource: "cpu",
        };
        pods::resource_replicas(&input, self.current, target, TOL, &RULES, NOW)
            .map(|c| (c.replicas, c.utilization, c.raw_average))
    }

    /// A Pods metric: one value per pod (the first container's level), no readiness rules.
    fn custom(&self, target: i64) -> Result<(u32, i64), PodError> {
        let b = self.build();
        let pod_list = self.pods(&b);
        let samples: Vec<Sample<'_>> = self
            .levels
            .iter()
            .enumerate()
            .map(|(i, l)| Sample {
                pod: &b.sample_names[i],
                value: l[0],
                timestamp: ZERO,
                window: 60.0,
            })
            .collect();
        let input = PodMetric {
            pods: &pod_list,
            samples: &samples,
            container: None,
            resource: "",
        };
        pods::plain_replicas(&input, self.current, target, TOL, &RULES, NOW)
            .map(|c| (c.replicas, c.usage))
    }

    fn value(&self, usage: i64, target: i64) -> Result<u32, PodError> {
        let b = self.build();
        let pod_list = self.pods(&b);
        pods::value_replicas(self.current, usage, target, TOL, &pod_list)
    }
}

fn custom_levels(levels: &[i64]) -> Vec<Vec<i64>> {
    levels.iter().map(|l| vec![*l]).collect()
}

fn one_cpu(n: usize) -> Vec<i64> {
    vec![1000; n]
}

#[test]
fn resource_utilization_table() {
    // (name, case, target %, replicas, utilization, raw average)
    let table: Vec<(&str, Case, i32, u32, i32, i64)> = vec![
        (
            "ScaleUp",
            Case {
                current: 3,
                requests: one_cpu(3),
                levels: each(&[300, 500, 700]),
                ..Case::default()
            },
            30,
            5,
            50,
            2 * 500,
        ),
        (
            "ContainerScaleUp",
            Case {
                current: 3,
                requests: one_cpu(3),
                levels: vec![vec![1000, 300], vec![1000, 500], vec![1000, 700]],
                container: Some("container2"),
                ..Case::default()
            },
            30,
            5,
            50,
            500,
        ),
        (
            "ScaleUpUnreadyLessScale",
            Case {
                current: 3,
                readiness: vec![F, T, T],
                requests: one_cpu(3),
                levels: each(&[300, 500, 700]),
                ..Case::default()
            },
            30,
            4,
            60,
            2 * 600,
        ),
        (
            "ScaleUpContainerHotCpuLessScale",
            Case {
                current: 3,
                start: vec![hot(), cool(), cool()],
                requests: one_cpu(3),
                levels: vec![vec![0, 300], vec![0, 500], vec![0, 700]],
                container: Some("container2"),
                ..Case::default()
            },
            30,
            4,
            60,
            600,
        ),
        (
            "ScaleUpHotCpuLessScale",
            Case {
                current: 3,
                start: vec![hot(), cool(), cool()],
                requests: one_cpu(3),
                levels: each(&[300, 500, 700]),
                ..Case::default()
            },
            30,
            4,
            60,
            2 * 600,
        ),
        (
            "ScaleUpUnreadyNoScale",
            Case {
                current: 3,
                readiness: vec![T, F, F],
                requests: one_cpu(3),
                levels: each(&[400, 500, 700]),
                ..Case::default()
            },
            30,
            3,
            40,
            2 * 400,
        ),
        (
            "ScaleHotCpuNoScale",
            Case {
                current: 3,
                readiness: vec![T, F, F],
                start: vec![cool(), hot(), hot()],
                requests: one_cpu(3),
                levels: each(&[400, 500, 700]),
                ..Case::default()
            },
            30,
            3,
            40,
            2 * 400,
        ),
        (
            "ScaleUpIgnoresFailedPods",
            Case {
                current: 2,
                readiness: vec![T, T, F, F],
                phase: vec![Running, Running, Failed, Failed],
                requests: one_cpu(4),
                levels: each(&[500, 700]),
                ..Case::default()
            },
            30,
            4,
            60,
            2 * 600,
        ),
        (
            "MissingContainerMetricScaleUpIgnoresFailedPods",
            Case {
                current: 2,
                readiness: vec![T, T, F, F],
                phase: vec![Running, Running, Failed, Failed],
                requests: one_cpu(4),
                levels: vec![vec![1000, 500], vec![9000, 700], vec![1000], vec![9000]],
                container: Some("container2"),
                ..Case::default()
            },
            30,
            4,
            60,
            600,
        ),
        (
            "ScaleUpContainerIgnoresFailedPods",
            Case {
                current: 2,
                readiness: vec![T, T, F, F],
                phase: vec![Running, Running, Failed, Failed],
                requests: one_cpu(4),
                levels: vec![vec![1000, 500], vec![9000, 700]],
                container: Some("container2"),
                ..Case::default()
            },
            30,
            4,
            60,
            600,
        ),
        (
            "ScaleUpIgnoresDeletionPods",
            Case {
                current: 2,
                readiness: vec![T, T, F, F],
                phase: vec![Running; 4],
                deleting: vec![false, false, true, true],
                requests: one_cpu(4),
                levels: each(&[500, 700]),
                ..Case::default()
            },
            30,
            4,
            60,
            2 * 600,
        ),
        (
            "ScaleUpContainerIgnoresDeletionPods",
            Case {
                current: 2,
                readiness: vec![T, T, F, F],
                phase: vec![Running; 4],
                deleting: vec![false, false, true, true],
                requests: one_cpu(4),
                levels: each(&[500, 700]),
                container: Some("container1"),
                ..Case::default()
            },
            30,
            4,
            60,
            600,
        ),
        (
            "ScaleDown",
            Case {
                current: 5,
                requests: one_cpu(5),
                levels: each(&[100, 300, 500, 250, 250]),
                ..Case::default()
            },
            50,
            3,
            28,
            2 * 280,
        ),
        (
            "ContainerScaleDown",
            Case {
                current: 5,
                requests: one_cpu(5),
                levels: vec![
                    vec![1000, 100],
                    vec![1000, 300],
                    vec![1000, 500],
                    vec![1000, 250],
                    vec![1000, 250],
                ],
                container: Some("container2"),
                ..Case::default()
            },
            50,
            3,
            28,
            280,
        ),
        (
            "ScaleDownExcludeUnreadyPods",
            Case {
                current: 5,
                readiness: vec![T, T, T, F, F],
                requests: one_cpu(5),
                levels: each(&[100, 300, 500, 250, 250]),
                ..Case::default()
            },
            50,
            2,
            30,
            2 * 300,
        ),
        (
            "ScaleDownContainerExcludeUnreadyPods",
            Case {
                current: 5,
                readiness: vec![T, T, T, F, F],
                requests: one_cpu(5),
                levels: vec![
                    vec![1000, 100],
                    vec![1000, 300],
                    vec![1000, 500],
                    vec![1000, 250],
                    vec![1000, 250],
                ],
                container: Some("container2"),
                ..Case::default()
            },
            50,
            2,
            30,
            300,
        ),
        (
            "ScaleDownExcludeUnscheduledPods",
            Case {
                current: 5,
                readiness: vec![T, F, F, F, F],
                phase: vec![Running, Pending, Pending, Pending, Pending],
                requests: one_cpu(5),
                levels: each(&[100]),
                ..Case::default()
            },
            50,
            1,
            10,
            2 * 100,
        ),
        (
            "ScaleDownContainerExcludeUnscheduledPods",
            Case {
                current: 5,
                readiness: vec![T, F, F, F, F],
                phase: vec![Running, Pending, Pending, Pending, Pending],
                requests: one_cpu(5),
                levels: vec![
                    vec![1000, 100],
                    vec![1000, 300],
                    vec![1000, 500],
                    vec![1000, 250],
                    vec![1000, 250],
                ],
                container: Some("container2"),
                ..Case::default()
            },
            50,
            1,
            10,
            100,
        ),
        (
            "ScaleDownIgnoreHotCpuPods",
            Case {
                current: 5,
                start: vec![cool(), cool(), cool(), hot(), hot()],
                requests: one_cpu(5),
                levels: each(&[100, 300, 500, 250, 250]),
                ..Case::default()
            },
            50,
            2,
            30,
            2 * 300,
        ),
        (
            "ScaleDownContainerIgnoreHotCpuPods",
            Case {
                current: 5,
                start: vec![cool(), cool(), cool(), hot(), hot()],
                requests: one_cpu(5),
                levels: vec![
                    vec![1000, 100],
                    vec![1000, 300],
                    vec![1000, 500],
                    vec![1000, 1000],
                    vec![1000, 1000],
                ],
                container: Some("container2"),
                ..Case::default()
            },
            50,
            2,
            30,
            300,
        ),
        (
            "ScaleDownIgnoresFailedPods",
            Case {
                current: 5,
                readiness: vec![T, T, T, T, T, F, F],
                phase: vec![Running, Running, Running, Running, Running, Failed, Failed],
                requests: one_cpu(7),
                levels: each(&[100, 300, 500, 250, 250]),
                ..Case::default()
            },
            50,
            3,
            28,
            2 * 280,
        ),
        (
            "ScaleDownContainerIgnoresFailedPods",
            Case {
                current: 5,
                readiness: vec![T, T, T, T, T, F, F],
                phase: vec![Running, Running, Running, Running, Running, Failed, Failed],
                requests: one_cpu(7),
                levels: vec![
                    vec![1000, 100],
                    vec![1000, 300],
                    vec![1000, 500],
                    vec![1000, 250],
                    vec![1000, 250],
                ],
                container: Some("container2"),
                ..Case::default()
            },
            50,
            3,
            28,
            280,
        ),
        (
            "ScaleDownIgnoresDeletionPods",
            Case {
                current: 5,
                readiness: vec![T, T, T, T, T, F, F],
                phase: vec![Running; 7],
                deleting: vec![false, false, false, false, false, true, true],
                requests: one_cpu(7),
                levels: each(&[100, 300, 500, 250, 250]),
                ..Case::default()
            },
            50,
            3,
            28,
            2 * 280,
        ),
        (
            "ScaleDownIgnoresDeletionPods_StillRunning",
            Case {
                current: 5,
                readiness: vec![T, T, T, T, T, F, F],
                phase: vec![Running; 7],
                deleting: vec![false, false, false, false, false, true, true],
                requests: one_cpu(7),
                levels: vec![
                    vec![1000, 100],
                    vec![1000, 300],
                    vec![1000, 500],
                    vec![1000, 250],
                    vec![1000, 250],
                ],
                container: Some("container2"),
                ..Case::default()
            },
            50,
            3,
            28,
            280,
        ),
        (
            "Tolerance",
            Case {
                current: 3,
                requests: vec![900, 1000, 1100],
                levels: each(&[1010, 1030, 1020]),
                ..Case::default()
            },
            100,
            3,
            102,
            2 * 1020,
        ),
        (
            "SuperfluousMetrics",
            Case {
                current: 4,
                requests: one_cpu(4),
                levels: each(&[4000, 9500, 3000, 7000, 3200, 2000]),
                ..Case::default()
            },
            100,
            24,
            587,
            2 * 5875,
        ),
        (
            "MissingMetrics",
            Case {
                current: 4,
                requests: one_cpu(4),
                levels: each(&[400, 95]),
                ..Case::default()
            },
            100,
            3,
            24,
            495,
        ),
        (
            "MissingMetricsNoChangeEq",
            Case {
                current: 2,
                requests: one_cpu(2),
                levels: each(&[1000]),
                ..Case::default()
            },
            100,
            2,
            100,
            2 * 1000,
        ),
        (
            "MissingMetricsNoChangeGt",
            Case {
                current: 2,
                requests: one_cpu(2),
                levels: each(&[1900]),
                ..Case::default()
            },
            100,
            2,
            190,
            2 * 1900,
        ),
        (
            "MissingMetricsNoChangeLt",
            Case {
                current: 2,
                requests: one_cpu(2),
                levels: each(&[600]),
                ..Case::default()
            },
            100,
            2,
            60,
            2 * 600,
        ),
        (
            "MissingMetricsUnreadyChange",
            Case {
                current: 3,
                readiness: vec![F, T, T],
                requests: one_cpu(3),
                levels: each(&[100, 450]),
                ..Case::default()
            },
            50,
            3,
            45,
            2 * 450,
        ),
        (
            "MissingMetricsHotCpuNoChange",
            Case {
                current: 3,
                start: vec![hot(), cool(), cool()],
                requests: one_cpu(3),
                levels: each(&[100, 450]),
                ..Case::default()
            },
            50,
            3,
            45,
            2 * 450,
        ),
        (
            "MissingMetricsUnreadyScaleUp",
            Case {
                current: 3,
                readiness: vec![F, T, T],
                requests: one_cpu(3),
                levels: each(&[100, 2000]),
                ..Case::default()
            },
            50,
            4,
            200,
            2 * 2000,
        ),
        (
            "MissingMetricsHotCpuScaleUp",
            Case {
                current: 3,
                readiness: vec![F, T, T],
                start: vec![hot(), cool(), cool()],
                requests: one_cpu(3),
                levels: each(&[100, 2000]),
                ..Case::default()
            },
            50,
            4,
            200,
            2 * 2000,
        ),
        (
            "MissingMetricsUnreadyScaleDown",
            Case {
                current: 4,
                readiness: vec![F, T, T, T],
                requests: one_cpu(4),
                levels: each(&[100, 100, 100]),
                ..Case::default()
            },
            50,
            3,
            10,
            2 * 100,
        ),
        (
            "MissingMetricsScaleDownTargetOver100",
            Case {
                current: 4,
                readiness: vec![F, T, T, T],
                requests: vec![1000, 1000, 2000, 2000],
                levels: each(&[200, 100, 100]),
                ..Case::default()
            },
            300,
            2,
            6,
            2 * 100,
        ),
        (
            "DuringRollingUpdateWithMaxSurge",
            Case {
                current: 2,
                phase: vec![Running; 3],
                requests: one_cpu(3),
                levels: each(&[100, 100]),
                ..Case::default()
            },
            50,
            2,
            10,
            2 * 100,
        ),
    ];
    let mut failures = Vec::new();
    for (name, case, target, replicas, utilization, raw) in &table {
        match case.cpu(*target) {
            Ok(got) if got == (*replicas, *utilization, *raw) => {}
            other => failures.push(format!(
                "{name}: got {other:?}, want ({replicas}, {utilization}, {raw})"
            )),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn resource_errors_table() {
    let disjoint = Case {
        current: 1,
        requests: one_cpu(1),
        levels: each(&[100]),
        pod_names: vec!["an-older-pod-name"],
        ..Case::default()
    };
    // The HPA reads metrics of pods it does not list, finds none matching: no request total.
    assert_eq!(disjoint.cpu(100), Err(PodError::NoMatchingPods));
    let empty = Case {
        current: 4,
        requests: one_cpu(3),
        ..Case::default()
    };
    assert_eq!(empty.cpu(100), Err(PodError::NoMetrics));
    let no_request = Case {
        current: 1,
        levels: each(&[200]),
        ..Case::default()
    };
    assert!(
        matches!(no_request.cpu(100), Err(PodError::MissingRequest { ref container, .. }) if container == "container1"),
        "{:?}",
        no_request.cpu(100)
    );
    assert!(
        no_request
            .cpu(100)
            .unwrap_err()
            .to_string()
            .starts_with("missing request for cpu in container container1 of Pod test-pod-0")
    );
}

#[test]
fn computed_tolerance_regression() {
    // Ten pods using 150m of each container against ~300m requests: 50% of request.
    let requests = vec![400, 200, 310, 290, 302, 298, 301, 299, 300, 300];
    let case = Case {
        current: 10,
        requests,
        levels: each(&[150; 10]),
        ..Case::default()
    };
    // A target just past the tolerance (1 / (2 × 0.9) + 0.01 → 56%) scales to 9;
    assert_eq!(case.cpu(56), Ok((9, 50, 300)));
    // one just inside it (+ 0.004 → 55%) keeps 10.
    assert_eq!(case.cpu(55), Ok((10, 50, 300)));
}

#[test]
fn pods_metric_table() {
    // (name, case, target milli, replicas, usage)
    let table: Vec<(&str, Case, i64, u32, i64)> = vec![
        (
            "ScaleUpCM",
            Case {
                current: 3,
                levels: custom_levels(&[20000, 10000, 30000]),
                ..Case::default()
            },
            15000,
            4,
            20000,
        ),
        (
            // Not CPU: an unready pod's sample counts.
            "ScaleUpCMUnreadyHotCpuNoLessScale",
            Case {
                current: 3,
                readiness: vec![T, T, F],
                start: vec![cool(), cool(), hot()],
                levels: custom_levels(&[50000, 10000, 30000]),
                ..Case::default()
            },
            15000,
            6,
            30000,
        ),
        (
            "ScaleUpCMUnreadyHotCpuScaleWouldScaleDown",
            Case {
                current: 3,
                readiness: vec![F, T, F],
                start: vec![hot(), cool(), hot()],
                levels: custom_levels(&[50000, 15000, 30000]),
                ..Case::default()
            },
            15000,
            7,
            31666,
        ),
        (
            "ScaleUpCMExternal (as a pods metric)",
            Case {
                current: 1,
                levels: custom_levels(&[8600]),
                ..Case::default()
            },
            4400,
            2,
            8600,
        ),
        (
            "ScaleDownCM",
            Case {
                current: 5,
                levels: custom_levels(&[12000; 5]),
                ..Case::default()
            },
            20000,
            3,
            12000,
        ),
        (
            "ToleranceCM",
            Case {
                current: 3,
                levels: custom_levels(&[20000, 21000, 21000]),
                ..Case::default()
            },
            20000,
            3,
            20666,
        ),
        (
            "PlainMetricMissingMetricsNoChangeEq",
            Case {
                current: 5,
                levels: custom_levels(&[20000, 19000, 21000]),
                ..Case::default()
            },
            20000,
            5,
            20000,
        ),
        (
            "DuringRollingUpdateWithMaxSurgeCM",
            Case {
                current: 2,
                phase: vec![Running; 3],
                levels: custom_levels(&[10000, 10000]),
                ..Case::default()
            },
            17000,
            2,
            10000,
        ),
    ];
    let mut failures = Vec::new();
    for (name, case, target, replicas, usage) in &table {
        match case.custom(*target) {
            Ok(got) if got == (*replicas, *usage) => {}
            other => failures.push(format!("{name}: got {other:?}, want ({replicas}, {usage})")),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn object_and_external_table() {
    let three = |readiness: Vec<ConditionStatus>| Case {
        current: 3,
        readiness,
        ..Case::default()
    };
    // Object Value: ceil(ratio × ready pods).
    assert_eq!(three(vec![]).value(20000, 15000), Ok(4)); // ScaleUpCMObject
    assert_eq!(three(vec![F, T, F]).value(50000, 10000), Ok(5)); // ...IgnoresUnreadyPods
    assert_eq!(three(vec![F, T, F]).value(8600, 4400), Ok(2)); // External, unready ignored
    let five = Case {
        current: 5,
        ..Case::default()
    };
    assert_eq!(five.value(12000, 20000), Ok(3)); // ScaleDownCMObject
    assert_eq!(five.value(8600, 14334), Ok(3)); // ScaleDownCMExternal
    assert_eq!(three(vec![]).value(20666, 20000), Ok(3)); // ToleranceCMObject
    assert_eq!(three(vec![]).value(8600, 8888), Ok(3)); // ToleranceCMExternal
    // From zero replicas: ceil(ratio), no tolerance, no pods needed.
    let zero = Case::default();
    assert_eq!(zero.value(8600, 4400), Ok(2));
    assert_eq!(pods::external_sum(&[8600]), 8600);
    assert_eq!(pods::external_sum(&[i64::MAX, 1]), i64::MAX);

    // Per-pod targets over the target's replicas: (replicas, reported per-pod usage).
    assert_eq!(pods::per_pod_value_replicas(3, 20000, 5000, TOL), (4, 6667));
    assert_eq!(pods::per_pod_value_replicas(3, 8600, 2150, TOL), (4, 2867));
    assert_eq!(pods::per_pod_value_replicas(5, 6000, 2000, TOL), (3, 1200));
    assert_eq!(pods::per_pod_value_replicas(5, 8600, 2867, TOL), (3, 1720));
    assert_eq!(pods::per_pod_value_replicas(4, 20166, 5000, TOL), (4, 5042));
    assert_eq!(pods::per_pod_value_replicas(3, 8600, 2900, TOL), (3, 2867));
}

fn pod<'a>(
    name: &'a str,
    phase: PodPhase,
    start: Option<f64>,
    ready: Option<(ConditionStatus, f64)>,
) -> Pod<'a> {
    Pod {
        name,
        phase,
        deleting: false,
        ready: ready.map(|(status, last_transition)| ReadyCondition {
            status,
            last_transition,
        }),
        start_time: start,
        containers: &[],
        pod_request: None,
    }
}

fn sample(pod: &str, timestamp: f64, window: f64) -> Sample<'_> {
    Sample {
        pod,
        value: 1,
        timestamp,
        window,
    }
}

#[test]
fn group_pods_table() {
    use std::collections::HashMap;
    let succeeded = PodPhase::Succeeded;
    struct G {
        name: &'static str,
        pods: Vec<Pod<'static>>,
        samples: Vec<Sample<'static>>,
        cpu: bool,
        want: (
            usize,
            Vec<&'static str>,
            Vec<&'static str>,
            Vec<&'static str>,
        ),
    }
    let mut deleted = pod("deleted", Pending, None, None);
    deleted.deleting = true;
    let cases = vec![
        G {
            name: "void",
            pods: vec![],
            samples: vec![],
            cpu: true,
            want: (0, vec![], vec![], vec![]),
        },
        G {
            name: "count in a ready pod - memory",
            pods: vec![pod("bentham", succeeded, None, None)],
            samples: vec![sample("bentham", NOW, 60.0)],
            cpu: false,
            want: (1, vec![], vec![], vec![]),
        },
        G {
            name: "unready a pod without ready condition - CPU",
            pods: vec![pod("lucretius", succeeded, Some(NOW), None)],
            samples: vec![sample("lucretius", ZERO, 0.0)],
            cpu: true,
            want: (0, vec!["lucretius"], vec![], vec![]),
        },
        G {
            name: "count in a ready pod with fresh metrics during initialization period - CPU",
            pods: vec![pod(
                "bentham",
                succeeded,
                Some(NOW - 60.0),
                Some((T, NOW - 30.0)),
            )],
            samples: vec![sample("bentham", NOW, 30.0)],
            cpu: true,
            want: (1, vec![], vec![], vec![]),
        },
        G {
            name: "unready a ready pod without fresh metrics during initialization period - CPU",
            pods: vec![pod(
                "bentham",
                succeeded,
                Some(NOW - 60.0),
                Some((T, NOW - 30.0)),
            )],
            samples: vec![sample("bentham", NOW, 60.0)],
            cpu: true,
            want: (0, vec!["bentham"], vec![], vec![]),
        },
        G {
            name: "unready an unready pod during initialization period - CPU",
            pods: vec![pod(
                "lucretius",
                succeeded,
                Some(NOW - 600.0),
                Some((F, NOW - 594.0)),
            )],
            samples: vec![sample("lucretius", ZERO, 0.0)],
            cpu: true,
            want: (0, vec!["lucretius"], vec![], vec![]),
        },
        G {
            name: "count in a ready pod without fresh metrics after initialization period - CPU",
            pods: vec![pod(
                "bentham",
                succeeded,
                Some(NOW - 180.0),
                Some((T, NOW - 180.0)),
            )],
            samples: vec![sample("bentham", NOW - 120.0, 60.0)],
            cpu: true,
            want: (1, vec![], vec![], vec![]),
        },
        G {
            name: "count in an unready pod that was ready after initialization period - CPU",
            pods: vec![pod(
                "lucretius",
                succeeded,
                Some(NOW - 600.0),
                Some((F, NOW - 540.0)),
            )],
            samples: vec![sample("lucretius", ZERO, 0.0)],
            cpu: true,
            want: (1, vec![], vec![], vec![]),
        },
        G {
            name: "unready pod that has never been ready after initialization period - CPU",
            pods: vec![pod(
                "lucretius",
                succeeded,
                Some(NOW - 600.0),
                Some((F, NOW - 590.0)),
            )],
            samples: vec![sample("lucretius", ZERO, 0.0)],
            cpu: true,
            want: (1, vec![], vec![], vec![]),
        },
        G {
            name: "a missing pod",
            pods: vec![pod("epicurus", succeeded, Some(NOW - 180.0), None)],
            samples: vec![],
            cpu: true,
            want: (0, vec![], vec!["epicurus"], vec![]),
        },
        G {
            name: "several pods",
            pods: vec![
                pod("lucretius", succeeded, Some(NOW), None),
                pod(
                    "niccolo",
                    succeeded,
                    Some(NOW - 180.0),
                    Some((T, NOW - 180.0)),
                ),
                pod("epicurus", succeeded, Some(NOW - 180.0), None),
            ],
            samples: vec![sample("lucretius", ZERO, 0.0), sample("niccolo", ZERO, 0.0)],
            cpu: true,
            want: (1, vec!["lucretius"], vec!["epicurus"], vec![]),
        },
        G {
            name: "pending pods are unreadied",
            pods: vec![pod("unscheduled", Pending, None, None)],
            samples: vec![],
            cpu: true,
            want: (0, vec!["unscheduled"], vec![], vec![]),
        },
        G {
            name: "ignore pods with deletion timestamps",
            pods: vec![deleted],
            samples: vec![sample("deleted", ZERO, 0.0)],
            cpu: true,
            want: (0, vec![], vec![], vec!["deleted"]),
        },
        G {
            name: "ignore pods in a failed state",
            pods: vec![pod("failed", Failed, None, None)],
            samples: vec![sample("failed", ZERO, 0.0)],
            cpu: true,
            want: (0, vec![], vec![], vec!["failed"]),
        },
    ];
    let mut failures = Vec::new();
    for g in cases {
        let map: HashMap<&str, Sample<'_>> = g.samples.iter().map(|s| (s.pod, *s)).collect();
        let got = pods::group_pods(&g.pods, &map, g.cpu, &RULES, NOW);
        let (ready, unready, missing, ignored) = g.want;
        let want = Groups {
            ready,
            unready,
            missing,
            ignored,
        };
        if got != want {
            failures.push(format!("{}: got {got:?}, want {want:?}", g.name));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn pod_requests_table() {
    let c = |name, kind, request| Container {
        name,
        kind,
        request,
    };
    let regular = [
        c("container1", ContainerKind::Regular, Some(100)),
        c("container2", ContainerKind::Regular, Some(50)),
    ];
    let mut p = pod("test-pod", Running, None, None);
    p.containers = &regular;
    assert_eq!(pods::pod_request(&p, None, "cpu"), Ok(150));
    assert_eq!(pods::pod_request(&p, Some("container1"), "cpu"), Ok(100));
    assert_eq!(
        pods::pod_request(&p, Some("nope"), "cpu"),
        Err(PodError::ContainerNotFound {
            container: "nope".into(),
            pod: "test-pod".into()
        })
    );
    let missing = [c("container1", ContainerKind::Regular, None)];
    p.containers = &missing;
    assert_eq!(
        pods::pod_request(&p, None, "cpu").unwrap_err().to_string(),
        "missing request for cpu in container container1 of Pod test-pod"
    );
    // Init containers that run to completion do not count; sidecars do.
    let with_init = [
        c("container1", ContainerKind::Regular, Some(100)),
        c("init-container1", ContainerKind::Init, Some(20)),
        c("restartable-container1", ContainerKind::Sidecar, Some(50)),
    ];
    p.containers = &with_init;
    assert_eq!(pods::pod_request(&p, None, "cpu"), Ok(150));
    // Pod-level requests win unless a container is named.
    p.pod_request = Some(400);
    assert_eq!(pods::pod_request(&p, None, "cpu"), Ok(400));
    assert_eq!(pods::pod_request(&p, Some("container1"), "cpu"), Ok(100));
}

mod arbitrary_input {
    use super::*;
    use proptest::prelude::*;

    fn phase() -> impl Strategy<Value = PodPhase> {
        prop_oneof![
            Just(Running),
            Just(Pending),
            Just(Failed),
            Just(PodPhase::Succeeded),
            Just(PodPhase::Unknown)
        ]
    }

    fn status() -> impl Strategy<Value = ConditionStatus> {
        prop_oneof![Just(T), Just(F), Just(ConditionStatus::Unknown)]
    }

    // (phase, deleting, readiness, start offset, request, sample)
    type PodSpec = (
        PodPhase,
        bool,
        Option<ConditionStatus>,
        Option<f64>,
        Option<i64>,
        Option<i64>,
    );

    fn pod_spec() -> impl Strategy<Value = PodSpec> {
        (
            phase(),
            any::<bool>(),
            proptest::option::of(status()),
            proptest::option::of(-1e6f64..1e3),
            proptest::option::of(prop_oneof![0i64..5000, Just(i64::MAX)]),
            proptest::option::of(prop_oneof![0i64..50_000, Just(i64::MAX)]),
        )
    }

    proptest! {
        /// Whatever the pods say, the calculation answers or names its error: no panic, no
        /// overflow, never more replicas than an int32 scale can hold.
        #[test]
        fn any_pod_list_gives_an_answer_or_an_error(
            specs in proptest::collection::vec(pod_spec(), 0..12),
            extra in proptest::collection::vec(0i64..10_000, 0..3),
            current in 0u32..20,
            target in prop_oneof![1i32..400, Just(i32::MAX)],
            target_value in prop_oneof![1i64..100_000, Just(i64::MAX)],
        ) {
            let names: Vec<String> = (0..specs.len()).map(|i| format!("p{i}")).collect();
            let extra_names: Vec<String> = (0..extra.len()).map(|i| format!("gone-{i}")).collect();
            let containers: Vec<[Container<'_>; 1]> = specs
                .iter()
                .map(|s| [Container { name: "app", kind: ContainerKind::Regular, request: s.4 }])
                .collect();
            let list: Vec<Pod<'_>> = specs
                .iter()
                .enumerate()
                .map(|(i, s)| Pod {
                    name: &names[i],
                    phase: s.0,
                    deleting: s.1,
                    ready: s.2.map(|status| ReadyCondition { status, last_transition: NOW - 100.0 }),
                    start_time: s.3.map(|o| NOW + o),
                    containers: &containers[i],
                    pod_request: None,
                })
                .collect();
            let mut samples: Vec<Sample<'_>> = specs
                .iter()
                .enumerate()
                .filter_map(|(i, s)| s.5.map(|value| Sample { pod: &names[i], value, timestamp: NOW, window: 30.0 }))
                .collect();
            samples.extend(extra.iter().enumerate().map(|(i, v)| Sample {
                pod: &extra_names[i],
                value: *v,
                timestamp: NOW,
                window: 30.0,
            }));
            for resource in ["cpu", "memory"] {
                let input = PodMetric { pods: &list, samples: &samples, container: None, resource };
                if let Ok(c) = pods::resource_replicas(&input, current, target, TOL, &RULES, NOW) {
                    prop_assert!(c.replicas <= i32::MAX as u32);
                    prop_assert!(c.utilization >= 0);
                }
                if let Ok(c) = pods::plain_replicas(&input, current, target_value, TOL, &RULES, NOW) {
                    prop_assert!(c.replicas <= i32::MAX as u32);
                    prop_assert!(c.usage >= 0);
                }
            }
            let replicas = pods::value_replicas(current, target_value, 1, TOL, &list);
            prop_assert!(replicas.map_or(true, |r| r <= i32::MAX as u32));
        }
    }
}
