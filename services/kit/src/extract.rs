//! Extractors whose rejections are problem documents naming the field at fault: JSON bodies
//! (syntax, unknown fields, wrong types, ranges), path and query parameters.

use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::{StatusCode, header, request::Parts};
use bytes::Bytes;
use serde::de::DeserializeOwned;

use crate::error::ApiError;

/// Domain checks beyond what the types say: lengths, ranges, formats.
pub trait Validate {
    fn validate(&self) -> Result<(), ApiError>;
}

/// A text field's length in characters, and no control characters (PostgreSQL cannot store
/// NUL in text, and the others have no place in names).
pub fn check_len(field: &str, value: &str, min: usize, max: usize) -> Result<(), ApiError> {
    if value.chars().any(char::is_control) {
        return Err(ApiError::invalid(
            field,
            "must not contain control characters",
        ));
    }
    let n = value.chars().count();
    if n < min || n > max {
        return Err(ApiError::invalid(
            field,
            format!("length must be between {min} and {max} characters, got {n}"),
        ));
    }
    Ok(())
}

pub fn check_range<T: PartialOrd + std::fmt::Display>(
    field: &str,
    value: T,
    min: T,
    max: T,
) -> Result<(), ApiError> {
    if value < min || value > max {
        return Err(ApiError::invalid(
            field,
            format!("must be between {min} and {max}, got {value}"),
        ));
    }
    Ok(())
}

/// A JSON body, deserialized and then validated. Types using it should carry
/// `#[serde(deny_unknown_fields)]` so a misspelt field is an error, not silently dropped.
#[derive(Debug, Clone, Copy, Default)]
pub struct Json<T>(pub T);

impl<T, S> FromRequest<S> for Json<T>
where
    T: DeserializeOwned + Validate,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let content_type = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        if !is_json(&content_type) {
            return Err(ApiError::UnsupportedMediaType {
                detail: format!("expected Content-Type: application/json, got {content_type:?}"),
            });
        }
        let bytes = Bytes::from_request(req, state).await.map_err(|rejection| {
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::PayloadTooLarge
            } else {
                ApiError::MalformedBody {
                    detail: rejection.body_text(),
                }
            }
        })?;
        let value = parse_json::<T>(&bytes)?;
        value.validate()?;
        Ok(Json(value))
    }
}

fn is_json(content_type: &str) -> bool {
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

/// Deserializes with the path to the failing field, so the problem can name it.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    // Syntax first: broken JSON is a 400 even when an unknown field comes before the break.
    serde_json::from_slice::<serde::de::IgnoredAny>(bytes).map_err(|err| {
        ApiError::MalformedBody {
            detail: err.to_string(),
        }
    })?;
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value: T = serde_path_to_error::deserialize(&mut de).map_err(|err| {
        let path = err.path().to_string();
        let inner = err.into_inner();
        if inner.is_syntax() || inner.is_eof() || inner.is_io() {
            ApiError::MalformedBody {
                detail: inner.to_string(),
            }
        } else {
            let message = inner.to_string();
            ApiError::invalid(field_of(&path, &message), message)
        }
    })?;
    de.end().map_err(|err| ApiError::MalformedBody {
        detail: err.to_string(),
    })?;
    Ok(value)
}

/// serde names unknown and missing fields only in its message (`unknown field `x``); the
/// path then points at the enclosing object.
fn field_of(path: &str, message: &str) -> String {
    let named = ["unknown field `", "missing field `"]
        .iter()
        .find_map(|marker| {
            let rest = message.split_once(marker)?.1;
            Some(rest.split_once('`')?.0.to_owned())
        });
    let parent = if path == "." || path.is_empty() {
        None
    } else {
        Some(path.to_owned())
    };
    match (parent, named) {
        (Some(p), Some(n)) if !p.ends_with(&n) => format!("{p}.{n}"),
        (Some(p), _) => p,
        (None, Some(n)) => n,
        (None, None) => "body".to_owned(),
    }
}

/// Path parameters; a bad one is a 4xx problem naming it.
#[derive(Debug, Clone, Copy)]
pub struct Path<T>(pub T);

impl<T, S> FromRequestParts<S> for Path<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(v)) => Ok(Path(v)),
            Err(PathRejection::FailedToDeserializePathParams(e)) => {
                let field = match e.kind() {
                    axum::extract::path::ErrorKind::ParseErrorAtKey { key, .. }
                    | axum::extract::path::ErrorKind::InvalidUtf8InPathParam { key } => key.clone(),
                    // A single parameter is parsed without its name: take it from the route.
                    _ => axum::extract::RawPathParams::from_request_parts(parts, state)
                        .await
                        .ok()
                        .and_then(|p| {
                            let mut names = p.iter().map(|(k, _)| k.to_owned());
                            match (names.next(), names.next()) {
                                (Some(one), None) => Some(one),
                                _ => None,
                            }
                        })
                        .unwrap_or_else(|| "path".to_owned()),
                };
                Err(ApiError::invalid(field, e.body_text()))
            }
            Err(other) => Err(ApiError::invalid("path", other.body_text())),
        }
    }
}

/// Query parameters; unknown or malformed ones are a 4xx problem naming them.
#[derive(Debug, Clone, Copy)]
pub struct Query<T>(pub T);

impl<T, S> FromRequestParts<S> for Query<T>
where
    T: DeserializeOwned + Validate,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(v)) => {
                v.validate()?;
                Ok(Query(v))
            }
            Err(QueryRejection::FailedToDeserializeQueryString(e)) => {
                let message = e.body_text();
                Err(ApiError::invalid(field_of(".", &message), message))
            }
            Err(other) => Err(ApiError::invalid("query", other.body_text())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Item {
        name: String,
        qty: u32,
        inner: Option<Inner>,
    }

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Inner {
        x: u8,
    }

    fn field(err: ApiError) -> String {
        match err {
            ApiError::InvalidField { field, .. } => field,
            other => panic!("not a field error: {other:?}"),
        }
    }

    #[test]
    fn a_wrong_type_names_its_field() {
        let err = parse_json::<Item>(br#"{"name": "a", "qty": "x"}"#).expect_err("bad type");
        assert_eq!(field(err), "qty");
    }

    #[test]
    fn an_unknown_field_is_named() {
        let err = parse_json::<Item>(br#"{"name": "a", "qty": 1, "colour": 2}"#)
            .expect_err("unknown field");
        assert_eq!(field(err), "colour");
        let err = parse_json::<Item>(br#"{"name": "a", "qty": 1, "inner": {"x": 1, "y": 2}}"#)
            .expect_err("unknown nested field");
        assert_eq!(field(err), "inner.y");
    }

    #[test]
    fn a_missing_field_is_named() {
        let err = parse_json::<Item>(br#"{"name": "a"}"#).expect_err("missing");
        assert_eq!(field(err), "qty");
    }

    #[test]
    fn a_nested_range_error_has_the_full_path() {
        let err = parse_json::<Item>(br#"{"name": "a", "qty": 1, "inner": {"x": 300}}"#)
            .expect_err("out of range");
        assert_eq!(field(err), "inner.x");
    }

    #[test]
    fn broken_json_is_malformed_not_invalid() {
        assert!(matches!(
            parse_json::<Item>(br#"{"name": "a", "colour": ["#),
            Err(ApiError::MalformedBody { .. })
        ));
        assert!(matches!(
            parse_json::<Item>(br#"{"nonsense": ["#),
            Err(ApiError::MalformedBody { .. })
        ));
        assert!(matches!(
            parse_json::<Item>(br#"{"name": "a", "qty": 1} trailing"#),
            Err(ApiError::MalformedBody { .. })
        ));
    }
}
