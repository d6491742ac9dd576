//! Deletion: preconditions, finalizers and deletionTimestamp, ownerReference garbage
//! collection, namespace termination and CRD removal. Cascades run synchronously under
//! the state lock, so "background" deletion is simply immediate here: by the time a
//! client sees the owner gone, its dependents are gone too (or terminating).

use std::sync::Arc;

use serde_json::{Value, json};

use crate::api::{self, ListOpts};
use crate::error::{ApiError, ApiResult};
use crate::resources::{GroupResource, ResourceInfo};
use crate::state::State;
use crate::util::{finalizers, meta, meta_mut, meta_str, now_rfc3339};

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Propagation {
    #[default]
    Background,
    Foreground,
    Orphan,
}

#[derive(Clone, Debug, Default)]
pub struct DeleteOpts {
    pub uid: Option<String>,
    pub resource_version: Option<String>,
    pub propagation: Propagation,
    pub dry_run: bool,
}

impl DeleteOpts {
    /// From a `DeleteOptions` body and/or the query (`propagationPolicy`, `dryRun`).
    pub fn parse(
        body: Option<&Value>,
        query_policy: Option<&str>,
        dry_run: bool,
    ) -> ApiResult<Self> {
        let pre = body.and_then(|b| b.get("preconditions"));
        let policy = body
            .and_then(|b| b.get("propagationPolicy"))
            .and_then(Value::as_str)
            .or(query_policy)
            .or_else(|| {
                // The deprecated orphanDependents flag still arrives from old clients.
                body.and_then(|b| b.get("orphanDependents"))
                    .and_then(Value::as_bool)
                    .map(|o| if o { "Orphan" } else { "Background" })
            });
        let propagation = match policy {
            None | Some("Background") => Propagation::Background,
            Some("Foreground") => Propagation::Foreground,
            Some("Orphan") => Propagation::Orphan,
            Some(other) => {
                return Err(ApiError::BadRequest(format!(
                    "unsupported propagationPolicy {other:?}"
                )));
            }
        };
        let dry = dry_run
            || body
                .and_then(|b| b.get("dryRun"))
                .and_then(Value::as_array)
                .is_some_and(|a| a.iter().any(|v| v == "All"));
        Ok(DeleteOpts {
            uid: pre
                .and_then(|p| p.get("uid"))
                .and_then(Value::as_str)
                .map(String::from),
            resource_version: pre
                .and_then(|p| p.get("resourceVersion"))
                .and_then(Value::as_str)
                .map(String::from),
            propagation,
            dry_run: dry,
        })
    }
}

pub fn delete(
    st: &mut State,
    info: &ResourceInfo,
    ns: &str,
    name: &str,
    opts: &DeleteOpts,
) -> ApiResult<Arc<Value>> {
    let obj = api::get(st, info, ns, name)?;
    if let Some(uid) = &opts.uid
        && meta_str(&obj, "uid") != Some(uid.as_str())
    {
        return Err(ApiError::conflict(
            &info.group,
            &info.plural,
            name,
            &format!(
                "Precondition failed: UID in precondition: {uid}, UID in object meta: {}",
                meta_str(&obj, "uid").unwrap_or_default()
            ),
        ));
    }
    if let Some(rv) = &opts.resource_version
        && meta_str(&obj, "resourceVersion") != Some(rv.as_str())
    {
        return Err(ApiError::conflict(
            &info.group,
            &info.plural,
            name,
            &format!(
                "Precondition failed: ResourceVersion in precondition: {rv}, ResourceVersion in object meta: {}",
                meta_str(&obj, "resourceVersion").unwrap_or_default()
            ),
        ));
    }
    if opts.dry_run {
        return Ok(obj);
    }
    let gr = info.group_resource();
    let is_namespace = info.group.is_empty() && info.plural == "namespaces";
    if is_namespace || !finalizers(&obj).is_empty() {
        return Ok(mark_deleting(st, &gr, &obj, ns, name, opts.propagation));
    }
    if opts.propagation == Propagation::Foreground {
        // Dependents first, then the owner: the order a foreground deletion guarantees.
        delete_dependents(st, &obj, Propagation::Foreground);
        if !dependents_of(st, &obj).is_empty() {
            // Some are still finalizing: the owner waits for them behind the
            // foregroundDeletion finalizer, as upstream.
            return Ok(mark_deleting(st, &gr, &obj, ns, name, opts.propagation));
        }
    }
    remove_now(st, &gr, ns, name, opts.propagation)
        .ok_or_else(|| ApiError::not_found(&info.group, &info.plural, name))
}

/// Set deletionTimestamp (once) and let finalizer holders finish; namespaces delete their
/// contents and go once empty.
fn mark_deleting(
    st: &mut State,
    gr: &GroupResource,
    obj: &Arc<Value>,
    ns: &str,
    name: &str,
    propagation: Propagation,
) -> Arc<Value> {
    let mut cur = obj.clone();
    if meta(obj).is_some_and(|m| !m.contains_key("deletionTimestamp")) {
        let mut next = (**obj).clone();
        {
            let m = meta_mut(&mut next);
            m.insert("deletionTimestamp".into(), json!(now_rfc3339()));
            m.insert("deletionGracePeriodSeconds".into(), json!(0));
        }
        if gr.group.is_empty() && gr.resource == "namespaces" {
            next["status"] = json!({"phase": "Terminating"});
        }
        cur = st.store.put(gr, next);
    }
    if gr.group.is_empty() && gr.resource == "namespaces" {
        delete_namespace_contents(st, name);
        return maybe_finish_namespace(st, name).unwrap_or(cur);
    }
    if propagation == Propagation::Foreground {
        if !finalizers(&cur).iter().any(|f| f == FOREGROUND) {
            let mut next = (*cur).clone();
            let m = meta_mut(&mut next);
            let list = m.entry("finalizers").or_insert_with(|| json!([]));
            if let Some(a) = list.as_array_mut() {
                a.push(json!(FOREGROUND));
            }
            cur = st.store.put(gr, next);
        }
        delete_dependents(st, &cur, Propagation::Foreground);
        release_foreground(st, gr, ns, name);
        return st.store.get(gr, ns, name).cloned().unwrap_or(cur);
    }
    cur
}

const FOREGROUND: &str = "foregroundDeletion";

/// A foreground-deleting owner goes once its last dependent has.
pub fn release_foreground(st: &mut State, gr: &GroupResource, ns: &str, name: &str) {
    let Some(owner) = st.store.get(gr, ns, name).cloned() else {
        return;
    };
    let fins = finalizers(&owner);
    if !fins.iter().any(|f| f == FOREGROUND) || !dependents_of(st, &owner).is_empty() {
        return;
    }
    let rest: Vec<String> = fins.into_iter().filter(|f| f != FOREGROUND).collect();
    if rest.is_empty() {
        remove_now(st, gr, ns, name, Propagation::Background);
    } else {
        let mut next = (*owner).clone();
        meta_mut(&mut next).insert("finalizers".into(), json!(rest));
        st.store.put(gr, next);
    }
}

/// Whether an object names owners and none of them exists (by uid): the garbage collector's
/// test for an orphan to delete.
pub fn orphaned(st: &State, obj: &Value) -> bool {
    let refs: Vec<&Value> = meta(obj)
        .and_then(|m| m.get("ownerReferences"))
        .and_then(Value::as_array)
        .map(|a| a.iter().collect())
        .unwrap_or_default();
    if refs.is_empty() {
        return false;
    }
    let owners = owners_of(st, obj);
    // Owners of kinds this server does not serve are left alone, as the real collector
    // waits for discovery before it decides.
    if owners.len() != refs.len() {
        return false;
    }
    !refs.iter().zip(&owners).any(|(r, (gr, ns, name))| {
        let uid = r.get("uid").and_then(Value::as_str);
        st.store
            .get(gr, ns, name)
            .is_some_and(|o| meta_str(o, "uid") == uid)
    })
}

/// The owners an object names, as stored keys (owners live in its namespace or cluster-wide).
fn owners_of(st: &State, obj: &Value) -> Vec<(GroupResource, String, String)> {
    let ns = meta_str(obj, "namespace").unwrap_or_default();
    let refs = meta(obj)
        .and_then(|m| m.get("ownerReferences"))
        .and_then(Value::as_array);
    let mut out = vec![];
    for r in refs.into_iter().flatten() {
        let field = |k: &str| r.get(k).and_then(Value::as_str).unwrap_or_default();
        let Some(info) = st.registry.all().iter().find(|i| {
            i.kind == field("kind")
                && i.versions
                    .iter()
                    .any(|v| i.api_version(&v.name) == field("apiVersion"))
        }) else {
            continue;
        };
        let owner_ns = if info.namespaced { ns } else { "" };
        out.push((
            info.group_resource(),
            owner_ns.to_string(),
            field("name").to_string(),
        ));
    }
    out
}

fn delete_namespace_contents(st: &mut State, ns: &str) {
    let infos: Vec<Arc<ResourceInfo>> = st
        .registry
        .all()
        .iter()
        .filter(|r| r.namespaced)
        .cloned()
        .collect();
    for info in infos {
        let names: Vec<String> = st
            .store
            .list(&info.group_resource(), Some(ns), None)
            .filter_map(|o| meta_str(o, "name").map(String::from))
            .collect();
        for name in names {
            let _ = delete(st, &info, ns, &name, &DeleteOpts::default());
        }
    }
}

/// A terminating namespace goes once nothing is left in it.
fn maybe_finish_namespace(st: &mut State, ns: &str) -> Option<Arc<Value>> {
    let gr = GroupResource {
        group: String::new(),
        resource: "namespaces".into(),
    };
    let n = st.store.get(&gr, "", ns)?;
    if !meta(n).is_some_and(|m| m.contains_key("deletionTimestamp")) || !finalizers(n).is_empty() {
        return None;
    }
    let empty = st.registry.all().iter().filter(|r| r.namespaced).all(|r| {
        st.store
            .list(&r.group_resource(), Some(ns), None)
            .next()
            .is_none()
    });
    if empty {
        st.store.remove(&gr, "", ns)
    } else {
        None
    }
}

/// Remove an object now and cascade: dependents, namespace contents, a CRD's objects.
pub fn remove_now(
    st: &mut State,
    gr: &GroupResource,
    ns: &str,
    name: &str,
    propagation: Propagation,
) -> Option<Arc<Value>> {
    let last = st.store.remove(gr, ns, name)?;
    match propagation {
        Propagation::Orphan => orphan_dependents(st, &last),
        _ => delete_dependents(st, &last, Propagation::Background),
    }
    for (ogr, ons, oname) in owners_of(st, &last) {
        release_foreground(st, &ogr, &ons, &oname);
    }
    if gr.group == "apiextensions.k8s.io"
        && gr.resource == "customresourcedefinitions"
        && let Ok(ri) = crate::crd::crd_info(&last)
    {
        let crgr = ri.group_resource();
        let keys: Vec<(String, String)> = st
            .store
            .list(&crgr, None, None)
            .map(|o| {
                (
                    meta_str(o, "namespace").unwrap_or_default().to_string(),
                    meta_str(o, "name").unwrap_or_default().to_string(),
                )
            })
            .collect();
        for (ns, name) in keys {
            st.store.remove(&crgr, &ns, &name);
        }
        st.registry.remove(&crgr);
    }
    if !ns.is_empty() {
        maybe_finish_namespace(st, ns);
    }
    Some(last)
}

/// (resource, namespace, name) of every object with an ownerReference to `uid`.
fn dependents_of(st: &State, owner: &Value) -> Vec<(Arc<ResourceInfo>, String, String)> {
    let Some(uid) = meta_str(owner, "uid") else {
        return vec![];
    };
    let owner_ns = meta_str(owner, "namespace").unwrap_or_default();
    st.store
        .dependents(uid)
        .into_iter()
        // Namespaced owners only own objects in their own namespace (as upstream's GC).
        .filter(|(_, ns, _)| owner_ns.is_empty() || ns == owner_ns)
        .filter_map(|(gr, ns, name)| {
            st.registry
                .by_group_resource(&gr)
                .map(|info| (info, ns, name))
        })
        .collect()
}

fn without_owner(obj: &Value, uid: &str) -> (Value, usize) {
    let mut next = obj.clone();
    let m = meta_mut(&mut next);
    let mut left = 0;
    if let Some(refs) = m.get_mut("ownerReferences").and_then(Value::as_array_mut) {
        refs.retain(|r| r.get("uid").and_then(Value::as_str) != Some(uid));
        left = refs.len();
        if left == 0 {
            m.remove("ownerReferences");
        }
    }
    (next, left)
}

fn delete_dependents(st: &mut State, owner: &Value, propagation: Propagation) {
    let uid = meta_str(owner, "uid").unwrap_or_default().to_string();
    for (info, ns, name) in dependents_of(st, owner) {
        let Some(dep) = st.store.get(&info.group_resource(), &ns, &name).cloned() else {
            continue;
        };
        let (rest, left) = without_owner(&dep, &uid);
        if left > 0 {
            // Other owners keep it alive; it only loses the reference to this one.
            st.store.put(&info.group_resource(), rest);
        } else {
            let _ = delete(
                st,
                &info,
                &ns,
                &name,
                &DeleteOpts {
                    propagation,
                    ..Default::default()
                },
            );
        }
    }
}

fn orphan_dependents(st: &mut State, owner: &Value) {
    let uid = meta_str(owner, "uid").unwrap_or_default().to_string();
    for (info, ns, name) in dependents_of(st, owner) {
        if let Some(dep) = st.store.get(&info.group_resource(), &ns, &name).cloned() {
            st.store
                .put(&info.group_resource(), without_owner(&dep, &uid).0);
        }
    }
}

pub fn delete_collection(
    st: &mut State,
    info: &ResourceInfo,
    ns: Option<&str>,
    list: &ListOpts,
    opts: &DeleteOpts,
) -> ApiResult<Vec<Arc<Value>>> {
    let page = api::list(
        st,
        info,
        ns,
        &ListOpts {
            limit: None,
            continue_: None,
            ..list.clone()
        },
    )?;
    let mut out = vec![];
    for o in page.items {
        let ons = meta_str(&o, "namespace").unwrap_or_default().to_string();
        let name = meta_str(&o, "name").unwrap_or_default().to_string();
        match delete(st, info, &ons, &name, opts) {
            Ok(d) => out.push(d),
            Err(ApiError::NotFound { .. }) => {} // cascaded away by an earlier deletion
            Err(e) => return Err(e),
        }
    }
    Ok(out)
}
