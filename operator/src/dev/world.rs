//! The simulated world of `dev`: traffic per service from a trace, and a metrics source that
//! sees it as Prometheus would, with `simulate`'s timing.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use marketplace_crds::v1alpha1::{MetricSpec, MetricType};

use crate::controllers::Clock;
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

/// Ready Pods of each service, second by second, as the simulation observed them.
#[derive(Debug, Default)]
struct Readiness {
    /// Clock time (Unix seconds) of the trace's t = 0.
    origin: f64,
    /// Per service: (trace time, Ready Pods), oldest first.
    seen: HashMap<(String, String), VecDeque<(f64, u32)>>,
}

/// Seconds of readiness history kept: a few scrape intervals.
const KEEP_SECONDS: f64 = 120.0;

/// The metrics source of `dev`: Prometheus as `simulate` models it. A poll at trace time t
/// sees the latest scrape, taken at the multiple of the scrape interval at or before t: the
/// mean load over the interval before it, divided among the Pods Ready at that instant (only
/// they get traffic). RequestsPerSecond only; other metric types read as missing (there is
/// no latency or CPU model, as in `simulate`).
pub struct SimulatedMetrics {
    clock: Clock,
    scrape_interval: f64,
    loads: HashMap<(String, String), ServiceLoad>,
    readiness: Mutex<Readiness>,
}

impl SimulatedMetrics {
    pub fn new(clock: Clock, scrape_interval: f64, loads: &[ServiceLoad]) -> Self {
        Self {
            clock,
            scrape_interval,
            loads: loads
                .iter()
                .map(|l| ((l.namespace.clone(), l.name.clone()), l.clone()))
                .collect(),
            readiness: Mutex::new(Readiness {
                origin: clock.now(),
                seen: HashMap::new(),
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Readiness> {
        self.readiness.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Starts the trace at clock time `origin`; the load before it is the trace's first.
    pub fn start_at(&self, origin: f64) {
        let mut r = self.lock();
        r.origin = origin;
        r.seen.clear();
    }

    /// Trace time now.
    pub fn trace_time(&self) -> f64 {
        self.clock.now() - self.lock().origin
    }

    /// Records the Ready Pods of a service at trace time `t`.
    pub fn observe_ready(&self, namespace: &str, name: &str, t: f64, ready: u32) {
        let mut r = self.lock();
        let seen = r
            .seen
            .entry((namespace.to_owned(), name.to_owned()))
            .or_default();
        seen.push_back((t, ready));
        while seen.front().is_some_and(|(at, _)| *at < t - KEEP_SECONDS) {
            seen.pop_front();
        }
    }

    /// The scrape a poll at trace time `t` sees: (total requests/s, Ready Pods).
    pub fn scrape(&self, namespace: &str, name: &str, t: f64) -> Option<(f64, u32)> {
        let load = self.loads.get(&(namespace.to_owned(), name.to_owned()))?;
        let at = (t / self.scrape_interval + 1e-9).floor() * self.scrape_interval;
        let r = self.lock();
        let seen = r.seen.get(&(namespace.to_owned(), name.to_owned()))?;
        // The readiness recorded at the scrape instant (or the closest before it; the
        // first record if the scrape predates them all).
        let ready = seen
            .iter()
            .rev()
            .find(|(when, _)| *when <= at + 1e-9)
            .or(seen.front())
            .map(|(_, ready)| *ready)?;
        Some((load.mean(at - self.scrape_interval, at), ready))
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
        let t = self.trace_time();
        match self.scrape(service.namespace, service.name, t) {
            Some((total, ready)) if ready > 0 => {
                Ok(MetricReading::average(total / f64::from(ready), ready))
            }
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

    #[tokio::test(start_paused = true)]
    async fn a_poll_sees_the_scrape_of_its_interval_divided_among_the_pods_ready_then() {
        let mut rates = vec![10.0; 30];
        rates.extend(vec![100.0; 30]);
        let l = load(rates);
        let clock = Clock::scaled(1_000.0, 1.0);
        let m = SimulatedMetrics::new(clock, 15.0, std::slice::from_ref(&l));
        m.start_at(1_000.0);
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
        assert!(m.read(&svc, &rps).await.is_err(), "no readiness seen yet");
        m.observe_ready("m", "orders", 0.0, 2);
        m.observe_ready("m", "orders", 30.0, 5);
        m.observe_ready("m", "orders", 44.0, 9);
        // At t = 44 the latest scrape is t = 30: the load over [15, 30) among 5 pods.
        assert_eq!(m.scrape("m", "orders", 44.0), Some((10.0, 5)));
        // At t = 45: the scrape of [30, 45), 100 rps, among the 9 pods ready at 44.
        assert_eq!(m.scrape("m", "orders", 45.0), Some((100.0, 9)));
        tokio::time::advance(std::time::Duration::from_secs(45)).await;
        let r = m.read(&svc, &rps).await.expect("a reading");
        assert!((r.value.unwrap_or(0.0) - 100.0 / 9.0).abs() < 1e-9);
        assert_eq!(r.pods_reporting, 9);
        let cpu = MetricSpec {
            type_: MetricType::Cpu,
            ..rps
        };
        assert!(m.read(&svc, &cpu).await.is_err());
    }
}
