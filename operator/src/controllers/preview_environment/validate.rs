//! Validate: the raw object becomes a `Validated` environment, or the fields that are wrong.
//! Then `plan`: with the source services observed, the copies to make, or the reason none
//! can be made (a missing service, no image tag, a quota too small). Pure: nothing after this
//! stage reads the raw spec.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ResourceRequirements;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use marketplace_crds::v1alpha1::{
    CacheReference, MarketplaceService, MarketplaceServiceSpec, NetworkIsolation,
    PreviewEnvironment, PreviewService, branch_label, parse_ttl,
};
use marketplace_crds::{FieldError, ValidationErrors};

/// Every copy runs this many replicas: a preview serves its developers, not traffic, and a
/// fixed count keeps the quota arithmetic exact (no autoscaler, no metrics needed).
pub const PREVIEW_REPLICAS: i32 = 1;
/// The CacheTier of an environment with `isolatedCache`.
pub const CACHE_NAME: &str = "preview-cache";
/// What the LimitRange gives a container that requests nothing, so that pods without
/// requests still fit a quota on requests.
pub const DEFAULT_CPU_REQUEST: &str = "100m";
pub const DEFAULT_MEMORY_REQUEST: &str = "128Mi";
/// The preview cache tier's Redis: small, it holds a developer's test data.
pub const CACHE_MAX_MEMORY: &str = "64mb";
pub const CACHE_CPU_REQUEST: &str = "50m";
pub const CACHE_MEMORY_REQUEST: &str = "96Mi";
pub const CACHE_MEMORY_LIMIT: &str = "128Mi";

/// A PreviewEnvironment that passed every check of its own.
#[derive(Clone, Debug, PartialEq)]
pub struct Validated {
    pub name: String,
    pub uid: String,
    pub generation: Option<i64>,
    pub branch: String,
    /// The branch as a DNS label (slug and hash): the namespace's `marketplace.dev/branch`
    /// label and `{branch}` in hosts.
    pub branch_label: String,
    pub namespace: String,
    pub source_namespace: String,
    /// The services asked for; empty means every service of the source namespace.
    pub services: Vec<PreviewService>,
    pub image_tag: Option<String>,
    /// Unix seconds.
    pub expires_at: f64,
    pub quota: Quota,
    pub isolation: NetworkIsolation,
    pub isolated_cache: bool,
    pub url_host_template: String,
    pub ingress_namespace: String,
}

/// The namespace's quota: as written (for the ResourceQuota) and as numbers (for the check).
#[derive(Clone, Debug, PartialEq)]
pub struct Quota {
    pub cpu: Quantity,
    pub memory: Quantity,
    pub pods: i32,
    pub limit: Requests,
}

/// CPU (cores), memory (bytes) and pods.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Requests {
    pub cpu: f64,
    pub memory: f64,
    pub pods: i32,
}

impl std::ops::Add for Requests {
    type Output = Requests;

    fn add(self, o: Requests) -> Requests {
        Requests {
            cpu: self.cpu + o.cpu,
            memory: self.memory + o.memory,
            pods: self.pods + o.pods,
        }
    }
}

pub use crate::controllers::Invalid;

pub fn validate(penv: &PreviewEnvironment) -> Result<Validated, Invalid> {
    let meta = &penv.metadata;
    let name = meta.name.clone().ok_or(Invalid::Metadata("name"))?;
    let uid = meta.uid.clone().ok_or(Invalid::Metadata("uid"))?;
    let created = meta
        .creation_timestamp
        .as_ref()
        .ok_or(Invalid::Metadata("creationTimestamp"))?;
    let spec = &penv.spec;
    spec.validate()?;
    let mut errors = Vec::new();
    let cpu = parse_quantity(&spec.quota.cpu.0);
    let memory = parse_quantity(&spec.quota.memory.0);
    for (field, value, parsed) in [
        ("spec.quota.cpu", &spec.quota.cpu, cpu),
        ("spec.quota.memory", &spec.quota.memory, memory),
    ] {
        if parsed.is_none_or(|q| q <= 0.0) {
            errors.push(FieldError {
                field: field.to_owned(),
                message: format!(
                    "{:?} is not a positive quantity such as 4, 500m or 8Gi",
                    value.0
                ),
            });
        }
    }
    if !errors.is_empty() {
        return Err(ValidationErrors(errors).into());
    }
    // validate() checked the TTL.
    let ttl = parse_ttl(&spec.ttl).unwrap_or(0);
    let created_at = created.0.as_nanosecond() as f64 / 1e9;
    Ok(Validated {
        name,
        uid,
        generation: meta.generation,
        branch: spec.branch.clone(),
        branch_label: branch_label(&spec.branch),
        namespace: spec.namespace_name(),
        source_namespace: spec.source_namespace.clone(),
        services: spec.services.clone(),
        image_tag: spec.effective_image_tag(),
        expires_at: created_at + ttl as f64,
        quota: Quota {
            cpu: spec.quota.cpu.clone(),
            memory: spec.quota.memory.clone(),
            pods: spec.quota.pods,
            limit: Requests {
                cpu: cpu.unwrap_or(0.0),
                memory: memory.unwrap_or(0.0),
                pods: spec.quota.pods,
            },
        },
        isolation: spec.network_isolation,
        isolated_cache: spec.isolated_cache,
        url_host_template: spec.url_host_template.clone(),
        ingress_namespace: spec.ingress_namespace.clone(),
    })
}

/// One service of the environment, as it will be copied.
#[derive(Clone, Debug, PartialEq)]
pub struct Copy {
    pub name: String,
    /// The source's spec with the preview's image, replicas and cache.
    pub spec: MarketplaceServiceSpec,
    pub host: String,
    pub requests: Requests,
}

impl Copy {
    pub fn url(&self) -> String {
        format!("http://{}", self.host)
    }
}

/// What the environment will hold.
#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    pub copies: Vec<Copy>,
    pub cache: bool,
    /// Everything the namespace's pods request together.
    pub requests: Requests,
}

/// Why no environment can be built from what the spec asks for. Each is a condition reason.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum Unsatisfiable {
    #[error("the source namespace {0} does not exist")]
    SourceNamespaceMissing(String),
    #[error("no MarketplaceService {} in the source namespace {namespace}", names.join(", "))]
    SourceServiceMissing {
        namespace: String,
        names: Vec<String>,
    },
    #[error(
        "no image tag for {}: the branch has no character usable in a tag; set spec.imageTag or an image per service",
        services.join(", ")
    )]
    NoImageTag { services: Vec<String> },
    #[error(
        "spec.urlHostTemplate gives service {service} the host {host:?}, which is not a DNS name"
    )]
    InvalidHost { service: String, host: String },
    #[error("spec.quota.{resource} allows {allowed}, but the services request {needed}: {detail}")]
    QuotaTooSmall {
        resource: &'static str,
        needed: String,
        allowed: String,
        detail: String,
    },
}

impl Unsatisfiable {
    pub fn reason(&self) -> &'static str {
        match self {
            Self::SourceNamespaceMissing(_) => "SourceNamespaceMissing",
            Self::SourceServiceMissing { .. } => "SourceServiceMissing",
            Self::NoImageTag { .. } => "NoImageTag",
            Self::InvalidHost { .. } => "InvalidHost",
            Self::QuotaTooSmall { .. } => "QuotaTooSmall",
        }
    }
}

/// The copies of the chosen source services, checked against the quota.
pub fn plan(v: &Validated, sources: &[MarketplaceService]) -> Result<Plan, Unsatisfiable> {
    let by_name: BTreeMap<&str, &MarketplaceService> = sources
        .iter()
        .filter_map(|m| Some((m.metadata.name.as_deref()?, m)))
        .collect();
    let chosen: Vec<(&str, Option<&str>)> = if v.services.is_empty() {
        by_name.keys().map(|n| (*n, None)).collect()
    } else {
        v.services
            .iter()
            .map(|s| (s.name.as_str(), s.image.as_deref()))
            .collect()
    };
    let missing: Vec<String> = chosen
        .iter()
        .filter(|(n, _)| !by_name.contains_key(n))
        .map(|(n, _)| (*n).to_owned())
        .collect();
    if !missing.is_empty() {
        return Err(Unsatisfiable::SourceServiceMissing {
            namespace: v.source_namespace.clone(),
            names: missing,
        });
    }
    let untagged: Vec<String> = chosen
        .iter()
        .filter(|(_, image)| image.is_none() && v.image_tag.is_none())
        .map(|(n, _)| (*n).to_owned())
        .collect();
    if !untagged.is_empty() {
        return Err(Unsatisfiable::NoImageTag { services: untagged });
    }
    let defaults = Requests {
        cpu: parse_quantity(DEFAULT_CPU_REQUEST).unwrap_or(0.0),
        memory: parse_quantity(DEFAULT_MEMORY_REQUEST).unwrap_or(0.0),
        pods: 1,
    };
    let mut copies = Vec::with_capacity(chosen.len());
    for (name, image) in chosen {
        let Some(source) = by_name.get(name) else {
            continue;
        };
        let image = match (image, &v.image_tag) {
            (Some(image), _) => image.to_owned(),
            (None, Some(tag)) => with_tag(&source.spec.image, tag),
            (None, None) => source.spec.image.clone(),
        };
        let host = host_of(v, name);
        if !is_dns_subdomain(&host) {
            return Err(Unsatisfiable::InvalidHost {
                service: name.to_owned(),
                host,
            });
        }
        let mut spec = source.spec.clone();
        spec.image = image;
        spec.replicas = Some(PREVIEW_REPLICAS);
        spec.scaling = None;
        // One replica: a disruption budget would only block node drains.
        spec.disruption = None;
        spec.cache = match (&spec.cache, v.isolated_cache) {
            (Some(c), true) => Some(CacheReference {
                name: CACHE_NAME.to_owned(),
                key_prefix: c.key_prefix.clone(),
            }),
            _ => None,
        };
        let per_pod = requests_of(spec.resources.as_ref(), defaults);
        copies.push(Copy {
            name: name.to_owned(),
            requests: Requests {
                cpu: per_pod.cpu * f64::from(PREVIEW_REPLICAS),
                memory: per_pod.memory * f64::from(PREVIEW_REPLICAS),
                pods: PREVIEW_REPLICAS,
            },
            spec,
            host,
        });
    }
    let cache = v.isolated_cache;
    let cache_requests = if cache {
        Requests {
            cpu: parse_quantity(CACHE_CPU_REQUEST).unwrap_or(0.0),
            memory: parse_quantity(CACHE_MEMORY_REQUEST).unwrap_or(0.0),
            pods: 1,
        }
    } else {
        Requests::default()
    };
    let requests = copies
        .iter()
        .fold(cache_requests, |sum, c| sum + c.requests);
    check_quota(&v.quota, &copies, cache_requests, requests)?;
    Ok(Plan {
        copies,
        cache,
        requests,
    })
}

fn check_quota(
    quota: &Quota,
    copies: &[Copy],
    cache: Requests,
    total: Requests,
) -> Result<(), Unsatisfiable> {
    // Quantities are decimal; a rounding error must not fail a quota that fits exactly.
    const SLACK: f64 = 1e-9;
    let detail = |f: &dyn Fn(&Requests) -> String| {
        let mut parts: Vec<String> = copies
            .iter()
            .map(|c| format!("{} {}", c.name, f(&c.requests)))
            .collect();
        if cache.pods > 0 {
            parts.push(format!("cache {}", f(&cache)));
        }
        parts.join(", ")
    };
    if total.cpu > quota.limit.cpu * (1.0 + SLACK) {
        return Err(Unsatisfiable::QuotaTooSmall {
            resource: "cpu",
            needed: format_cpu(total.cpu),
            allowed: quota.cpu.0.clone(),
            detail: detail(&|r| format_cpu(r.cpu)),
        });
    }
    if total.memory > quota.limit.memory * (1.0 + SLACK) {
        return Err(Unsatisfiable::QuotaTooSmall {
            resource: "memory",
            needed: format_memory(total.memory),
            allowed: quota.memory.0.clone(),
            detail: detail(&|r| format_memory(r.memory)),
        });
    }
    if total.pods > quota.limit.pods {
        return Err(Unsatisfiable::QuotaTooSmall {
            resource: "pods",
            needed: format!("{} pods", total.pods),
            allowed: format!("{} pods", quota.pods),
            detail: detail(&|r| r.pods.to_string()),
        });
    }
    Ok(())
}

/// A container's requests as the quota counts them: its requests, else its limits (the
/// API server copies limits into missing requests), else the LimitRange's defaults.
fn requests_of(resources: Option<&ResourceRequirements>, defaults: Requests) -> Requests {
    let pick = |key: &str, default: f64| {
        let from = |m: Option<&BTreeMap<String, Quantity>>| {
            m.and_then(|m| m.get(key))
                .and_then(|q| parse_quantity(&q.0))
        };
        from(resources.and_then(|r| r.requests.as_ref()))
            .or_else(|| from(resources.and_then(|r| r.limits.as_ref())))
            .unwrap_or(default)
    };
    Requests {
        cpu: pick("cpu", defaults.cpu),
        memory: pick("memory", defaults.memory),
        pods: 1,
    }
}

/// The service's host from the template.
pub fn host_of(v: &Validated, service: &str) -> String {
    v.url_host_template
        .replace("{service}", service)
        .replace("{branch}", &v.branch_label)
        .replace("{namespace}", &v.namespace)
}

/// `image` with its tag (and digest, if any) replaced by `tag`. The tag is what follows the
/// last `:` after the last `/`; a registry's port (`host:5000/app`) is not one.
pub fn with_tag(image: &str, tag: &str) -> String {
    let name = image.split_once('@').map_or(image, |(name, _digest)| name);
    let last = name.rfind('/').map_or(0, |i| i + 1);
    let repository = match name.get(last..).and_then(|n| n.rfind(':')) {
        Some(colon) => name.get(..last + colon).unwrap_or(name),
        None => name,
    };
    format!("{repository}:{tag}")
}

/// A DNS-1123 subdomain, as an Ingress host must be.
pub fn is_dns_subdomain(host: &str) -> bool {
    !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

/// A Kubernetes quantity (`500m`, `1.5`, `8Gi`, `1e3`) as a number of units (cores, bytes).
pub fn parse_quantity(s: &str) -> Option<f64> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || matches!(c, '.' | '+' | '-')))
        .unwrap_or(s.len());
    let (number, suffix) = s.split_at(split);
    let n: f64 = number.parse().ok()?;
    let multiplier = match suffix {
        "" => 1.0,
        "n" => 1e-9,
        "u" => 1e-6,
        "m" => 1e-3,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "E" => 1e18,
        "Ki" => 1024.0,
        "Mi" => 1024f64.powi(2),
        "Gi" => 1024f64.powi(3),
        "Ti" => 1024f64.powi(4),
        "Pi" => 1024f64.powi(5),
        "Ei" => 1024f64.powi(6),
        exponent => {
            let e: i32 = exponent
                .strip_prefix(['e', 'E'])
                .and_then(|e| e.parse().ok())?;
            10f64.powi(e)
        }
    };
    let value = n * multiplier;
    value.is_finite().then_some(value)
}

fn format_cpu(cores: f64) -> String {
    format!("{}m", (cores * 1000.0).round())
}

fn format_memory(bytes: f64) -> String {
    format!("{}Mi", (bytes / 1024f64.powi(2)).ceil())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use marketplace_crds::v1alpha1::PreviewEnvironmentSpec;
    use serde_json::{Value, json};

    pub(crate) fn env(spec: Value) -> PreviewEnvironment {
        let spec: PreviewEnvironmentSpec = serde_json::from_value(spec).expect("a spec");
        let mut p = PreviewEnvironment::new("pr-1", spec);
        p.metadata.uid = Some("uid-1".into());
        p.metadata.generation = Some(1);
        p.metadata.creation_timestamp = Some(crate::controllers::clock::time_at(1_000.0));
        p
    }

    pub(crate) fn source(name: &str, spec: Value) -> MarketplaceService {
        let mut m =
            MarketplaceService::new(name, serde_json::from_value(spec).expect("a service spec"));
        m.metadata.namespace = Some("marketplace".into());
        m
    }

    fn validated(spec: Value) -> Validated {
        validate(&env(spec)).expect("valid")
    }

    #[test]
    fn a_tag_replaces_the_source_tag_but_not_a_registry_port() {
        assert_eq!(
            with_tag("registry.example/orders:1.0", "b"),
            "registry.example/orders:b"
        );
        assert_eq!(
            with_tag("localhost:5000/orders", "b"),
            "localhost:5000/orders:b"
        );
        assert_eq!(
            with_tag("localhost:5000/a/orders:2", "b"),
            "localhost:5000/a/orders:b"
        );
        assert_eq!(with_tag("orders@sha256:abc", "b"), "orders:b");
        assert_eq!(with_tag("orders", "b"), "orders:b");
    }

    #[test]
    fn quantities_parse_in_every_notation() {
        assert_eq!(parse_quantity("500m"), Some(0.5));
        assert_eq!(parse_quantity("2"), Some(2.0));
        assert_eq!(parse_quantity("1Gi"), Some(1024f64.powi(3)));
        assert_eq!(parse_quantity("1.5k"), Some(1500.0));
        assert_eq!(parse_quantity("1e3"), Some(1000.0));
        assert_eq!(parse_quantity("lots"), None);
        assert_eq!(parse_quantity("1Xi"), None);
    }

    #[test]
    fn the_expiry_is_creation_plus_ttl() {
        let v = validated(json!({"branch": "main", "ttl": "2h"}));
        assert_eq!(v.expires_at, 1_000.0 + 7_200.0);
        assert!(v.namespace.starts_with("preview-main-"));
        assert_eq!(v.image_tag.as_deref(), Some("main"));
    }

    #[test]
    fn an_unparseable_quota_names_its_field() {
        let err = validate(&env(json!({"branch": "main", "quota": {"cpu": "lots"}})))
            .expect_err("invalid");
        assert!(err.to_string().contains("spec.quota.cpu"), "{err}");
    }

    #[test]
    fn copies_take_the_branch_tag_or_their_override_and_run_one_replica() {
        let v = validated(json!({"branch": "feature/Cart", "services": [
            {"name": "orders"}, {"name": "users", "image": "example/users:pr"}]}));
        let sources = [
            source(
                "orders",
                json!({"domain": "orders", "image": "r/orders:1.0",
                "scaling": {"minReplicas": 3, "maxReplicas": 10, "metrics": [{"type": "RequestsPerSecond", "target": 50.0}]},
                "cache": {"name": "shared", "keyPrefix": "o:"}, "disruption": {"minAvailable": 2}}),
            ),
            source(
                "users",
                json!({"domain": "users", "image": "r/users:1.0", "replicas": 4}),
            ),
            source(
                "payments",
                json!({"domain": "payments", "image": "r/payments:1.0"}),
            ),
        ];
        let plan = plan(&v, &sources).expect("a plan");
        let names: Vec<&str> = plan.copies.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["orders", "users"]);
        let orders = &plan.copies[0];
        assert_eq!(orders.spec.image, "r/orders:feature-cart");
        assert_eq!(orders.spec.replicas, Some(1));
        assert_eq!(orders.spec.scaling, None);
        assert_eq!(orders.spec.disruption, None);
        let cache = orders.spec.cache.as_ref().expect("the cache is kept");
        assert_eq!(
            (cache.name.as_str(), cache.key_prefix.as_deref()),
            (CACHE_NAME, Some("o:"))
        );
        assert_eq!(plan.copies[1].spec.image, "example/users:pr");
        assert_eq!(plan.copies[1].spec.replicas, Some(1));
        assert!(
            orders.host.starts_with("orders.feature-cart-"),
            "{}",
            orders.host
        );
        assert!(orders.host.ends_with(".preview.marketplace.dev"));
    }

    #[test]
    fn without_an_isolated_cache_the_copies_use_none() {
        let v = validated(json!({"branch": "main", "isolatedCache": false}));
        let sources = [source(
            "orders",
            json!({"domain": "orders", "image": "r/o:1",
            "cache": {"name": "shared"}}),
        )];
        let plan = plan(&v, &sources).expect("a plan");
        assert_eq!(plan.copies[0].spec.cache, None);
        assert!(!plan.cache);
    }

    #[test]
    fn every_source_service_is_copied_when_none_is_named() {
        let v = validated(json!({"branch": "main"}));
        let sources = [
            source("b", json!({"domain": "b", "image": "r/b:1"})),
            source("a", json!({"domain": "a", "image": "r/a:1"})),
        ];
        let names: Vec<String> = plan(&v, &sources)
            .expect("a plan")
            .copies
            .into_iter()
            .map(|c| c.name)
            .collect();
        assert_eq!(names, ["a", "b"]);
    }

    #[test]
    fn a_missing_service_is_named() {
        let v =
            validated(json!({"branch": "main", "services": [{"name": "ghost"}, {"name": "a"}]}));
        let sources = [source("a", json!({"domain": "a", "image": "r/a:1"}))];
        let err = plan(&v, &sources).expect_err("ghost is missing");
        assert_eq!(err.reason(), "SourceServiceMissing");
        assert!(err.to_string().contains("ghost"), "{err}");
    }

    #[test]
    fn requests_times_replicas_beyond_the_quota_fail_with_the_breakdown() {
        let v = validated(json!({"branch": "main", "isolatedCache": false,
            "quota": {"cpu": "1", "memory": "8Gi"}}));
        let sources = [
            source(
                "a",
                json!({"domain": "a", "image": "r/a:1", "replicas": 5,
                "resources": {"requests": {"cpu": "750m"}}}),
            ),
            // No requests: the LimitRange's default (100m) counts.
            source("b", json!({"domain": "b", "image": "r/b:1"})),
            source(
                "c",
                json!({"domain": "c", "image": "r/c:1",
                "resources": {"limits": {"cpu": "200m"}}}),
            ),
        ];
        let err = plan(&v, &sources).expect_err("1050m > 1");
        assert_eq!(err.reason(), "QuotaTooSmall");
        let text = err.to_string();
        assert!(
            text.contains("spec.quota.cpu allows 1, but the services request 1050m"),
            "{text}"
        );
        assert!(text.contains("a 750m, b 100m, c 200m"), "{text}");
    }

    #[test]
    fn the_cache_counts_against_memory_and_pods() {
        let v = validated(json!({"branch": "main", "quota": {"pods": 1}}));
        let sources = [source("a", json!({"domain": "a", "image": "r/a:1"}))];
        let err = plan(&v, &sources).expect_err("2 pods > 1");
        assert!(err.to_string().contains("2 pods"), "{err}");
        let v = validated(json!({"branch": "main", "quota": {"pods": 2}}));
        let plan = plan(&v, &sources).expect("fits");
        assert_eq!(plan.requests.pods, 2);
        assert!((plan.requests.cpu - 0.15).abs() < 1e-9);
    }

    #[test]
    fn a_branch_without_a_tag_needs_an_explicit_one() {
        let v = validated(json!({"branch": "___"}));
        let sources = [source("a", json!({"domain": "a", "image": "r/a:1"}))];
        assert_eq!(
            plan(&v, &sources).expect_err("no tag").reason(),
            "NoImageTag"
        );
        let v = validated(json!({"branch": "___", "imageTag": "pr-7"}));
        assert_eq!(
            plan(&v, &sources).expect("a plan").copies[0].spec.image,
            "r/a:pr-7"
        );
    }

    #[test]
    fn a_template_that_makes_no_dns_name_is_refused() {
        let v = validated(json!({"branch": "main", "urlHostTemplate": "{service}.Preview_Host"}));
        let sources = [source("a", json!({"domain": "a", "image": "r/a:1"}))];
        assert_eq!(
            plan(&v, &sources).expect_err("bad host").reason(),
            "InvalidHost"
        );
    }
}
