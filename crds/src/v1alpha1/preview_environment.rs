//! PreviewEnvironment: an isolated, short-lived copy of the marketplace for one branch.

use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::validation::{DNS_LABEL_PATTERN, ValidationErrors, is_dns_label};

/// The longest branch name accepted, in characters: what Git and the forges accept in
/// practice (a ref is a file name, and file systems stop at 255). The namespace name does not
/// depend on it: it is shortened with a hash (see [`namespace_name`]).
pub const MAX_BRANCH_LENGTH: usize = 255;

/// The prefix of every preview namespace.
pub const NAMESPACE_PREFIX: &str = "preview-";

/// Characters of the branch hash in names: 10 base-32 digits, 50 bits.
pub const BRANCH_HASH_LENGTH: usize = 10;

/// The longest a tag may be in an image reference.
const MAX_IMAGE_TAG_LENGTH: usize = 128;

/// The longest TTL a preview environment may have, in seconds (30 days).
pub const MAX_TTL_SECONDS: u64 = 30 * 24 * 3600;

/// No control characters, no space, none of Git's forbidden `~ ^ : ? * [ \`.
const BRANCH_PATTERN: &str = r"^[^\x00-\x20\x7f-\x9f~^:?*\[\\]+$";

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
#[x_kube(validation = Rule::new("!self.branch.startsWith('/') && !self.branch.endsWith('/') && !self.branch.startsWith('.') && !self.branch.endsWith('.') && !self.branch.endsWith('.lock') && !self.branch.contains('..') && !self.branch.contains('//') && !self.branch.contains('/.') && !self.branch.contains('@{') && self.branch != '@'").message("branch must be a Git branch name: no '..', '//', '@{', no component starting with '.', and no '/' at either end or '.' or '.lock' at the end"))]
#[x_kube(validation = Rule::new("self.urlHostTemplate.contains('{service}')").message("urlHostTemplate must contain {service}, or every service would get the same host"))]
#[serde(rename_all = "camelCase")]
pub struct PreviewEnvironmentSpec {
    /// The Git branch this environment previews, e.g. `feature/cart-v2`: any name Git
    /// accepts, up to 255 characters. It names the namespace: `preview-`, the branch
    /// lower-cased with every run of other characters than `a-z0-9` turned into one `-`
    /// (shortened to 44 characters), then `-` and a hash of the exact branch, so that distinct
    /// branches never share a namespace (`preview-feature-cart-v2-<hash>`). The namespace
    /// carries the full branch in the annotation `marketplace.dev/branch`. Unless overridden,
    /// the branch slug is also the image tag. Immutable.
    #[x_kube(validation = Rule::new("self == oldSelf").message("branch is immutable; create a new PreviewEnvironment for another branch"))]
    #[schemars(length(min = 1, max = 255), regex(pattern = BRANCH_PATTERN))]
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

    /// The image tag used for services without an image override: it replaces the tag of the
    /// source service's image (default: the branch slug, the branch lower-cased with every run
    /// of characters outside `[a-z0-9]` replaced by one `-`, at most 128 characters). Required
    /// when the branch has no such character and some service has no `image`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(min = 1, max = 128),
        regex(pattern = r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")
    )]
    pub image_tag: Option<String>,

    /// How long the environment lives after creation: a number and a unit, `s`, `m`, `h` or
    /// `d`, at most 30 days (default `72h`). Extending it later moves the expiry. At expiry the
    /// operator deletes the environment's namespace and everything in it, and keeps this object
    /// with phase `Expired` (so that a GitOps tool that created it does not create it again);
    /// extending the TTL past now provisions the environment again.
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

    /// The host name of each service's URL (one Ingress per service). `{service}`,
    /// `{branch}` (the namespace name without `preview-`: the slug and its hash, a DNS label)
    /// and `{namespace}` are replaced (default `{service}.{branch}.preview.marketplace.dev`).
    #[serde(default = "default_url_host_template")]
    #[schemars(length(min = 1, max = 253))]
    pub url_host_template: String,

    /// The namespace of the cluster's ingress controller: with `Isolated` network isolation
    /// it is the only namespace besides the environment's own whose pods may reach the
    /// services (default `ingress-nginx`).
    #[serde(default = "default_ingress_namespace")]
    #[schemars(length(min = 1, max = 63), regex(pattern = DNS_LABEL_PATTERN))]
    pub ingress_namespace: String,
}

fn default_ingress_namespace() -> String {
    "ingress-nginx".to_owned()
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
        if let Err(message) = check_branch(&self.branch) {
            errors.push("spec.branch", message);
        }
        if let Some(tag) = &self.image_tag
            && !is_image_tag(tag)
        {
            errors.push(
                "spec.imageTag",
                "must be an image tag: up to 128 letters, digits, '_', '.' and '-', not starting with '.' or '-'",
            );
        }
        if !is_dns_label(&self.ingress_namespace) {
            errors.push(
                "spec.ingressNamespace",
                "must be a namespace name (a DNS label)",
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

    /// The branch as a DNS-label fragment (see [`branch_slug`]).
    pub fn branch_slug(&self) -> String {
        branch_slug(&self.branch)
    }

    /// The namespace the environment lives in (see [`namespace_name`]).
    pub fn namespace_name(&self) -> String {
        namespace_name(&self.branch)
    }

    /// The tag that replaces the source images' tags: `imageTag`, or the branch slug. `None`
    /// when neither gives one (a branch without a letter or digit of `a-z0-9`).
    pub fn effective_image_tag(&self) -> Option<String> {
        if let Some(tag) = &self.image_tag {
            return Some(tag.clone());
        }
        let slug = branch_slug(&self.branch);
        let tag = truncate_label(&slug, MAX_IMAGE_TAG_LENGTH);
        (!tag.is_empty()).then(|| tag.to_owned())
    }
}

/// Why `branch` is not a branch name this API accepts: the schema's pattern and length and the
/// CEL rule, mirrored (Git's `check-ref-format`, less its rarely met corners).
pub fn check_branch(branch: &str) -> Result<(), String> {
    let length = branch.chars().count();
    if length == 0 {
        return Err("must not be empty".to_owned());
    }
    if length > MAX_BRANCH_LENGTH {
        return Err(format!(
            "is {length} characters long; at most {MAX_BRANCH_LENGTH} are allowed"
        ));
    }
    if let Some(c) = branch
        .chars()
        .find(|c| c.is_control() || *c == ' ' || "~^:?*[\\".contains(*c))
    {
        return Err(format!(
            "must not contain spaces, control characters or any of ~^:?*[\\ (found {c:?})"
        ));
    }
    let bad_part = ["..", "//", "/.", "@{"]
        .into_iter()
        .find(|p| branch.contains(p));
    if bad_part.is_some()
        || branch.starts_with(['/', '.'])
        || branch.ends_with(['/', '.'])
        || branch.ends_with(".lock")
        || branch == "@"
    {
        return Err(
            "must be a Git branch name: no '..', '//', '@{', no component starting with '.', and no '/' at either end or '.' or '.lock' at the end"
                .to_owned(),
        );
    }
    Ok(())
}

/// The branch as a DNS-label fragment: lower-cased, every run of characters outside `a-z0-9`
/// (non-ASCII letters included) turned into one `-`, no `-` at either end. Empty for a branch
/// without such a character. Distinct branches can share a slug: names add [`branch_hash`].
pub fn branch_slug(branch: &str) -> String {
    let mut slug = String::with_capacity(branch.len());
    for c in branch.chars() {
        let c = c.to_ascii_lowercase();
        if c.is_ascii_lowercase() || c.is_ascii_digit() {
            slug.push(c);
        } else if !slug.is_empty() && !slug.ends_with('-') {
            slug.push('-');
        }
    }
    slug.truncate(slug.trim_end_matches('-').len());
    slug
}

/// A short, stable hash of the exact branch (every byte counts, case included): 10 digits of
/// the base-32 alphabet `0-9a-v`, 50 bits, so a collision among a million branches has odds
/// of about one in two thousand, and the controller refuses a namespace another environment
/// owns rather than share it. It names namespaces: it must never change.
pub fn branch_hash(branch: &str) -> String {
    // FNV-1a over the UTF-8 bytes, then splitmix64's finalizer to spread FNV's weak high bits.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in branch.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h ^= h >> 30;
    h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h ^= h >> 27;
    h = h.wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^= h >> 31;
    const DIGITS: &[u8; 32] = b"0123456789abcdefghijklmnopqrstuv";
    (0..BRANCH_HASH_LENGTH)
        .map(|i| char::from(DIGITS[((h >> (64 - 5 * (i + 1))) & 31) as usize]))
        .collect()
}

/// The branch as one DNS label of at most 55 characters: its slug, shortened, then `-` and its
/// hash; only the hash when the slug is empty (a branch such as `___` or `日本語` is a valid
/// Git branch, and the hash alone names it as uniquely). The namespace is `preview-` and this;
/// it is also the value of the namespace's `marketplace.dev/branch` label and `{branch}` in
/// URL hosts.
pub fn branch_label(branch: &str) -> String {
    let room = 63 - NAMESPACE_PREFIX.len() - 1 - BRANCH_HASH_LENGTH;
    let slug = branch_slug(branch);
    let slug = truncate_label(&slug, room);
    let hash = branch_hash(branch);
    if slug.is_empty() {
        hash
    } else {
        format!("{slug}-{hash}")
    }
}

/// The namespace of the branch's environment: a DNS-1123 label, deterministic, different for
/// every branch (see [`branch_label`]).
pub fn namespace_name(branch: &str) -> String {
    format!("{NAMESPACE_PREFIX}{}", branch_label(branch))
}

/// At most `max` bytes of an ASCII slug, without a trailing `-`.
fn truncate_label(slug: &str, max: usize) -> &str {
    let cut = slug.get(..max.min(slug.len())).unwrap_or(slug);
    cut.trim_end_matches('-')
}

fn is_image_tag(tag: &str) -> bool {
    !tag.is_empty()
        && tag.len() <= MAX_IMAGE_TAG_LENGTH
        && !tag.starts_with(['.', '-'])
        && tag
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
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
