//! The simulated world of `dev`: traffic per service from a trace, and a metrics source that
//! sees it as Prometheus would: every scrape interval, the mean load since the previous
//! scrape, divided among the pods that were Ready at the scrape (only they get traffic).

use std::collections::HashMap;
use std::sync::Mutex;

use marketplace_crds::v1alpha1::{MetricSpec, MetricType};

use crate::metrics::{MetricsError, MetricsSource, ServiceRef};
use crate::scaling::MetricReading;
use crate::simulate::Trace;

/// One service's share of the traffic.
#[derive(Clone, Debug)]
pub struct ServiceLoad {
    pub namespace: String,
    pub name: String,
    /// Requests/s per replica the service targets (its RequestsPerSecond metric).
    pub target_rps: f64,
    /// The service's load on the simulation grid (one value per second).
    pub trace: Trace,
}

impl ServiceLoad {
    /// The load over [t, t + 1) seconds after the trace's start; the first value before it
    /// (warm-up) and the last after it (`--serve` keeps the service busy).
    pub fn at(&self, t: f64) -> f64 {
        let rates = &self.trace.rates;
        if rates.is_empty() {
            return 0.0;
        }
        let i = (t / self.trace.step).floor();
        if i < 0.0 {
            rates[0]
        } else {
            rates[(i as usize).min(rates.len() - 1)]
        }
    }

    /// The mean load over [from, to).
    pub fn mean(&self, from: f64, to: f64) -> f64 {
        let step = self.trace.step;
        let (a, b) = ((from / step).floor() as i64, (to / step).ceil() as i64);
        if b <= a {
            return self.at(from);
        }
        let sum: f64 = (a..b).map(|i| self.at(i as f64 * step)).sum();
        sum / (b - a) as f64
    }
}

/// The latest scrape of one service.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Scrape {
    /// Requests/s of the whole service, averaged over the scrape interval.
    pub total_rps: f64,
    /// Pods Ready at the scrape, among which the load was divided.
    pub ready: u32,
}

/// The metrics source of `dev`: answers RequestsPerSecond from the latest scrape; every
/// other metric type reads as missing (the simulation has no latency or CPU model, as in
/// `simulate`).
#[derive(Default)]
pub struct SimulatedMetrics {
    scrapes: Mutex<HashMap<(String, String), Scrape>>,
}

impl SimulatedMetrics {
    pub fn record(&self, namespace: &str, name: &str, scrape: Scrape) {
        let mut map = self.scrapes.lock().unwrap_or_else(|e| e.into_inner());
        map.insert((namespace.to_owned(), name.to_owned()), scrape);
    }

    pub fn latest(&self, namespace: &str, name: &str) -> Option<Scrape> {
        let map = self.scrapes.lock().unwrap_or_else(|e| e.into_inner());
        map.get(&(namespace.to_owned(), name.to_owned())).copied()
    }
}

impl MetricsSource for SimulatedMetrics {
    async fn read(
        &self,
        service: &ServiceRef<'_>,
        metric: &MetricSpec,
    ) -> Result<MetricReading, MetricsError> {
        let no_data = || MetricsError::NoData {
            metric: metric.type_,
            service: format!("{}/{}", service.namespace, service.name),
            query: "simulated scrape".to_owned(),
        };
        if metric.type_ != MetricType::RequestsPerSecond {
            return Err(no_data());
        }
        match self.latest(service.namespace, service.name) {
            Some(s) if s.ready > 0 => Ok(MetricReading::average(
                s.total_rps / f64::from(s.ready),
                s.ready,
            )),
            // No Ready pod reported: Prometheus would have no series for the service.
            _ => Err(no_data()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(rates: Vec<f64>) -> ServiceLoad {
        ServiceLoad {
            namespace: "m".into(),
            name: "orders".into(),
            target_rps: 10.0,
            trace: Trace {
                name: "t".into(),
                step: 1.0,
                rates,
            },
        }
    }

    #[test]
    fn load_holds_its_first_value_before_the_trace_and_its_last_after() {
        let l = load(vec![1.0, 2.0, 3.0]);
        assert_eq!(l.at(-50.0), 1.0);
        assert_eq!(l.at(1.5), 2.0);
        assert_eq!(l.at(99.0), 3.0);
        assert_eq!(l.mean(0.0, 3.0), 2.0);
    }

    #[tokio::test]
    async fn a_scrape_is_divided_among_the_ready_pods_and_none_means_no_data() {
        let m = SimulatedMetrics::default();
        let svc = ServiceRef {
            namespace: "m",
            name: "orders",
            ready_replicas: 4,
        };
        let rps = MetricSpec {
            type_: MetricType::RequestsPerSecond,
            target: 10.0,
            target_type: None,
            query: None,
        };
        assert!(m.read(&svc, &rps).await.is_err());
        m.record(
            "m",
            "orders",
            Scrape {
                total_rps: 90.0,
                ready: 3,
            },
        );
        let r = m.read(&svc, &rps).await.expect("a reading");
        assert_eq!(r, MetricReading::average(30.0, 3));
        let cpu = MetricSpec {
            type_: MetricType::Cpu,
            ..rps
        };
        assert!(m.read(&svc, &cpu).await.is_err());
    }
}
