//! Just enough Kubernetes protobuf to read the bodies kubectl's typed clients send.
//! `kubectl create namespace|configmap|secret|serviceaccount|deployment`, `kubectl run`
//! and `kubectl expose` POST protobuf
//! (client-go's default for built-in kinds) with no JSON fallback, so the server must
//! read it. Responses stay JSON: those clients accept `application/json` too.
//!
//! The envelope is `k8s\0` + `runtime.Unknown{typeMeta=1{apiVersion=1,kind=2}, raw=2}`;
//! `raw` is the typed message, decoded with the small field tables below (field
//! numbers from k8s.io/api generated.proto). Anything else is a 415.

use serde_json::{Map, Value, json};

use crate::error::{ApiError, ApiResult};
use crate::util::base64_encode;

#[derive(Clone, Copy)]
enum Kind {
    Str,
    Int,
    Bool,
    /// A non-pointer Go bool: always on the wire, omitted from JSON when false.
    Flag,
    Msg(&'static [Field]),
    MapStr,
    MapBytes,
    RepeatedStr,
    RepeatedMsg(&'static [Field]),
    Time,
    /// `intstr.IntOrString{type=1, intVal=2, strVal=3}`.
    IntOrString,
    /// `map<string, resource.Quantity{string=1}>`.
    MapQuantity,
    /// Read past without a look (a status a client cannot set on create).
    Ignore,
}

type Field = (u64, &'static str, Kind);

const OWNER_REF: &[Field] = &[
    (1, "kind", Kind::Str),
    (3, "name", Kind::Str),
    (4, "uid", Kind::Str),
    (5, "apiVersion", Kind::Str),
    (6, "controller", Kind::Bool),
    (7, "blockOwnerDeletion", Kind::Bool),
];

const OBJECT_META: &[Field] = &[
    (1, "name", Kind::Str),
    (2, "generateName", Kind::Str),
    (3, "namespace", Kind::Str),
    (5, "uid", Kind::Str),
    (6, "resourceVersion", Kind::Str),
    (7, "generation", Kind::Int),
    (8, "creationTimestamp", Kind::Time),
    (9, "deletionTimestamp", Kind::Time),
    (10, "deletionGracePeriodSeconds", Kind::Int),
    (11, "labels", Kind::MapStr),
    (12, "annotations", Kind::MapStr),
    (13, "ownerReferences", Kind::RepeatedMsg(OWNER_REF)),
    (14, "finalizers", Kind::RepeatedStr),
];

const NAMESPACE: &[Field] = &[
    (1, "metadata", Kind::Msg(OBJECT_META)),
    (
        2,
        "spec",
        Kind::Msg(&[(1, "finalizers", Kind::RepeatedStr)]),
    ),
    (3, "status", Kind::Msg(&[(1, "phase", Kind::Str)])),
];

const CONFIG_MAP: &[Field] = &[
    (1, "metadata", Kind::Msg(OBJECT_META)),
    (2, "data", Kind::MapStr),
    (3, "binaryData", Kind::MapBytes),
    (4, "immutable", Kind::Bool),
];

const SECRET: &[Field] = &[
    (1, "metadata", Kind::Msg(OBJECT_META)),
    (2, "data", Kind::MapBytes),
    (3, "type", Kind::Str),
    (4, "stringData", Kind::MapStr),
    (5, "immutable", Kind::Bool),
];

const LOCAL_REF: &[Field] = &[(1, "name", Kind::Str)];

const SERVICE_ACCOUNT: &[Field] = &[
    (1, "metadata", Kind::Msg(OBJECT_META)),
    (3, "imagePullSecrets", Kind::RepeatedMsg(LOCAL_REF)),
    (4, "automountServiceAccountToken", Kind::Bool),
];

const LABEL_SELECTOR: &[Field] = &[
    (1, "matchLabels", Kind::MapStr),
    (
        2,
        "matchExpressions",
        Kind::RepeatedMsg(&[
            (1, "key", Kind::Str),
            (2, "operator", Kind::Str),
            (3, "values", Kind::RepeatedStr),
        ]),
    ),
];

const CONTAINER_PORT: &[Field] = &[
    (1, "name", Kind::Str),
    (2, "hostPort", Kind::Int),
    (3, "containerPort", Kind::Int),
    (4, "protocol", Kind::Str),
    (5, "hostIP", Kind::Str),
];

const RESOURCES: &[Field] = &[
    (1, "limits", Kind::MapQuantity),
    (2, "requests", Kind::MapQuantity),
];

const CONTAINER: &[Field] = &[
    (1, "name", Kind::Str),
    (2, "image", Kind::Str),
    (3, "command", Kind::RepeatedStr),
    (4, "args", Kind::RepeatedStr),
    (5, "workingDir", Kind::Str),
    (6, "ports", Kind::RepeatedMsg(CONTAINER_PORT)),
    (
        7,
        "env",
        Kind::RepeatedMsg(&[(1, "name", Kind::Str), (2, "value", Kind::Str)]),
    ),
    (8, "resources", Kind::Msg(RESOURCES)),
    (13, "terminationMessagePath", Kind::Str),
    (14, "imagePullPolicy", Kind::Str),
    (16, "stdin", Kind::Flag),
    (17, "stdinOnce", Kind::Flag),
    (18, "tty", Kind::Flag),
    (20, "terminationMessagePolicy", Kind::Str),
];

const POD_SPEC: &[Field] = &[
    (2, "containers", Kind::RepeatedMsg(CONTAINER)),
    (3, "restartPolicy", Kind::Str),
    (4, "terminationGracePeriodSeconds", Kind::Int),
    (5, "activeDeadlineSeconds", Kind::Int),
    (6, "dnsPolicy", Kind::Str),
    (7, "nodeSelector", Kind::MapStr),
    (8, "serviceAccountName", Kind::Str),
    (10, "nodeName", Kind::Str),
    (15, "imagePullSecrets", Kind::RepeatedMsg(LOCAL_REF)),
    (16, "hostname", Kind::Str),
    (17, "subdomain", Kind::Str),
    (19, "schedulerName", Kind::Str),
    (20, "initContainers", Kind::RepeatedMsg(CONTAINER)),
    (24, "priorityClassName", Kind::Str),
];

const POD_TEMPLATE: &[Field] = &[
    (1, "metadata", Kind::Msg(OBJECT_META)),
    (2, "spec", Kind::Msg(POD_SPEC)),
];

const POD: &[Field] = &[
    (1, "metadata", Kind::Msg(OBJECT_META)),
    (2, "spec", Kind::Msg(POD_SPEC)),
    (3, "status", Kind::Ignore),
];

const DEPLOYMENT: &[Field] = &[
    (1, "metadata", Kind::Msg(OBJECT_META)),
    (
        2,
        "spec",
        Kind::Msg(&[
            (1, "replicas", Kind::Int),
            (2, "selector", Kind::Msg(LABEL_SELECTOR)),
            (3, "template", Kind::Msg(POD_TEMPLATE)),
            (
                4,
                "strategy",
                Kind::Msg(&[
                    (1, "type", Kind::Str),
                    (
                        2,
                        "rollingUpdate",
                        Kind::Msg(&[
                            (1, "maxUnavailable", Kind::IntOrString),
                            (2, "maxSurge", Kind::IntOrString),
                        ]),
                    ),
                ]),
            ),
            (5, "minReadySeconds", Kind::Int),
            (6, "revisionHistoryLimit", Kind::Int),
            (7, "paused", Kind::Flag),
            (9, "progressDeadlineSeconds", Kind::Int),
        ]),
    ),
    (3, "status", Kind::Ignore),
];

const SERVICE: &[Field] = &[
    (1, "metadata", Kind::Msg(OBJECT_META)),
    (
        2,
        "spec",
        Kind::Msg(&[
            (
                1,
                "ports",
                Kind::RepeatedMsg(&[
                    (1, "name", Kind::Str),
                    (2, "protocol", Kind::Str),
                    (3, "port", Kind::Int),
                    (4, "targetPort", Kind::IntOrString),
                    (5, "nodePort", Kind::Int),
                ]),
            ),
            (2, "selector", Kind::MapStr),
            (3, "clusterIP", Kind::Str),
            (4, "type", Kind::Str),
        ]),
    ),
    (3, "status", Kind::Ignore),
];

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

fn bad(what: &str) -> ApiError {
    ApiError::BadRequest(format!("malformed protobuf body: {what}"))
}

impl<'a> Reader<'a> {
    fn varint(&mut self) -> ApiResult<u64> {
        let mut out = 0u64;
        for shift in (0..64).step_by(7) {
            let b = *self
                .buf
                .get(self.pos)
                .ok_or_else(|| bad("truncated varint"))?;
            self.pos += 1;
            out |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(out);
            }
        }
        Err(bad("varint too long"))
    }

    fn bytes(&mut self) -> ApiResult<&'a [u8]> {
        let n = usize::try_from(self.varint()?).map_err(|_| bad("length"))?;
        let end = self
            .pos
            .checked_add(n)
            .filter(|e| *e <= self.buf.len())
            .ok_or_else(|| bad("truncated field"))?;
        let out = &self.buf[self.pos..end];
        self.pos = end;
        Ok(out)
    }

    /// (field number, wire type) pairs with their payloads; unknown wire types are errors.
    fn fields(mut self) -> ApiResult<Vec<(u64, Payload<'a>)>> {
        let mut out = vec![];
        while self.pos < self.buf.len() {
            let tag = self.varint()?;
            let payload = match tag & 7 {
                0 => Payload::Varint(self.varint()?),
                2 => Payload::Bytes(self.bytes()?),
                1 => {
                    self.pos += 8;
                    Payload::Skipped
                }
                5 => {
                    self.pos += 4;
                    Payload::Skipped
                }
                _ => return Err(bad("unsupported wire type")),
            };
            out.push((tag >> 3, payload));
        }
        if self.pos > self.buf.len() {
            return Err(bad("truncated fixed field"));
        }
        Ok(out)
    }
}

enum Payload<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
    Skipped,
}

/// A zero varint, an empty string or message, or a message of nothing but zero values.
fn is_zero(p: &Payload) -> bool {
    match p {
        Payload::Varint(v) => *v == 0,
        Payload::Bytes(b) => {
            b.is_empty() || read(b).is_ok_and(|fields| fields.iter().all(|(_, f)| is_zero(f)))
        }
        Payload::Skipped => false,
    }
}

fn read(buf: &[u8]) -> ApiResult<Vec<(u64, Payload<'_>)>> {
    Reader { buf, pos: 0 }.fields()
}

fn text(b: &[u8]) -> ApiResult<String> {
    String::from_utf8(b.to_vec()).map_err(|_| bad("invalid UTF-8"))
}

fn message(buf: &[u8], schema: &[Field]) -> ApiResult<Value> {
    let mut out = Map::new();
    for (num, payload) in read(buf)? {
        let Some((_, name, kind)) = schema.iter().find(|(n, _, _)| *n == num) else {
            // gogo-protobuf writes every non-pointer field, set or not: a zero value of a
            // field we do not map is noise; a real value we would drop is refused.
            if is_zero(&payload) {
                continue;
            }
            return Err(ApiError::UnsupportedMediaType(format!(
                "devcluster cannot read protobuf field {num} of this object; send application/json"
            )));
        };
        let name = name.to_string();
        match (kind, payload) {
            (Kind::Ignore, _) => {}
            (Kind::Str, Payload::Bytes(b)) => {
                let s = text(b)?;
                // gogo-protobuf writes empty strings too; JSON omits them.
                if !s.is_empty() {
                    out.insert(name, json!(s));
                }
            }
            (Kind::Int, Payload::Varint(v)) => {
                if v != 0 {
                    out.insert(name, json!(v as i64));
                }
            }
            (Kind::Bool, Payload::Varint(v)) => {
                out.insert(name, json!(v != 0));
            }
            (Kind::Flag, Payload::Varint(v)) => {
                if v != 0 {
                    out.insert(name, json!(true));
                }
            }
            (Kind::Msg(fields), Payload::Bytes(b)) => {
                out.insert(name, message(b, fields)?);
            }
            (Kind::Time, Payload::Bytes(b)) => {
                let secs = read(b)?.into_iter().find_map(|(n, p)| match (n, p) {
                    (1, Payload::Varint(v)) => Some(v as i64),
                    _ => None,
                });
                if let Some(t) = secs
                    .filter(|s| *s != 0)
                    .and_then(|s| chrono::DateTime::from_timestamp(s, 0))
                {
                    out.insert(
                        name,
                        json!(t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)),
                    );
                }
            }
            (Kind::IntOrString, Payload::Bytes(b)) => {
                let (mut is_str, mut int, mut text_val) = (false, 0i64, String::new());
                for (n, p) in read(b)? {
                    match (n, p) {
                        (1, Payload::Varint(t)) => is_str = t == 1,
                        (2, Payload::Varint(v)) => int = v as i64,
                        (3, Payload::Bytes(x)) => text_val = text(x)?,
                        _ => {}
                    }
                }
                // A non-pointer IntOrString is always on the wire; 0 means "not set".
                if is_str {
                    out.insert(name, json!(text_val));
                } else if int != 0 {
                    out.insert(name, json!(int));
                }
            }
            (Kind::MapQuantity, Payload::Bytes(b)) => {
                let (mut k, mut v) = (String::new(), String::new());
                for (n, p) in read(b)? {
                    match (n, p) {
                        (1, Payload::Bytes(x)) => k = text(x)?,
                        (2, Payload::Bytes(q)) => {
                            for (m, qp) in read(q)? {
                                if let (1, Payload::Bytes(x)) = (m, qp) {
                                    v = text(x)?;
                                }
                            }
                        }
                        _ => {}
                    }
                }
                if let Some(m) = out.entry(name).or_insert_with(|| json!({})).as_object_mut() {
                    m.insert(k, json!(v));
                }
            }
            (Kind::MapStr | Kind::MapBytes, Payload::Bytes(b)) => {
                let (mut k, mut v) = (String::new(), Value::String(String::new()));
                for (n, p) in read(b)? {
                    match (n, p) {
                        (1, Payload::Bytes(x)) => k = text(x)?,
                        (2, Payload::Bytes(x)) if matches!(kind, Kind::MapStr) => {
                            v = json!(text(x)?)
                        }
                        (2, Payload::Bytes(x)) => v = json!(base64_encode(x)),
                        _ => {}
                    }
                }
                let entry = out.entry(name).or_insert_with(|| json!({}));
                if let Some(m) = entry.as_object_mut() {
                    m.insert(k, v);
                }
            }
            (Kind::RepeatedStr, Payload::Bytes(b)) => {
                let s = text(b)?;
                if let Some(a) = out.entry(name).or_insert_with(|| json!([])).as_array_mut() {
                    a.push(json!(s));
                }
            }
            (Kind::RepeatedMsg(fields), Payload::Bytes(b)) => {
                let m = message(b, fields)?;
                if let Some(a) = out.entry(name).or_insert_with(|| json!([])).as_array_mut() {
                    a.push(m);
                }
            }
            _ => return Err(bad("field of unexpected wire type")),
        }
    }
    Ok(Value::Object(out))
}

/// Decode a protobuf request body to the JSON object it stands for.
pub fn decode(body: &[u8]) -> ApiResult<Value> {
    let unsupported = |what: String| {
        ApiError::UnsupportedMediaType(format!(
            "devcluster reads protobuf only for Namespace, ConfigMap, Secret, ServiceAccount, Pod, Service and Deployment ({what}); send application/json"
        ))
    };
    let rest = body
        .strip_prefix(b"k8s\0")
        .ok_or_else(|| bad("missing k8s envelope"))?;
    let (mut api_version, mut kind, mut raw) = (String::new(), String::new(), &[][..]);
    for (n, p) in read(rest)? {
        match (n, p) {
            (1, Payload::Bytes(tm)) => {
                for (m, q) in read(tm)? {
                    match (m, q) {
                        (1, Payload::Bytes(x)) => api_version = text(x)?,
                        (2, Payload::Bytes(x)) => kind = text(x)?,
                        _ => {}
                    }
                }
            }
            (2, Payload::Bytes(r)) => raw = r,
            _ => {}
        }
    }
    let schema = match (api_version.as_str(), kind.as_str()) {
        ("v1", "Namespace") => NAMESPACE,
        ("v1", "ConfigMap") => CONFIG_MAP,
        ("v1", "Secret") => SECRET,
        ("v1", "ServiceAccount") => SERVICE_ACCOUNT,
        ("v1", "Pod") => POD,
        ("v1", "Service") => SERVICE,
        ("apps/v1", "Deployment") => DEPLOYMENT,
        _ => return Err(unsupported(format!("{api_version} {kind}"))),
    };
    let mut obj = message(raw, schema)?;
    if let Some(o) = obj.as_object_mut() {
        o.insert("apiVersion".into(), json!(api_version));
        o.insert("kind".into(), json!(kind));
    }
    Ok(obj)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_namespace_decodes() {
        // k8s\0 + Unknown{typeMeta{apiVersion "v1", kind "Namespace"}, raw Namespace{metadata{name "shop"}}}
        let meta = [&[0x0a, 4][..], b"shop"].concat();
        let ns = [&[0x0a, meta.len() as u8][..], &meta].concat();
        let tm = [&[0x0a, 2][..], b"v1", &[0x12, 9], b"Namespace"].concat();
        let unknown = [
            &[0x0a, tm.len() as u8][..],
            &tm,
            &[0x12, ns.len() as u8],
            &ns,
        ]
        .concat();
        let body = [&b"k8s\0"[..], &unknown].concat();
        let v = decode(&body).unwrap();
        assert_eq!(
            v,
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop"}})
        );
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
            let _ = decode(&bytes);
            let _ = decode(&[&b"k8s\0"[..], &bytes].concat());
        }
    }
}
