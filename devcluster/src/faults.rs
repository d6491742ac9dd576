//! Fault injection: a share of the API requests fail the way a busy or restarting API
//! server fails them, so clients' retry, backoff and re-watch paths get exercised.
//!
//! Every fault is decided from the request line alone, after the body is read and before
//! the store is touched, so an injected error never leaves half a write behind. The one
//! deliberate exception is `lost_response`: the write is applied and then the connection
//! is closed without an answer, which is what makes retried creates meet `AlreadyExists`
//! and retried updates meet a stale resourceVersion on real clusters.
//!
//! The random choices come from one seeded splitmix64 sequence drawn once per request, so
//! a client that sends its requests one at a time sees the same faults on every run.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use http::{HeaderMap, Method};

/// Header the simulated workload controllers send so that they can be spared.
pub(crate) const WORKLOAD_HEADER: &str = "x-devcluster-workloads";

/// Relative weights of the kinds of fault. A kind that cannot happen to a request is left
/// out of that request's draw: a real server never answers 409 to a read, and only a
/// watch has a stream to cut.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FaultMix {
    /// 500 `InternalError`.
    pub internal_error: u32,
    /// 409 `Conflict`, writes only (POST, PUT, PATCH, DELETE).
    pub conflict: u32,
    /// 429 `TooManyRequests` with `Retry-After: 1`.
    pub too_many_requests: u32,
    /// Served normally after a pause of 50 to 500 ms.
    pub delay: u32,
    /// The connection is closed without a response, before anything is applied.
    pub drop: u32,
    /// Writes only: applied, then the connection is closed without a response.
    pub lost_response: u32,
    /// Watches only: the stream ends cleanly after a short random time or a few events.
    pub watch_cut: u32,
}

impl Default for FaultMix {
    /// Streams ending early is by far the most common watch fault on real clusters, hence
    /// the weight of cuts among a watch's faults (12 of 19).
    fn default() -> Self {
        FaultMix {
            internal_error: 2,
            conflict: 2,
            too_many_requests: 2,
            delay: 2,
            drop: 1,
            lost_response: 1,
            watch_cut: 12,
        }
    }
}

/// What to inject. `rate` is the share of eligible requests that get a fault; eligible
/// are requests for resources (CRUD, list, watch, patch, subresources), never discovery,
/// OpenAPI, `/version` or the health endpoints.
#[derive(Clone, Debug)]
pub struct FaultConfig {
    /// Share of eligible requests that get a fault, 0 to 1.
    pub rate: f64,
    /// Seed of the random sequence: the same seed and the same requests, one at a time,
    /// give the same faults.
    pub seed: u64,
    /// Which faults, in what proportions.
    pub mix: FaultMix,
    /// Whether the simulated workload controllers (`Config::workloads`) get faults too.
    /// Off by default: they stand for the cluster's own machinery, and their backoffs would
    /// slow Pods becoming Ready, blurring what the clients under test do.
    pub workloads: bool,
}

impl FaultConfig {
    /// Faults on `rate` of the eligible requests, with the default mix and seed 1.
    pub fn with_rate(rate: f64) -> Self {
        FaultConfig {
            rate,
            seed: 1,
            mix: FaultMix::default(),
            workloads: false,
        }
    }

    pub fn with_seed(self, seed: u64) -> Self {
        FaultConfig { seed, ..self }
    }

    pub fn with_mix(self, mix: FaultMix) -> Self {
        FaultConfig { mix, ..self }
    }
}

/// How many faults of each kind were injected since the server started.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FaultStats {
    pub internal_errors: u64,
    pub conflicts: u64,
    pub too_many_requests: u64,
    pub delays: u64,
    pub drops: u64,
    pub lost_responses: u64,
    pub watch_cuts: u64,
}

impl FaultStats {
    pub fn total(&self) -> u64 {
        self.internal_errors
            + self.conflicts
            + self.too_many_requests
            + self.delays
            + self.drops
            + self.lost_responses
            + self.watch_cuts
    }
}

/// When a cut watch ends: whichever comes first, counted from the end of its initial
/// events (cutting those would resume a watch from the middle of an unordered snapshot).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct WatchCut {
    pub after: Duration,
    pub events: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Fault {
    InternalError,
    Conflict,
    TooManyRequests,
    Delay(Duration),
    Drop,
    LostResponse,
    WatchCut(WatchCut),
}

impl Fault {
    fn index(self) -> usize {
        match self {
            Fault::InternalError => 0,
            Fault::Conflict => 1,
            Fault::TooManyRequests => 2,
            Fault::Delay(_) => 3,
            Fault::Drop => 4,
            Fault::LostResponse => 5,
            Fault::WatchCut(_) => 6,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RequestClass {
    Read,
    Write,
    Watch,
}

/// Which fault class a request falls in, or `None` if it must never fault.
pub(crate) fn classify(
    method: &Method,
    path: &str,
    query: &HashMap<String, String>,
) -> Option<RequestClass> {
    let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    // `/api/v1` and `/apis/{g}/{v}` themselves are discovery: only what lies below is a
    // resource request.
    let rest = match segs.as_slice() {
        ["api", _, rest @ ..] => rest,
        ["apis", _, _, rest @ ..] => rest,
        _ => return None,
    };
    if rest.is_empty() {
        return None;
    }
    let watch = rest.first() == Some(&"watch")
        || matches!(query.get("watch").map(String::as_str), Some("true" | "1"));
    match *method {
        Method::GET if watch => Some(RequestClass::Watch),
        Method::GET => Some(RequestClass::Read),
        Method::POST | Method::PUT | Method::PATCH | Method::DELETE => Some(RequestClass::Write),
        _ => None,
    }
}

/// splitmix64's output function: a good 64-bit mix of a counter.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

const GOLDEN_GAMMA: u64 = 0x9e37_79b9_7f4a_7c15;

/// A request's own generator, seeded by one draw from the shared sequence so that all of a
/// request's choices depend only on its place in that sequence.
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(GOLDEN_GAMMA);
        mix(self.0)
    }
    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
    /// Uniform in [lo, hi].
    fn between(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo + 1)
    }
}

#[derive(Debug)]
pub(crate) struct Injector {
    rate: f64,
    mix: FaultMix,
    spare_workloads: bool,
    /// The shared splitmix64 counter; each request takes one step.
    counter: AtomicU64,
    counts: [AtomicU64; 7],
    /// Per-server secret the workload client sends, so no other client opts out by accident.
    workload_token: http::HeaderValue,
}

impl Injector {
    pub fn new(config: &FaultConfig) -> Self {
        let rate = if config.rate.is_nan() {
            0.0
        } else {
            config.rate.clamp(0.0, 1.0)
        };
        Injector {
            rate,
            mix: config.mix.clone(),
            spare_workloads: !config.workloads,
            counter: AtomicU64::new(config.seed),
            counts: Default::default(),
            // std's hasher keys are random per process: a token without a `rand` dependency.
            workload_token: http::HeaderValue::from(
                std::collections::hash_map::RandomState::new()
                    .build_hasher()
                    .finish(),
            ),
        }
    }

    pub fn workload_token(&self) -> &http::HeaderValue {
        &self.workload_token
    }

    /// The fault for this request, if any; counted as injected once decided.
    pub fn decide(
        &self,
        method: &Method,
        path: &str,
        query: &HashMap<String, String>,
        headers: &HeaderMap,
    ) -> Option<Fault> {
        let class = classify(method, path, query)?;
        if self.spare_workloads
            && headers
                .get(WORKLOAD_HEADER)
                .is_some_and(|v| *v == self.workload_token)
        {
            return None;
        }
        let draw = mix(self
            .counter
            .fetch_add(GOLDEN_GAMMA, Ordering::Relaxed)
            .wrapping_add(GOLDEN_GAMMA));
        let fault = self.pick(class, &mut SplitMix(draw))?;
        if let Some(count) = self.counts.get(fault.index()) {
            count.fetch_add(1, Ordering::Relaxed);
        }
        Some(fault)
    }

    fn pick(&self, class: RequestClass, rng: &mut SplitMix) -> Option<Fault> {
        if rng.unit() >= self.rate {
            return None;
        }
        let write = class == RequestClass::Write;
        let watch = class == RequestClass::Watch;
        let m = &self.mix;
        let weighted = [
            (m.internal_error, true),
            (m.conflict, write),
            (m.too_many_requests, true),
            (m.delay, true),
            (m.drop, true),
            (m.lost_response, write),
            (m.watch_cut, watch),
        ];
        let total: u64 = weighted
            .iter()
            .filter(|(_, applies)| *applies)
            .map(|(w, _)| u64::from(*w))
            .sum();
        if total == 0 {
            return None;
        }
        let mut ticket = rng.next() % total;
        let mut chosen = None;
        for (index, (weight, applies)) in weighted.iter().enumerate() {
            if !applies {
                continue;
            }
            if ticket < u64::from(*weight) {
                chosen = Some(index);
                break;
            }
            ticket -= u64::from(*weight);
        }
        Some(match chosen? {
            0 => Fault::InternalError,
            1 => Fault::Conflict,
            2 => Fault::TooManyRequests,
            3 => Fault::Delay(Duration::from_millis(rng.between(50, 500))),
            4 => Fault::Drop,
            5 => Fault::LostResponse,
            _ => Fault::WatchCut(WatchCut {
                after: Duration::from_millis(rng.between(50, 2000)),
                events: rng.between(1, 10) as u32,
            }),
        })
    }

    pub fn stats(&self) -> FaultStats {
        let c = |i: usize| self.counts[i].load(Ordering::Relaxed);
        FaultStats {
            internal_errors: c(0),
            conflicts: c(1),
            too_many_requests: c(2),
            delays: c(3),
            drops: c(4),
            lost_responses: c(5),
            watch_cuts: c(6),
        }
    }
}

/// The service error that makes hyper close the connection without a response (HTTP/1)
/// or reset the stream (HTTP/2): the client sees a transport error.
#[derive(Debug, thiserror::Error)]
#[error("injected fault: connection dropped")]
pub struct InjectedDrop;

#[cfg(test)]
mod tests {
    use super::*;

    fn q(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn discovery_openapi_and_health_are_never_eligible() {
        let none = q(&[]);
        for path in [
            "/api",
            "/apis",
            "/api/v1",
            "/apis/apps",
            "/apis/apps/v1",
            "/version",
            "/openapi/v3",
            "/openapi/v3/apis/apps/v1",
            "/healthz",
            "/",
        ] {
            assert_eq!(classify(&Method::GET, path, &none), None, "{path}");
        }
    }

    #[test]
    fn resource_requests_are_classified_by_method_and_watch() {
        let none = q(&[]);
        let watch = q(&[("watch", "true")]);
        let cms = "/api/v1/namespaces/a/configmaps";
        assert_eq!(classify(&Method::GET, cms, &none), Some(RequestClass::Read));
        assert_eq!(
            classify(&Method::GET, cms, &watch),
            Some(RequestClass::Watch)
        );
        assert_eq!(
            classify(&Method::GET, "/api/v1/watch/namespaces/a/configmaps", &none),
            Some(RequestClass::Watch)
        );
        for m in [Method::POST, Method::PUT, Method::PATCH, Method::DELETE] {
            assert_eq!(
                classify(&m, "/apis/apps/v1/namespaces/a/deployments/d/scale", &none),
                Some(RequestClass::Write)
            );
        }
    }

    fn decisions(
        config: &FaultConfig,
        class_path: (&Method, &str, &[(&str, &str)]),
    ) -> Vec<Option<Fault>> {
        let injector = Injector::new(config);
        let (method, path, query) = class_path;
        let query = q(query);
        (0..2000)
            .map(|_| injector.decide(method, path, &query, &HeaderMap::new()))
            .collect()
    }

    #[test]
    fn the_same_seed_gives_the_same_faults_and_another_seed_others() {
        let req = (&Method::POST, "/api/v1/namespaces/a/configmaps", &[][..]);
        let a = decisions(&FaultConfig::with_rate(0.3).with_seed(7), req);
        let b = decisions(&FaultConfig::with_rate(0.3).with_seed(7), req);
        let c = decisions(&FaultConfig::with_rate(0.3).with_seed(8), req);
        assert_eq!(a, b);
        assert_ne!(a, c);
    }

    #[test]
    fn the_rate_is_the_share_of_faulted_requests() {
        let req = (&Method::GET, "/api/v1/namespaces/a/configmaps", &[][..]);
        for rate in [0.0, 0.1, 0.5, 1.0] {
            let faulted = decisions(&FaultConfig::with_rate(rate), req)
                .iter()
                .filter(|d| d.is_some())
                .count() as f64
                / 2000.0;
            assert!((faulted - rate).abs() < 0.04, "rate {rate}: {faulted}");
        }
    }

    #[test]
    fn reads_never_get_conflicts_or_lost_responses_and_only_watches_are_cut() {
        let read = decisions(
            &FaultConfig::with_rate(1.0),
            (&Method::GET, "/api/v1/namespaces/a/configmaps/x", &[]),
        );
        assert!(read.iter().all(|f| !matches!(
            f,
            Some(Fault::Conflict | Fault::LostResponse | Fault::WatchCut(_)) | None
        )));
        let watch = decisions(
            &FaultConfig::with_rate(1.0),
            (&Method::GET, "/api/v1/configmaps", &[("watch", "1")]),
        );
        assert!(watch.iter().any(|f| matches!(f, Some(Fault::WatchCut(_)))));
        assert!(!watch.iter().any(|f| matches!(f, Some(Fault::Conflict))));
        let write = decisions(
            &FaultConfig::with_rate(1.0),
            (&Method::PATCH, "/api/v1/namespaces/a/configmaps/x", &[]),
        );
        for wanted in [Fault::Conflict, Fault::LostResponse, Fault::Drop] {
            assert!(write.contains(&Some(wanted)), "{wanted:?}");
        }
        assert!(!write.iter().any(|f| matches!(f, Some(Fault::WatchCut(_)))));
    }

    #[test]
    fn the_spared_workload_client_never_faults() {
        let injector = Injector::new(&FaultConfig::with_rate(1.0));
        let mut headers = HeaderMap::new();
        headers.insert(WORKLOAD_HEADER, injector.workload_token().clone());
        let path = "/api/v1/namespaces/a/pods";
        for _ in 0..100 {
            assert_eq!(injector.decide(&Method::GET, path, &q(&[]), &headers), None);
        }
        assert_eq!(injector.stats().total(), 0);
        let mut forged = HeaderMap::new();
        forged.insert(WORKLOAD_HEADER, http::HeaderValue::from_static("guess"));
        assert!(
            injector
                .decide(&Method::GET, path, &q(&[]), &forged)
                .is_some()
        );
        assert_eq!(injector.stats().total(), 1);
    }
}
