//! HTTP: parse the Kubernetes path grammar, decode bodies, dispatch to the verbs, and
//! encode results (objects, lists, Tables, Status errors).

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderMap, Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited, combinators::UnsyncBoxBody};
use hyper::body::Incoming;
use serde_json::{Value, json};

use crate::api::{self, ListOpts, WriteOpts};
use crate::error::{ApiError, ApiResult};
use crate::faults::{Fault, InjectedDrop, WatchCut};
use crate::gc::{self, DeleteOpts};
use crate::managed;
use crate::patch;
use crate::resources::ResourceInfo;
use crate::selector::{FieldSelector, LabelSelector};
use crate::state::Shared;
use crate::util::meta_str;
use crate::{discovery, scale, table, watch};

pub type Body = UnsyncBoxBody<Bytes, Infallible>;

/// Bodies above this are refused (etcd's own limit is 1.5 MiB per object).
const MAX_BODY: usize = 8 * 1024 * 1024;

pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into()).boxed_unsync()
}

pub fn json_response(code: StatusCode, v: &Value) -> Response<Body> {
    let bytes = crate::util::to_vec_ordered(v);
    let mut res = Response::new(full(bytes));
    *res.status_mut() = code;
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    res
}

pub fn bytes_response(code: StatusCode, bytes: Vec<u8>) -> Response<Body> {
    let mut res = Response::new(full(bytes));
    *res.status_mut() = code;
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    res
}

pub fn error_response(e: &ApiError) -> Response<Body> {
    let mut res = json_response(
        StatusCode::from_u16(e.code()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        &e.to_status(),
    );
    if let ApiError::TooManyRequests { retry_after, .. } = e {
        res.headers_mut()
            .insert(header::RETRY_AFTER, http::HeaderValue::from(*retry_after));
    }
    res
}

fn not_found_path() -> ApiError {
    ApiError::NotFound {
        target: Default::default(),
        message: "the server could not find the requested resource".into(),
    }
}

pub struct Req {
    pub method: Method,
    pub query: HashMap<String, String>,
    pub headers: HeaderMap,
    pub body: Bytes,
    /// Set when fault injection chose to end this watch early.
    pub cut: Option<WatchCut>,
    /// Who is asking (the admin when authentication is off and no known token is sent).
    pub user: crate::auth::User,
}

impl Req {
    pub fn q(&self, k: &str) -> Option<&str> {
        self.query
            .get(k)
            .map(String::as_str)
            .filter(|s| !s.is_empty())
    }
    fn flag(&self, k: &str) -> bool {
        matches!(self.q(k), Some("true" | "1"))
    }
    pub fn header(&self, h: header::HeaderName) -> &str {
        self.headers
            .get(h)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
    }
    /// `Accept: application/json;as=PartialObjectMetadata[List];g=meta.k8s.io;v=v1`, as
    /// kube-rs' `get_metadata`/`list_metadata`/`metadata_watcher` send.
    pub fn wants_metadata(&self) -> bool {
        self.header(header::ACCEPT)
            .split(',')
            .next()
            .is_some_and(|first| first.contains("as=PartialObjectMetadata"))
    }
    pub fn wants_table(&self) -> bool {
        self.header(header::ACCEPT)
            .split(',')
            .next()
            .is_some_and(|first| first.contains("as=Table"))
    }
    fn manager(&self) -> String {
        match self.q("fieldManager") {
            Some(m) => m.to_string(),
            // Upstream's default: the user agent up to the first '/'.
            None => self
                .header(header::USER_AGENT)
                .split('/')
                .next()
                .unwrap_or_default()
                .to_string(),
        }
    }
    fn dry_run(&self) -> bool {
        self.q("dryRun") == Some("All")
    }
    fn write_opts(&self, sub: Option<&str>) -> WriteOpts {
        WriteOpts {
            manager: self.manager(),
            dry_run: self.dry_run(),
            subresource: sub.map(String::from),
            apply: false,
            strict: self.q("fieldValidation") == Some("Strict"),
        }
    }
    fn list_opts(&self) -> ApiResult<ListOpts> {
        Ok(ListOpts {
            labels: self
                .q("labelSelector")
                .map(LabelSelector::parse)
                .transpose()?
                .unwrap_or_default(),
            fields: self
                .q("fieldSelector")
                .map(FieldSelector::parse)
                .transpose()?
                .unwrap_or_default(),
            limit: self.q("limit").and_then(|l| l.parse().ok()),
            continue_: self.q("continue").map(String::from),
        })
    }
}

/// Decode a JSON or YAML body into a JSON value; malformed input is a 400, never a panic.
pub fn parse_body(content_type: &str, body: &[u8]) -> ApiResult<Value> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::BadRequest("the request body is empty".into()));
    }
    if content_type.contains("protobuf") {
        return crate::protobuf::decode(body);
    }
    if content_type.contains("yaml") {
        serde_saphyr::from_slice::<Value>(body)
            .map_err(|e| ApiError::BadRequest(format!("error decoding YAML: {e}")))
    } else {
        serde_json::from_slice::<Value>(body).map_err(|e| {
            ApiError::BadRequest(format!("couldn't get version/kind; json parse error: {e}"))
        })
    }
}

pub async fn handle(
    shared: Arc<Shared>,
    req: Request<Incoming>,
) -> Result<Response<Body>, InjectedDrop> {
    let (parts, body) = req.into_parts();
    let query: HashMap<String, String> =
        form_urlencoded::parse(parts.uri.query().unwrap_or_default().as_bytes())
            .into_owned()
            .collect();
    let body = match Limited::new(body, MAX_BODY).collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => {
            return Ok(error_response(&ApiError::BadRequest(format!(
                "failed to read the request body: {e}"
            ))));
        }
    };
    let path = parts.uri.path().to_string();
    // Decided with the whole request in hand but before the store is touched, so no
    // injected error can leave part of a write behind.
    let fault = shared
        .faults
        .as_ref()
        .and_then(|f| f.decide(&parts.method, &path, &query, &parts.headers));
    let authorization = parts
        .headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let user = match authorization {
        // Without a token there is nothing to look up: no lock on the hot path.
        None if !shared.authz => Ok(crate::auth::User::admin()),
        _ => {
            let st = shared.lock();
            crate::auth::authenticate(&st, &shared.admin_token, shared.authz, authorization)
        }
    };
    let user = match user {
        Ok(u) => u,
        Err(e) => return Ok(error_response(&e)),
    };
    let watching = matches!(query.get("watch").map(String::as_str), Some("true" | "1"));
    let attrs = (shared.authz || shared.audit.is_some())
        .then(|| crate::auth::attributes(&parts.method, &path, watching));
    if shared.authz
        && let Some(a) = &attrs
    {
        let decision = crate::auth::authorize(&shared.lock(), &user, a);
        if !decision.allowed {
            let res = error_response(&crate::auth::forbidden(&user, a, &decision.reason));
            if let Some(audit) = &shared.audit {
                audit.record(&user, a, res.status().as_u16());
            }
            return Ok(res);
        }
    }
    let mut r = Req {
        method: parts.method,
        query,
        headers: parts.headers,
        body,
        cut: None,
        user,
    };
    if let Some(fault) = fault {
        tracing::debug!(method = %r.method, path, ?fault, "injecting fault");
        match fault {
            Fault::InternalError => {
                return Ok(error_response(&ApiError::Internal(
                    "Internal error occurred: injected fault (devcluster fault injection); the request was not applied".into(),
                )));
            }
            Fault::Conflict => {
                return Ok(error_response(&ApiError::Conflict {
                    target: Default::default(),
                    message: "Operation cannot be fulfilled: injected fault (devcluster fault injection); the request was not applied, please retry".into(),
                    causes: vec![],
                }));
            }
            Fault::TooManyRequests => {
                return Ok(error_response(&ApiError::TooManyRequests {
                    message: "injected fault (devcluster fault injection): too many requests, please try again later".into(),
                    retry_after: 1,
                }));
            }
            Fault::Drop => return Err(InjectedDrop),
            Fault::Delay(pause) => tokio::time::sleep(pause).await,
            Fault::WatchCut(cut) => r.cut = Some(cut),
            Fault::LostResponse => {}
        }
    }
    let res = route(&shared, &path, &r).unwrap_or_else(|e| error_response(&e));
    tracing::debug!(method = %r.method, path, status = res.status().as_u16(), "request");
    if let (Some(audit), Some(a)) = (&shared.audit, &attrs) {
        audit.record(&r.user, a, res.status().as_u16());
    }
    if fault == Some(Fault::LostResponse) {
        return Err(InjectedDrop);
    }
    Ok(res)
}

fn route(shared: &Arc<Shared>, path: &str, r: &Req) -> ApiResult<Response<Body>> {
    let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let get_only = || {
        if r.method == Method::GET {
            Ok(())
        } else {
            Err(ApiError::MethodNotAllowed("only GET".into()))
        }
    };
    match segs.as_slice() {
        ["version"] => {
            get_only()?;
            Ok(json_response(StatusCode::OK, &discovery::version()))
        }
        ["healthz" | "livez" | "readyz"] => Ok(Response::new(full("ok"))),
        [root @ ("api" | "apis")] if discovery::wants_aggregated(r.header(header::ACCEPT)) => {
            get_only()?;
            let reg = shared.lock().registry.clone();
            let mut res =
                json_response(StatusCode::OK, &discovery::aggregated(&reg, *root == "api"));
            res.headers_mut().insert(
                header::CONTENT_TYPE,
                http::HeaderValue::from_static(discovery::AGGREGATED_CONTENT_TYPE),
            );
            Ok(res)
        }
        ["api"] => {
            get_only()?;
            Ok(json_response(StatusCode::OK, &discovery::api_versions()))
        }
        ["apis"] => {
            get_only()?;
            let reg = shared.lock().registry.clone();
            Ok(json_response(StatusCode::OK, &discovery::group_list(&reg)))
        }
        ["apis", group] => {
            get_only()?;
            let reg = shared.lock().registry.clone();
            discovery::group(&reg, group)
                .map(|g| json_response(StatusCode::OK, &g))
                .ok_or_else(not_found_path)
        }
        ["openapi", "v3"] => openapi_response(shared, ""),
        ["openapi", "v3", "api", "v1"] => openapi_response(shared, "/v1"),
        ["openapi", "v3", "apis", g, v] => openapi_response(shared, &format!("{g}/{v}")),
        ["api", "v1", rest @ ..] => resource_route(shared, "", "v1", rest, r),
        ["apis", g, v, rest @ ..] => resource_route(shared, g, v, rest, r),
        [] => Ok(json_response(
            StatusCode::OK,
            &json!({"paths": ["/api", "/api/v1", "/apis", "/openapi/v3", "/version", "/healthz"]}),
        )),
        _ => Err(not_found_path()),
    }
}

fn openapi_response(shared: &Arc<Shared>, key: &str) -> ApiResult<Response<Body>> {
    let reg = shared.lock().registry.clone();
    let doc = shared
        .openapi
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .get(&reg, key);
    let bytes = doc.ok_or_else(not_found_path)?;
    let mut res = Response::new(full(bytes));
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    Ok(res)
}

/// A parsed resource URL.
struct Target<'a> {
    plural: &'a str,
    ns: Option<&'a str>,
    name: Option<&'a str>,
    sub: Option<&'a str>,
}

fn parse_target<'a>(rest: &[&'a str]) -> Option<Target<'a>> {
    let t = |plural, ns, name, sub| {
        Some(Target {
            plural,
            ns,
            name,
            sub,
        })
    };
    match rest {
        ["namespaces"] => t("namespaces", None, None, None),
        ["namespaces", name] => t("namespaces", None, Some(*name), None),
        ["namespaces", name, sub @ ("status" | "finalize")] => {
            t("namespaces", None, Some(*name), Some(*sub))
        }
        ["namespaces", ns, plural] => t(plural, Some(*ns), None, None),
        ["namespaces", ns, plural, name] => t(plural, Some(*ns), Some(*name), None),
        ["namespaces", ns, plural, name, sub] => t(plural, Some(*ns), Some(*name), Some(*sub)),
        [plural] => t(plural, None, None, None),
        [plural, name] => t(plural, None, Some(*name), None),
        [plural, name, sub] => t(plural, None, Some(*name), Some(*sub)),
        _ => None,
    }
}

fn resource_route(
    shared: &Arc<Shared>,
    group: &str,
    version: &str,
    rest: &[&str],
    r: &Req,
) -> ApiResult<Response<Body>> {
    if rest.is_empty() {
        let reg = shared.lock().registry.clone();
        return discovery::resource_list(&reg, group, version)
            .map(|l| json_response(StatusCode::OK, &l))
            .ok_or_else(not_found_path);
    }
    // The legacy `/watch/` path prefix is the same as `?watch=true`.
    let (legacy_watch, rest) = match rest {
        ["watch", tail @ ..] => (true, tail),
        _ => (false, rest),
    };
    let t = parse_target(rest).ok_or_else(not_found_path)?;
    let info = shared
        .lock()
        .registry
        .find(group, version, t.plural)
        .ok_or_else(not_found_path)?;
    let vinfo = info.version(version).ok_or_else(not_found_path)?;
    if (!info.namespaced && t.ns.is_some())
        || (info.namespaced && t.ns.is_none() && t.name.is_some())
    {
        return Err(not_found_path());
    }
    let ns = t.ns.unwrap_or_default();
    match t.sub {
        None => {}
        Some("status") if vinfo.status => {}
        Some("scale") if vinfo.scale.is_some() => {}
        Some("finalize") if info.plural == "namespaces" => {}
        Some(sub) if crate::subresources::is_write_path(&info, sub) => {}
        Some(sub) => {
            let name = t.name.ok_or_else(not_found_path)?;
            return crate::subresources::serve(shared, &info, version, ns, name, sub, r);
        }
    }
    if crate::resources::is_review(&info) {
        if t.name.is_some() || r.method != Method::POST {
            return Err(ApiError::MethodNotAllowed(format!(
                "{} only accepts POST to the collection",
                info.plural
            )));
        }
        let body = parse_body(r.header(header::CONTENT_TYPE), &r.body)?;
        let answer =
            crate::reviews::review(&shared.lock(), &info, ns, body, &r.user, shared.authz)?;
        return Ok(json_response(StatusCode::CREATED, &answer));
    }
    let watching = legacy_watch || r.flag("watch");
    match (&r.method, t.name) {
        (&Method::GET, None) if watching => watch::serve(shared.clone(), info, version, t.ns, r),
        (&Method::GET, Some(name)) if watching => {
            // Watching one object: a collection watch pinned by name.
            let mut q = r.query.clone();
            let pin = format!("metadata.name={name}");
            q.insert(
                "fieldSelector".into(),
                match r.q("fieldSelector") {
                    Some(f) => format!("{f},{pin}"),
                    None => pin,
                },
            );
            let r2 = Req {
                method: r.method.clone(),
                query: q,
                headers: r.headers.clone(),
                body: r.body.clone(),
                cut: r.cut,
                user: r.user.clone(),
            };
            watch::serve(shared.clone(), info, version, t.ns, &r2)
        }
        (&Method::GET, None) => {
            let opts = r.list_opts()?;
            let page = api::list(&shared.lock(), &info, t.ns, &opts)?;
            if r.wants_table() {
                Ok(json_response(
                    StatusCode::OK,
                    &table::list_table(&info, version, &page, r.q("includeObject")),
                ))
            } else if r.wants_metadata() {
                Ok(json_response(StatusCode::OK, &table::metadata_list(&page)))
            } else {
                Ok(bytes_response(
                    StatusCode::OK,
                    api::list_bytes(&info, version, &page),
                ))
            }
        }
        (&Method::GET, Some(name)) => {
            let obj = api::get(&shared.lock(), &info, ns, name)?;
            if t.sub == Some("scale") {
                return Ok(json_response(
                    StatusCode::OK,
                    &scale::view(&info, version, &obj),
                ));
            }
            if t.sub.is_none() && r.wants_table() {
                return Ok(json_response(
                    StatusCode::OK,
                    &table::object_table(&info, version, &obj, r.q("includeObject")),
                ));
            }
            Ok(object_response(StatusCode::OK, &info, version, &obj, r))
        }
        (&Method::POST, None) => {
            let body = parse_body(r.header(header::CONTENT_TYPE), &r.body)?;
            let stored = api::create(
                &mut shared.lock(),
                &info,
                version,
                ns,
                body,
                &r.write_opts(None),
            )?;
            Ok(object_response(
                StatusCode::CREATED,
                &info,
                version,
                &stored,
                r,
            ))
        }
        (&Method::PUT, Some(name)) => {
            let body = parse_body(r.header(header::CONTENT_TYPE), &r.body)?;
            let mut st = shared.lock();
            if t.sub == Some("scale") {
                let out = scale::update(
                    &mut st,
                    &info,
                    version,
                    ns,
                    name,
                    &body,
                    &r.write_opts(None),
                )?;
                return Ok(json_response(StatusCode::OK, &out));
            }
            let stored = api::update(
                &mut st,
                &info,
                version,
                ns,
                name,
                body,
                &r.write_opts(t.sub),
            )?;
            Ok(object_response(StatusCode::OK, &info, version, &stored, r))
        }
        (&Method::PATCH, Some(name)) => patch_route(shared, &info, version, ns, name, t.sub, r),
        (&Method::DELETE | &Method::POST, Some(_)) if t.sub.is_some() => {
            Err(ApiError::MethodNotAllowed(format!(
                "{} is not supported on the {} subresource",
                r.method,
                t.sub.unwrap_or_default()
            )))
        }
        (&Method::DELETE, Some(name)) => {
            let body = delete_options(r)?;
            let opts = DeleteOpts::parse(body.as_ref(), r.q("propagationPolicy"), r.dry_run())?;
            let mut st = shared.lock();
            let last = gc::delete(&mut st, &info, ns, name, &opts)?;
            let pending = st.store.get(&info.group_resource(), ns, name).is_some();
            if pending && !opts.dry_run {
                // Finalizers or a foreground cascade hold it: the object, marked deleting.
                return Ok(object_response(
                    StatusCode::ACCEPTED,
                    &info,
                    version,
                    &last,
                    r,
                ));
            }
            if crate::resources::returns_deleted_object(&info) {
                return Ok(object_response(StatusCode::OK, &info, version, &last, r));
            }
            // Gone at once: most kinds answer a Status (kube-rs' `delete` reports `Right`).
            Ok(json_response(
                StatusCode::OK,
                &json!({
                    "kind": "Status",
                    "apiVersion": "v1",
                    "metadata": {},
                    "status": "Success",
                    "details": {
                        "name": name,
                        "group": info.group,
                        "kind": info.plural,
                        "uid": meta_str(&last, "uid").unwrap_or_default(),
                    },
                }),
            ))
        }
        (&Method::DELETE, None) => {
            let body = delete_options(r)?;
            let opts = DeleteOpts::parse(body.as_ref(), r.q("propagationPolicy"), r.dry_run())?;
            let deleted =
                gc::delete_collection(&mut shared.lock(), &info, t.ns, &r.list_opts()?, &opts)?;
            let page = api::ListPage {
                items: deleted,
                rv: shared.lock().store.current_rv(),
                continue_: None,
                remaining: None,
            };
            Ok(json_response(
                StatusCode::OK,
                &api::list_object(&info, version, &page),
            ))
        }
        _ => Err(ApiError::MethodNotAllowed(format!(
            "{} is not supported here",
            r.method
        ))),
    }
}

/// A DELETE body is optional DeleteOptions, JSON or (from typed clients) protobuf.
fn delete_options(r: &Req) -> ApiResult<Option<Value>> {
    let ct = r.header(header::CONTENT_TYPE);
    if r.body.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    parse_body(ct, &r.body).map(Some)
}

fn patch_route(
    shared: &Arc<Shared>,
    info: &Arc<ResourceInfo>,
    version: &str,
    ns: &str,
    name: &str,
    sub: Option<&str>,
    r: &Req,
) -> ApiResult<Response<Body>> {
    let ct = r
        .header(header::CONTENT_TYPE)
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_string();
    let sub_status = sub.filter(|s| *s != "scale");
    if ct == "application/apply-patch+yaml" {
        // kube-rs sends JSON under this type; JSON is YAML, so one parser serves both.
        let applied = parse_body("yaml", &r.body)?;
        return apply_route(shared, info, version, ns, name, sub_status, applied, r);
    }
    let patch_body = parse_body("json", &r.body)?;
    let mut st = shared.lock();
    let live = api::get(&st, info, ns, name)?;
    let base = if sub == Some("scale") {
        scale::view(info, version, &live)
    } else {
        api::versioned(info, version, &live)
    };
    let mut doc = base.clone();
    match ct.as_str() {
        "application/merge-patch+json" => patch::merge_patch(&mut doc, &patch_body),
        "application/json-patch+json" => patch::json_patch(&mut doc, &patch_body).map_err(|e| {
            ApiError::invalid(
                &info.group,
                &info.kind,
                name,
                vec![crate::error::Cause {
                    reason: "FieldValueInvalid",
                    message: e,
                    field: "patch".into(),
                }],
            )
        })?,
        "application/strategic-merge-patch+json" if info.builtin && sub != Some("scale") => {
            patch::strategic_merge(info, version, &mut doc, &patch_body)
                .map_err(ApiError::BadRequest)?
        }
        "application/strategic-merge-patch+json" if sub == Some("scale") => {
            patch::merge_patch(&mut doc, &patch_body)
        }
        other => {
            return Err(ApiError::UnsupportedMediaType(format!(
                "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml{} (got {other:?})",
                if info.builtin {
                    ", application/strategic-merge-patch+json"
                } else {
                    ""
                }
            )));
        }
    }
    if meta_str(&doc, "resourceVersion") != meta_str(&base, "resourceVersion")
        && meta_str(&doc, "resourceVersion").is_some()
    {
        return Err(ApiError::stale(&info.group, &info.plural, name));
    }
    if sub == Some("scale") {
        let out = scale::update(&mut st, info, version, ns, name, &doc, &r.write_opts(None))?;
        return Ok(json_response(StatusCode::OK, &out));
    }
    if meta_str(&doc, "name") != Some(name) {
        return Err(ApiError::BadRequest(
            "a patch cannot change metadata.name".into(),
        ));
    }
    let stored = api::write(
        &mut st,
        info,
        version,
        &live,
        doc,
        &r.write_opts(sub_status),
    )?;
    Ok(object_response(StatusCode::OK, info, version, &stored, r))
}

/// An object in the representation the client asked for: `PartialObjectMetadata` when its
/// Accept says so (kube-rs' `*_metadata` calls, on every verb), else the object as `version`.
fn object_response(
    code: StatusCode,
    info: &ResourceInfo,
    version: &str,
    obj: &Value,
    r: &Req,
) -> Response<Body> {
    if r.wants_metadata() {
        json_response(code, &table::partial(obj))
    } else {
        json_response(code, &api::versioned(info, version, obj))
    }
}

#[allow(clippy::too_many_arguments)] // the request's parts, already parsed by the caller
fn apply_route(
    shared: &Arc<Shared>,
    info: &Arc<ResourceInfo>,
    version: &str,
    ns: &str,
    name: &str,
    sub: Option<&str>,
    applied: Value,
    r: &Req,
) -> ApiResult<Response<Body>> {
    let Some(manager) = r.q("fieldManager") else {
        return Err(ApiError::BadRequest(
            "PATCH requests of type apply must have fieldManager set".into(),
        ));
    };
    if !applied.is_object() || applied.get("apiVersion").is_none() || applied.get("kind").is_none()
    {
        return Err(ApiError::BadRequest(
            "an apply configuration must be an object with apiVersion and kind".into(),
        ));
    }
    if meta_str(&applied, "name").is_some_and(|n| n != name) {
        return Err(ApiError::BadRequest(format!(
            "the name of the object does not match the name on the URL ({name})"
        )));
    }
    let mut applied = applied;
    crate::util::meta_mut(&mut applied).insert("name".into(), json!(name));
    let mut opts = r.write_opts(sub);
    opts.apply = true;
    let mut st = shared.lock();
    let live = st.store.get(&info.group_resource(), ns, name).cloned();
    // A resourceVersion in the configuration is a precondition, as for any write.
    if let Some(rv) = meta_str(&applied, "resourceVersion").filter(|r| !r.is_empty())
        && live
            .as_ref()
            .is_none_or(|l| meta_str(l, "resourceVersion") != Some(rv))
    {
        return Err(ApiError::stale(&info.group, &info.plural, name));
    }
    let live_v = live.as_ref().map(|l| api::versioned(info, version, l));
    let merged = managed::apply(
        info,
        version,
        live_v.as_ref(),
        &applied,
        manager,
        r.flag("force"),
        sub,
    )?;
    match live {
        None => {
            let stored = api::create(&mut st, info, version, ns, merged, &opts)?;
            Ok(object_response(
                StatusCode::CREATED,
                info,
                version,
                &stored,
                r,
            ))
        }
        Some(live) => {
            let stored = api::write(&mut st, info, version, &live, merged, &opts)?;
            Ok(object_response(StatusCode::OK, info, version, &stored, r))
        }
    }
}
