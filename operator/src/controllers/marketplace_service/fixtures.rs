//! Test fixtures: MarketplaceServices built up in a sentence, run through the real
//! `validate`.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use marketplace_crds::v1alpha1::{
    DisruptionSpec, MarketplaceService, MarketplaceServiceSpec, MetricSpec, MetricType, ScalingSpec,
};

use super::validate::{Validated, validate};

pub fn service(name: &str) -> MarketplaceService {
    let mut m = MarketplaceService::new(
        name,
        MarketplaceServiceSpec {
            domain: name.to_owned(),
            image: format!("registry.example/{name}:1.0"),
            port: 8080,
            env: Vec::new(),
            resources: None,
            replicas: None,
            scaling: None,
            cache: None,
            depends_on: Vec::new(),
            disruption: None,
            topology_spread: None,
        },
    );
    m.metadata = ObjectMeta {
        name: Some(name.to_owned()),
        namespace: Some("shop".to_owned()),
        uid: Some(format!("uid-{name}")),
        generation: Some(1),
        ..ObjectMeta::default()
    };
    m
}

pub trait Build: Sized {
    fn with_replicas(self, n: i32) -> Self;
    fn with_target_rps(self, target: f64) -> Self;
    fn with_max_replicas(self, n: i32) -> Self;
    fn depending_on(self, peers: &[&str]) -> Self;
    fn with_disruption(self, d: DisruptionSpec) -> Self;
    fn valid(&self) -> Validated;
}

impl Build for MarketplaceService {
    fn with_replicas(mut self, n: i32) -> Self {
        self.spec.replicas = Some(n);
        self
    }

    fn with_target_rps(mut self, target: f64) -> Self {
        self.spec.scaling = Some(ScalingSpec {
            min_replicas: 1,
            max_replicas: 10,
            metrics: vec![MetricSpec {
                type_: MetricType::RequestsPerSecond,
                target,
                target_type: None,
                query: None,
            }],
            behavior: None,
            tolerance: None,
            burst: None,
            schedules: None,
            predictive: None,
            fallback: None,
            poll_interval_seconds: None,
        });
        self
    }

    fn with_max_replicas(mut self, n: i32) -> Self {
        if let Some(s) = self.spec.scaling.as_mut() {
            s.max_replicas = n;
        }
        self
    }

    fn depending_on(mut self, peers: &[&str]) -> Self {
        self.spec.depends_on = peers.iter().map(|p| (*p).to_owned()).collect();
        self
    }

    fn with_disruption(mut self, d: DisruptionSpec) -> Self {
        self.spec.disruption = Some(d);
        self
    }

    fn valid(&self) -> Validated {
        match validate(self) {
            Ok(v) => v,
            Err(e) => panic!("fixture should be valid: {e}"),
        }
    }
}
