//! Label and field selectors, as in `?labelSelector=` and `?fieldSelector=`.

use serde_json::Value;

use crate::error::{ApiError, ApiResult};
use crate::util::{get_path, scalar_string};

#[derive(Clone, Debug, PartialEq)]
enum Op {
    Eq(String),
    NotEq(String),
    In(Vec<String>),
    NotIn(Vec<String>),
    Exists,
    NotExists,
    Gt(i64),
    Lt(i64),
}

#[derive(Clone, Debug, PartialEq)]
struct Requirement {
    key: String,
    op: Op,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct LabelSelector(Vec<Requirement>);

/// Split at commas that are not inside parentheses (`env in (a,b),tier`).
fn split_top(s: &str) -> Vec<&str> {
    let mut out = vec![];
    let (mut depth, mut start) = (0i32, 0usize);
    for (i, c) in s.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                out.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&s[start..]);
    out.into_iter()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect()
}

fn parse_set(rest: &str, raw: &str) -> ApiResult<Vec<String>> {
    let inner = rest
        .trim()
        .strip_prefix('(')
        .and_then(|r| r.strip_suffix(')'))
        .ok_or_else(|| {
            ApiError::BadRequest(format!(
                "unable to parse requirement: {raw}: expected (values)"
            ))
        })?;
    Ok(inner
        .split(',')
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
        .collect())
}

fn valid_key(k: &str) -> bool {
    !k.is_empty()
        && k.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/'))
}

impl LabelSelector {
    pub fn parse(s: &str) -> ApiResult<Self> {
        let mut reqs = vec![];
        for raw in split_top(s) {
            let bad = || ApiError::BadRequest(format!("unable to parse requirement: {raw}"));
            let req = if let Some(k) = raw.strip_prefix('!') {
                Requirement {
                    key: k.trim().into(),
                    op: Op::NotExists,
                }
            } else if let Some((k, v)) = raw.split_once("!=") {
                Requirement {
                    key: k.trim().into(),
                    op: Op::NotEq(v.trim().into()),
                }
            } else if let Some((k, v)) = raw.split_once("==").or_else(|| raw.split_once('=')) {
                Requirement {
                    key: k.trim().into(),
                    op: Op::Eq(v.trim().into()),
                }
            } else if let Some((k, v)) = raw.split_once('>') {
                Requirement {
                    key: k.trim().into(),
                    op: Op::Gt(v.trim().parse().map_err(|_| bad())?),
                }
            } else if let Some((k, v)) = raw.split_once('<') {
                Requirement {
                    key: k.trim().into(),
                    op: Op::Lt(v.trim().parse().map_err(|_| bad())?),
                }
            } else if let Some((k, rest)) = raw.split_once(" notin ") {
                Requirement {
                    key: k.trim().into(),
                    op: Op::NotIn(parse_set(rest, raw)?),
                }
            } else if let Some((k, rest)) = raw.split_once(" in ") {
                Requirement {
                    key: k.trim().into(),
                    op: Op::In(parse_set(rest, raw)?),
                }
            } else {
                Requirement {
                    key: raw.into(),
                    op: Op::Exists,
                }
            };
            if !valid_key(&req.key) {
                return Err(bad());
            }
            reqs.push(req);
        }
        Ok(LabelSelector(reqs))
    }

    /// Build from a `metav1.LabelSelector` object (matchLabels + matchExpressions).
    pub fn from_object(sel: &Value) -> Self {
        let mut reqs = vec![];
        if let Some(m) = sel.get("matchLabels").and_then(Value::as_object) {
            for (k, v) in m {
                reqs.push(Requirement {
                    key: k.clone(),
                    op: Op::Eq(scalar_string(v)),
                });
            }
        }
        for e in sel
            .get("matchExpressions")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let key = e
                .get("key")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string();
            let values: Vec<String> = e
                .get("values")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .map(scalar_string)
                .collect();
            let op = match e.get("operator").and_then(Value::as_str) {
                Some("In") => Op::In(values),
                Some("NotIn") => Op::NotIn(values),
                Some("Exists") => Op::Exists,
                Some("DoesNotExist") => Op::NotExists,
                _ => continue,
            };
            reqs.push(Requirement { key, op });
        }
        LabelSelector(reqs)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn matches(&self, obj: &Value) -> bool {
        let labels = obj.get("metadata").and_then(|m| m.get("labels"));
        let label = |k: &str| labels.and_then(|l| l.get(k)).and_then(Value::as_str);
        self.0.iter().all(|r| match &r.op {
            Op::Eq(v) => label(&r.key) == Some(v.as_str()),
            Op::NotEq(v) => label(&r.key) != Some(v.as_str()),
            Op::In(vs) => label(&r.key).is_some_and(|l| vs.iter().any(|v| v == l)),
            Op::NotIn(vs) => label(&r.key).is_none_or(|l| vs.iter().all(|v| v != l)),
            Op::Exists => label(&r.key).is_some(),
            Op::NotExists => label(&r.key).is_none(),
            Op::Gt(n) => label(&r.key)
                .and_then(|l| l.parse::<i64>().ok())
                .is_some_and(|l| l > *n),
            Op::Lt(n) => label(&r.key)
                .and_then(|l| l.parse::<i64>().ok())
                .is_some_and(|l| l < *n),
        })
    }

    /// The string form `kubectl` and the Scale subresource use (`app=web,tier in (a,b)`).
    pub fn to_query(&self) -> String {
        self.0
            .iter()
            .map(|r| match &r.op {
                Op::Eq(v) => format!("{}={v}", r.key),
                Op::NotEq(v) => format!("{}!={v}", r.key),
                Op::In(vs) => format!("{} in ({})", r.key, vs.join(",")),
                Op::NotIn(vs) => format!("{} notin ({})", r.key, vs.join(",")),
                Op::Exists => r.key.clone(),
                Op::NotExists => format!("!{}", r.key),
                Op::Gt(n) => format!("{}>{n}", r.key),
                Op::Lt(n) => format!("{}<{n}", r.key),
            })
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// `?fieldSelector=`: equality on any dotted field path. Upstream supports a per-kind
/// set of fields; evaluating the path generically covers all of them (metadata.name,
/// involvedObject.uid for `kubectl describe`, status.phase, ...).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct FieldSelector(Vec<(String, bool, String)>);

impl FieldSelector {
    pub fn parse(s: &str) -> ApiResult<Self> {
        let mut out = vec![];
        for raw in split_top(s) {
            let (k, eq, v) = if let Some((k, v)) = raw.split_once("!=") {
                (k, false, v)
            } else if let Some((k, v)) = raw.split_once("==").or_else(|| raw.split_once('=')) {
                (k, true, v)
            } else {
                return Err(ApiError::BadRequest(format!(
                    "invalid selector: '{raw}'; can't understand '{raw}'"
                )));
            };
            out.push((k.trim().to_string(), eq, v.trim().to_string()));
        }
        Ok(FieldSelector(out))
    }

    pub fn matches(&self, obj: &Value) -> bool {
        self.0.iter().all(|(k, eq, v)| {
            // Upstream's field sets write a bool the object leaves unset as "false"
            // (`spec.unschedulable==false` selects every schedulable Node).
            let actual = get_path(obj, k).map(scalar_string).unwrap_or_else(|| {
                if v == "false" {
                    v.clone()
                } else {
                    String::new()
                }
            });
            (actual == *v) == *eq
        })
    }

    /// The `metadata.name` an equality selector pins, if any (lets `kubectl delete --wait` skip a scan).
    pub fn name(&self) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, eq, _)| k == "metadata.name" && *eq)
            .map(|(_, _, v)| v.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(labels: Value) -> Value {
        json!({"metadata": {"name": "a", "namespace": "ns", "labels": labels}})
    }

    #[test]
    fn set_based_requirements_match_like_upstream() {
        let s = LabelSelector::parse("env in (prod, staging),tier notin (db),app,!legacy,team!=x")
            .unwrap();
        assert!(s.matches(&obj(json!({"env": "prod", "tier": "web", "app": "shop"}))));
        assert!(!s.matches(&obj(json!({"env": "dev", "app": "shop"}))));
        assert!(!s.matches(&obj(json!({"env": "prod", "tier": "db", "app": "shop"}))));
        assert!(!s.matches(&obj(json!({"env": "prod", "app": "shop", "legacy": "1"}))));
        assert!(!s.matches(&obj(json!({"env": "prod", "app": "shop", "team": "x"}))));
    }

    #[test]
    fn malformed_selector_is_a_bad_request() {
        assert!(LabelSelector::parse("env in prod").is_err());
        assert!(LabelSelector::parse("a b c").is_err());
    }

    #[test]
    fn field_selector_reads_any_path() {
        let f = FieldSelector::parse("metadata.name=a,metadata.namespace!=other").unwrap();
        assert!(f.matches(&obj(json!({}))));
        assert_eq!(f.name(), Some("a"));
        assert!(
            !FieldSelector::parse("metadata.name=b")
                .unwrap()
                .matches(&obj(json!({})))
        );
    }
}

#[cfg(test)]
mod robustness {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn arbitrary_selectors_parse_or_fail_cleanly(s in "[a-z=!(), ]{0,40}|\\PC{0,40}") {
            if let Ok(sel) = LabelSelector::parse(&s) {
                let _ = sel.matches(&serde_json::json!({"metadata": {"labels": {"a": "b"}}}));
                let _ = sel.to_query();
            }
            let _ = FieldSelector::parse(&s);
        }
    }
}
