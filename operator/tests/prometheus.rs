//! The Prometheus metrics path against a real Prometheus (Debian's package): a stub service
//! exports RED metrics, Prometheus scrapes it every second, and `PrometheusSource` turns the
//! answers into the engine's readings.

use std::net::TcpListener as StdListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use marketplace_crds::v1alpha1::{MetricSpec, MetricType, TargetType};
use marketplace_operator::metrics::{MetricsSource, PrometheusSource, ServiceRef};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// Serves `/metrics` for two pods of `orders`: pod a at 20 req/s, pod b at 10 req/s, with
/// 3 and 5 requests in flight, and every request taking 40-80 ms.
async fn serve_metrics() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let start = Instant::now();
    tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else {
                continue;
            };
            let t = start.elapsed().as_secs_f64();
            tokio::spawn(async move {
                let mut buf = [0u8; 2048];
                let _ = sock.read(&mut buf).await;
                let (a, b) = (20.0 * t, 10.0 * t);
                let total = a + b;
                let body = format!(
                    "# TYPE http_requests_total counter\n\
                     http_requests_total{{pod=\"orders-a\"}} {a}\n\
                     http_requests_total{{pod=\"orders-b\"}} {b}\n\
                     # TYPE http_requests_in_flight gauge\n\
                     http_requests_in_flight{{pod=\"orders-a\"}} 3\n\
                     http_requests_in_flight{{pod=\"orders-b\"}} 5\n\
                     # TYPE http_request_duration_seconds histogram\n\
                     http_request_duration_seconds_bucket{{le=\"0.025\"}} 0\n\
                     http_request_duration_seconds_bucket{{le=\"0.05\"}} {half}\n\
                     http_request_duration_seconds_bucket{{le=\"0.1\"}} {total}\n\
                     http_request_duration_seconds_bucket{{le=\"+Inf\"}} {total}\n\
                     http_request_duration_seconds_sum {sum}\n\
                     http_request_duration_seconds_count {total}\n",
                    half = total / 2.0,
                    sum = total * 0.06,
                );
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

async fn start_prometheus(target_port: u16) -> Prometheus {
    let bin = std::env::var("PROMETHEUS_BIN").unwrap_or_else(|_| "prometheus".to_owned());
    let dir = std::env::temp_dir().join(format!("mkt-prom-{}-{target_port}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let config = format!(
        "global: {{scrape_interval: 1s, evaluation_interval: 1s}}\n\
         scrape_configs:\n\
         - job_name: orders\n  \
           static_configs:\n  \
           - targets: ['127.0.0.1:{target_port}']\n    \
             labels: {{namespace: shop, service: orders}}\n"
    );
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
