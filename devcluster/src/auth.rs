//! Authentication and RBAC authorization, off unless `Config::authz` asks for them.
//!
//! Users: the kubeconfig's admin (a bearer token in `system:masters`, all-powerful),
//! ServiceAccounts (bearer tokens issued by TokenRequest, `serviceaccounts/{name}/token`),
//! users a test names (`DevCluster::client_as_user`), and `system:anonymous` for a
//! request without a token. Authorization evaluates the cluster's Roles, ClusterRoles and
//! their bindings as the RBAC authorizer does; a denial is the 403 a real server gives,
//! word for word. SelfSubjectAccessReview and SubjectAccessReview ask the same evaluator.
//! With authz off every request is allowed, but a known token still names its user (for
//! the audit log).

use std::collections::HashMap;
use std::io::Write;
use std::sync::Mutex;

use serde_json::{Value, json};

use crate::error::{ApiError, ApiResult, Target};
use crate::resources::GroupResource;
use crate::state::State;
use crate::util::meta_str;

pub const ADMIN_USER: &str = "kubernetes-admin";

#[derive(Clone, Debug, PartialEq)]
pub struct User {
    pub name: String,
    pub uid: String,
    pub groups: Vec<String>,
    /// `authentication.kubernetes.io/…` extras of ServiceAccount tokens.
    pub extra: HashMap<String, Vec<String>>,
}

impl User {
    pub fn admin() -> User {
        User {
            name: ADMIN_USER.into(),
            uid: String::new(),
            groups: vec!["system:masters".into(), "system:authenticated".into()],
            extra: HashMap::new(),
        }
    }

    fn anonymous() -> User {
        User {
            name: "system:anonymous".into(),
            uid: String::new(),
            groups: vec!["system:unauthenticated".into()],
            extra: HashMap::new(),
        }
    }

    pub fn named(name: &str, groups: &[String]) -> User {
        let mut groups = groups.to_vec();
        if !groups.iter().any(|g| g == "system:authenticated") {
            groups.push("system:authenticated".into());
        }
        User {
            name: name.into(),
            uid: String::new(),
            groups,
            extra: HashMap::new(),
        }
    }

    pub fn to_json(&self) -> Value {
        let mut u = json!({"username": self.name, "groups": self.groups});
        if !self.uid.is_empty() {
            u["uid"] = json!(self.uid);
        }
        if !self.extra.is_empty() {
            u["extra"] = json!(self.extra);
        }
        u
    }
}

/// Who a bearer token stands for.
#[derive(Clone, Debug)]
pub enum Holder {
    ServiceAccount {
        namespace: String,
        name: String,
        uid: String,
    },
    User(User),
}

#[derive(Clone, Debug)]
pub struct IssuedToken {
    pub holder: Holder,
    pub audiences: Vec<String>,
    /// Unix seconds; `None` never expires (tokens a test asked for in process).
    pub expires: Option<i64>,
}

/// The tokens this server issued. Opaque to clients, JWT-shaped for tools that peek.
#[derive(Debug, Default)]
pub struct Tokens {
    issued: HashMap<String, IssuedToken>,
}

impl Tokens {
    pub fn insert(&mut self, token: String, t: IssuedToken) {
        self.issued.insert(token, t);
    }
}

fn base64url(bytes: &[u8]) -> String {
    crate::util::base64_encode(bytes)
        .trim_end_matches('=')
        .replace('+', "-")
        .replace('/', "_")
}

/// A new token for a ServiceAccount, as TokenRequest issues it: a JWT whose claims name the
/// account (the signature is random: only this server checks its tokens, by lookup).
pub fn service_account_token(
    st: &mut State,
    ns: &str,
    name: &str,
    audiences: Vec<String>,
    expiration_seconds: i64,
) -> ApiResult<(String, i64)> {
    let gr = GroupResource {
        group: String::new(),
        resource: "serviceaccounts".into(),
    };
    let sa = st
        .store
        .get(&gr, ns, name)
        .ok_or_else(|| ApiError::not_found("", "serviceaccounts", name))?;
    let uid = meta_str(sa, "uid").unwrap_or_default().to_string();
    let now = chrono::Utc::now().timestamp();
    let exp = now + expiration_seconds.max(600);
    let claims = json!({
        "aud": audiences,
        "exp": exp,
        "iat": now,
        "iss": "https://kubernetes.default.svc.cluster.local",
        "jti": crate::util::new_uid(),
        "kubernetes.io": {"namespace": ns, "serviceaccount": {"name": name, "uid": uid}},
        "nbf": now,
        "sub": format!("system:serviceaccount:{ns}:{name}"),
    });
    let token = format!(
        "{}.{}.{}",
        base64url(br#"{"alg":"RS256","kid":"devcluster"}"#),
        base64url(claims.to_string().as_bytes()),
        base64url(crate::util::new_uid().as_bytes()),
    );
    st.tokens.insert(
        token.clone(),
        IssuedToken {
            holder: Holder::ServiceAccount {
                namespace: ns.into(),
                name: name.into(),
                uid,
            },
            audiences,
            expires: Some(exp),
        },
    );
    Ok((token, exp))
}

/// The user a token stands for, if it is valid now (a ServiceAccount token dies with its
/// account, as a bound token does).
pub fn token_user(st: &State, token: &str) -> Option<(User, Vec<String>)> {
    let t = st.tokens.issued.get(token)?;
    if t.expires
        .is_some_and(|e| e < chrono::Utc::now().timestamp())
    {
        return None;
    }
    let user = match &t.holder {
        Holder::User(u) => u.clone(),
        Holder::ServiceAccount {
            namespace,
            name,
            uid,
        } => {
            let gr = GroupResource {
                group: String::new(),
                resource: "serviceaccounts".into(),
            };
            let sa = st.store.get(&gr, namespace, name)?;
            if meta_str(sa, "uid") != Some(uid.as_str()) {
                return None;
            }
            let mut extra = HashMap::new();
            extra.insert(
                "authentication.kubernetes.io/credential-id".to_string(),
                vec![format!("JTI={}", &token[token.len().saturating_sub(8)..])],
            );
            User {
                name: format!("system:serviceaccount:{namespace}:{name}"),
                uid: uid.clone(),
                groups: vec![
                    "system:serviceaccounts".into(),
                    format!("system:serviceaccounts:{namespace}"),
                    "system:authenticated".into(),
                ],
                extra,
            }
        }
    };
    Some((user, t.audiences.clone()))
}

/// The request's user. With authz on, a bad token is a 401 and no token is anonymous;
/// with it off, anything but a known token is the admin.
pub fn authenticate(
    st: &State,
    admin_token: &str,
    authz: bool,
    authorization: Option<&str>,
) -> ApiResult<User> {
    let bearer = authorization
        .and_then(|h| h.strip_prefix("Bearer "))
        .map(str::trim);
    match bearer {
        Some(t) if t == admin_token => Ok(User::admin()),
        Some(t) => match token_user(st, t) {
            Some((u, _)) => Ok(u),
            None if authz => Err(ApiError::Unauthorized),
            None => Ok(User::admin()),
        },
        None if authz => Ok(User::anonymous()),
        None => Ok(User::admin()),
    }
}

/// What a request does, in the authorizer's terms.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Attributes {
    pub verb: String,
    pub resource_request: bool,
    pub group: String,
    pub version: String,
    pub resource: String,
    pub subresource: String,
    pub namespace: String,
    pub name: String,
    pub path: String,
}

impl Attributes {
    /// `pods/eviction`, or `pods`.
    pub fn full_resource(&self) -> String {
        if self.subresource.is_empty() {
            self.resource.clone()
        } else {
            format!("{}/{}", self.resource, self.subresource)
        }
    }

    /// From a SubjectAccessReview's `spec` (resourceAttributes or nonResourceAttributes).
    pub fn from_review(spec: &Value, namespace_override: Option<&str>) -> Attributes {
        let s = |v: Option<&Value>, k: &str| {
            v.and_then(|x| x.get(k))
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string()
        };
        if let Some(ra) = spec.get("resourceAttributes") {
            let ra = Some(ra);
            Attributes {
                verb: s(ra, "verb"),
                resource_request: true,
                group: s(ra, "group"),
                version: s(ra, "version"),
                resource: s(ra, "resource"),
                subresource: s(ra, "subresource"),
                namespace: namespace_override
                    .map(String::from)
                    .unwrap_or_else(|| s(ra, "namespace")),
                name: s(ra, "name"),
                path: String::new(),
            }
        } else {
            let na = spec.get("nonResourceAttributes");
            Attributes {
                verb: s(na, "verb"),
                path: s(na, "path"),
                ..Default::default()
            }
        }
    }
}

/// The attributes of an HTTP request (the API server's RequestInfo).
pub fn attributes(method: &http::Method, path: &str, watch: bool) -> Attributes {
    let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let non_resource = || Attributes {
        verb: method.as_str().to_lowercase(),
        path: path.to_string(),
        ..Default::default()
    };
    let (group, version, rest) = match segs.as_slice() {
        ["api", v, rest @ ..] if !rest.is_empty() => ("", *v, rest),
        ["apis", g, v, rest @ ..] if !rest.is_empty() => (*g, *v, rest),
        _ => return non_resource(),
    };
    let (watch, rest) = match rest {
        ["watch", tail @ ..] => (true, tail),
        _ => (watch, rest),
    };
    let (ns, rest): (&str, &[&str]) = match rest {
        // `namespaces/x/status` and `/finalize` are the namespace's own subresources.
        ["namespaces", ns, tail @ ..]
            if !tail.is_empty() && !matches!(tail[0], "status" | "finalize") =>
        {
            (*ns, tail)
        }
        other => ("", other),
    };
    let (resource, name, sub) = match rest {
        ["namespaces", name, sub @ ..] if ns.is_empty() => {
            ("namespaces", *name, sub.first().copied())
        }
        [resource] => (*resource, "", None),
        [resource, name] => (*resource, *name, None),
        [resource, name, sub, ..] => (*resource, *name, Some(*sub)),
        _ => return non_resource(),
    };
    // A namespace is its own object: `/api/v1/namespaces/x` is about x, not in it.
    let ns = if resource == "namespaces" && ns.is_empty() {
        name
    } else {
        ns
    };
    let verb = match (method.as_str(), name.is_empty()) {
        ("GET" | "HEAD", _) if watch => "watch",
        ("GET" | "HEAD", true) => "list",
        ("GET" | "HEAD", false) => "get",
        ("POST", _) => "create",
        ("PUT", _) => "update",
        ("PATCH", _) => "patch",
        ("DELETE", true) => "deletecollection",
        ("DELETE", false) => "delete",
        (other, _) => {
            return Attributes {
                verb: other.to_lowercase(),
                ..non_resource()
            };
        }
    };
    Attributes {
        verb: verb.into(),
        resource_request: true,
        group: group.into(),
        version: version.into(),
        resource: resource.into(),
        subresource: sub.unwrap_or_default().into(),
        namespace: ns.into(),
        name: name.into(),
        path: path.into(),
    }
}

fn strs(v: Option<&Value>) -> Vec<&str> {
    v.and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

fn subject_matches(subject: &Value, user: &User, binding_ns: &str) -> bool {
    let s = |k: &str| subject.get(k).and_then(Value::as_str).unwrap_or_default();
    match s("kind") {
        "User" => s("name") == user.name,
        "Group" => user.groups.iter().any(|g| g == s("name")),
        "ServiceAccount" => {
            let ns = if s("namespace").is_empty() {
                binding_ns
            } else {
                s("namespace")
            };
            user.name == format!("system:serviceaccount:{ns}:{}", s("name"))
        }
        _ => false,
    }
}

fn rule_allows(rule: &Value, a: &Attributes) -> bool {
    let verbs = strs(rule.get("verbs"));
    if !verbs.iter().any(|v| *v == "*" || *v == a.verb) {
        return false;
    }
    if !a.resource_request {
        return strs(rule.get("nonResourceURLs")).iter().any(|u| {
            *u == "*"
                || *u == a.path
                || u.strip_suffix('*')
                    .is_some_and(|prefix| a.path.starts_with(prefix))
        });
    }
    let groups = strs(rule.get("apiGroups"));
    if !groups.iter().any(|g| *g == "*" || *g == a.group) {
        return false;
    }
    let full = a.full_resource();
    let resources = strs(rule.get("resources"));
    let resource_ok = resources.iter().any(|r| {
        *r == "*"
            || *r == full
            || (!a.subresource.is_empty() && *r == format!("*/{}", a.subresource))
            || (!a.subresource.is_empty() && *r == format!("{}/*", a.resource))
    });
    if !resource_ok {
        return false;
    }
    let names = strs(rule.get("resourceNames"));
    names.is_empty() || names.contains(&a.name.as_str())
}

fn rbac(plural: &str) -> GroupResource {
    GroupResource {
        group: "rbac.authorization.k8s.io".into(),
        resource: plural.into(),
    }
}

fn role_rules(st: &State, role_ref: Option<&Value>, binding_ns: &str) -> Vec<Value> {
    let Some(r) = role_ref else { return vec![] };
    let name = r.get("name").and_then(Value::as_str).unwrap_or_default();
    let role = match r.get("kind").and_then(Value::as_str) {
        Some("ClusterRole") => st.store.get(&rbac("clusterroles"), "", name),
        Some("Role") => st.store.get(&rbac("roles"), binding_ns, name),
        _ => None,
    };
    role.and_then(|r| r.get("rules"))
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
}

/// The authorizer's answer, with the reason a SubjectAccessReview reports.
#[derive(Clone, Debug, PartialEq)]
pub struct Decision {
    pub allowed: bool,
    pub reason: String,
}

/// RBAC: does any binding of `user` grant a rule that covers `a`?
pub fn authorize(st: &State, user: &User, a: &Attributes) -> Decision {
    if user.groups.iter().any(|g| g == "system:masters") {
        return Decision {
            allowed: true,
            reason: String::new(),
        };
    }
    let who = |kind: &str, binding: &Value| {
        format!(
            "RBAC: allowed by {kind} \"{}\" of {} \"{}\" to {}",
            meta_str(binding, "name").unwrap_or_default(),
            binding
                .pointer("/roleRef/kind")
                .and_then(Value::as_str)
                .unwrap_or_default(),
            binding
                .pointer("/roleRef/name")
                .and_then(Value::as_str)
                .unwrap_or_default(),
            user.name
        )
    };
    for b in st.store.list(&rbac("clusterrolebindings"), None, None) {
        let subjects = b.get("subjects").and_then(Value::as_array);
        if !subjects
            .into_iter()
            .flatten()
            .any(|s| subject_matches(s, user, ""))
        {
            continue;
        }
        if role_rules(st, b.get("roleRef"), "")
            .iter()
            .any(|r| rule_allows(r, a))
        {
            return Decision {
                allowed: true,
                reason: who("ClusterRoleBinding", b),
            };
        }
    }
    if a.resource_request && !a.namespace.is_empty() {
        for b in st
            .store
            .list(&rbac("rolebindings"), Some(a.namespace.as_str()), None)
        {
            let subjects = b.get("subjects").and_then(Value::as_array);
            if !subjects
                .into_iter()
                .flatten()
                .any(|s| subject_matches(s, user, &a.namespace))
            {
                continue;
            }
            if role_rules(st, b.get("roleRef"), &a.namespace)
                .iter()
                .any(|r| rule_allows(r, a))
            {
                return Decision {
                    allowed: true,
                    reason: who("RoleBinding", b),
                };
            }
        }
    }
    Decision {
        allowed: false,
        reason: String::new(),
    }
}

/// The rules `user` holds in `namespace` (SelfSubjectRulesReview, `kubectl auth can-i --list`).
pub fn rules_of(st: &State, user: &User, namespace: &str) -> (Vec<Value>, Vec<Value>) {
    let mut rules = vec![];
    if user.groups.iter().any(|g| g == "system:masters") {
        rules.push(json!({"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]}));
        rules.push(json!({"verbs": ["*"], "nonResourceURLs": ["*"]}));
    }
    for b in st.store.list(&rbac("clusterrolebindings"), None, None) {
        if b.get("subjects")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .any(|s| subject_matches(s, user, ""))
        {
            rules.extend(role_rules(st, b.get("roleRef"), ""));
        }
    }
    for b in st.store.list(&rbac("rolebindings"), Some(namespace), None) {
        if b.get("subjects")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .any(|s| subject_matches(s, user, namespace))
        {
            rules.extend(role_rules(st, b.get("roleRef"), namespace));
        }
    }
    let (non_resource, resource): (Vec<Value>, Vec<Value>) = rules
        .into_iter()
        .partition(|r| r.get("nonResourceURLs").is_some());
    let resource = resource
        .into_iter()
        .map(|mut r| {
            if let Some(o) = r.as_object_mut() {
                o.retain(|k, _| {
                    matches!(
                        k.as_str(),
                        "verbs" | "apiGroups" | "resources" | "resourceNames"
                    )
                });
            }
            r
        })
        .collect();
    (resource, non_resource)
}

/// The 403 a real server gives, message and details alike.
pub fn forbidden(user: &User, a: &Attributes, reason: &str) -> ApiError {
    let mut msg = if !a.resource_request {
        format!("User {:?} cannot {} path {:?}", user.name, a.verb, a.path)
    } else if !a.namespace.is_empty() {
        format!(
            "User {:?} cannot {} resource {:?} in API group {:?} in the namespace {:?}",
            user.name,
            a.verb,
            a.full_resource(),
            a.group,
            a.namespace
        )
    } else {
        format!(
            "User {:?} cannot {} resource {:?} in API group {:?} at the cluster scope",
            user.name,
            a.verb,
            a.full_resource(),
            a.group
        )
    };
    if !reason.is_empty() {
        msg = format!("{msg}: {reason}");
    }
    let qualified = if a.group.is_empty() {
        a.resource.clone()
    } else {
        format!("{}.{}", a.resource, a.group)
    };
    let message = match (qualified.is_empty(), a.name.is_empty()) {
        (true, _) => format!("forbidden: {msg}"),
        (false, true) => format!("{qualified} is forbidden: {msg}"),
        (false, false) => format!("{qualified} {:?} is forbidden: {msg}", a.name),
    };
    ApiError::Denied {
        target: Target {
            group: a.group.clone(),
            kind: a.resource.clone(),
            name: a.name.clone(),
        },
        message,
    }
}

/// JSON lines, one per request: who did what to which object, and the answer's code.
#[derive(Debug)]
pub struct AuditLog {
    file: Mutex<std::fs::File>,
}

impl AuditLog {
    pub fn create(path: &std::path::Path) -> std::io::Result<AuditLog> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        Ok(AuditLog {
            file: Mutex::new(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)?,
            ),
        })
    }

    pub fn record(&self, user: &User, a: &Attributes, code: u16) {
        let mut line = json!({
            "ts": crate::util::now_rfc3339(),
            "user": user.name,
            "verb": a.verb,
            "code": code,
        });
        if a.resource_request {
            line["apiGroup"] = json!(a.group);
            line["resource"] = json!(a.resource);
            if !a.subresource.is_empty() {
                line["subresource"] = json!(a.subresource);
            }
            line["namespace"] = json!(a.namespace);
            line["name"] = json!(a.name);
        } else {
            line["path"] = json!(a.path);
        }
        let mut bytes = line.to_string().into_bytes();
        bytes.push(b'\n');
        let mut f = self.file.lock().unwrap_or_else(|p| p.into_inner());
        // One write per line, so concurrent requests never interleave within a line.
        if let Err(e) = f.write_all(&bytes) {
            tracing::warn!(error = %e, "failed to write the audit log");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::Method;

    #[test]
    fn request_attributes_follow_the_path_grammar() {
        let a = attributes(&Method::GET, "/api/v1/namespaces/x/pods", false);
        assert_eq!(
            (a.verb.as_str(), a.resource.as_str(), a.namespace.as_str()),
            ("list", "pods", "x")
        );
        let a = attributes(&Method::POST, "/api/v1/namespaces/x/pods/p/eviction", false);
        assert_eq!(
            (a.verb.as_str(), a.full_resource(), a.name.as_str()),
            ("create", "pods/eviction".to_string(), "p")
        );
        let a = attributes(&Method::GET, "/apis/apps/v1/deployments", true);
        assert_eq!((a.verb.as_str(), a.group.as_str()), ("watch", "apps"));
        let a = attributes(&Method::GET, "/api/v1/namespaces/x", false);
        assert_eq!(
            (
                a.verb.as_str(),
                a.resource.as_str(),
                a.namespace.as_str(),
                a.name.as_str()
            ),
            ("get", "namespaces", "x", "x")
        );
        let a = attributes(&Method::GET, "/apis", false);
        assert!(!a.resource_request);
        assert_eq!(a.path, "/apis");
    }

    #[test]
    fn a_denial_reads_as_a_real_servers() {
        let user = User::named("system:serviceaccount:ns:op", &[]);
        let a = attributes(&Method::GET, "/api/v1/namespaces/x/pods", false);
        let e = forbidden(&user, &a, "");
        assert_eq!(
            e.to_string(),
            "pods is forbidden: User \"system:serviceaccount:ns:op\" cannot list resource \"pods\" in API group \"\" in the namespace \"x\""
        );
        let a = attributes(
            &Method::DELETE,
            "/apis/apps/v1/namespaces/x/deployments/web",
            false,
        );
        assert_eq!(
            forbidden(&user, &a, "").to_string(),
            "deployments.apps \"web\" is forbidden: User \"system:serviceaccount:ns:op\" cannot delete resource \"deployments\" in API group \"apps\" in the namespace \"x\""
        );
    }

    #[test]
    fn rules_match_verbs_groups_resources_and_names() {
        let a = attributes(&Method::GET, "/api/v1/namespaces/x/pods/p/log", false);
        assert!(rule_allows(
            &json!({"verbs": ["get"], "apiGroups": [""], "resources": ["pods/log"]}),
            &a
        ));
        assert!(!rule_allows(
            &json!({"verbs": ["get"], "apiGroups": [""], "resources": ["pods"]}),
            &a
        ));
        assert!(!rule_allows(
            &json!({"verbs": ["get"], "apiGroups": [""], "resources": ["pods/log"], "resourceNames": ["q"]}),
            &a
        ));
        let d = attributes(&Method::GET, "/apis/apps", false);
        assert!(rule_allows(
            &json!({"verbs": ["get"], "nonResourceURLs": ["/apis/*", "/apis"]}),
            &d
        ));
    }
}
