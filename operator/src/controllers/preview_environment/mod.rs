//! The PreviewEnvironment controller. A reconcile is a pipeline:
//! 1. validate: the spec, into `Validated`, or a condition naming the field (pure);
//! 2. expire: past the TTL (on the controllers' clock) the namespace goes, phase Expired;
//! 3. observe: the environment's namespace, the source namespace and its services (async);
//! 4. plan: the copies, checked against the sources and the quota (pure);
//! 5. build: namespace, quota, limits, policies, cache tier, copies, ingresses (pure);
//! 6. apply: server-side apply of the children, deletion of the ones no longer built;
//! 7. status: conditions merged, the phase derived from them, written once.
//!
//! The namespace is cluster-scoped like the PreviewEnvironment: it carries an owner reference
//! and, because its deletion is the point of deleting an environment, a finalizer holds the
//! PreviewEnvironment until the namespace and everything in it are gone. Bad input (a missing
//! source, a quota too small, ...) and a write the API server rejects leave no namespace:
//! a half-built environment would only hold quota and confuse. Expiry removes the namespace
//! but keeps the object, phase Expired: a GitOps tool that created it would otherwise create
//! it again with a fresh TTL, and the user sees why the URLs stopped answering.

mod apply;
pub mod build;
mod error;
pub mod status;
pub mod validate;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{ListParams, Patch, PatchParams};
use kube::core::DeserializeGuard;
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::runtime::finalizer::{self, Event as Finalizing};
use kube::runtime::reflector::{self, ObjectRef};
use kube::runtime::{Controller, WatchStreamExt, watcher};
use kube::{Api, Resource, ResourceExt};
use marketplace_crds::v1alpha1::{
    MarketplaceService, PreviewEnvironment, PreviewEnvironmentStatus, PreviewPhase,
};

use self::apply::Removal;
use self::build::{MANAGED_BY_LABEL, PREVIEW_UID_LABEL};
pub use self::error::Error;
use self::status::{Outcome, Owned, ServiceState, reasons};
use self::validate::{Validated, validate};
use super::clock::{time_at, unix_now};
use super::{Context, FIELD_MANAGER, WatchBackoff, error_chain};

/// The controller's name in metrics and logs.
pub const CONTROLLER: &str = "previewenvironment";
/// Held by every PreviewEnvironment until its namespace has gone.
pub const FINALIZER: &str = "marketplace.dev/preview-namespace";
/// How often a reconcile looks again while a namespace terminates (the namespace's watch
/// usually says so sooner).
const TERMINATING_POLL: Duration = Duration::from_secs(2);

type Guarded = DeserializeGuard<PreviewEnvironment>;

/// Runs the controller until `shutdown` resolves. Returns once every in-flight reconcile
/// has finished.
pub async fn run(ctx: Arc<Context>, shutdown: impl Future<Output = ()> + Send + Sync + 'static) {
    let client = ctx.client.clone();
    let (reader, writer) = reflector::store();
    // Every change counts, not only a new generation: the finalizer's addition and the
    // deletion timestamp change metadata alone. Status writes that change nothing are
    // skipped, so this does not loop.
    let environments = watcher(
        Api::<Guarded>::all(client.clone()),
        watcher::Config::default(),
    )
    .backoff(WatchBackoff::default())
    .modify(|o| o.managed_fields_mut().clear())
    .reflect(writer)
    .applied_objects();
    let ours = watcher::Config::default().labels(&format!(
        "{MANAGED_BY_LABEL}={FIELD_MANAGER},{PREVIEW_UID_LABEL}"
    ));
    Controller::for_stream(environments, reader)
        // Namespaces are cluster-scoped like their owner, so owner references map them.
        .owns(Api::<Namespace>::all(client.clone()), ours.clone())
        // The copies live in the preview namespace while their owner is cluster-scoped: the
        // owner mapping would look for it in that namespace, so they are mapped here.
        .watches(
            Api::<MarketplaceService>::all(client.clone()),
            ours,
            environment_of,
        )
        .trigger_backoff(WatchBackoff::default())
        .with_config(super::controller_config(&ctx))
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, ctx)
        .for_each(|result| async move {
            if let Err(error) = result {
                tracing::debug!(%error, "reconcile outcome");
            }
        })
        .await;
}

/// The PreviewEnvironment a copy belongs to, by its controller owner reference.
fn environment_of(copy: MarketplaceService) -> Option<ObjectRef<Guarded>> {
    copy.metadata
        .owner_references
        .iter()
        .flatten()
        .find(|r| r.kind == "PreviewEnvironment" && r.controller == Some(true))
        .map(|r| ObjectRef::new(&r.name))
}

async fn reconcile(obj: Arc<Guarded>, ctx: Arc<Context>) -> Result<Action, Error> {
    let _timer = ctx.telemetry.reconcile(CONTROLLER);
    let penv = match &obj.0 {
        Ok(p) => p,
        Err(invalid) => return malformed(&ctx, invalid).await,
    };
    let api = Api::<PreviewEnvironment>::all(ctx.client.clone());
    finalizer::finalizer(&api, FINALIZER, Arc::new(penv.clone()), |event| async {
        match event {
            Finalizing::Apply(p) => provision(&ctx, &p).await,
            Finalizing::Cleanup(p) => cleanup(&ctx, &p).await,
        }
    })
    .await
    .map_err(Error::from_finalizer)
}

/// Steps 1 to 7 for an environment that is not being deleted.
async fn provision(ctx: &Context, penv: &PreviewEnvironment) -> Result<Action, Error> {
    let name = penv.name_any();
    // validate
    let v = match validate(penv) {
        Ok(v) => v,
        Err(invalid) => {
            fail(ctx, penv, None, reasons::INVALID_SPEC, invalid.to_string()).await?;
            ctx.succeeded(&name);
            return Ok(Action::await_change());
        }
    };
    let expires_at = time_at(v.expires_at);

    // expire
    let now = ctx.clock.now();
    if now >= v.expires_at {
        expire(ctx, penv, &v).await?;
        ctx.succeeded(&name);
        // Only a longer TTL (a new generation) brings the environment back.
        return Ok(Action::await_change());
    }
    let until_expiry = ctx.clock.real(v.expires_at - now);
    let requeue = Action::requeue(ctx.settings.resync.min(until_expiry));
    // The missing source may appear, so a failed environment is looked at again; its expiry
    // still comes on time.
    let unsatisfied = async |reason: &'static str, message: String| {
        fail(ctx, penv, Some(expires_at.clone()), reason, message).await?;
        ctx.succeeded(&penv.name_any());
        Ok(Action::requeue(ctx.settings.resync.min(until_expiry)))
    };

    // observe
    let namespaces = Api::<Namespace>::all(ctx.client.clone());
    let existing =
        namespaces
            .get_opt(&v.namespace)
            .await
            .map_err(|source| Error::FetchNamespace {
                name: v.namespace.clone(),
                source,
            })?;
    if let Some(ns) = &existing {
        let terminating = ns.metadata.deletion_timestamp.is_some();
        if terminating {
            // Ours after an expiry, or an earlier environment's for the same branch: the
            // new one starts once it has gone.
            let message = format!(
                "waiting for namespace {} to finish terminating",
                v.namespace
            );
            let owned = Owned::build(
                penv.status.as_ref(),
                v.generation,
                None,
                Some(expires_at.clone()),
                &Outcome::Pending(message),
                &time_at(unix_now()),
            );
            write_status(ctx, &name, &owned, penv.status.as_ref()).await?;
            return Ok(Action::requeue(TERMINATING_POLL));
        }
        if !apply::is_ours(ns, &v.uid) {
            let message = format!(
                "namespace {} exists and belongs to something else (another PreviewEnvironment of branch {:?}, or a namespace made by hand); it is left alone",
                v.namespace, v.branch
            );
            return unsatisfied(reasons::NAMESPACE_TAKEN, message).await;
        }
    }
    let source_exists = namespaces
        .get_opt(&v.source_namespace)
        .await
        .map_err(|source| Error::FetchNamespace {
            name: v.source_namespace.clone(),
            source,
        })?
        .is_some();
    if !source_exists {
        let missing = validate::Unsatisfiable::SourceNamespaceMissing(v.source_namespace.clone());
        return unsatisfied(missing.reason(), missing.to_string()).await;
    }
    // A source the operator cannot decode is skipped (its own controller reports it), so
    // it shows as missing if asked for.
    let sources: Vec<MarketplaceService> = Api::<DeserializeGuard<MarketplaceService>>::namespaced(
        ctx.client.clone(),
        &v.source_namespace,
    )
    .list(&ListParams::default())
    .await
    .map_err(|source| Error::ListServices {
        namespace: v.source_namespace.clone(),
        source,
    })?
    .items
    .into_iter()
    .filter_map(|g| g.0.ok())
    .collect();

    // plan, build
    let plan = match validate::plan(&v, &sources) {
        Ok(plan) => plan,
        Err(why) => return unsatisfied(why.reason(), why.to_string()).await,
    };
    let children = build::build(&v, &plan);

    // apply
    let applied = match apply::apply(&ctx.client, &v.uid, existing.as_ref(), &children).await {
        Ok(applied) => applied,
        Err(e) if e.is_rejected() => {
            // Retrying the same write cannot help; what was created goes.
            return unsatisfied(reasons::APPLY_REJECTED, error_chain(&e)).await;
        }
        Err(e) => return Err(e),
    };
    if applied.created_namespace {
        tracing::info!(environment = %name, namespace = %v.namespace, "preview namespace created");
        super::publish(
            ctx,
            &penv.object_ref(&()),
            EventType::Normal,
            "Provisioned",
            format!(
                "namespace {} created for branch {:?} with {} services",
                v.namespace,
                v.branch,
                plan.copies.len()
            ),
        )
        .await;
    }

    // status
    let services: Vec<ServiceState> = plan
        .copies
        .iter()
        .zip(&applied.services)
        .map(|(copy, applied)| ServiceState::of(applied, copy.url()))
        .collect();
    let owned = Owned::build(
        penv.status.as_ref(),
        v.generation,
        Some(v.namespace.clone()),
        Some(expires_at.clone()),
        &Outcome::Provisioned(services),
        &time_at(unix_now()),
    );
    write_status(ctx, &name, &owned, penv.status.as_ref()).await?;
    ctx.succeeded(&name);
    Ok(requeue)
}

/// Bad input or a rejected write: the namespace goes if the environment had one, the
/// conditions name the cause, and a Warning Event tells it once per distinct message.
async fn fail(
    ctx: &Context,
    penv: &PreviewEnvironment,
    expires_at: Option<Time>,
    reason: &'static str,
    message: String,
) -> Result<(), Error> {
    let name = penv.name_any();
    if let Some(uid) = &penv.metadata.uid {
        apply::remove_namespace(&ctx.client, uid).await?;
    }
    let previous = penv.status.as_ref();
    let was_reported = previous.is_some_and(|s| {
        s.conditions.iter().any(|c| {
            c.type_ == status::types::PROVISIONED && c.reason == reason && c.message == message
        })
    });
    let owned = Owned::build(
        previous,
        penv.metadata.generation,
        None,
        expires_at,
        &Outcome::Failed {
            reason,
            message: message.clone(),
        },
        &time_at(unix_now()),
    );
    write_status(ctx, &name, &owned, previous).await?;
    if !was_reported {
        tracing::warn!(environment = %name, reason, %message, "preview environment failed");
        super::publish(
            ctx,
            &penv.object_ref(&()),
            EventType::Warning,
            reason,
            message,
        )
        .await;
    }
    Ok(())
}

/// Past the TTL: the namespace goes, the object stays with phase Expired.
async fn expire(ctx: &Context, penv: &PreviewEnvironment, v: &Validated) -> Result<(), Error> {
    apply::remove_namespace(&ctx.client, &v.uid).await?;
    let previous = penv.status.as_ref();
    let owned = Owned::build(
        previous,
        v.generation,
        None,
        Some(time_at(v.expires_at)),
        &Outcome::Expired,
        &time_at(unix_now()),
    );
    let news = previous.and_then(|s| s.phase) != Some(PreviewPhase::Expired);
    write_status(ctx, &v.name, &owned, previous).await?;
    if news {
        tracing::info!(environment = %v.name, namespace = %v.namespace, "preview environment expired");
        super::publish(
            ctx,
            &penv.object_ref(&()),
            EventType::Normal,
            reasons::TTL_ELAPSED,
            format!(
                "the TTL has passed; namespace {} and everything in it were removed",
                v.namespace
            ),
        )
        .await;
    }
    Ok(())
}

/// The PreviewEnvironment is being deleted: its namespace goes first. Needs neither a valid
/// spec nor the source namespace.
async fn cleanup(ctx: &Context, penv: &PreviewEnvironment) -> Result<Action, Error> {
    let name = penv.name_any();
    let previous = penv.status.as_ref();
    if previous.and_then(|s| s.phase) != Some(PreviewPhase::Terminating) {
        let owned = Owned::build(
            previous,
            penv.metadata.generation,
            previous.and_then(|s| s.namespace.clone()),
            previous.and_then(|s| s.expires_at.clone()),
            &Outcome::Terminating,
            &time_at(unix_now()),
        );
        write_status(ctx, &name, &owned, previous).await?;
    }
    let Some(uid) = &penv.metadata.uid else {
        return Ok(Action::await_change());
    };
    match apply::remove_namespace(&ctx.client, uid).await? {
        Removal::Gone => {
            ctx.succeeded(&name);
            tracing::info!(environment = %name, "preview environment removed");
            Ok(Action::await_change())
        }
        Removal::Terminating => Err(Error::NamespaceTerminating {
            name: penv.spec.namespace_name(),
        }),
    }
}

/// An object the operator cannot decode: reported, and if it is being deleted, its namespace
/// (found by uid) still goes and the finalizer is released, so that it cannot get stuck.
async fn malformed(
    ctx: &Context,
    invalid: &kube::core::error_boundary::InvalidObject,
) -> Result<Action, Error> {
    super::report_malformed::<PreviewEnvironment>(ctx, invalid).await;
    let meta = &invalid.metadata;
    let finalizers = meta.finalizers.clone().unwrap_or_default();
    let (Some(name), Some(uid), Some(index)) = (
        meta.name.as_deref(),
        meta.uid.as_deref(),
        finalizers.iter().position(|f| f == FINALIZER),
    ) else {
        return Ok(Action::await_change());
    };
    if meta.deletion_timestamp.is_none() {
        return Ok(Action::await_change());
    }
    if apply::remove_namespace(&ctx.client, uid).await? == Removal::Terminating {
        return Err(Error::NamespaceTerminating {
            name: name.to_owned(),
        });
    }
    // The resourceVersion makes the merge patch fail rather than drop a finalizer another
    // controller added meanwhile.
    let mut rest = finalizers;
    rest.remove(index);
    let patch = serde_json::json!({
        "metadata": {"finalizers": rest, "resourceVersion": meta.resource_version},
    });
    Api::<PreviewEnvironment>::all(ctx.client.clone())
        .patch_metadata(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .map_err(|source| Error::RemoveFinalizer { source })?;
    Ok(Action::await_change())
}

async fn write_status(
    ctx: &Context,
    name: &str,
    owned: &Owned,
    previous: Option<&PreviewEnvironmentStatus>,
) -> Result<(), Error> {
    if owned.is_current(previous) {
        return Ok(());
    }
    Api::<PreviewEnvironment>::all(ctx.client.clone())
        .patch_status(
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

/// A terminating namespace is waited for, quietly; transient errors retry with backoff and
/// jitter; a write the API server rejected is also told to the user as a Warning Event.
fn error_policy(obj: Arc<Guarded>, error: &Error, ctx: Arc<Context>) -> Action {
    if error.is_waiting() {
        return Action::requeue(TERMINATING_POLL);
    }
    let Ok(penv) = &obj.0 else {
        ctx.telemetry.reconcile_failed(CONTROLLER, error.reason());
        return Action::requeue(ctx.retry_after(""));
    };
    let tell = error.is_rejected().then(|| penv.object_ref(&()));
    super::retry_later(
        &ctx,
        CONTROLLER,
        &penv.name_any(),
        error.reason(),
        error,
        tell,
    )
}
