//! The CacheTier controller. A reconcile:
//! 1. validate: the spec into a `Tier`, or a condition naming the field (pure);
//! 2. secret: the password Secret, created once, never rewritten;
//! 3. live: the settings Redis can change at run time, by one all-or-nothing `CONFIG SET`; a
//!    value Redis refuses stops the reconcile here, so nothing of it is applied anywhere;
//! 4. apply: the children by server-side apply (`build`), the ones of another mode deleted;
//! 5. flushes: each requested prefix flush, once per id, resumable;
//! 6. status: `INFO` figures and conditions, written once.
//!
//! Redis out of reach (not yet started, a network policy, a restart) is a condition, not a
//! failure: the children are still applied, and the settings reach Redis through its config
//! file when it starts, or by `CONFIG SET` on the next reconcile.

pub mod build;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{ConfigMap, Secret, Service};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::core::DeserializeGuard;
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::runtime::{Controller, WatchStreamExt, predicates, reflector, watcher};
use kube::{Api, Client, Resource, ResourceExt};
use marketplace_crds::v1alpha1::{CacheMode, CacheTier, CacheTierStatus, CompletedFlush};
use serde::Serialize;
use serde_json::json;

use self::build::{Children, Invalid, Tier, names};
use super::clock::{time_at, unix_now};
use super::conditions::{self, Computed, FALSE, TRUE, UNKNOWN};
use super::{Context, FIELD_MANAGER, WatchBackoff, error_chain};
use crate::cache::{Address, Admin, CacheError, Info, Resolve, Timeouts, flush};

/// The controller's name in metrics and logs.
pub const CONTROLLER: &str = "cachetier";

/// Condition types.
pub mod types {
    pub const READY: &str = "Ready";
    pub const CONFIGURED: &str = "Configured";
    pub const REPLICATING: &str = "Replicating";
}

/// Condition reasons.
pub mod reasons {
    pub const AVAILABLE: &str = "Available";
    pub const PODS_STARTING: &str = "PodsStarting";
    pub const UNREACHABLE: &str = "RedisUnreachable";
    pub const INVALID_SPEC: &str = "InvalidSpec";
    pub const APPLIED: &str = "AppliedLive";
    pub const PENDING: &str = "PendingRestart";
    pub const CONFIG_REJECTED: &str = "ConfigRejected";
    pub const REPLICAS_ONLINE: &str = "ReplicasOnline";
    pub const REPLICAS_BEHIND: &str = "ReplicasNotOnline";
    pub const FLUSHED: &str = "PrefixFlushed";
    pub const FLUSH_FAILED: &str = "FlushFailed";
}

use reasons as r;
use types as t;

/// What the CacheTier controller needs beyond the shared context.
#[derive(Clone)]
pub struct CacheSettings {
    /// Where the operator reaches each tier's Redis.
    pub resolver: Arc<dyn Resolve>,
    /// How often a tier's `INFO` figures are refreshed in status.
    pub stats_every: Duration,
    pub timeouts: Timeouts,
    /// SCAN steps a reconcile spends on flushes before writing progress and going on.
    pub flush_batches_per_reconcile: usize,
}

impl CacheSettings {
    pub fn new(resolver: Arc<dyn Resolve>) -> Self {
        Self {
            resolver,
            stats_every: Duration::from_secs(30),
            timeouts: Timeouts::default(),
            flush_batches_per_reconcile: 500,
        }
    }
}

struct State {
    ctx: Arc<Context>,
    cache: CacheSettings,
}

type Guarded = DeserializeGuard<CacheTier>;

/// Runs the controller until `shutdown` resolves; returns once every in-flight reconcile has
/// finished.
pub async fn run(
    ctx: Arc<Context>,
    cache: CacheSettings,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) {
    let client = ctx.client.clone();
    let (reader, writer) = reflector::store();
    let tiers = watcher(
        Api::<Guarded>::all(client.clone()),
        watcher::Config::default(),
    )
    .backoff(WatchBackoff::default())
    .modify(|o| o.managed_fields_mut().clear())
    .reflect(writer)
    .applied_objects()
    .predicate_filter(predicates::generation, Default::default());
    // Only the tiers' children; the Secret is read and created, never watched, so the
    // operator needs no right to list the cluster's Secrets.
    let ours = watcher::Config::default().labels(&format!(
        "{}={FIELD_MANAGER},app.kubernetes.io/component=cache",
        super::marketplace_service::build::MANAGED_BY_LABEL
    ));
    Controller::for_stream(tiers, reader)
        .owns(Api::<ConfigMap>::all(client.clone()), ours.clone())
        .owns(Api::<Deployment>::all(client.clone()), ours.clone())
        .owns(Api::<StatefulSet>::all(client.clone()), ours.clone())
        .owns(Api::<Service>::all(client.clone()), ours.clone())
        .owns(Api::<PodDisruptionBudget>::all(client.clone()), ours)
        .trigger_backoff(WatchBackoff::default())
        .with_config(super::controller_config(&ctx))
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, Arc::new(State { ctx, cache }))
        .for_each(|result| async move {
            if let Err(error) = result {
                tracing::debug!(%error, "reconcile outcome");
            }
        })
        .await;
}

/// The reconcile's errors: each a failed API call or a Secret the operator cannot use.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("failed to read or create the password Secret {name}")]
    Secret {
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("the Secret {name} has no `password` key of UTF-8 text; delete it to get a new one")]
    SecretUnusable { name: String },
    #[error("no entropy for a password")]
    Entropy(#[source] getrandom::Error),
    #[error("failed to apply {kind} {name}")]
    Apply {
        kind: &'static str,
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("failed to delete {kind} {name}")]
    Delete {
        kind: &'static str,
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("failed to update the status of {name}")]
    UpdateStatus {
        name: String,
        #[source]
        source: kube::Error,
    },
}

impl Error {
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Secret { .. } => "Secret",
            Self::SecretUnusable { .. } => "SecretUnusable",
            Self::Entropy(_) => "Entropy",
            Self::Apply { .. } => "Apply",
            Self::Delete { .. } => "Delete",
            Self::UpdateStatus { .. } => "UpdateStatus",
        }
    }

    /// Whether retrying alone will not fix it: the user is told by an Event.
    fn needs_user(&self) -> bool {
        let rejected = |e: &kube::Error| matches!(e, kube::Error::Api(s) if (400..500).contains(&s.code) && s.code != 409 && s.code != 429);
        match self {
            Self::SecretUnusable { .. } => true,
            Self::Secret { source, .. }
            | Self::Apply { source, .. }
            | Self::Delete { source, .. }
            | Self::UpdateStatus { source, .. } => rejected(source),
            Self::Entropy(_) => false,
        }
    }
}

async fn reconcile(obj: Arc<Guarded>, state: Arc<State>) -> Result<Action, Error> {
    let ctx = &state.ctx;
    let _timer = ctx.telemetry.reconcile(CONTROLLER);
    let tier = match &obj.0 {
        Ok(t) => t,
        Err(invalid) => {
            super::report_malformed::<CacheTier>(ctx, invalid).await;
            return Ok(Action::await_change());
        }
    };
    if tier.metadata.deletion_timestamp.is_some() {
        // Its children go with it by owner reference.
        return Ok(Action::await_change());
    }
    let key = format!(
        "{}/{}",
        tier.namespace().unwrap_or_default(),
        tier.name_any()
    );
    let previous = tier.status.clone().unwrap_or_default();

    // validate
    let t = match build::validate(tier) {
        Ok(t) => t,
        Err(invalid) => {
            reject(ctx, tier, &previous, &invalid).await?;
            ctx.succeeded(&key);
            return Ok(Action::await_change());
        }
    };

    // secret
    let password = ensure_secret(&ctx.client, &t).await?;

    // live
    let address = Address {
        host: build::endpoint_host(&t.name, &t.namespace),
        port: build::REDIS_PORT,
    };
    let route = state.cache.resolver.resolve(&address);
    let mut admin = Admin::connect(&route, Some(&password), state.cache.timeouts).await;
    let settings = build::live_settings(&t);
    let mut configured = match &mut admin {
        Ok(a) => a.config_set(&settings).await,
        Err(_) => Ok(()),
    };
    if let Err(CacheError::Refused { setting, message }) = &configured {
        let field = field_of(setting);
        let note = format!("{field}: Redis refused it ({message}); nothing was changed");
        let computed = vec![
            Computed::new(
                t::READY,
                status_of(previous_ready(&previous)),
                r::CONFIG_REJECTED,
                note.clone(),
            ),
            Computed::new(t::CONFIGURED, FALSE, r::CONFIG_REJECTED, note.clone()),
        ];
        write_status(
            ctx,
            &t,
            &previous,
            &computed,
            None,
            &previous.completed_flushes,
        )
        .await?;
        if !already_said(&previous, t::CONFIGURED, &note) {
            publish(ctx, tier, EventType::Warning, r::CONFIG_REJECTED, note).await;
        }
        ctx.succeeded(&key);
        return Ok(Action::requeue(state.cache.stats_every));
    }
    // Replicas take the same settings; each one's failure only lowers the condition.
    if t.mode == CacheMode::PrimaryReplica && configured.is_ok() {
        for host in build::pod_hosts(&t).into_iter().skip(1) {
            let route = state.cache.resolver.resolve(&Address {
                host,
                port: build::REDIS_PORT,
            });
            if route == state.cache.resolver.resolve(&address) {
                continue;
            }
            let result = match Admin::connect(&route, Some(&password), state.cache.timeouts).await {
                Ok(mut replica) => replica.config_set(&settings).await,
                Err(e) => Err(e),
            };
            if let Err(e) = result {
                configured = Err(e);
                break;
            }
        }
    }

    // apply
    let children = build::build(&t);
    let spec_changed = previous.observed_generation != t.generation;
    let workload = apply(&ctx.client, &t, &children, spec_changed).await?;

    // flushes, INFO
    let mut completed = previous.completed_flushes.clone();
    let mut flush_failure = None;
    let mut more_to_flush = false;
    let mut finished = Vec::new();
    let info = match &mut admin {
        Ok(a) => {
            let mut budget = state.cache.flush_batches_per_reconcile;
            for request in &tier.spec.flushes {
                if completed.iter().any(|c| c.id == request.id) || budget == 0 {
                    more_to_flush |= budget == 0;
                    continue;
                }
                let progress = flush::progress_key(&t.uid, &request.id);
                match flush::flush_prefix(a, &progress, &request.prefix, flush::BATCH, Some(budget))
                    .await
                {
                    Ok(p) if p.done => {
                        tracing::info!(tier = %key, id = %request.id, prefix = %request.prefix, removed = p.removed, "prefix flushed");
                        completed.push(CompletedFlush {
                            id: request.id.clone(),
                            prefix: request.prefix.clone(),
                            keys_deleted: i64::try_from(p.removed).unwrap_or(i64::MAX),
                            completed_at: time_at(unix_now()),
                        });
                        finished.push((request.clone(), progress, p.removed));
                    }
                    Ok(_) => {
                        more_to_flush = true;
                        budget = 0;
                    }
                    Err(e) => {
                        flush_failure = Some(format!("flush {}: {}", request.id, error_chain(&e)));
                        break;
                    }
                }
            }
            a.info().await.ok()
        }
        Err(_) => None,
    };
    // Completed entries are kept for the ids still requested (so a repeat does nothing), and
    // a few of the others for the record.
    let requested = |id: &str| tier.spec.flushes.iter().any(|f| f.id == id);
    let mut kept: Vec<CompletedFlush> = completed
        .iter()
        .filter(|c| requested(&c.id))
        .cloned()
        .collect();
    let others: Vec<CompletedFlush> = completed
        .iter()
        .filter(|c| !requested(&c.id))
        .cloned()
        .collect();
    kept.extend(others.into_iter().rev().take(16).rev());

    // status
    let reach = admin.as_ref().map(|_| ()).map_err(|e| error_chain(e));
    let computed = conditions_for(&t, &workload, &reach, &configured, info.as_ref());
    write_status(ctx, &t, &previous, &computed, info.as_ref(), &kept).await?;
    for (request, progress, removed) in finished {
        if let Ok(a) = &mut admin {
            // Recorded in status now: the progress in Redis has served its purpose. Should
            // this fail, the key expires on its own.
            let _ = flush::forget(a, &progress).await;
        }
        publish(
            ctx,
            tier,
            EventType::Normal,
            r::FLUSHED,
            format!(
                "flush {} removed {removed} keys under {:?}",
                request.id, request.prefix
            ),
        )
        .await;
    }
    if let Some(note) = flush_failure {
        publish(ctx, tier, EventType::Warning, r::FLUSH_FAILED, note).await;
    }
    ctx.succeeded(&key);
    Ok(if more_to_flush {
        Action::requeue(Duration::ZERO)
    } else {
        Action::requeue(state.cache.stats_every.min(ctx.settings.resync))
    })
}

/// The spec field a refused Redis setting comes from.
fn field_of(setting: &str) -> String {
    match setting {
        "maxmemory" => "spec.maxMemory".to_owned(),
        "maxmemory-policy" => "spec.evictionPolicy".to_owned(),
        other => format!("spec.config[{other}]"),
    }
}

fn previous_ready(previous: &CacheTierStatus) -> Option<bool> {
    previous
        .conditions
        .iter()
        .find(|c| c.type_ == t::READY)
        .map(|c| c.status == TRUE)
}

fn status_of(ready: Option<bool>) -> &'static str {
    match ready {
        Some(true) => TRUE,
        Some(false) => FALSE,
        None => UNKNOWN,
    }
}

fn already_said(previous: &CacheTierStatus, type_: &str, message: &str) -> bool {
    previous
        .conditions
        .iter()
        .any(|c| c.type_ == type_ && c.message == message)
}

/// The password, from the Secret; the Secret is created with a new one when missing. A Secret
/// made beforehand (to bring a password of one's own) is used as it is.
async fn ensure_secret(client: &Client, t: &Tier) -> Result<String, Error> {
    let name = names::secret(&t.name);
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &t.namespace);
    let failed = |source| Error::Secret {
        name: name.clone(),
        source,
    };
    let existing = match secrets.get_opt(&name).await.map_err(failed)? {
        Some(s) => s,
        None => {
            let password = build::generate_password().map_err(Error::Entropy)?;
            let params = PostParams {
                field_manager: Some(FIELD_MANAGER.to_owned()),
                ..PostParams::default()
            };
            match secrets
                .create(&params, &build::build_secret(t, &password))
                .await
            {
                Ok(_) => {
                    tracing::info!(namespace = %t.namespace, secret = %name, "created the tier's password Secret");
                    return Ok(password);
                }
                // Another replica of the operator (or a user) was first: theirs stands.
                Err(kube::Error::Api(s)) if s.code == 409 => {
                    secrets.get(&name).await.map_err(failed)?
                }
                Err(e) => return Err(failed(e)),
            }
        }
    };
    existing
        .data
        .as_ref()
        .and_then(|d| d.get(build::PASSWORD_KEY))
        .and_then(|b| String::from_utf8(b.0.clone()).ok())
        .filter(|p| !p.is_empty())
        .ok_or(Error::SecretUnusable { name })
}

/// The workload's readiness after the apply.
#[derive(Clone, Copy, Debug, Default)]
struct Workload {
    desired: i32,
    ready: i32,
}

async fn ssa<K>(client: &Client, ns: &str, obj: &K, kind: &'static str) -> Result<K, Error>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + Serialize
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    let name = obj.meta().name.clone().unwrap_or_default();
    let api: Api<K> = Api::namespaced(client.clone(), ns);
    api.patch(
        &name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(obj),
    )
    .await
    .map_err(|source| Error::Apply { kind, name, source })
}

async fn delete<K>(client: &Client, ns: &str, name: &str, kind: &'static str) -> Result<(), Error>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    let api: Api<K> = Api::namespaced(client.clone(), ns);
    match api.delete(name, &DeleteParams::default()).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(source) => Err(Error::Delete {
            kind,
            name: name.to_owned(),
            source,
        }),
    }
}

/// Applies the children. The ones of the other mode are deleted when the spec changed (a
/// mode switch always changes it), not on every resync.
async fn apply(
    client: &Client,
    t: &Tier,
    c: &Children,
    spec_changed: bool,
) -> Result<Workload, Error> {
    let ns = t.namespace.as_str();
    ssa(client, ns, &c.config, "ConfigMap").await?;
    ssa(client, ns, &c.service, "Service").await?;
    for (built, name) in [
        (&c.headless_service, names::headless(&t.name)),
        (&c.read_service, names::read(&t.name)),
    ] {
        match built {
            Some(s) => {
                ssa(client, ns, s, "Service").await?;
            }
            None if spec_changed => delete::<Service>(client, ns, &name, "Service").await?,
            None => {}
        }
    }
    let server = names::server(&t.name);
    let workload = match (&c.deployment, &c.stateful_set) {
        (Some(d), _) => {
            if spec_changed {
                delete::<StatefulSet>(client, ns, &server, "StatefulSet").await?;
            }
            let d = ssa(client, ns, d, "Deployment").await?;
            Workload {
                desired: d.spec.replicas.unwrap_or(1),
                ready: d.status.and_then(|s| s.ready_replicas).unwrap_or(0),
            }
        }
        (None, Some(s)) => {
            if spec_changed {
                delete::<Deployment>(client, ns, &server, "Deployment").await?;
            }
            let s = ssa(client, ns, s, "StatefulSet").await?;
            Workload {
                desired: s.spec.replicas.unwrap_or(1),
                ready: s.status.and_then(|s| s.ready_replicas).unwrap_or(0),
            }
        }
        (None, None) => Workload::default(),
    };
    ssa(client, ns, &c.disruption_budget, "PodDisruptionBudget").await?;
    Ok(workload)
}

fn conditions_for(
    t: &Tier,
    workload: &Workload,
    reach: &Result<(), String>,
    configured: &Result<(), CacheError>,
    info: Option<&Info>,
) -> Vec<Computed> {
    let ready = match reach {
        Err(e) => Computed::new(
            t::READY,
            FALSE,
            r::UNREACHABLE,
            format!("the operator cannot reach Redis: {e}"),
        ),
        Ok(()) if workload.ready < workload.desired.max(1) => Computed::new(
            t::READY,
            FALSE,
            r::PODS_STARTING,
            format!("{}/{} Redis pods ready", workload.ready, workload.desired),
        ),
        Ok(()) => Computed::new(
            t::READY,
            TRUE,
            r::AVAILABLE,
            format!(
                "Redis answers; {}/{} pods ready",
                workload.ready, workload.desired
            ),
        ),
    };
    let configured = match (reach, configured) {
        (Err(_), _) => Computed::new(
            t::CONFIGURED,
            FALSE,
            r::PENDING,
            "Redis is out of reach: the settings are in its config file and take effect when it \
             starts, or live once it answers",
        ),
        (Ok(()), Ok(())) => Computed::new(
            t::CONFIGURED,
            TRUE,
            r::APPLIED,
            format!(
                "maxmemory {} bytes, {} and {} more settings applied live",
                t.max_memory_bytes,
                t.eviction_policy.as_redis(),
                t.config.len()
            ),
        ),
        (Ok(()), Err(e)) => Computed::new(t::CONFIGURED, FALSE, r::UNREACHABLE, error_chain(e)),
    };
    let mut out = vec![ready, configured];
    if t.mode == CacheMode::PrimaryReplica {
        let online = info.map_or(0, |i| i.online_replicas);
        let (status, reason) = if online >= t.read_replicas {
            (TRUE, r::REPLICAS_ONLINE)
        } else {
            (FALSE, r::REPLICAS_BEHIND)
        };
        out.push(Computed::new(
            t::REPLICATING,
            status,
            reason,
            format!("{online} of {} read replicas online", t.read_replicas),
        ));
    }
    out
}

/// Writes the status the reconcile owns; the `INFO` figures are left out when Redis did not
/// answer, rather than shown stale.
async fn write_status(
    ctx: &Context,
    t: &Tier,
    previous: &CacheTierStatus,
    computed: &[Computed],
    info: Option<&Info>,
    completed: &[CompletedFlush],
) -> Result<(), Error> {
    let now: Time = time_at(unix_now());
    let status = CacheTierStatus {
        observed_generation: t.generation,
        endpoint: Some(format!(
            "{}:{}",
            build::endpoint_host(&t.name, &t.namespace),
            build::REDIS_PORT
        )),
        password_secret_name: Some(names::secret(&t.name)),
        memory_used: info.and_then(|i| i.used_memory_human.clone()),
        memory_used_bytes: info.and_then(|i| i.used_memory),
        // Four decimals: the printer column shows the number as stored.
        hit_ratio: info
            .and_then(Info::hit_ratio)
            .map(|h| (h * 10_000.0).round() / 10_000.0),
        evicted_keys: info.and_then(|i| i.evicted_keys),
        connected_clients: info.and_then(|i| i.connected_clients),
        ops_per_second: info.and_then(|i| i.ops_per_second),
        conditions: conditions::merge(&previous.conditions, computed, t.generation, &now),
        completed_flushes: completed.to_vec(),
    };
    patch_status(ctx, &t.namespace, &t.name, &status, previous).await
}

/// Writes `status` by server-side apply, unless it is what the object already has.
async fn patch_status(
    ctx: &Context,
    ns: &str,
    name: &str,
    status: &CacheTierStatus,
    previous: &CacheTierStatus,
) -> Result<(), Error> {
    if status == previous {
        return Ok(());
    }
    let api: Api<CacheTier> = Api::namespaced(ctx.client.clone(), ns);
    api.patch_status(
        name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(json!({
            "apiVersion": "marketplace.dev/v1alpha1",
            "kind": "CacheTier",
            "status": status,
        })),
    )
    .await
    .map_err(|source| Error::UpdateStatus {
        name: name.to_owned(),
        source,
    })?;
    Ok(())
}

/// A spec that failed validation: conditions naming the fields, a Warning Event when that is
/// news, and nothing applied anywhere.
async fn reject(
    ctx: &Context,
    tier: &CacheTier,
    previous: &CacheTierStatus,
    invalid: &Invalid,
) -> Result<(), Error> {
    let (Some(ns), Some(name)) = (tier.metadata.namespace.clone(), tier.metadata.name.clone())
    else {
        return Ok(());
    };
    let message = invalid.to_string();
    let now: Time = time_at(unix_now());
    let computed = [
        Computed::new(
            t::READY,
            status_of(previous_ready(previous)),
            r::INVALID_SPEC,
            message.clone(),
        ),
        Computed::new(t::CONFIGURED, FALSE, r::INVALID_SPEC, message.clone()),
    ];
    let mut status = previous.clone();
    status.observed_generation = tier.metadata.generation;
    status.conditions = conditions::merge(
        &previous.conditions,
        &computed,
        tier.metadata.generation,
        &now,
    );
    patch_status(ctx, &ns, &name, &status, previous).await?;
    if !already_said(previous, t::CONFIGURED, &message) {
        tracing::warn!(namespace = %ns, name = %name, %message, "invalid CacheTier");
        publish(ctx, tier, EventType::Warning, r::INVALID_SPEC, message).await;
    }
    Ok(())
}

async fn publish(ctx: &Context, tier: &CacheTier, type_: EventType, reason: &str, note: String) {
    super::publish(ctx, &tier.object_ref(&()), type_, reason, note).await;
}

fn error_policy(obj: Arc<Guarded>, error: &Error, state: Arc<State>) -> Action {
    let Ok(tier) = &obj.0 else {
        state
            .ctx
            .telemetry
            .reconcile_failed(CONTROLLER, error.reason());
        return Action::await_change();
    };
    let key = format!(
        "{}/{}",
        tier.namespace().unwrap_or_default(),
        tier.name_any()
    );
    let tell = error.needs_user().then(|| tier.object_ref(&()));
    super::retry_later(&state.ctx, CONTROLLER, &key, error.reason(), error, tell)
}

/// The tier's readiness as a service using it sees it: `(status, reason, message)` of its
/// `Ready` condition, when it has one.
pub fn readiness(tier: &CacheTier) -> Option<(String, String, String)> {
    tier.status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == t::READY)
        .map(|c| (c.status.clone(), c.reason.clone(), c.message.clone()))
}
