//! The verbs: get, list, create, update (and the shared admission pipeline every write
//! goes through). Pure functions over `State`; the HTTP layer lives in handlers.rs.

use std::sync::Arc;

use serde_json::{Map, Value, json};

use crate::builtin;
use crate::crd;
use crate::error::{ApiError, ApiResult, Cause};
use crate::managed;
use crate::resources::{GroupResource, ResourceInfo};
use crate::selector::{FieldSelector, LabelSelector};
use crate::state::State;
use crate::util::{finalizers, meta, meta_mut, meta_str, name_suffix, new_uid, now_rfc3339};

/// How a write was asked for.
#[derive(Clone, Debug, Default)]
pub struct WriteOpts {
    pub manager: String,
    pub dry_run: bool,
    pub subresource: Option<String>,
    /// Server-side apply already computed managedFields.
    pub apply: bool,
    /// `fieldValidation=Strict`: unknown fields are an error rather than pruned.
    pub strict: bool,
}

/// The object as a client of `version` sees it (objects are stored once per resource).
pub fn versioned(info: &ResourceInfo, version: &str, obj: &Value) -> Value {
    let mut out = obj.clone();
    if builtin::is_events_v1(&info.group, &info.plural) {
        out = builtin::event_from_core(out);
    }
    if version != info.storage_version() {
        out = crate::convert::to_version(info, version, out);
    }
    set_type(info, version, &mut out);
    out
}

/// The form an object is stored in (only events.k8s.io Events differ: stored as core).
fn to_storage(info: &ResourceInfo, version: &str, obj: Value) -> Value {
    let mut obj = obj;
    if builtin::is_events_v1(&info.group, &info.plural) {
        obj = builtin::event_to_core(obj);
        if let Some(o) = obj.as_object_mut() {
            o.insert("apiVersion".into(), json!("v1"));
            o.insert("kind".into(), json!("Event"));
        }
    } else if info.builtin && version != info.storage_version() {
        obj = crate::convert::to_storage(info, version, obj);
        set_type(info, info.storage_version(), &mut obj);
    } else {
        set_type(info, version, &mut obj);
    }
    obj
}

pub fn set_type(info: &ResourceInfo, version: &str, obj: &mut Value) {
    if let Some(o) = obj.as_object_mut() {
        o.insert(
            "apiVersion".into(),
            Value::String(info.api_version(version)),
        );
        o.insert("kind".into(), Value::String(info.kind.clone()));
    }
}

pub fn get(st: &State, info: &ResourceInfo, ns: &str, name: &str) -> ApiResult<Arc<Value>> {
    st.store
        .get(&info.group_resource(), ns, name)
        .cloned()
        .ok_or_else(|| ApiError::not_found(&info.group, &info.plural, name))
}

#[derive(Clone, Debug, Default)]
pub struct ListOpts {
    pub labels: LabelSelector,
    pub fields: FieldSelector,
    pub limit: Option<usize>,
    pub continue_: Option<String>,
}

pub struct ListPage {
    pub items: Vec<Arc<Value>>,
    pub rv: u64,
    pub continue_: Option<String>,
    pub remaining: Option<usize>,
}

/// Continue tokens are opaque to clients: `rv:namespace:name` of the last item sent.
fn parse_continue(token: &str) -> ApiResult<(u64, (String, String))> {
    let mut it = token.splitn(3, ':');
    let bad = || ApiError::BadRequest(format!("invalid continue token: {token:?}"));
    let rv = it.next().and_then(|r| r.parse().ok()).ok_or_else(bad)?;
    let ns = it.next().ok_or_else(bad)?.to_string();
    let name = it.next().ok_or_else(bad)?.to_string();
    Ok((rv, (ns, name)))
}

pub fn list(
    st: &State,
    info: &ResourceInfo,
    ns: Option<&str>,
    opts: &ListOpts,
) -> ApiResult<ListPage> {
    let gr = info.group_resource();
    let (rv, after) = match &opts.continue_ {
        Some(t) if !t.is_empty() => {
            let (rv, key) = parse_continue(t)?;
            (rv, Some(key))
        }
        _ => (st.store.current_rv(), None),
    };
    let matches = |o: &&Arc<Value>| opts.labels.matches(o) && opts.fields.matches(o);
    let mut items = vec![];
    let mut continue_ = None;
    let mut remaining = None;
    if let (Some(name), None) = (opts.fields.name(), &after) {
        // `kubectl delete --wait` and friends pin one name: a point lookup, not a scan.
        match ns {
            Some(ns) => items.extend(st.store.get(&gr, ns, name).filter(matches).cloned()),
            None => items.extend(st.store.list(&gr, None, None).filter(matches).cloned()),
        }
    } else {
        let mut it = st.store.list(&gr, ns, after).filter(matches);
        let limit = opts.limit.filter(|l| *l > 0).unwrap_or(usize::MAX);
        for o in it.by_ref() {
            items.push(o.clone());
            if items.len() == limit {
                break;
            }
        }
        let rest = it.count();
        if rest > 0
            && let Some(last) = items.last()
        {
            let lns = meta_str(last, "namespace").unwrap_or_default();
            let lname = meta_str(last, "name").unwrap_or_default();
            continue_ = Some(format!("{rv}:{lns}:{lname}"));
            remaining = Some(rest);
        }
    }
    Ok(ListPage {
        items,
        rv,
        continue_,
        remaining,
    })
}

/// A list serialized straight from the stored objects: no per-item copy when the
/// stored form is what the client asked for (the common case), which keeps big lists
/// fast and their memory peak low.
pub fn list_bytes(info: &ResourceInfo, version: &str, page: &ListPage) -> Vec<u8> {
    let empty = ListPage {
        items: vec![],
        rv: page.rv,
        continue_: page.continue_.clone(),
        remaining: page.remaining,
    };
    let mut head = list_object(info, version, &empty);
    if let Some(o) = head.as_object_mut() {
        o.remove("items");
    }
    let mut out = crate::util::to_vec_ordered(&head);
    out.pop(); // the closing brace: items follow
    out.extend_from_slice(if out.ends_with(b"{") {
        b"\"items\":["
    } else {
        b",\"items\":["
    });
    let api_version = info.api_version(version);
    let as_stored = |o: &Value| {
        !builtin::is_events_v1(&info.group, &info.plural)
            && o.get("apiVersion").and_then(Value::as_str) == Some(api_version.as_str())
            && o.get("kind").and_then(Value::as_str) == Some(info.kind.as_str())
    };
    for (i, o) in page.items.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        if as_stored(o) {
            crate::util::write_ordered(&mut out, o);
        } else {
            crate::util::write_ordered(&mut out, &versioned(info, version, o));
        }
    }
    out.extend_from_slice(b"]}");
    out
}

pub fn list_object(info: &ResourceInfo, version: &str, page: &ListPage) -> Value {
    let mut metadata = json!({"resourceVersion": page.rv.to_string()});
    if let Some(c) = &page.continue_ {
        metadata["continue"] = json!(c);
    }
    if let Some(r) = page.remaining {
        metadata["remainingItemCount"] = json!(r);
    }
    json!({
        "apiVersion": info.api_version(version),
        "kind": info.list_kind,
        "metadata": metadata,
        "items": page.items.iter().map(|o| versioned(info, version, o)).collect::<Vec<_>>(),
    })
}

/// A body must be an object of this resource's kind (apiVersion/kind may be omitted).
fn check_body(info: &ResourceInfo, version: &str, obj: &Value) -> ApiResult<()> {
    if !obj.is_object() {
        return Err(ApiError::BadRequest(
            "the body of the request must be a JSON or YAML object".into(),
        ));
    }
    if let Some(k) = obj.get("kind").and_then(Value::as_str)
        && k != info.kind
    {
        return Err(ApiError::BadRequest(format!(
            "the kind of the provided object ({k}) does not match the resource ({})",
            info.kind
        )));
    }
    if let Some(av) = obj.get("apiVersion").and_then(Value::as_str) {
        let (g, _) = crate::resources::split_api_version(av);
        if g != info.group
            || info
                .version(crate::resources::split_api_version(av).1)
                .is_none()
        {
            return Err(ApiError::BadRequest(format!(
                "the API version in the data ({av}) does not match the expected API version ({})",
                info.api_version(version)
            )));
        }
    }
    if obj.get("metadata").is_some_and(|m| !m.is_object()) {
        return Err(ApiError::BadRequest("metadata must be an object".into()));
    }
    Ok(())
}

pub fn ensure_namespace_active(st: &State, ns: &str) -> ApiResult<()> {
    let gr = GroupResource {
        group: String::new(),
        resource: "namespaces".into(),
    };
    match st.store.get(&gr, "", ns) {
        None => Err(ApiError::not_found("", "namespaces", ns)),
        Some(n) if meta(n).is_some_and(|m| m.contains_key("deletionTimestamp")) => {
            Err(ApiError::Forbidden(format!(
                "unable to create new content in namespace {ns} because it is being terminated"
            )))
        }
        Some(_) => Ok(()),
    }
}

pub fn create(
    st: &mut State,
    info: &ResourceInfo,
    version: &str,
    ns: &str,
    mut obj: Value,
    opts: &WriteOpts,
) -> ApiResult<Arc<Value>> {
    check_body(info, version, &obj)?;
    let gr = info.group_resource();
    {
        let m = meta_mut(&mut obj);
        if info.namespaced {
            match m.get("namespace").and_then(Value::as_str) {
                Some(x) if !x.is_empty() && x != ns => {
                    return Err(ApiError::BadRequest(
                        "the namespace of the provided object does not match the namespace sent on the request".into(),
                    ));
                }
                _ => {
                    m.insert("namespace".into(), json!(ns));
                }
            }
        } else {
            m.remove("namespace");
        }
    }
    if info.namespaced {
        ensure_namespace_active(st, ns)?;
    }
    let name = match meta_str(&obj, "name").filter(|n| !n.is_empty()) {
        Some(n) => n.to_string(),
        None => match meta_str(&obj, "generateName").filter(|n| !n.is_empty()) {
            Some(prefix) => {
                let prefix = prefix.to_string();
                // Upstream retries on collision too; five tries are plenty for 27^5 names.
                let candidate = (0..5)
                    .map(|_| format!("{prefix}{}", name_suffix()))
                    .find(|n| st.store.get(&gr, ns, n).is_none())
                    .unwrap_or_else(|| format!("{prefix}{}", name_suffix()));
                meta_mut(&mut obj).insert("name".into(), json!(candidate));
                candidate
            }
            None => {
                return Err(ApiError::invalid(
                    &info.group,
                    &info.kind,
                    "",
                    vec![Cause {
                        reason: "FieldValueRequired",
                        message: "Required value: name or generateName is required".into(),
                        field: "metadata.name".into(),
                    }],
                ));
            }
        },
    };
    if st.store.get(&gr, ns, &name).is_some() {
        return Err(ApiError::already_exists(&info.group, &info.plural, &name));
    }
    {
        let m = meta_mut(&mut obj);
        let uid = new_uid();
        if let Some(births) = &st.pod_births
            && info.group.is_empty()
            && info.plural == "pods"
        {
            births.born(&uid);
        }
        m.insert("uid".into(), json!(uid));
        m.insert("creationTimestamp".into(), json!(now_rfc3339()));
        m.insert("generation".into(), json!(1));
        for k in [
            "resourceVersion",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "selfLink",
        ] {
            m.remove(k);
        }
    }
    let has_status = info.version(version).is_some_and(|v| v.status);
    if has_status && opts.subresource.is_none() {
        // Status is written through /status only; create starts from an empty one.
        if let Some(o) = obj.as_object_mut() {
            o.remove("status");
        }
    }
    let obj = to_storage(info, version, obj);
    let obj = admit(st, info, version, None, obj, opts)?;
    if opts.dry_run {
        return Ok(Arc::new(obj));
    }
    let stored = st.store.put(&gr, obj);
    after_write(st, info, &stored);
    if info.group.is_empty() && info.plural == "namespaces" {
        // kube-controller-manager fills a new namespace moments later; doing it in the
        // same write means a client listing right after its create already sees them.
        crate::bootstrap::seed_namespace(st, &name);
    }
    if crate::gc::orphaned(st, &stored) {
        // Created for an owner that is already gone (a controller racing the cascade): a
        // real garbage collector removes it moments later; this one does it at once. The
        // client still sees its create succeed, and watchers an ADDED then a DELETED.
        let name = meta_str(&stored, "name").unwrap_or_default().to_string();
        crate::gc::remove_now(st, &gr, ns, &name, crate::gc::Propagation::Background);
    }
    Ok(stored)
}

pub fn update(
    st: &mut State,
    info: &ResourceInfo,
    version: &str,
    ns: &str,
    name: &str,
    obj: Value,
    opts: &WriteOpts,
) -> ApiResult<Arc<Value>> {
    check_body(info, version, &obj)?;
    if let Some(n) = meta_str(&obj, "name")
        && n != name
    {
        return Err(ApiError::BadRequest(format!(
            "the name of the object ({n}) does not match the name on the URL ({name})"
        )));
    }
    if info.namespaced
        && let Some(x) = meta_str(&obj, "namespace").filter(|x| !x.is_empty() && *x != ns)
    {
        return Err(ApiError::BadRequest(format!(
            "the namespace of the provided object ({x}) does not match the namespace sent on the request ({ns})"
        )));
    }
    let old = get(st, info, ns, name)?;
    if let Some(rv) = meta_str(&obj, "resourceVersion").filter(|r| !r.is_empty())
        && Some(rv) != meta_str(&old, "resourceVersion")
    {
        return Err(ApiError::stale(&info.group, &info.plural, name));
    }
    write(st, info, version, &old, obj, opts)
}

/// Spec and status are kept apart: the main resource ignores status, /status ignores
/// everything but status (and keeps metadata as it was, apart from what admission sets).
fn split_subresource(
    info: &ResourceInfo,
    version: &str,
    old: &Value,
    mut new: Value,
    sub: Option<&str>,
) -> Value {
    let has_status = info.version(version).is_some_and(|v| v.status);
    match sub {
        // These change one field of the object and nothing else.
        Some("ephemeralcontainers") => {
            let mut out = old.clone();
            let containers = new.pointer("/spec/ephemeralContainers").cloned();
            if let Some(spec) = out.get_mut("spec").and_then(Value::as_object_mut) {
                match containers {
                    Some(c) => spec.insert("ephemeralContainers".into(), c),
                    None => spec.remove("ephemeralContainers"),
                };
            }
            out
        }
        Some("approval") => {
            let mut out = old.clone();
            let conditions = new.pointer("/status/conditions").cloned();
            if let Some(o) = out.as_object_mut() {
                let status = o.entry("status").or_insert_with(|| json!({}));
                if let Some(st) = status.as_object_mut() {
                    match conditions {
                        Some(c) => st.insert("conditions".into(), c),
                        None => st.remove("conditions"),
                    };
                }
            }
            out
        }
        Some("status") => {
            let mut out = old.clone();
            if let Some(o) = out.as_object_mut() {
                match new.as_object_mut().and_then(|n| n.remove("status")) {
                    Some(s) => o.insert("status".into(), s),
                    None => o.remove("status"),
                };
            }
            // managedFields travel with the write so the status manager is recorded.
            out
        }
        _ if has_status => {
            if let Some(o) = new.as_object_mut() {
                match old.get("status") {
                    Some(s) => o.insert("status".into(), s.clone()),
                    None => o.remove("status"),
                };
            }
            new
        }
        _ => new,
    }
}

/// The part of an object whose change bumps `metadata.generation`: all but metadata and status.
fn spec_part(obj: &Value) -> Map<String, Value> {
    obj.as_object()
        .map(|o| {
            o.iter()
                .filter(|(k, _)| {
                    !matches!(k.as_str(), "metadata" | "status" | "apiVersion" | "kind")
                })
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        })
        .unwrap_or_default()
}

/// Metadata the server owns: clients cannot change it by update.
const SERVER_META: &[&str] = &[
    "uid",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "generation",
    "name",
    "namespace",
];

pub fn write(
    st: &mut State,
    info: &ResourceInfo,
    version: &str,
    old: &Arc<Value>,
    new: Value,
    opts: &WriteOpts,
) -> ApiResult<Arc<Value>> {
    // Server-side apply computed the new ownership; it must survive the status split,
    // which otherwise keeps the old metadata.
    let applied_owners = if opts.apply {
        meta(&new).and_then(|m| m.get("managedFields")).cloned()
    } else {
        None
    };
    let mut new = split_subresource(info, version, old, new, opts.subresource.as_deref());
    {
        let old_meta = meta(old).cloned().unwrap_or_default();
        let m = meta_mut(&mut new);
        if let Some(mf) = applied_owners {
            m.insert("managedFields".into(), mf);
        }
        for k in SERVER_META {
            match old_meta.get(*k) {
                Some(v) => m.insert(k.to_string(), v.clone()),
                None => m.remove(*k),
            };
        }
        if !m.contains_key("managedFields")
            && let Some(mf) = old_meta.get("managedFields")
        {
            m.insert("managedFields".into(), mf.clone());
        }
        m.insert(
            "resourceVersion".into(),
            old_meta
                .get("resourceVersion")
                .cloned()
                .unwrap_or(Value::Null),
        );
    }
    let new = to_storage(info, version, new);
    let mut new = admit(st, info, version, Some(old), new, opts)?;
    if spec_part(&new) != spec_part(old) {
        let g = meta(old)
            .and_then(|m| m.get("generation"))
            .and_then(Value::as_i64)
            .unwrap_or(1);
        meta_mut(&mut new).insert("generation".into(), json!(g + 1));
    }
    if unchanged(old, &new) {
        // A no-op write keeps the resourceVersion, as upstream: no event either.
        return Ok(old.clone());
    }
    if opts.dry_run {
        return Ok(Arc::new(new));
    }
    let (ns, name) = (
        meta_str(&new, "namespace").unwrap_or_default().to_string(),
        meta_str(&new, "name").unwrap_or_default().to_string(),
    );
    let gr = info.group_resource();
    let terminating = meta(&new).is_some_and(|m| m.contains_key("deletionTimestamp"));
    let no_finalizers = finalizers(&new).is_empty();
    let stored = st.store.put(&gr, new);
    if terminating && no_finalizers {
        // The last finalizer is gone: the deletion that was waiting completes now.
        if let Some(last) =
            crate::gc::remove_now(st, &gr, &ns, &name, crate::gc::Propagation::Background)
        {
            return Ok(last);
        }
    }
    if terminating {
        // A foreground deletion may have been waiting only on what this write changed.
        crate::gc::release_foreground(st, &gr, &ns, &name);
        if st.store.get(&gr, &ns, &name).is_none() {
            return Ok(stored);
        }
    }
    after_write(st, info, &stored);
    Ok(stored)
}

/// Equal but for resourceVersion and managedFields timestamps: a change of ownership
/// alone (say, a first server-side apply of identical values) is still a write.
fn unchanged(old: &Value, new: &Value) -> bool {
    let strip = |v: &Value| {
        let mut v = v.clone();
        let m = meta_mut(&mut v);
        m.remove("resourceVersion");
        if let Some(mf) = m.get_mut("managedFields").and_then(Value::as_array_mut) {
            for e in mf.iter_mut().filter_map(Value::as_object_mut) {
                e.remove("time");
            }
        }
        v
    };
    strip(old) == strip(new)
}

fn is_dns_subdomain(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
        && s.starts_with(|c: char| c.is_ascii_alphanumeric())
        && s.ends_with(|c: char| c.is_ascii_alphanumeric())
}

fn is_path_segment(s: &str) -> bool {
    !s.is_empty() && s != "." && s != ".." && !s.contains(['/', '%'])
}

/// Most names are DNS subdomains. RBAC objects are path segments (`system:discovery`), and
/// the core group's APIService is `v1.` (version, dot, empty group).
fn valid_name(group: &str, name: &str) -> bool {
    match group {
        "rbac.authorization.k8s.io" => is_path_segment(name),
        "apiregistration.k8s.io" => is_dns_subdomain(name.trim_end_matches('.')),
        _ => is_dns_subdomain(name),
    }
}

/// Admission: validation, defaulting and the kind-specific rules every write passes.
fn admit(
    st: &State,
    info: &ResourceInfo,
    version: &str,
    old: Option<&Value>,
    mut obj: Value,
    opts: &WriteOpts,
) -> ApiResult<Value> {
    let name = meta_str(&obj, "name").unwrap_or_default().to_string();
    let mut causes = vec![];
    // Namespaces and Services become DNS labels (no dots, at most 63 characters).
    let label_name =
        info.group.is_empty() && matches!(info.plural.as_str(), "namespaces" | "services");
    if old.is_none() && label_name && (name.len() > 63 || name.contains('.')) {
        causes.push(Cause::invalid(
            "metadata.name",
            &json!(name),
            "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character",
        ));
    } else if old.is_none() && !valid_name(&info.group, &name) {
        causes.push(Cause::invalid(
            "metadata.name",
            &json!(name),
            "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character",
        ));
    }
    if let Some(old) = old.filter(|o| meta(o).is_some_and(|m| m.contains_key("deletionTimestamp")))
    {
        // Once deletion has begun, finalizers may only go away.
        let before = finalizers(old);
        let added: Vec<String> = finalizers(&obj)
            .into_iter()
            .filter(|f| !before.contains(f))
            .collect();
        if !added.is_empty() {
            causes.push(Cause {
                reason: "FieldValueForbidden",
                message: format!(
                    "Forbidden: no new finalizers can be added if the object is being deleted, found new finalizers {added:?}"
                ),
                field: "metadata.finalizers".into(),
            });
        }
    }
    if let Some(m) = meta(&obj) {
        for key in ["labels", "annotations"] {
            match m.get(key) {
                None | Some(Value::Null) => {}
                Some(Value::Object(map)) => {
                    for (k, v) in map {
                        if !v.is_string() {
                            causes.push(Cause::type_mismatch(
                                format!("metadata.{key}.{k}"),
                                v,
                                "string",
                            ));
                        }
                    }
                }
                Some(v) => {
                    causes.push(Cause::type_mismatch(format!("metadata.{key}"), v, "object"))
                }
            }
        }
        if let Some(f) = m.get("finalizers")
            && !f.as_array().is_some_and(|a| a.iter().all(Value::is_string))
        {
            causes.push(Cause::type_mismatch(
                "metadata.finalizers",
                f,
                "array of strings",
            ));
        }
        owner_references(m.get("ownerReferences"), &mut causes);
    }
    if info.group == "apiextensions.k8s.io" && info.plural == "customresourcedefinitions" {
        crd::admit_crd(st, &mut obj, &mut causes);
    } else if info.builtin {
        let seq = st.store.current_rv() + 1;
        crate::builtin::admit(&info.group, &info.plural, old, &mut obj, seq, &mut causes);
        crate::typed::check(&info.group, &info.plural, &info.kind, &mut obj, opts.strict)?;
    }
    if let Some(vi) = info.version(version)
        && let Some(schema) = vi.schema.as_ref()
    {
        let mut pruned = vec![];
        crd::apply_schema(schema, &mut obj, &mut pruned, &mut causes);
        if causes.is_empty() {
            crd::validate_cel(schema, vi.cel_key, &obj, old, &mut causes);
        }
        if opts.strict && !pruned.is_empty() {
            // kubectl sends fieldValidation=Strict by default, and a real server refuses
            // unknown fields then instead of dropping them silently.
            let listed: Vec<String> = pruned
                .iter()
                .map(|p| format!("unknown field \"{p}\""))
                .collect();
            return Err(ApiError::BadRequest(format!(
                "{} in {}: strict decoding error: {}",
                info.kind,
                info.api_version(version),
                listed.join(", ")
            )));
        }
    }
    if !causes.is_empty() {
        return Err(ApiError::invalid(&info.group, &info.kind, &name, causes));
    }
    if !opts.apply {
        managed::record_update(
            info,
            version,
            old,
            &mut obj,
            &opts.manager,
            opts.subresource.as_deref(),
        );
    }
    Ok(obj)
}

/// Side effects of a stored write: a CRD's resource becomes served at once.
fn after_write(st: &mut State, info: &ResourceInfo, stored: &Value) {
    if info.group == "apiextensions.k8s.io"
        && info.plural == "customresourcedefinitions"
        && let Ok(ri) = crd::crd_info(stored)
    {
        st.registry.upsert(ri);
    }
}

/// ownerReferences name their owner completely, and at most one is the controller.
fn owner_references(refs: Option<&Value>, causes: &mut Vec<Cause>) {
    let Some(refs) = refs.and_then(Value::as_array) else {
        return;
    };
    for (i, r) in refs.iter().enumerate() {
        for key in ["apiVersion", "kind", "name", "uid"] {
            if r.get(key).and_then(Value::as_str).is_none_or(str::is_empty) {
                causes.push(Cause::required(format!(
                    "metadata.ownerReferences[{i}].{key}"
                )));
            }
        }
    }
    let controllers = refs
        .iter()
        .filter(|r| r.get("controller") == Some(&json!(true)))
        .count();
    if controllers > 1 {
        causes.push(Cause::invalid(
            "metadata.ownerReferences",
            &json!(controllers),
            "Only one reference can have Controller set to true",
        ));
    }
}

/// Server-side apply of a whole object, in process (no HTTP): the resource is found
/// from its apiVersion/kind, the namespace from its metadata ("default" if unset).
pub fn apply_object(st: &mut State, obj: Value, manager: &str) -> ApiResult<Arc<Value>> {
    let api_version = obj
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let kind = obj.get("kind").and_then(Value::as_str).unwrap_or_default();
    let (group, version) = crate::resources::split_api_version(api_version);
    let info = st
        .registry
        .all()
        .iter()
        .find(|r| r.group == group && r.kind == kind && r.version(version).is_some())
        .cloned()
        .ok_or_else(|| ApiError::BadRequest(format!("no resource serves {api_version} {kind}")))?;
    let name = meta_str(&obj, "name")
        .ok_or_else(|| ApiError::BadRequest("an applied object needs metadata.name".into()))?
        .to_string();
    let ns = if info.namespaced {
        meta_str(&obj, "namespace").unwrap_or("default").to_string()
    } else {
        String::new()
    };
    let opts = WriteOpts {
        manager: manager.to_string(),
        apply: true,
        ..Default::default()
    };
    let live = st.store.get(&info.group_resource(), &ns, &name).cloned();
    let live_v = live.as_ref().map(|l| versioned(&info, version, l));
    let merged = managed::apply(&info, version, live_v.as_ref(), &obj, manager, true, None)?;
    match live {
        None => create(st, &info, version, &ns, merged, &opts),
        Some(live) => write(st, &info, version, &live, merged, &opts),
    }
}
