//! The operator's own metrics, served on `/metrics` by `run` (Prometheus text format).
//! Labels are static strings only (controller, mode, error reason): never object names, so
//! the series count does not grow with the number of services.

use std::sync::atomic::AtomicI64;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

type Labels1 = [(&'static str, &'static str); 1];
type Labels2 = [(&'static str, &'static str); 2];

pub struct Telemetry {
    registry: Registry,
    reconciles: Family<Labels1, Counter>,
    failures: Family<Labels2, Counter>,
    duration: Family<Labels1, Histogram>,
    decisions: Family<Labels1, Counter>,
    scale_latency: Histogram,
    metric_failures: Family<Labels1, Counter>,
    in_flight: Gauge<i64, AtomicI64>,
    autoscalers: Gauge<i64, AtomicI64>,
}

impl Default for Telemetry {
    fn default() -> Self {
        Self::new()
    }
}

impl Telemetry {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("marketplace_operator");
        let reconciles = Family::<Labels1, Counter>::default();
        registry.register(
            "reconciles",
            "Reconciles run, per controller",
            reconciles.clone(),
        );
        let failures = Family::<Labels2, Counter>::default();
        registry.register(
            "reconcile_errors",
            "Failed reconciles, per controller and error reason",
            failures.clone(),
        );
        let duration = Family::<Labels1, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.001, 2.0, 14))
        });
        registry.register(
            "reconcile_duration_seconds",
            "Time a reconcile takes, per controller",
            duration.clone(),
        );
        let decisions = Family::<Labels1, Counter>::default();
        registry.register(
            "scaling_decisions",
            "Scaling decisions, per mode",
            decisions.clone(),
        );
        let scale_latency = Histogram::new(exponential_buckets(0.001, 2.0, 14));
        registry.register(
            "scale_latency_seconds",
            "From reading a metric sample to the Deployment's replica patch being accepted",
            scale_latency.clone(),
        );
        let metric_failures = Family::<Labels1, Counter>::default();
        registry.register(
            "metric_read_failures",
            "Failed metric reads, per reason",
            metric_failures.clone(),
        );
        let in_flight = Gauge::<i64, AtomicI64>::default();
        registry.register(
            "reconcile_queue_depth",
            "Reconciles running or waiting for a slot",
            in_flight.clone(),
        );
        let autoscalers = Gauge::<i64, AtomicI64>::default();
        registry.register(
            "autoscalers",
            "Services with a running autoscaler task",
            autoscalers.clone(),
        );
        Self {
            registry,
            reconciles,
            failures,
            duration,
            decisions,
            scale_latency,
            metric_failures,
            in_flight,
            autoscalers,
        }
    }

    /// Marks a reconcile as started; the guard records its duration when dropped.
    pub fn reconcile(&self, controller: &'static str) -> ReconcileTimer<'_> {
        self.reconciles
            .get_or_create(&[("controller", controller)])
            .inc();
        self.in_flight.inc();
        ReconcileTimer {
            telemetry: self,
            controller,
            start: std::time::Instant::now(),
        }
    }

    pub fn reconcile_failed(&self, controller: &'static str, reason: &'static str) {
        self.failures
            .get_or_create(&[("controller", controller), ("reason", reason)])
            .inc();
    }

    pub fn decision(&self, mode: &'static str) {
        self.decisions.get_or_create(&[("mode", mode)]).inc();
    }

    pub fn scale_latency(&self, seconds: f64) {
        self.scale_latency.observe(seconds);
    }

    pub fn metric_failure(&self, reason: &'static str) {
        self.metric_failures
            .get_or_create(&[("reason", reason)])
            .inc();
    }

    pub fn autoscaler_started(&self) {
        self.autoscalers.inc();
    }

    pub fn autoscaler_stopped(&self) {
        self.autoscalers.dec();
    }

    /// The Prometheus text exposition of every metric.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail; an error here would be a bug in the encoder.
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            tracing::error!("failed to encode the operator's metrics");
        }
        out
    }
}

pub struct ReconcileTimer<'a> {
    telemetry: &'a Telemetry,
    controller: &'static str,
    start: std::time::Instant,
}

impl Drop for ReconcileTimer<'_> {
    fn drop(&mut self) {
        self.telemetry.in_flight.dec();
        self.telemetry
            .duration
            .get_or_create(&[("controller", self.controller)])
            .observe(self.start.elapsed().as_secs_f64());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_exposition_names_every_metric_without_object_names() {
        let t = Telemetry::new();
        drop(t.reconcile("marketplaceservice"));
        t.reconcile_failed("marketplaceservice", "ApplyDeployment");
        t.decision("ScaleUp");
        t.scale_latency(0.02);
        let text = t.encode();
        for name in [
            "marketplace_operator_reconciles_total{controller=\"marketplaceservice\"} 1",
            "marketplace_operator_reconcile_errors_total",
            "marketplace_operator_reconcile_duration_seconds_bucket",
            "marketplace_operator_scaling_decisions_total{mode=\"ScaleUp\"} 1",
            "marketplace_operator_scale_latency_seconds_count 1",
            "marketplace_operator_reconcile_queue_depth 0",
        ] {
            assert!(text.contains(name), "{name} missing from:\n{text}");
        }
    }
}
