//! The MarketplaceService controller. A reconcile is a pipeline:
//! 1. observe: the object's Deployment (async);
//! 2. validate: the spec, into `Validated`, or a condition naming the field (pure);
//! 3. build: the Deployment, Service and PodDisruptionBudget as data (pure);
//! 4. apply: server-side apply of the children, deletion of the ones no longer built;
//! 5. autoscaler: start, update or stop the service's autoscaler task;
//! 6. status: conditions merged and written once.
//!
//! Replicas: with a `scaling` block the autoscaler task owns the Deployment's replicas;
//! without one they follow `spec.replicas`, the scale subresource's field.

mod apply;
pub mod autoscaler;
pub mod build;
mod error;
#[cfg(test)]
mod fixtures;
pub mod status;
pub mod validate;

use std::future::Future;
use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{Patch, PatchParams};
use kube::core::DeserializeGuard;
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::runtime::reflector::{self, ObjectRef};
use kube::runtime::{Controller, WatchStreamExt, predicates, watcher};
use kube::{Api, Resource, ResourceExt};
use marketplace_crds::v1alpha1::{CacheTier, MarketplaceService};

pub use self::autoscaler::{Autoscalers, Observed, Services, Snapshot, Trigger};
use self::build::{MANAGED_BY_LABEL, Peer};
pub use self::error::Error;
use self::status::{Owned, Replicas};
use self::validate::{Invalid, Validated, validate};
use super::clock::{time_at, unix_now};
use super::conditions::Computed;
use super::{Context, FIELD_MANAGER, WatchBackoff};

/// The controller's name in metrics and logs.
pub const CONTROLLER: &str = "marketplaceservice";

/// What this controller adds to the shared context.
pub struct State {
    pub ctx: Arc<Context>,
    pub autoscalers: Arc<Autoscalers>,
    trigger: Trigger,
    services: Services,
    tiers: reflector::Store<GuardedTier>,
    /// The PodDisruptionBudgets the services own: a reconcile deletes one only when it is
    /// there, rather than sending a DELETE that answers 404 on every reconcile.
    budgets: reflector::Store<PodDisruptionBudget>,
}

type GuardedTier = DeserializeGuard<CacheTier>;

type Guarded = DeserializeGuard<MarketplaceService>;

/// Runs the controller until `shutdown` resolves. Returns once every in-flight reconcile
/// has finished.
pub async fn run(
    ctx: Arc<Context>,
    autoscalers: Arc<Autoscalers>,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) {
    let client = ctx.client.clone();
    // The services as the reconciles read them: without managedFields (a third of a
    // stored object, and never read here), and triggering a reconcile only when the spec
    // changed (a new generation), not on every status write, ours included. Children's
    // changes and the autoscalers' requests trigger the rest.
    let (reader, writer) = reflector::store();
    let services = watcher(
        Api::<Guarded>::all(client.clone()),
        watcher::Config::default(),
    )
    .backoff(WatchBackoff::default())
    .modify(|o| o.managed_fields_mut().clear())
    .reflect(writer)
    .applied_objects()
    .predicate_filter(predicates::generation, Default::default());
    // Only our children: at scale, watching every Deployment of the cluster would cost
    // memory for objects this controller never reads.
    let ours = watcher::Config::default().labels(&format!("{MANAGED_BY_LABEL}={FIELD_MANAGER}"));
    let (budgets, budget_writer) = reflector::store();
    let budget_events = watcher(
        Api::<PodDisruptionBudget>::all(client.clone()),
        ours.clone(),
    )
    .backoff(WatchBackoff::default())
    .modify(|o| o.managed_fields_mut().clear())
    .reflect(budget_writer)
    .touched_objects();
    let (trigger, triggered) = futures::channel::mpsc::unbounded();
    let (tiers, tier_changes) = watch_tiers(client.clone());
    let users_of = reader.clone();
    let controller = Controller::for_stream(services, reader)
        .owns(Api::<Deployment>::all(client.clone()), ours.clone())
        .owns(Api::<Service>::all(client.clone()), ours.clone())
        .owns_stream(budget_events)
        .reconcile_on(triggered)
        .watches_stream(tier_changes, move |tier| users_of_tier(&users_of, &tier))
        .trigger_backoff(WatchBackoff::default())
        .with_config(super::controller_config(&ctx))
        .graceful_shutdown_on(shutdown);
    let state = Arc::new(State {
        ctx,
        autoscalers,
        trigger,
        services: controller.store(),
        tiers,
        budgets,
    });
    controller
        .run(reconcile, error_policy, state.clone())
        .for_each(|result| async move {
            if let Err(error) = result {
                tracing::debug!(%error, "reconcile outcome");
            }
        })
        .await;
    // The autoscalers stop with the controller: a process that lost its lease must not
    // keep scaling.
    state.autoscalers.retain(|_, _, _| false);
}

fn key_of(ns: &str, name: &str) -> String {
    format!("{ns}/{name}")
}

async fn reconcile(obj: Arc<Guarded>, state: Arc<State>) -> Result<Action, Error> {
    let ctx = &state.ctx;
    let _timer = ctx.telemetry.reconcile(CONTROLLER);
    let msvc = match &obj.0 {
        Ok(m) => m,
        Err(invalid) => {
            super::report_malformed::<MarketplaceService>(ctx, invalid).await;
            return Ok(Action::await_change());
        }
    };
    let (Some(ns), Some(name)) = (msvc.metadata.namespace.clone(), msvc.metadata.name.clone())
    else {
        return Ok(Action::await_change());
    };
    let key = key_of(&ns, &name);
    if msvc.metadata.deletion_timestamp.is_some() {
        // Being deleted (in the foreground, or held by another finalizer): its children go
        // with it by owner reference. Applying them again would re-create what the garbage
        // collector just removed, and scaling on would fight the deletion.
        state.autoscalers.stop(&ns, &name);
        ctx.succeeded(&key);
        return Ok(Action::await_change());
    }

    // observe
    let deployments: Api<Deployment> = Api::namespaced(ctx.client.clone(), &ns);
    let existing = deployments
        .get_opt(&name)
        .await
        .map_err(|source| Error::FetchDeployment {
            name: name.clone(),
            source,
        })?;

    // validate
    let v = match validate(msvc) {
        Ok(v) => v,
        Err(invalid) => {
            reject(&state, msvc, &ns, &name, existing.as_ref(), &invalid).await?;
            ctx.succeeded(&key);
            return Ok(Action::await_change());
        }
    };

    // build, apply
    // Until the tiers are listed, "no such tier" would be a guess: built on it, the
    // Deployment would lose its cache settings, then roll again to get them back.
    if v.cache.is_some()
        && tokio::time::timeout(
            std::time::Duration::from_secs(10),
            state.tiers.wait_until_ready(),
        )
        .await
        .is_err()
    {
        return Ok(Action::requeue(std::time::Duration::from_secs(1)));
    }
    let peers = resolve_peers(&state.services, &v);
    let (cache, cache_ready) = resolve_cache(&state.tiers, &v);
    let children = build::build(&v, &peers, cache.as_ref());
    let min_replicas = v.scaling.as_ref().map_or(1, |s| s.policy.min_replicas);
    let applied = apply::apply(
        &ctx.client,
        &ns,
        &children,
        existing.as_ref(),
        v.scaling.is_some(),
        min_replicas,
        state
            .budgets
            .get(&ObjectRef::new(&name).within(&ns))
            .is_some(),
    )
    .await?;
    let replicas = Replicas::of(&applied.deployment);
    if existing.is_none() {
        // A new service: those that call its domain were given the conventional address
        // until now; they are reconciled again to get its real one.
        for dependent in dependents(&state.services, &v) {
            let _ = state.trigger.unbounded_send(dependent);
        }
    }

    // autoscaler
    let mut computed = vec![status::ready_condition(Some(replicas), None)];
    computed.extend(cache_ready);
    let previous = msvc.status.as_ref();
    match &v.scaling {
        Some(scaling) => {
            state.autoscalers.ensure(
                ctx,
                &state.trigger,
                &state.services,
                &ns,
                &name,
                &v.uid,
                scaling,
                Observed {
                    replicas: Some(u32::try_from(replicas.desired).unwrap_or(0)),
                    ready: u32::try_from(replicas.ready).unwrap_or(0),
                },
                previous
                    .map(|s| s.recent_decisions.as_slice())
                    .unwrap_or_default(),
            );
            computed.extend(status::scaling_conditions(
                state.autoscalers.snapshot(&ns, &name).as_ref(),
            ));
        }
        None => {
            let stopped = state.autoscalers.stop(&ns, &name);
            if stopped || previous.is_some_and(|s| s.mode.is_some()) {
                autoscaler::clear_status(ctx, &ns, &name)
                    .await
                    .map_err(|source| Error::ClearAutoscalerStatus {
                        name: name.clone(),
                        source,
                    })?;
            }
            computed.push(status::disabled_condition());
        }
    }

    // status
    let owned = Owned::build(
        previous,
        v.generation,
        Some(replicas),
        Some(build::selector_string(&v)),
        v.scaling.is_none().then_some(v.replicas),
        &computed,
        &time_at(unix_now()),
    );
    write_status(ctx, &ns, &name, &owned, previous).await?;
    ctx.succeeded(&key);
    Ok(Action::requeue(ctx.settings.resync))
}

/// A spec that passed the schema but not `validate()`: a condition that names the fields,
/// a Warning Event when that is news, and no change to any child.
async fn reject(
    state: &State,
    msvc: &MarketplaceService,
    ns: &str,
    name: &str,
    existing: Option<&Deployment>,
    invalid: &Invalid,
) -> Result<(), Error> {
    let ctx = &state.ctx;
    let message = invalid.to_string();
    let previous = msvc.status.as_ref();
    let mut computed = vec![status::ready_condition(
        existing.map(Replicas::of),
        Some(&message),
    )];
    // A running autoscaler keeps the last valid policy: a bad edit must not stop scaling.
    if msvc.spec.scaling.is_some() {
        computed.extend(status::scaling_conditions(
            state.autoscalers.snapshot(ns, name).as_ref(),
        ));
    } else {
        computed.push(status::disabled_condition());
    }
    let was_reported = previous.is_some_and(|s| {
        s.conditions.iter().any(|c| {
            c.type_ == status::types::READY
                && c.reason == status::reasons::INVALID_SPEC
                && c.message == message
        })
    });
    let owned = Owned::build(
        previous,
        msvc.metadata.generation,
        existing.map(Replicas::of),
        previous.and_then(|s| s.selector.clone()),
        None,
        &computed,
        &time_at(unix_now()),
    );
    write_status(ctx, ns, name, &owned, previous).await?;
    if !was_reported {
        tracing::warn!(namespace = ns, name, %message, "invalid MarketplaceService");
        publish(
            ctx,
            msvc,
            EventType::Warning,
            status::reasons::INVALID_SPEC,
            message,
        )
        .await;
    }
    Ok(())
}

async fn write_status(
    ctx: &Context,
    ns: &str,
    name: &str,
    owned: &Owned,
    previous: Option<&marketplace_crds::v1alpha1::MarketplaceServiceStatus>,
) -> Result<(), Error> {
    if owned.is_current(previous) {
        return Ok(());
    }
    let api: Api<MarketplaceService> = Api::namespaced(ctx.client.clone(), ns);
    api.patch_status(
        name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(owned.patch()),
    )
    .await
    .map_err(|source| Error::UpdateStatus {
        name: name.to_owned(),
        source,
    })?;
    Ok(())
}

/// The services of the same namespace that call `v`'s domain.
fn dependents(services: &Services, v: &Validated) -> Vec<ObjectRef<Guarded>> {
    services
        .state()
        .iter()
        .filter_map(|o| o.0.as_ref().ok())
        .filter(|m| {
            m.metadata.namespace.as_deref() == Some(v.namespace.as_str())
                && m.metadata.name.as_deref() != Some(v.name.as_str())
                && m.spec.depends_on.contains(&v.domain)
        })
        .filter_map(|m| Some(object_ref(&v.namespace, m.metadata.name.as_deref()?)))
        .collect()
}

/// The wiring of the service's cache tier, and its `CacheReady` condition. A missing tier is
/// a condition, not a failure, and the service runs without the cache: its Secret would not
/// exist either, and a required reference to it would keep the pods from starting.
fn resolve_cache(
    tiers: &reflector::Store<GuardedTier>,
    v: &Validated,
) -> (Option<build::CacheWiring>, Option<Computed>) {
    use super::conditions::{FALSE, TRUE, UNKNOWN};
    let Some(cache) = &v.cache else {
        return (None, None);
    };
    let tier = tiers.get(&ObjectRef::new(&cache.tier).within(&v.namespace));
    let Some(tier) = tier.as_ref().and_then(|t| t.0.as_ref().ok()) else {
        return (
            None,
            Some(Computed::new(
                status::types::CACHE_READY,
                FALSE,
                status::reasons::TIER_NOT_FOUND,
                format!(
                    "no CacheTier {:?} in namespace {:?}; the service runs without its cache",
                    cache.tier, v.namespace
                ),
            )),
        );
    };
    let wiring = build::CacheWiring::to_tier(&cache.tier, &v.namespace, &cache.key_prefix);
    let condition = match super::cache_tier::readiness(tier) {
        Some((s, _, message)) if s == TRUE => Computed::new(
            status::types::CACHE_READY,
            TRUE,
            status::reasons::TIER_READY,
            format!("CacheTier {}: {message}", cache.tier),
        ),
        Some((_, reason, message)) => Computed::new(
            status::types::CACHE_READY,
            FALSE,
            status::reasons::TIER_NOT_READY,
            format!(
                "CacheTier {} is not ready ({reason}): {message}",
                cache.tier
            ),
        ),
        None => Computed::new(
            status::types::CACHE_READY,
            UNKNOWN,
            status::reasons::TIER_PENDING,
            format!("CacheTier {} has no status yet", cache.tier),
        ),
    };
    (Some(wiring), Some(condition))
}

/// The cache tiers, in a store, and a stream of the tiers that appeared, went, or changed
/// readiness: not every status write, which refreshes a tier's figures every few seconds.
fn watch_tiers(
    client: kube::Client,
) -> (
    reflector::Store<GuardedTier>,
    impl futures::Stream<Item = Result<GuardedTier, watcher::Error>> + Send + 'static,
) {
    let (reader, writer) = reflector::store();
    let mut seen: std::collections::HashMap<ObjectRef<GuardedTier>, Option<(String, String)>> =
        std::collections::HashMap::new();
    let changes = watcher(Api::<GuardedTier>::all(client), watcher::Config::default())
        .backoff(WatchBackoff::default())
        .modify(|o| o.managed_fields_mut().clear())
        .reflect(writer)
        .filter_map(move |event| {
            let changed = match event {
                Ok(watcher::Event::Apply(t) | watcher::Event::InitApply(t)) => {
                    let key = ObjectRef::from_obj(&t);
                    let now =
                        t.0.as_ref()
                            .ok()
                            .and_then(super::cache_tier::readiness)
                            .map(|(s, r, _)| (s, r));
                    let before = seen.insert(key, now.clone());
                    (before != Some(now)).then_some(Ok(t))
                }
                Ok(watcher::Event::Delete(t)) => {
                    seen.remove(&ObjectRef::from_obj(&t));
                    Some(Ok(t))
                }
                Ok(_) => None,
                // Retried by this watch's own backoff. Passed on, the error would also grow
                // the backoff the controller shares among its watches, and after a
                // compaction delay every other watch's relist.
                Err(error) => {
                    tracing::debug!(%error, "CacheTier watch");
                    None
                }
            };
            futures::future::ready(changed)
        });
    (reader, changes)
}

/// The services of the tier's namespace that use it.
fn users_of_tier(
    services: &reflector::Store<Guarded>,
    tier: &GuardedTier,
) -> Vec<ObjectRef<Guarded>> {
    let meta = tier.meta();
    let (Some(ns), Some(name)) = (&meta.namespace, &meta.name) else {
        return Vec::new();
    };
    services
        .state()
        .iter()
        .filter_map(|o| o.0.as_ref().ok())
        .filter(|m| {
            m.metadata.namespace.as_ref() == Some(ns)
                && m.spec.cache.as_ref().is_some_and(|c| &c.name == name)
        })
        .filter_map(|m| Some(object_ref(ns, m.metadata.name.as_deref()?)))
        .collect()
}

/// Each peer's address: the MarketplaceService of that domain in the same namespace, or
/// the conventional name until it exists.
fn resolve_peers(services: &Services, v: &Validated) -> Vec<Peer> {
    if v.depends_on.is_empty() {
        return Vec::new();
    }
    // One snapshot of the store per reconcile, not one per peer.
    let all = services.state();
    v.depends_on
        .iter()
        .map(|domain| {
            all.iter()
                .filter_map(|o| o.0.as_ref().ok())
                .find(|m| {
                    m.metadata.namespace.as_deref() == Some(v.namespace.as_str())
                        && m.spec.domain == *domain
                })
                .and_then(|m| {
                    let name = m.metadata.name.as_deref()?;
                    Some(Peer::at(domain, name, &v.namespace, m.spec.port))
                })
                .unwrap_or_else(|| Peer::conventional(domain, &v.namespace))
        })
        .collect()
}

async fn publish(
    ctx: &Context,
    msvc: &MarketplaceService,
    type_: EventType,
    reason: &str,
    note: String,
) {
    super::publish(ctx, &msvc.object_ref(&()), type_, reason, note).await;
}

/// Transient errors retry with backoff and jitter; a write the API server rejected is
/// also told to the user as a Warning Event, since retrying alone will not fix it.
fn error_policy(obj: Arc<Guarded>, error: &Error, state: Arc<State>) -> Action {
    let Ok(msvc) = &obj.0 else {
        state
            .ctx
            .telemetry
            .reconcile_failed(CONTROLLER, error.reason());
        return Action::await_change();
    };
    let key = key_of(
        msvc.metadata.namespace.as_deref().unwrap_or_default(),
        msvc.metadata.name.as_deref().unwrap_or_default(),
    );
    let tell = error.is_rejected().then(|| msvc.object_ref(&()));
    super::retry_later(&state.ctx, CONTROLLER, &key, error.reason(), error, tell)
}

/// The object reference a trigger sends for a service.
pub fn object_ref(namespace: &str, name: &str) -> ObjectRef<Guarded> {
    ObjectRef::new(name).within(namespace)
}
