//! RED metrics under the names the operator's PromQL reads (operator/src/metrics/queries.rs):
//! `http_requests_total`, `http_request_duration_seconds`, `http_requests_in_flight`.
//! Labels are the method, the route *template* (axum's `MatchedPath`) and the status:
//! a raw path (`/users/17`) would make one series per id.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// The route label of requests no route matched: one series, whatever the path.
pub const UNMATCHED_ROUTE: &str = "unmatched";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub method: String,
    pub route: String,
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    pub method: String,
    pub route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CacheLabels {
    /// `hit`, `miss`, `bypass` (Redis down or disabled) or `coalesced` (single-flight waiter).
    pub result: &'static str,
}

pub struct Metrics {
    registry: Registry,
    pub requests: Family<RequestLabels, Counter>,
    pub duration: Family<RequestLabels, Histogram>,
    pub in_flight: Family<RouteLabels, Gauge>,
    pub cache: Family<CacheLabels, Counter>,
    /// Loads that reached Postgres through the cache's loader: with `cache` it gives the
    /// database queries saved per read.
    pub cache_loads: Counter,
}

/// Request latencies from 1 ms to 10 s: the range a p99 target is set in.
const BUCKETS: [f64; 14] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let requests = Family::<RequestLabels, Counter>::default();
        // prometheus-client appends `_total` to counters: this is `http_requests_total`.
        registry.register(
            "http_requests",
            "HTTP requests served, by method, route template and status",
            requests.clone(),
        );
        let duration =
            Family::<RequestLabels, Histogram>::new_with_constructor(|| Histogram::new(BUCKETS));
        registry.register(
            "http_request_duration_seconds",
            "HTTP request latency, by method, route template and status",
            duration.clone(),
        );
        let in_flight = Family::<RouteLabels, Gauge>::default();
        registry.register(
            "http_requests_in_flight",
            "HTTP requests being served, by method and route template",
            in_flight.clone(),
        );
        let cache = Family::<CacheLabels, Counter>::default();
        registry.register(
            "cache_requests",
            "Cache-aside lookups by result",
            cache.clone(),
        );
        let cache_loads = Counter::default();
        registry.register(
            "cache_loads",
            "Loads from the database behind the cache (misses and bypasses, after single-flight)",
            cache_loads.clone(),
        );
        Self {
            registry,
            requests,
            duration,
            in_flight,
            cache,
            cache_loads,
        }
    }

    /// The Prometheus text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}
