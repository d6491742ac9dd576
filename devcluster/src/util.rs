//! Small helpers: time stamps, uids, names, JSON paths.

use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};

use serde_json::{Map, Value};

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// 64 unpredictable-enough bits: no rand dependency for uids and name suffixes.
fn random_u64() -> u64 {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(n);
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    h.finish()
}

pub fn new_uid() -> String {
    let a = random_u64();
    let b = random_u64();
    format!(
        "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
        (a >> 32) as u32,
        (a >> 16) as u16,
        (a & 0xfff) as u16,
        ((b >> 48) as u16 & 0x3fff) | 0x8000,
        b & 0xffff_ffff_ffff
    )
}

/// The 5-character suffix the API server appends to `generateName`.
pub fn name_suffix() -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut r = random_u64();
    (0..5)
        .map(|_| {
            let c = ALPHABET[(r % ALPHABET.len() as u64) as usize] as char;
            r /= ALPHABET.len() as u64;
            c
        })
        .collect()
}

pub fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// `kubectl`-style age: "45s", "3m12s", "5h", "12d".
pub fn human_age(timestamp: &str) -> String {
    let Ok(t) = chrono::DateTime::parse_from_rfc3339(timestamp) else {
        return "<unknown>".into();
    };
    let secs = (chrono::Utc::now() - t.with_timezone(&chrono::Utc))
        .num_seconds()
        .max(0);
    let (m, h, d) = (secs / 60, secs / 3600, secs / 86400);
    if secs < 120 {
        format!("{secs}s")
    } else if m < 10 {
        if secs % 60 == 0 {
            format!("{m}m")
        } else {
            format!("{m}m{}s", secs % 60)
        }
    } else if h < 3 {
        format!("{m}m")
    } else if h < 8 {
        if m % 60 == 0 {
            format!("{h}h")
        } else {
            format!("{h}h{}m", m % 60)
        }
    } else if h < 48 {
        format!("{h}h")
    } else if d < 8 {
        if h % 24 == 0 {
            format!("{d}d")
        } else {
            format!("{d}d{}h", h % 24)
        }
    } else if d < 365 * 2 {
        format!("{d}d")
    } else {
        format!("{}y", d / 365)
    }
}

pub fn base64_encode(input: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(input.len().div_ceil(3) * 4);
    for chunk in input.chunks(3) {
        let n = (chunk[0] as u32) << 16
            | (*chunk.get(1).unwrap_or(&0) as u32) << 8
            | *chunk.get(2).unwrap_or(&0) as u32;
        out.push(T[(n >> 18) as usize & 63] as char);
        out.push(T[(n >> 12) as usize & 63] as char);
        out.push(if chunk.len() > 1 {
            T[(n >> 6) as usize & 63] as char
        } else {
            '='
        });
        out.push(if chunk.len() > 2 {
            T[n as usize & 63] as char
        } else {
            '='
        });
    }
    out
}

/// Split a dotted field path (".spec.replicas" or "spec.replicas") into its keys.
pub fn path_keys(path: &str) -> Vec<&str> {
    path.trim_start_matches('.')
        .split('.')
        .filter(|s| !s.is_empty())
        .collect()
}

pub fn get_path<'a>(v: &'a Value, path: &str) -> Option<&'a Value> {
    path_keys(path).iter().try_fold(v, |cur, k| cur.get(*k))
}

/// Set a dotted path, creating intermediate objects; fails when a non-object is in the way.
pub fn set_path(v: &mut Value, path: &str, value: Value) -> bool {
    let keys = path_keys(path);
    let Some((last, parents)) = keys.split_last() else {
        return false;
    };
    let mut cur = v;
    for k in parents {
        let Some(obj) = cur.as_object_mut() else {
            return false;
        };
        cur = obj
            .entry(k.to_string())
            .or_insert_with(|| Value::Object(Map::new()));
    }
    match cur.as_object_mut() {
        Some(obj) => {
            obj.insert(last.to_string(), value);
            true
        }
        None => false,
    }
}

pub fn meta(obj: &Value) -> Option<&Map<String, Value>> {
    obj.get("metadata").and_then(Value::as_object)
}

pub fn meta_str<'a>(obj: &'a Value, key: &str) -> Option<&'a str> {
    meta(obj).and_then(|m| m.get(key)).and_then(Value::as_str)
}

/// The metadata map, created (and the object made an object) if missing, so that a
/// malformed body can never make this panic.
pub fn meta_mut(obj: &mut Value) -> &mut Map<String, Value> {
    if !obj.is_object() {
        *obj = Value::Object(Map::new());
    }
    let Value::Object(o) = obj else {
        unreachable!("made an object above")
    };
    let m = o
        .entry("metadata")
        .or_insert_with(|| Value::Object(Map::new()));
    if !m.is_object() {
        *m = Value::Object(Map::new());
    }
    let Value::Object(m) = m else {
        unreachable!("made an object above")
    };
    m
}

/// A scalar as the string selectors and tables compare against.
pub fn scalar_string(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// A JSON array of strings as owned strings; anything else (absent, wrong type) is empty.
pub fn strings(v: Option<&Value>) -> Vec<String> {
    v.and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(String::from)
                .collect()
        })
        .unwrap_or_default()
}

/// `metadata.finalizers` of an object.
pub fn finalizers(obj: &Value) -> Vec<String> {
    strings(meta(obj).and_then(|m| m.get("finalizers")))
}

/// The keys a real API server writes first, in its order (Go struct order); the rest follow
/// alphabetically. A client reporting a decode error's column, or a human reading raw output,
/// sees the familiar layout.
const LEADING_KEYS: &[&str] = &["kind", "apiVersion", "metadata", "spec", "status"];

/// JSON of `v` with an object's leading keys first (nested objects stay in map order).
pub fn to_vec_ordered(v: &Value) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    write_ordered(&mut out, v);
    out
}

/// Appends `v` as [`to_vec_ordered`] writes it.
pub fn write_ordered(out: &mut Vec<u8>, v: &Value) {
    let Value::Object(map) = v else {
        let _ = serde_json::to_writer(&mut *out, v);
        return;
    };
    out.push(b'{');
    let leading = LEADING_KEYS.iter().filter_map(|k| map.get_key_value(*k));
    let rest = map
        .iter()
        .filter(|(k, _)| !LEADING_KEYS.contains(&k.as_str()));
    for (i, (k, val)) in leading.chain(rest).enumerate() {
        if i > 0 {
            out.push(b',');
        }
        let _ = serde_json::to_writer(&mut *out, k);
        out.push(b':');
        let _ = serde_json::to_writer(&mut *out, val);
    }
    out.push(b'}');
}
