//! Kubernetes protobuf request bodies, for every built-in kind. kubectl's typed clients
//! (`kubectl create clusterrole|rolebinding|cronjob|job|token|…`, `kubectl run`, `expose`,
//! `autoscale`, `auth can-i`) POST protobuf, client-go's default for built-ins, with no
//! JSON fallback, so the server must read it. Responses stay JSON: those clients accept
//! `application/json` too.
//!
//! The envelope is `k8s\0` + `runtime.Unknown{typeMeta=1{apiVersion=1,kind=2}, raw=2}`;
//! `raw` is the typed message. One generic decoder reads every message with the field
//! table in `fields.txt` (number, JSON name and wire type of each field of each message),
//! generated from the kube-rs project's `k8s-pb` bindings by `examples/protobuf_fields.rs`;
//! regenerate it when those follow a new Kubernetes release.

use std::collections::HashMap;
use std::sync::LazyLock;

use serde_json::{Map, Value, json};

use crate::error::{ApiError, ApiResult};
use crate::util::base64_encode;

#[derive(Clone, Copy, Debug, PartialEq)]
enum Ty {
    Str,
    Int,
    Bool,
    Double,
    Bytes,
    Msg(&'static str),
    MapStr,
    MapBytes,
    MapMsg(&'static str),
}

#[derive(Debug)]
struct FieldDef {
    json: &'static str,
    repeated: bool,
    ty: Ty,
}

#[derive(Debug, Default)]
struct Table {
    /// OpenAPI name of a message -> its fields by number.
    messages: HashMap<&'static str, HashMap<u64, FieldDef>>,
    /// Lowercased name -> name, to find a kind's message from the envelope's `kind`.
    by_lower: HashMap<String, &'static str>,
}

static TABLE: LazyLock<Table> = LazyLock::new(|| Table::parse(include_str!("fields.txt")));

impl Table {
    fn parse(text: &'static str) -> Table {
        let mut table = Table::default();
        for line in text.lines() {
            let mut cols = line.split('\t');
            let Some(name) = cols.next().filter(|n| !n.is_empty()) else {
                continue;
            };
            let mut fields = HashMap::new();
            for col in cols {
                let mut parts = col.splitn(3, ' ');
                let (Some(number), Some(json), Some(ty)) = (
                    parts.next().and_then(|n| n.parse::<u64>().ok()),
                    parts.next(),
                    parts.next(),
                ) else {
                    continue;
                };
                let (repeated, ty) = match ty.strip_prefix('*') {
                    Some(t) => (true, t),
                    None => (false, ty),
                };
                let ty = match ty {
                    "s" => Ty::Str,
                    "i" => Ty::Int,
                    "b" => Ty::Bool,
                    "d" => Ty::Double,
                    "y" => Ty::Bytes,
                    "Ms" => Ty::MapStr,
                    "My" => Ty::MapBytes,
                    t => match (t.strip_prefix("m:"), t.strip_prefix("Mm:")) {
                        (Some(m), _) => Ty::Msg(m),
                        (_, Some(m)) => Ty::MapMsg(m),
                        _ => continue,
                    },
                };
                fields.insert(number, FieldDef { json, repeated, ty });
            }
            table.by_lower.insert(name.to_lowercase(), name);
            table.messages.insert(name, fields);
        }
        table
    }
}

/// The OpenAPI package of an API group's protobuf messages.
fn package(group: &str) -> String {
    match group {
        "" => "io.k8s.api.core".into(),
        "meta.k8s.io" => "io.k8s.apimachinery.pkg.apis.meta".into(),
        "apiextensions.k8s.io" => "io.k8s.apiextensions-apiserver.pkg.apis.apiextensions".into(),
        "apiregistration.k8s.io" => "io.k8s.kube-aggregator.pkg.apis.apiregistration".into(),
        g => format!("io.k8s.api.{}", g.split('.').next().unwrap_or(g)),
    }
}

/// Fields whose zero value means something. gogo-protobuf writes every non-pointer field,
/// set or not, and the wire does not tell a pointer's explicit zero from a plain field's
/// default: zeros are dropped (as JSON's omitempty drops them) except for these pointers,
/// where 0 or false differs from unset (`kubectl create deployment --replicas=0`).
const MEANINGFUL_ZERO: &[&str] = &[
    "replicas",
    "automountServiceAccountToken",
    "suspend",
    "immutable",
    "controller",
    "blockOwnerDeletion",
    "parallelism",
    "completions",
    "backoffLimit",
    "successfulJobsHistoryLimit",
    "failedJobsHistoryLimit",
    "revisionHistoryLimit",
    "runAsNonRoot",
    "runAsUser",
    "runAsGroup",
    "privileged",
    "allowPrivilegeEscalation",
    "readOnlyRootFilesystem",
    "allowed",
    "minAvailable",
    "maxUnavailable",
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

    fn take(&mut self, n: usize) -> ApiResult<&'a [u8]> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|e| *e <= self.buf.len())
            .ok_or_else(|| bad("truncated field"))?;
        let out = &self.buf[self.pos..end];
        self.pos = end;
        Ok(out)
    }

    /// (field number, payload) pairs; unknown wire types are errors.
    fn fields(mut self) -> ApiResult<Vec<(u64, Payload<'a>)>> {
        let mut out = vec![];
        while self.pos < self.buf.len() {
            let tag = self.varint()?;
            let payload = match tag & 7 {
                0 => Payload::Varint(self.varint()?),
                1 => Payload::Fixed64(self.take(8)?),
                2 => {
                    let n = usize::try_from(self.varint()?).map_err(|_| bad("length"))?;
                    Payload::Bytes(self.take(n)?)
                }
                5 => {
                    self.take(4)?;
                    Payload::Skipped
                }
                _ => return Err(bad("unsupported wire type")),
            };
            out.push((tag >> 3, payload));
        }
        Ok(out)
    }
}

enum Payload<'a> {
    Varint(u64),
    Fixed64(&'a [u8]),
    Bytes(&'a [u8]),
    Skipped,
}

fn read(buf: &[u8]) -> ApiResult<Vec<(u64, Payload<'_>)>> {
    Reader { buf, pos: 0 }.fields()
}

fn text(b: &[u8]) -> ApiResult<String> {
    String::from_utf8(b.to_vec()).map_err(|_| bad("invalid UTF-8"))
}

fn varint_of(fields: &[(u64, Payload)], n: u64) -> Option<u64> {
    fields.iter().find_map(|(m, p)| match (m, p) {
        (m, Payload::Varint(v)) if *m == n => Some(*v),
        _ => None,
    })
}

fn bytes_of<'a>(fields: &[(u64, Payload<'a>)], n: u64) -> Option<&'a [u8]> {
    fields.iter().find_map(|(m, p)| match (m, p) {
        (m, Payload::Bytes(b)) if *m == n => Some(*b),
        _ => None,
    })
}

/// `metav1.Time{seconds=1, nanos=2}` (and MicroTime): the zero time is "unset".
fn time(buf: &[u8], micro: bool) -> ApiResult<Option<Value>> {
    let f = read(buf)?;
    let secs = varint_of(&f, 1).unwrap_or(0) as i64;
    let nanos = varint_of(&f, 2).unwrap_or(0) as u32;
    if secs == 0 && nanos == 0 {
        return Ok(None);
    }
    let t = chrono::DateTime::from_timestamp(secs, nanos).ok_or_else(|| bad("time"))?;
    let format = if micro {
        chrono::SecondsFormat::Micros
    } else {
        chrono::SecondsFormat::Secs
    };
    Ok(Some(json!(t.to_rfc3339_opts(format, true))))
}

/// Go's `time.Duration` string, as metav1.Duration marshals to JSON (`1h2m3s`, `1.5s`).
fn go_duration(nanos: i64) -> String {
    if nanos == 0 {
        return "0s".into();
    }
    let sign = if nanos < 0 { "-" } else { "" };
    let n = nanos.unsigned_abs();
    let (h, m) = (n / 3_600_000_000_000, (n / 60_000_000_000) % 60);
    let s = (n % 60_000_000_000) as f64 / 1e9;
    let mut out = sign.to_string();
    if h > 0 {
        out.push_str(&format!("{h}h"));
    }
    if h > 0 || m > 0 {
        out.push_str(&format!("{m}m"));
    }
    out.push_str(&format!("{s}s"));
    out
}

/// The JSON for a message, or None where the message stands for "unset" (a zero Time).
fn message(buf: &[u8], name: &str, depth: usize) -> ApiResult<Option<Value>> {
    if depth > 64 {
        return Err(bad("nested too deeply"));
    }
    match name {
        "io.k8s.apimachinery.pkg.apis.meta.v1.Time" => return time(buf, false),
        "io.k8s.apimachinery.pkg.apis.meta.v1.MicroTime" => return time(buf, true),
        "io.k8s.apimachinery.pkg.api.resource.Quantity" => {
            let f = read(buf)?;
            return Ok(Some(json!(text(bytes_of(&f, 1).unwrap_or_default())?)));
        }
        "io.k8s.apimachinery.pkg.util.intstr.IntOrString" => {
            let f = read(buf)?;
            return Ok(Some(if varint_of(&f, 1) == Some(1) {
                json!(text(bytes_of(&f, 3).unwrap_or_default())?)
            } else {
                json!(varint_of(&f, 2).unwrap_or(0) as i32)
            }));
        }
        "io.k8s.apimachinery.pkg.apis.meta.v1.Duration" => {
            let f = read(buf)?;
            return Ok(Some(json!(go_duration(
                varint_of(&f, 1).unwrap_or(0) as i64
            ))));
        }
        "io.k8s.apimachinery.pkg.runtime.RawExtension"
        | "io.k8s.apimachinery.pkg.apis.meta.v1.FieldsV1" => {
            let f = read(buf)?;
            let raw = bytes_of(&f, 1).unwrap_or_default();
            if raw.is_empty() {
                return Ok(None);
            }
            return serde_json::from_slice(raw)
                .map(Some)
                .map_err(|e| bad(&format!("embedded object is not JSON: {e}")));
        }
        _ => {}
    }
    let Some(fields) = TABLE.messages.get(name) else {
        return Err(ApiError::UnsupportedMediaType(format!(
            "devcluster has no protobuf description of {name}; send application/json"
        )));
    };
    let mut out = Map::new();
    for (num, payload) in read(buf)? {
        let Some(def) = fields.get(&num) else {
            // A field newer than the table: nothing to name it by.
            tracing::debug!(
                message = name,
                field = num,
                "unknown protobuf field skipped"
            );
            continue;
        };
        let key = def.json.to_string();
        let keep_zero = MEANINGFUL_ZERO.contains(&def.json);
        let value = match (def.ty, payload) {
            (Ty::Str, Payload::Bytes(b)) => {
                let s = text(b)?;
                (def.repeated || !s.is_empty()).then(|| json!(s))
            }
            (Ty::Int, Payload::Varint(v)) => {
                (def.repeated || keep_zero || v != 0).then(|| json!(v as i64))
            }
            (Ty::Int, Payload::Bytes(b)) if def.repeated => {
                // A packed repeated integer field.
                let mut r = Reader { buf: b, pos: 0 };
                let arr = out.entry(key).or_insert_with(|| json!([]));
                while r.pos < b.len() {
                    let v = r.varint()?;
                    if let Some(a) = arr.as_array_mut() {
                        a.push(json!(v as i64));
                    }
                }
                continue;
            }
            (Ty::Bool, Payload::Varint(v)) => (keep_zero || v != 0).then(|| json!(v != 0)),
            (Ty::Double, Payload::Fixed64(b)) => {
                let bytes: [u8; 8] = b.try_into().map_err(|_| bad("double"))?;
                let d = f64::from_le_bytes(bytes);
                (d != 0.0).then(|| json!(d))
            }
            (Ty::Bytes, Payload::Bytes(b)) => {
                (def.repeated || !b.is_empty()).then(|| json!(base64_encode(b)))
            }
            (Ty::Msg(m), Payload::Bytes(b)) if def.json == "-" => {
                // A Go embedded struct: JSON has its fields in the parent.
                if let Some(Value::Object(inner)) = message(b, m, depth + 1)? {
                    out.extend(inner);
                }
                continue;
            }
            (Ty::Msg(m), Payload::Bytes(b)) => message(b, m, depth + 1)?,
            (Ty::MapStr | Ty::MapBytes | Ty::MapMsg(_), Payload::Bytes(b)) => {
                let entry = read(b)?;
                let k = text(bytes_of(&entry, 1).unwrap_or_default())?;
                let raw = bytes_of(&entry, 2).unwrap_or_default();
                let v = match def.ty {
                    Ty::MapStr => json!(text(raw)?),
                    Ty::MapBytes => json!(base64_encode(raw)),
                    Ty::MapMsg(m) => message(raw, m, depth + 1)?.unwrap_or(Value::Null),
                    _ => Value::Null,
                };
                if let Some(m) = out.entry(key).or_insert_with(|| json!({})).as_object_mut() {
                    m.insert(k, v);
                }
                continue;
            }
            _ => {
                return Err(bad(&format!(
                    "field {num} of {name} has the wrong wire type"
                )));
            }
        };
        let Some(value) = value else { continue };
        if def.repeated {
            if let Some(a) = out.entry(key).or_insert_with(|| json!([])).as_array_mut() {
                a.push(value);
            }
        } else {
            out.insert(key, value);
        }
    }
    Ok(Some(Value::Object(out)))
}

/// Decode a protobuf request body to the JSON object it stands for.
pub fn decode(body: &[u8]) -> ApiResult<Value> {
    let rest = body
        .strip_prefix(b"k8s\0")
        .ok_or_else(|| bad("missing k8s envelope"))?;
    let (mut api_version, mut kind, mut raw) = (String::new(), String::new(), &[][..]);
    for (n, p) in read(rest)? {
        match (n, p) {
            (1, Payload::Bytes(tm)) => {
                let tm = read(tm)?;
                api_version = text(bytes_of(&tm, 1).unwrap_or_default())?;
                kind = text(bytes_of(&tm, 2).unwrap_or_default())?;
            }
            (2, Payload::Bytes(r)) => raw = r,
            _ => {}
        }
    }
    let (group, version) = crate::resources::split_api_version(&api_version);
    // Options kinds travel as `v1` or `meta.k8s.io/v1` but live in apimachinery's package.
    let group = if kind.ends_with("Options") {
        "meta.k8s.io"
    } else {
        group
    };
    let wanted = format!("{}.{version}.{kind}", package(group)).to_lowercase();
    let name = TABLE.by_lower.get(&wanted).copied().ok_or_else(|| {
        ApiError::UnsupportedMediaType(format!(
            "devcluster cannot read {api_version} {kind} as protobuf; send application/json"
        ))
    })?;
    let mut obj = message(raw, name, 0)?.unwrap_or_else(|| json!({}));
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

    fn field(n: u64, wire: u64, payload: &[u8]) -> Vec<u8> {
        let mut out = vec![(n << 3 | wire) as u8];
        if wire == 2 {
            out.push(payload.len() as u8);
        }
        out.extend_from_slice(payload);
        out
    }

    fn envelope(api_version: &str, kind: &str, raw: &[u8]) -> Vec<u8> {
        let tm = [
            field(1, 2, api_version.as_bytes()),
            field(2, 2, kind.as_bytes()),
        ]
        .concat();
        [&b"k8s\0"[..], &field(1, 2, &tm), &field(2, 2, raw)].concat()
    }

    #[test]
    fn a_namespace_decodes() {
        let raw = field(1, 2, &field(1, 2, b"shop"));
        let v = decode(&envelope("v1", "Namespace", &raw)).unwrap();
        assert_eq!(
            v,
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop"}})
        );
    }

    #[test]
    fn a_cluster_role_keeps_the_acronyms_of_its_json_names() {
        // PolicyRule{verbs=1, nonResourceURLs=5}: prost calls the latter non_resource_ur_ls.
        let rule = [field(1, 2, b"get"), field(5, 2, b"/healthz")].concat();
        let raw = [field(1, 2, &field(1, 2, b"viewer")), field(2, 2, &rule)].concat();
        let v = decode(&envelope(
            "rbac.authorization.k8s.io/v1",
            "ClusterRole",
            &raw,
        ))
        .unwrap();
        assert_eq!(
            v["rules"],
            json!([{"verbs": ["get"], "nonResourceURLs": ["/healthz"]}])
        );
    }

    #[test]
    fn special_messages_become_their_json_forms() {
        // Secret{data=2 map<string,bytes>}, metadata.creationTimestamp zero -> omitted.
        let meta = [field(1, 2, b"s"), field(8, 2, &[])].concat();
        let entry = [field(1, 2, b"k"), field(2, 2, b"hi")].concat();
        let raw = [field(1, 2, &meta), field(2, 2, &entry)].concat();
        let v = decode(&envelope("v1", "Secret", &raw)).unwrap();
        assert_eq!(v["metadata"], json!({"name": "s"}));
        assert_eq!(v["data"], json!({"k": "aGk="}));
        // IntOrString as a string and as an int, Duration, Time.
        let ios = [field(1, 0, &[1]), field(3, 2, b"25%")].concat();
        assert_eq!(
            message(&ios, "io.k8s.apimachinery.pkg.util.intstr.IntOrString", 0).unwrap(),
            Some(json!("25%"))
        );
        assert_eq!(go_duration(3_723_500_000_000), "1h2m3.5s");
        let mut secs = vec![];
        let mut n: u64 = 1_700_000_000;
        while n >= 0x80 {
            secs.push((n as u8) | 0x80);
            n >>= 7;
        }
        secs.push(n as u8);
        assert_eq!(
            message(
                &field(1, 0, &secs),
                "io.k8s.apimachinery.pkg.apis.meta.v1.Time",
                0
            )
            .unwrap(),
            Some(json!("2023-11-14T22:13:20Z"))
        );
    }

    #[test]
    fn every_message_reference_in_the_table_resolves() {
        for fields in TABLE.messages.values() {
            for f in fields.values() {
                if let Ty::Msg(m) | Ty::MapMsg(m) = f.ty {
                    assert!(TABLE.messages.contains_key(m), "{m} is not in the table");
                }
            }
        }
        assert!(TABLE.messages.len() > 1000);
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
            let _ = decode(&bytes);
            let _ = decode(&[&b"k8s\0"[..], &bytes].concat());
        }
    }
}
