//! PreviewEnvironment: an isolated, short-lived copy of the marketplace for one branch.

use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::validation::{DNS_LABEL_PATTERN, ValidationErrors, is_dns_label};

/// The longest branch name accepted: the environment's namespace is `preview-<branch slug>`
/// and must stay a 63-character DNS label.
pub const MAX_BRANCH_LENGTH: usize = 55;

/// The longest TTL a preview environment may have, in seconds (30 days).
pub const MAX_TTL_SECONDS: u64 = 30 * 24 * 3600;

const BRANCH_PATTERN: &str = r"^[A-Za-z0-9][A-Za-z0-9._/-]*$";

/// An isolated per-branch environment, typically one per pull request: a namespace with a
/// quota, limits and network isolation, copies of the chosen services at the branch's images,
/// its own cache tier, a URL per service, and a time to live after which it is deleted.
// Each printcolumn(...) repeats `type_ = ...`; clippy reads that as a duplicated attribute.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "marketplace.dev",
    version = "v1alpha1",
    kind = "PreviewEnvironment",
    plural = "previewenvironments",
    shortname = "penv",
    category = "marketplace",
    status = "PreviewEnvironmentStatus",
    derive = "PartialEq",
    doc = "An isolated per-branch preview environment of the marketplace.",
    printcolumn(name = "Branch", type_ = "string", json_path = ".spec.branch"),
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(name = "Namespace", type_ = "string", json_path = ".status.namespace"),
    printcolumn(name = "Expires", type_ = "date", json_path = ".status.expiresAt"),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[x_kube(validation = Rule::new("self.urlHostTemplate.contains('{service}')").message("urlHostTemplate must contain {service}, or every service would get the same host"))]
#[serde(rename_all = "camelCase")]
pub struct PreviewEnvironmentSpec {
    /// The Git branch this environment previews, e.g. `feature/cart-v2`. It names the
    /// namespace (`preview-feature-cart-v2`) and, unless overridden, the image tag. Immutable.
    #[x_kube(validation = Rule::new("self == oldSelf").message("branch is immutable; create a new PreviewEnvironment for another branch"))]
    #[schemars(length(min = 1, max = 55), regex(pattern = BRANCH_PATTERN))]
    pub branch: String,

    /// The namespace whose MarketplaceServices are copied (default `marketplace`). Immutable.
    #[serde(default = "default_source_namespace")]
    #[x_kube(validation = Rule::new("self == oldSelf").message("sourceNamespace is immutable"))]
    #[schemars(length(min = 1, max = 63), regex(pattern = DNS_LABEL_PATTERN))]
    pub source_namespace: String,

    /// The services to copy. Absent or empty: every MarketplaceService in the source
    /// namespace, each at the branch's image tag.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub services: Vec<PreviewService>,

    /// The image tag used for services without an image override (default: the branch slug,
    /// the branch with every character outside `[a-z0-9-]` replaced by `-`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(min = 1, max = 128),
        regex(pattern = r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")
    )]
    pub image_tag: Option<String>,

    /// How long the environment lives after creation: a number and a unit, `s`, `m`, `h` or
    /// `d`, at most 30 days (default `72h`). Extending it later moves the expiry.
    #[serde(default = "default_ttl")]
    #[schemars(regex(pattern = r"^[1-9][0-9]*(s|m|h|d)$"))]
    pub ttl: String,

    /// The ResourceQuota of the environment's namespace.
    #[serde(default)]
    pub quota: QuotaSpec,

    /// `Isolated` (default): pods accept traffic only from their own namespace and the ingress
    /// controller, and reach only their namespace and DNS. `Open`: no NetworkPolicy.
    #[serde(default)]
    pub network_isolation: NetworkIsolation,

    /// Whether the environment gets its own CacheTier (default true). False: the services use
    /// no cache.
    #[serde(default = "default_true")]
    pub isolated_cache: bool,

    /// The host name of each service's URL. `{service}`, `{branch}` (the slug) and
    /// `{namespace}` are replaced (default `{service}.{branch}.preview.marketplace.dev`).
    #[serde(default = "default_url_host_template")]
    #[schemars(length(min = 1, max = 253))]
    pub url_host_template: String,
}

fn default_source_namespace() -> String {
    "marketplace".to_owned()
}

fn default_ttl() -> String {
    "72h".to_owned()
}

fn default_true() -> bool {
    true
}

fn default_url_host_template() -> String {
    "{service}.{branch}.preview.marketplace.dev".to_owned()
}

/// A service copied into the environment.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PreviewService {
    /// The name of the MarketplaceService in the source namespace.
    #[schemars(length(min = 1, max = 63), regex(pattern = DNS_LABEL_PATTERN))]
    pub name: String,

    /// The image to run instead of the source's image at the branch tag.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 512))]
    pub image: Option<String>,
}

/// The resource quota of a preview environment.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct QuotaSpec {
    /// Total CPU requests allowed in the namespace (default `4`).
    #[serde(default = "default_cpu")]
    pub cpu: Quantity,

    /// Total memory requests allowed in the namespace (default `8Gi`).
    #[serde(default = "default_memory")]
    pub memory: Quantity,

    /// The most pods the namespace may run (default 50).
    #[serde(default = "default_pods")]
    #[schemars(range(min = 1, max = 1000))]
    pub pods: i32,
}

impl Default for QuotaSpec {
    fn default() -> Self {
        Self {
            cpu: default_cpu(),
            memory: default_memory(),
            pods: default_pods(),
        }
    }
}

fn default_cpu() -> Quantity {
    Quantity("4".to_owned())
}

fn default_memory() -> Quantity {
    Quantity("8Gi".to_owned())
}

fn default_pods() -> i32 {
    50
}

/// Network isolation of a preview environment.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum NetworkIsolation {
    #[default]
    Isolated,
    Open,
}

/// The observed state of a PreviewEnvironment, written by the operator.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct PreviewEnvironmentStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,

    /// The namespace holding the environment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,

    /// A summary for people, derived from the conditions: Pending, Provisioning, Ready,
    /// Expired, Terminating or Failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<PreviewPhase>,

    /// When the environment will be deleted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<Time>,

    /// Each copied service: its image, whether it is ready, and its URL.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub services: Vec<PreviewServiceStatus>,

    /// Standard conditions: `Ready` (every service ready), `Provisioned` (namespace, quota,
    /// policies and cache in place), `Expired`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

/// The phase of a preview environment.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum PreviewPhase {
    Pending,
    Provisioning,
    Ready,
    Expired,
    Terminating,
    Failed,
}

/// One service of a preview environment.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PreviewServiceStatus {
    /// The service's name.
    pub name: String,

    /// The image it runs.
    pub image: String,

    /// Whether all its replicas are ready.
    pub ready: bool,

    /// Where it is reached.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
}

impl PreviewEnvironmentSpec {
    /// The schema and CEL checks, mirrored for the controllers.
    pub fn validate(&self) -> Result<(), ValidationErrors> {
        let mut errors = ValidationErrors::default();
        if self.branch.is_empty() {
            errors.push("spec.branch", "must not be empty");
        } else if self.branch.len() > MAX_BRANCH_LENGTH {
            errors.push(
                "spec.branch",
                format!(
                    "is {} characters long; at most {MAX_BRANCH_LENGTH} are allowed, so the namespace preview-<branch> stays a valid name",
                    self.branch.len()
                ),
            );
        } else if !self
            .branch
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric())
            || !self
                .branch
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '/' | '-'))
        {
            errors.push(
                "spec.branch",
                "may contain only letters, digits, '.', '_', '/' and '-', and must start with a letter or digit",
            );
        }
        if !is_dns_label(&self.source_namespace) {
            errors.push(
                "spec.sourceNamespace",
                "must be a namespace name (a DNS label)",
            );
        }
        for (i, s) in self.services.iter().enumerate() {
            if !is_dns_label(&s.name) {
                errors.push(
                    format!("spec.services[{i}].name"),
                    "must be a service name (a DNS label)",
                );
            }
        }
        match parse_ttl(&self.ttl) {
            None => errors.push(
                "spec.ttl",
                format!("{:?} is not a duration such as 90m, 72h or 7d", self.ttl),
            ),
            Some(s) if s > MAX_TTL_SECONDS => {
                errors.push("spec.ttl", "must be at most 30d");
            }
            Some(_) => {}
        }
        if self.quota.pods < 1 {
            errors.push("spec.quota.pods", "must be at least 1");
        }
        if !self.url_host_template.contains("{service}") {
            errors.push(
                "spec.urlHostTemplate",
                "must contain {service}, or every service would get the same host",
            );
        }
        errors.into_result()
    }

    /// The branch as a DNS-label fragment: lowercase, every other character turned into '-'.
    pub fn branch_slug(&self) -> String {
        let slug: String = self
            .branch
            .to_ascii_lowercase()
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
            .collect();
        slug.trim_matches('-').to_owned()
    }

    /// The namespace the environment lives in.
    pub fn namespace_name(&self) -> String {
        format!("preview-{}", self.branch_slug())
    }
}

/// Parses a TTL such as `90m`, `72h` or `7d` into seconds.
pub fn parse_ttl(s: &str) -> Option<u64> {
    let unit = s.chars().last()?;
    let n: u64 = s.get(..s.len() - 1)?.parse().ok().filter(|n| *n > 0)?;
    let mult = match unit {
        's' => 1,
        'm' => 60,
        'h' => 3600,
        'd' => 86_400,
        _ => return None,
    };
    n.checked_mul(mult)
}
