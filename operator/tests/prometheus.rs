//! The Prometheus metrics path against a real Prometheus (Debian's package): a stub service
//! exports RED metrics, Prometheus scrapes it every second, and `PrometheusSource` turns the
//! answers into the engine's readings.

use std::net::TcpListener as StdListener;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use marketplace_crds::v1alpha1::{MetricSpec, MetricType, ScalingSpec, TargetType};
use marketplace_operator::metrics::{
    BatchedSource, MetricsSource, PrometheusSource, ServiceRef, read_demand_history,
};
use marketplace_operator::scaling::{Engine, Mode, Observation, Policy};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// Serves `/metrics` with the body `body` makes of the seconds since the exporter started,
/// so counters grow at exact rates.
async fn serve(body: impl Fn(f64) -> String + Send + Sync + 'static) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let start = Instant::now();
    let body = Arc::new(body);
    tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else {
                continue;
            };
            let body = body(start.elapsed().as_secs_f64());
            tokio::spawn(async move {
                let mut buf = [0u8; 2048];
                let _ = sock.read(&mut buf).await;
                let resp = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = sock.write_all(resp.as_bytes()).await;
            });
        }
    });
    port
}

/// A service's RED metrics: `rates[i]` requests/s and `in_flight[i]` in flight on pod
/// `pods[i]`, each request taking 40-80 ms (half under 50 ms, so the p99 is 99 ms by
/// histogram_quantile's interpolation), or under 25 ms if `fast`.
fn red_metrics(t: f64, pods: &[&str], rates: &[f64], in_flight: &[f64], fast: bool) -> String {
    let mut body = String::from("# TYPE http_requests_total counter\n");
    for (pod, rate) in pods.iter().zip(rates) {
        body += &format!("http_requests_total{{pod=\"{pod}\"}} {}\n", rate * t);
    }
    body += "# TYPE http_requests_in_flight gauge\n";
    for (pod, n) in pods.iter().zip(in_flight) {
        body += &format!("http_requests_in_flight{{pod=\"{pod}\"}} {n}\n");
    }
    let total: f64 = rates.iter().sum::<f64>() * t;
    let (fastest, half) = if fast {
        (total, total)
    } else {
        (0.0, total / 2.0)
    };
    body += &format!(
        "# TYPE http_request_duration_seconds histogram\n\
         http_request_duration_seconds_bucket{{le=\"0.025\"}} {fastest}\n\
         http_request_duration_seconds_bucket{{le=\"0.05\"}} {half}\n\
         http_request_duration_seconds_bucket{{le=\"0.1\"}} {total}\n\
         http_request_duration_seconds_bucket{{le=\"+Inf\"}} {total}\n\
         http_request_duration_seconds_sum {sum}\n\
         http_request_duration_seconds_count {total}\n",
        sum = total * 0.06,
    );
    body
}

/// Serves `/metrics` for two pods of `orders`: pod a at 20 req/s, pod b at 10 req/s, with
/// 3 and 5 requests in flight, and every request taking 40-80 ms.
async fn serve_metrics() -> u16 {
    serve(|t| {
        red_metrics(
            t,
            &["orders-a", "orders-b"],
            &[20.0, 10.0],
            &[3.0, 5.0],
            false,
        )
    })
    .await
}

/// Serves `/metrics` for one pod of `users`: 6 req/s, 1 in flight, every request under 25 ms.
async fn serve_users() -> u16 {
    serve(|t| red_metrics(t, &["users-x"], &[6.0], &[1.0], true)).await
}

/// CPU usage and requests of each pod: (pod, cores used, cores requested).
const PODS_CPU: &[(&str, f64, f64)] = &[
    // orders: 50% and 30% of their requests, 40% on average.
    ("orders-5d8f7c9b4-x2x7q", 0.25, 0.5),
    ("orders-5d8f7c9b4-k8n2w", 0.15, 0.5),
    // A different service whose name starts with "orders-": never counted as orders.
    ("orders-api-7f6b9c8d5-p4z9m", 0.4, 0.5),
    // users: 50%.
    ("users-6b7c8d9f5-q2w4r", 0.1, 0.2),
];

/// Serves what the kubelet's cAdvisor and kube-state-metrics export about the pods of
/// `PODS_CPU` in namespace `shop`, with the pause container that must not count.
async fn serve_kubelet() -> u16 {
    serve(|t| {
        let mut body = String::from("# TYPE container_cpu_usage_seconds_total counter\n");
        for (pod, used, _) in PODS_CPU {
            body += &format!(
                "container_cpu_usage_seconds_total{{namespace=\"shop\",pod=\"{pod}\",container=\"app\"}} {}\n\
                 container_cpu_usage_seconds_total{{namespace=\"shop\",pod=\"{pod}\",container=\"POD\"}} {}\n",
                used * t,
                0.9 * t,
            );
        }
        body += "# TYPE kube_pod_container_resource_requests gauge\n";
        for (pod, _, requested) in PODS_CPU {
            body += &format!(
                "kube_pod_container_resource_requests{{namespace=\"shop\",pod=\"{pod}\",container=\"app\",resource=\"cpu\",unit=\"core\"}} {requested}\n\
                 kube_pod_container_resource_requests{{namespace=\"shop\",pod=\"{pod}\",container=\"app\",resource=\"memory\",unit=\"byte\"}} 1e9\n"
            );
        }
        body
    })
    .await
}

struct Prometheus {
    child: Child,
    url: String,
    _dir: TempDir,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct TempDir(std::path::PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn free_port() -> u16 {
    StdListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// A scrape job: its target's port, the labels the scrape adds (as a YAML flow mapping) and
/// whether the exporter's own `namespace`/`pod` labels win over the target's.
struct Job<'a> {
    name: &'a str,
    port: u16,
    labels: &'a str,
    honor_labels: bool,
}

async fn start_prometheus(target_port: u16) -> Prometheus {
    start_prometheus_jobs(&[Job {
        name: "orders",
        port: target_port,
        labels: "{namespace: shop, service: orders}",
        honor_labels: false,
    }])
    .await
}

async fn start_prometheus_jobs(jobs: &[Job<'_>]) -> Prometheus {
    let bin = std::env::var("PROMETHEUS_BIN").unwrap_or_else(|_| "prometheus".to_owned());
    let dir = std::env::temp_dir().join(format!(
        "mkt-prom-{}-{}",
        std::process::id(),
        jobs.first().map_or(0, |j| j.port)
    ));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let mut config =
        String::from("global: {scrape_interval: 1s, evaluation_interval: 1s}\nscrape_configs:\n");
    for job in jobs {
        config += &format!(
            "- job_name: {name}\n  \
               honor_labels: {honor}\n  \
               static_configs:\n  \
               - targets: ['127.0.0.1:{port}']\n    \
                 labels: {labels}\n",
            name = job.name,
            honor = job.honor_labels,
            port = job.port,
            labels = job.labels,
        );
    }
    std::fs::write(dir.join("prometheus.yml"), config).expect("write config");
    let port = free_port();
    let child = Command::new(&bin)
        .arg(format!(
            "--config.file={}",
            dir.join("prometheus.yml").display()
        ))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.join("data").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("cannot run {bin} ({e}); scripts/test installs Debian's prometheus package")
        });
    let url = format!("http://127.0.0.1:{port}");
    Prometheus {
        child,
        url,
        _dir: TempDir(dir),
    }
}

fn metric(type_: MetricType) -> MetricSpec {
    MetricSpec {
        type_,
        target: 1.0,
        target_type: None,
        query: None,
    }
}

#[tokio::test]
async fn readings_from_a_real_prometheus_match_what_the_pods_export() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let port = serve_metrics().await;
    let prom = start_prometheus(port).await;
    // A short rate window: rate() divides by the window, so a 1m window would under-read
    // until a minute of samples exists.
    let source = PrometheusSource::new(&prom.url, "3s", Duration::from_secs(2)).expect("source");
    let orders = ServiceRef {
        namespace: "shop",
        name: "orders",
        ready_replicas: 2,
    };

    // Wait for a full rate window of scrapes; then the per-pod average must settle at 15.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut last = None;
    loop {
        let r = source
            .read(&orders, &metric(MetricType::RequestsPerSecond))
            .await
            .ok();
        if let Some(r) = r.filter(|r| r.pods_reporting == 2) {
            if r.value.is_some_and(|v| (v - 15.0).abs() < 1.5) {
                break;
            }
            last = Some(r);
        }
        assert!(
            Instant::now() < deadline,
            "average rps per pod never settled at 15 (20 and 10); last {last:?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    let in_flight = source
        .read(&orders, &metric(MetricType::InFlight))
        .await
        .expect("in-flight");
    assert_eq!((in_flight.value, in_flight.pods_reporting), (Some(4.0), 2));

    let p99 = source
        .read(&orders, &metric(MetricType::LatencyP99))
        .await
        .expect("latency");
    let ms = p99.value.expect("latency value");
    assert!(
        (50.0..=100.0).contains(&ms),
        "p99 {ms} ms, expected within the 50-100 ms bucket"
    );

    let custom = MetricSpec {
        type_: MetricType::Custom,
        target: 1.0,
        target_type: Some(TargetType::AverageValue),
        query: Some(
            r#"sum(http_requests_in_flight{namespace="{namespace}",service="{service}"})"#
                .to_owned(),
        ),
    };
    let per_replica = source.read(&orders, &custom).await.expect("custom");
    assert_eq!(
        per_replica.value,
        Some(4.0),
        "8 in flight over 2 ready replicas"
    );

    // A service Prometheus knows nothing about reads as missing, never as zero load.
    let ghost = ServiceRef {
        namespace: "shop",
        name: "ghost",
        ready_replicas: 3,
    };
    let readings = source
        .read_all(
            &ghost,
            &[
                metric(MetricType::RequestsPerSecond),
                metric(MetricType::InFlight),
            ],
        )
        .await;
    assert!(readings.iter().all(
        |(r, e)| r.value.is_none() && e.as_ref().is_some_and(|e| e.reason() == "MetricNoData")
    ));
}

#[tokio::test]
async fn an_unreachable_prometheus_is_a_query_error() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let url = format!("http://127.0.0.1:{}", free_port());
    let source = PrometheusSource::new(&url, "1m", Duration::from_millis(500)).expect("source");
    let svc = ServiceRef {
        namespace: "shop",
        name: "orders",
        ready_replicas: 1,
    };
    let err = source
        .read(&svc, &metric(MetricType::RequestsPerSecond))
        .await
        .expect_err("nothing listens there");
    assert_eq!(err.reason(), "MetricQueryFailed", "{err}");
}

#[tokio::test]
async fn a_malformed_custom_query_is_reported_not_read_as_zero() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let port = serve_metrics().await;
    let prom = start_prometheus(port).await;
    let source = PrometheusSource::new(&prom.url, "1m", Duration::from_secs(2)).expect("source");
    let svc = ServiceRef {
        namespace: "shop",
        name: "orders",
        ready_replicas: 1,
    };
    // First a good query answers, so the failure below is Prometheus rejecting the syntax,
    // not a server still starting.
    let deadline = Instant::now() + Duration::from_secs(30);
    while source
        .read(&svc, &metric(MetricType::InFlight))
        .await
        .is_err()
    {
        assert!(Instant::now() < deadline, "Prometheus never answered");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let bad = MetricSpec {
        type_: MetricType::Custom,
        target: 1.0,
        target_type: None,
        query: Some("sum(rate(".to_owned()),
    };
    let err = source
        .read(&svc, &bad)
        .await
        .expect_err("a syntax error must not read as a value");
    assert_eq!(err.reason(), "MetricQueryFailed", "{err}");
    let cause = std::error::Error::source(&err)
        .map(ToString::to_string)
        .unwrap_or_default();
    assert!(
        cause.contains("parse error"),
        "Prometheus's complaint is kept as the cause: {cause}"
    );
}

const ORDERS: ServiceRef<'static> = ServiceRef {
    namespace: "shop",
    name: "orders",
    ready_replicas: 2,
};

const USERS: ServiceRef<'static> = ServiceRef {
    namespace: "shop",
    name: "users",
    ready_replicas: 1,
};

/// `orders` and `users` scraped as the operator's services are (the scrape config labels
/// them), and the kubelet's cAdvisor and kube-state-metrics as kube-prometheus scrapes them:
/// `service="kubelet"` on every series, the exporter's own `namespace` and `pod` kept.
async fn marketplace() -> Prometheus {
    let orders = serve_metrics().await;
    let users = serve_users().await;
    let kubelet = serve_kubelet().await;
    start_prometheus_jobs(&[
        Job {
            name: "orders",
            port: orders,
            labels: "{namespace: shop, service: orders}",
            honor_labels: false,
        },
        Job {
            name: "users",
            port: users,
            labels: "{namespace: shop, service: users}",
            honor_labels: false,
        },
        Job {
            name: "kubelet",
            port: kubelet,
            labels: "{service: kubelet}",
            honor_labels: true,
        },
    ])
    .await
}

fn near(value: Option<f64>, want: f64) -> bool {
    value.is_some_and(|v| (v - want).abs() <= 0.02 * want.abs().max(1e-9))
}

/// Waits until a full rate window of scrapes is in: the rates then read as exported.
async fn settled(source: &PrometheusSource) {
    let deadline = Instant::now() + Duration::from_secs(25);
    loop {
        let rps = source
            .read(&ORDERS, &metric(MetricType::RequestsPerSecond))
            .await
            .ok();
        let cpu = source.read(&ORDERS, &metric(MetricType::Cpu)).await.ok();
        let users = source
            .read(&USERS, &metric(MetricType::RequestsPerSecond))
            .await
            .ok();
        let ok = |r: Option<_>, want, pods| {
            r.is_some_and(|r: marketplace_operator::scaling::MetricReading| {
                r.pods_reporting == pods && near(r.value, want)
            })
        };
        if ok(rps, 15.0, 2) && ok(cpu, 40.0, 2) && ok(users, 6.0, 1) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "rates never settled: orders rps {rps:?}, orders cpu {cpu:?}, users rps {users:?}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

fn scaling(metric: MetricSpec) -> ScalingSpec {
    ScalingSpec {
        min_replicas: 1,
        max_replicas: 20,
        metrics: vec![metric],
        behavior: None,
        tolerance: None,
        burst: None,
        schedules: None,
        predictive: None,
        fallback: None,
        poll_interval_seconds: None,
    }
}

#[tokio::test]
async fn each_metric_types_promql_drives_the_decision_the_hpa_arithmetic_predicts() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let prom = marketplace().await;
    let source = PrometheusSource::new(&prom.url, "3s", Duration::from_secs(2)).expect("source");
    settled(&source).await;

    // (type, target, what orders' exporters imply: the per-pod average, or the service-wide
    // value for LatencyP99, pods reporting). Targets keep each ratio clear of an integer, so
    // a 2% rate error cannot change the answer, and each answer within the scale-up limit
    // of an HPA without `behavior` from 2 replicas (max(2 × current, 4) = 4).
    let cases = [
        // ceil(2 × 15 / 9) = 4
        (MetricType::RequestsPerSecond, 9.0, 15.0, 2),
        // ceil(2 × 4 / 3) = 3
        (MetricType::InFlight, 3.0, 4.0, 2),
        // A Value target: ceil(2 ready × 99 / 55) = 4
        (MetricType::LatencyP99, 55.0, 99.0, 0),
        // The app containers of orders' two pods, at 50% and 30% of their requests; not the
        // pause containers, not orders-api's pod: ceil(2 × 40 / 22) = 4
        (MetricType::Cpu, 22.0, 40.0, 2),
    ];
    for (type_, target, exported, pods) in cases {
        let spec = MetricSpec {
            type_,
            target,
            target_type: None,
            query: None,
        };
        let reading = source.read(&ORDERS, &spec).await.expect("reading");
        assert!(
            reading.pods_reporting == pods && near(reading.value, exported),
            "{type_:?}: read {reading:?}, the exporters imply {exported} over {pods} pods"
        );
        let policy = Policy::from_spec(&scaling(spec)).expect("valid spec");
        let mut engine = Engine::new(policy).expect("valid policy");
        let decision = engine.decide(&Observation {
            now: 1_700_000_000.0,
            current_replicas: ORDERS.ready_replicas,
            ready_replicas: ORDERS.ready_replicas,
            metrics: &[reading],
            pods: &[],
        });
        let hpa = (f64::from(ORDERS.ready_replicas) * exported / target).ceil() as u32;
        assert_eq!(decision.desired, hpa, "{type_:?}: {}", decision.reason());
        assert_eq!(
            decision.mode,
            Mode::ScaleUp,
            "{type_:?}: {}",
            decision.reason()
        );
    }
}

#[tokio::test]
async fn one_batch_query_reads_every_service_as_its_own_query_would() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let prom = marketplace().await;
    let source = PrometheusSource::new(&prom.url, "3s", Duration::from_secs(2)).expect("source");
    settled(&source).await;
    let batched = BatchedSource::new(source.clone(), Duration::from_secs(5));

    for type_ in [
        MetricType::RequestsPerSecond,
        MetricType::InFlight,
        MetricType::LatencyP99,
        MetricType::Cpu,
    ] {
        let batch = batched.batch(type_).await.expect("batch");
        for svc in [ORDERS, USERS] {
            let key = (svc.namespace.to_owned(), svc.name.to_owned());
            assert!(
                batch.contains_key(&key),
                "{type_:?}: {key:?} not in {batch:?}"
            );
            let own = source.read(&svc, &metric(type_)).await.expect("own query");
            let shared = batched.read(&svc, &metric(type_)).await.expect("batch");
            let same = own.pods_reporting == shared.pods_reporting
                && own
                    .value
                    .zip(shared.value)
                    .is_some_and(|(a, b)| (a - b).abs() <= 0.02 * a.abs().max(1e-9));
            assert!(
                same,
                "{type_:?} of {}: own {own:?}, batched {shared:?}",
                svc.name
            );
        }
        if type_ == MetricType::Cpu {
            // The service comes from the pod name: orders-api is its own service, and
            // nothing stays under the scrape's "kubelet".
            let key = ("shop".to_owned(), "orders-api".to_owned());
            assert!(batch.contains_key(&key), "{batch:?}");
            assert!(batch.keys().all(|(_, s)| s != "kubelet"), "{batch:?}");
        }
    }
    // The readings above came from one batch per type: a ghost service is missing data,
    // not zero load, from the cached RequestsPerSecond batch.
    let ghost = ServiceRef {
        name: "ghost",
        ..ORDERS
    };
    let err = batched
        .read(&ghost, &metric(MetricType::RequestsPerSecond))
        .await
        .expect_err("ghost has no series");
    assert_eq!(err.reason(), "MetricNoData", "{err}");
}

#[tokio::test]
async fn history_over_more_than_one_query_returns_the_exported_rate() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let prom = marketplace().await;
    let source = PrometheusSource::new(&prom.url, "3s", Duration::from_secs(5)).expect("source");
    settled(&source).await;
    // A few more scrapes, so the range holds several settled steps.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs_f64()
        .floor();
    let start = now - 4.0 * 3600.0;

    // Four hours at one-second steps is 14,401 points: one range query is refused...
    let client = prometheus_http_query::Client::try_from(prom.url.as_str()).expect("client");
    let refused = client
        .query_range(
            "sum(http_requests_in_flight)",
            start as i64,
            now as i64,
            1.0,
        )
        .get()
        .await
        .expect_err("over the point limit");
    assert!(refused.to_string().contains("11,000"), "{refused}");

    // ...and `history` splits it.
    let rps = metric(MetricType::RequestsPerSecond);
    let history = source
        .history(&ORDERS, &rps, start, now, 1.0)
        .await
        .expect("history");
    assert!(history.len() >= 3, "{history:?}");
    assert!(
        history
            .windows(2)
            .all(|w| w[0].0 < w[1].0 && (w[1].0 - w[0].0).fract() == 0.0),
        "oldest first, on the step grid: {history:?}"
    );
    assert!(history.iter().all(|&(t, _)| (start..=now).contains(&t)));
    // Only since Prometheus started: the empty hours before are no samples, not zeros.
    assert!(history.len() < 120, "{}", history.len());
    for &(t, v) in history.iter().rev().take(3) {
        assert!(
            near(Some(v), 30.0),
            "orders serves 20 + 10 req/s; at {t}: {v}"
        );
    }

    // As demand for the engine: 30 req/s at 5 per replica is 6 replicas. The latency metric
    // (a Value target) cannot be converted without each step's ready replicas: left out.
    let demand = read_demand_history(
        &source,
        &ORDERS,
        &[
            MetricSpec {
                target: 5.0,
                ..rps.clone()
            },
            MetricSpec {
                target: 45.0,
                ..metric(MetricType::LatencyP99)
            },
        ],
        now - 30.0,
        now,
        1.0,
    )
    .await
    .expect("demand history");
    let &(_, last) = demand.last().expect("recent demand");
    assert!(near(Some(last), 6.0), "{demand:?}");

    let users = source
        .history(&USERS, &rps, now - 30.0, now, 1.0)
        .await
        .expect("users history");
    let &(_, last) = users.last().expect("recent users rate");
    assert!(near(Some(last), 6.0), "{users:?}");
}
