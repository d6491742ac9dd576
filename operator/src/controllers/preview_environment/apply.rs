//! Apply: the built children go to the API server by server-side apply, one field manager,
//! forced (the operator alone owns these objects). Children of the environment no longer
//! built are deleted by label. And the namespace's removal, for failures, expiry and deletion.

use std::collections::BTreeSet;
use std::fmt::Debug;

use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::api::networking::v1::{Ingress, NetworkPolicy};
use kube::api::{DeleteParams, ListParams, Patch, PatchParams};
use kube::core::{ApiResource, DynamicObject};
use kube::{Api, Client, Resource};
use marketplace_crds::v1alpha1::{CacheTier, MarketplaceService};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::build::{Children, PREVIEW_UID_LABEL, selector};
use super::error::Error;
use crate::controllers::FIELD_MANAGER;

/// What the API server holds after the apply.
pub struct Applied {
    /// The copies, with the status their controller wrote (readiness).
    pub services: Vec<MarketplaceService>,
    /// Whether this apply created the namespace.
    pub created_namespace: bool,
}

pub async fn apply(
    client: &Client,
    uid: &str,
    existing: Option<&Namespace>,
    children: &Children,
) -> Result<Applied, Error> {
    let ssa = PatchParams::apply(FIELD_MANAGER).force();
    let ns_name = children.namespace.metadata.name.clone().unwrap_or_default();
    Api::<Namespace>::all(client.clone())
        .patch(&ns_name, &ssa, &Patch::Apply(&children.namespace))
        .await
        .map_err(|source| Error::ApplyNamespace {
            name: ns_name.clone(),
            source,
        })?;

    apply_one(client, &ns_name, &children.quota).await?;
    apply_one(client, &ns_name, &children.limits).await?;
    for policy in &children.policies {
        apply_one(client, &ns_name, policy).await?;
    }
    let cache_resource = ApiResource::erase::<CacheTier>(&());
    if let Some(cache) = &children.cache {
        let name = cache["metadata"]["name"].as_str().unwrap_or_default();
        Api::<DynamicObject>::namespaced_with(client.clone(), &ns_name, &cache_resource)
            .patch(name, &ssa, &Patch::Apply(cache))
            .await
            .map_err(|source| Error::ApplyChild {
                kind: "CacheTier",
                name: name.to_owned(),
                source,
            })?;
    }
    let mut services = Vec::with_capacity(children.services.len());
    for copy in &children.services {
        services.push(apply_one(client, &ns_name, copy).await?);
    }
    for ingress in &children.ingresses {
        apply_one(client, &ns_name, ingress).await?;
    }

    // Whatever an earlier round built and this one does not: a service dropped from the
    // spec, the cache once isolatedCache is off, the policies once the network is Open.
    let names =
        |names: Vec<Option<String>>| -> BTreeSet<String> { names.into_iter().flatten().collect() };
    let policies = names(
        children
            .policies
            .iter()
            .map(|p| p.metadata.name.clone())
            .collect(),
    );
    let ingresses = names(
        children
            .ingresses
            .iter()
            .map(|i| i.metadata.name.clone())
            .collect(),
    );
    let copies = names(
        children
            .services
            .iter()
            .map(|s| s.metadata.name.clone())
            .collect(),
    );
    let cache =
        names(vec![children.cache.as_ref().and_then(|c| {
            c["metadata"]["name"].as_str().map(str::to_owned)
        })]);
    prune::<NetworkPolicy>(client, &ns_name, uid, &policies).await?;
    prune::<Ingress>(client, &ns_name, uid, &ingresses).await?;
    prune::<MarketplaceService>(client, &ns_name, uid, &copies).await?;
    prune::<CacheTier>(client, &ns_name, uid, &cache).await?;

    Ok(Applied {
        services,
        created_namespace: existing.is_none(),
    })
}

/// The apply of one namespaced child of a kind in k8s-openapi or our CRDs.
async fn apply_one<K>(client: &Client, namespace: &str, child: &K) -> Result<K, Error>
where
    K: Resource<DynamicType = (), Scope = kube::core::NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + Serialize
        + Debug,
{
    let name = child.meta().name.clone().unwrap_or_default();
    Api::<K>::namespaced(client.clone(), namespace)
        .patch(
            &name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(child),
        )
        .await
        .map_err(|source| Error::ApplyChild {
            kind: kind_of::<K>(),
            name,
            source,
        })
}

fn kind_of<K: Resource<DynamicType = ()>>() -> &'static str {
    // The reasons and messages want a static name; these are the kinds applied here.
    match K::kind(&()).as_ref() {
        "ResourceQuota" => "ResourceQuota",
        "LimitRange" => "LimitRange",
        "NetworkPolicy" => "NetworkPolicy",
        "Ingress" => "Ingress",
        "MarketplaceService" => "MarketplaceService",
        "CacheTier" => "CacheTier",
        _ => "object",
    }
}

/// Deletes the environment's children of kind `K` that are not in `keep`.
async fn prune<K>(
    client: &Client,
    namespace: &str,
    uid: &str,
    keep: &BTreeSet<String>,
) -> Result<(), Error>
where
    K: Resource<DynamicType = (), Scope = kube::core::NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + Debug,
{
    let api = Api::<K>::namespaced(client.clone(), namespace);
    let listed = api
        .list_metadata(&ListParams::default().labels(&selector(uid)))
        .await
        .map_err(|source| Error::ListChildren {
            kind: kind_of::<K>(),
            source,
        })?;
    for name in listed
        .items
        .iter()
        .filter_map(|o| o.metadata.name.clone())
        .filter(|n| !keep.contains(n))
    {
        match api.delete(&name, &DeleteParams::default()).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(source) => {
                return Err(Error::DeleteChild {
                    kind: kind_of::<K>(),
                    name,
                    source,
                });
            }
        }
    }
    Ok(())
}

/// Where the environment's namespace stands after `remove_namespace`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Removal {
    /// There is no such namespace (any more).
    Gone,
    /// Deleting: the API server is removing what is in it.
    Terminating,
}

/// Whether the environment `uid` owns `ns`.
pub fn is_ours(ns: &Namespace, uid: &str) -> bool {
    ns.metadata
        .owner_references
        .iter()
        .flatten()
        .any(|r| r.uid == uid)
}

/// Deletes the environment's namespace (and with it everything in it). It is found by the
/// environment's uid, not by the spec: cleanup must work whatever the spec says, for an
/// object the operator cannot even decode, and when the source namespace has gone.
pub async fn remove_namespace(client: &Client, uid: &str) -> Result<Removal, Error> {
    let api = Api::<Namespace>::all(client.clone());
    let selector = format!("{PREVIEW_UID_LABEL}={uid}");
    let listed = api
        .list_metadata(&ListParams::default().labels(&selector))
        .await
        .map_err(|source| Error::ListChildren {
            kind: "Namespace",
            source,
        })?;
    let mut removal = Removal::Gone;
    for ns in &listed.items {
        let Some(name) = ns.metadata.name.as_deref() else {
            continue;
        };
        // A label is easy to copy; the owner reference says whose it really is.
        if !ns
            .metadata
            .owner_references
            .iter()
            .flatten()
            .any(|r| r.uid == uid)
        {
            continue;
        }
        if ns.metadata.deletion_timestamp.is_some() {
            removal = Removal::Terminating;
            continue;
        }
        match api.delete(name, &DeleteParams::background()).await {
            Ok(either) if either.is_left() => removal = Removal::Terminating,
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(source) => {
                return Err(Error::DeleteNamespace {
                    name: name.to_owned(),
                    source,
                });
            }
        }
    }
    Ok(removal)
}
