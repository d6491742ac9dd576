//! Validate: the raw object becomes a `Validated` service, or the list of fields that are
//! wrong. Nothing after this stage reads the raw spec.

use marketplace_crds::v1alpha1::{
    DisruptionSpec, MarketplaceService, MarketplaceServiceSpec, MetricSpec, TopologySpreadSpec,
};
use marketplace_crds::{FieldError, ValidationErrors};

use crate::scaling::{Policy, SpecError};
use k8s_openapi::api::core::v1::{EnvVar, ResourceRequirements};

/// A MarketplaceService that passed every check, with its scaling policy resolved.
#[derive(Clone, Debug, PartialEq)]
pub struct Validated {
    pub name: String,
    pub namespace: String,
    pub uid: String,
    pub generation: Option<i64>,
    pub domain: String,
    pub image: String,
    pub port: i32,
    pub env: Vec<EnvVar>,
    pub resources: Option<ResourceRequirements>,
    pub depends_on: Vec<String>,
    pub disruption: Option<DisruptionSpec>,
    pub topology_spread: Option<TopologySpreadSpec>,
    /// The fixed replica count when there is no scaling block.
    pub replicas: i32,
    pub scaling: Option<Scaling>,
    pub cache: Option<CacheUse>,
}

/// The cache tier a service uses and the prefix of its keys there.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CacheUse {
    pub tier: String,
    pub key_prefix: String,
}

/// The autoscaler's half of a validated spec.
#[derive(Clone, Debug, PartialEq)]
pub struct Scaling {
    pub policy: Policy,
    pub metrics: Vec<MetricSpec>,
}

pub use crate::controllers::Invalid;

pub fn validate(msvc: &MarketplaceService) -> Result<Validated, Invalid> {
    let meta = &msvc.metadata;
    let name = meta.name.clone().ok_or(Invalid::Metadata("name"))?;
    let namespace = meta
        .namespace
        .clone()
        .ok_or(Invalid::Metadata("namespace"))?;
    let uid = meta.uid.clone().ok_or(Invalid::Metadata("uid"))?;
    let spec: &MarketplaceServiceSpec = &msvc.spec;
    spec.validate()?;
    let scaling = match &spec.scaling {
        None => None,
        Some(s) => {
            let policy = Policy::from_spec(s).map_err(|e| match e {
                SpecError::Invalid(errors) => errors,
                SpecError::Policy(p) => ValidationErrors(vec![FieldError {
                    field: "spec.scaling".to_owned(),
                    message: p.to_string(),
                }]),
            })?;
            Some(Scaling {
                policy,
                metrics: s.metrics.clone(),
            })
        }
    };
    Ok(Validated {
        name,
        namespace,
        uid,
        generation: meta.generation,
        domain: spec.domain.clone(),
        image: spec.image.clone(),
        port: spec.port,
        env: spec.env.clone(),
        resources: spec.resources.clone(),
        depends_on: spec.depends_on.clone(),
        disruption: spec.disruption.clone(),
        topology_spread: spec.topology_spread.clone(),
        replicas: spec.replicas.unwrap_or(1),
        scaling,
        cache: spec.cache.as_ref().map(|c| CacheUse {
            tier: c.name.clone(),
            key_prefix: c
                .key_prefix
                .clone()
                .unwrap_or_else(|| format!("{}:", spec.domain)),
        }),
    })
}
