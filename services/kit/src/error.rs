//! Every 4xx and 5xx a service sends is an RFC 9457 problem document
//! (`application/problem+json`), so clients in any language parse one error shape.

use std::sync::Arc;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

pub const PROBLEM_CONTENT_TYPE: &str = "application/problem+json";

/// Problem type URIs are relative to this base; they identify the error class for clients.
const TYPE_BASE: &str = "https://marketplace.dev/problems/";

/// An RFC 9457 problem details document.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Problem {
    /// A URI identifying the problem type.
    #[serde(rename = "type")]
    pub type_: String,
    /// A short, human-readable summary of the problem type.
    pub title: String,
    /// The HTTP status code.
    pub status: u16,
    /// An explanation specific to this occurrence.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// The request field (JSON path, header, path or query parameter) at fault, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

impl Problem {
    pub fn new(status: StatusCode, kind: &str, title: &str) -> Self {
        Self {
            type_: format!("{TYPE_BASE}{kind}"),
            title: title.to_owned(),
            status: status.as_u16(),
            detail: None,
            field: None,
        }
    }

    /// The generic problem for a status that no handler described (e.g. axum's 405).
    pub fn for_status(status: StatusCode) -> Self {
        Self {
            type_: "about:blank".to_owned(),
            title: status.canonical_reason().unwrap_or("Error").to_owned(),
            status: status.as_u16(),
            detail: None,
            field: None,
        }
    }

    pub fn detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }

    pub fn field(mut self, field: impl Into<String>) -> Self {
        self.field = Some(field.into());
        self
    }

    /// The problem's type slug (the part after the base URI), for matching in clients.
    pub fn kind(&self) -> &str {
        self.type_.strip_prefix(TYPE_BASE).unwrap_or(&self.type_)
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = serde_json::to_vec(&self).unwrap_or_default();
        let mut response = (status, body).into_response();
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(PROBLEM_CONTENT_TYPE),
        );
        response
    }
}

/// A handler's failure. Cheap to clone (single-flight hands one result to many waiters).
#[derive(Clone, Debug, thiserror::Error)]
pub enum ApiError {
    /// The body is not JSON at all.
    #[error("malformed request body: {detail}")]
    MalformedBody { detail: String },
    /// A field is missing, unknown, of the wrong type or out of range.
    #[error("invalid field {field}: {detail}")]
    InvalidField { field: String, detail: String },
    #[error("unsupported media type: {detail}")]
    UnsupportedMediaType { detail: String },
    #[error("request body too large")]
    PayloadTooLarge,
    #[error("{what} not found")]
    NotFound { what: String },
    /// The request conflicts with the current state (duplicate, out of stock, …).
    #[error("conflict ({kind}): {detail}")]
    Conflict { kind: &'static str, detail: String },
    /// A well-formed request the domain refuses (a declined payment).
    #[error("refused ({kind}): {detail}")]
    Refused {
        kind: &'static str,
        status: StatusCode,
        detail: String,
    },
    /// A peer service failed or is unreachable.
    #[error("peer {peer} failed: {detail}")]
    Upstream { peer: String, detail: String },
    /// The database cannot be reached right now.
    #[error("failed to reach the database")]
    Unavailable {
        #[source]
        source: Arc<sqlx::Error>,
    },
    #[error("failed to run a database query")]
    Database {
        #[source]
        source: Arc<sqlx::Error>,
    },
    #[error("internal error: {0}")]
    Internal(String),
}

impl ApiError {
    pub fn invalid(field: impl Into<String>, detail: impl Into<String>) -> Self {
        Self::InvalidField {
            field: field.into(),
            detail: detail.into(),
        }
    }

    pub fn not_found(what: impl Into<String>) -> Self {
        Self::NotFound { what: what.into() }
    }

    pub fn conflict(kind: &'static str, detail: impl Into<String>) -> Self {
        Self::Conflict {
            kind,
            detail: detail.into(),
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            Self::MalformedBody { .. } => StatusCode::BAD_REQUEST,
            Self::InvalidField { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            Self::UnsupportedMediaType { .. } => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::NotFound { .. } => StatusCode::NOT_FOUND,
            Self::Conflict { .. } => StatusCode::CONFLICT,
            Self::Refused { status, .. } => *status,
            Self::Upstream { .. } => StatusCode::BAD_GATEWAY,
            Self::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            Self::Database { .. } | Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn to_problem(&self) -> Problem {
        let status = self.status();
        match self {
            Self::MalformedBody { detail } => {
                Problem::new(status, "malformed-body", "Malformed request body").detail(detail)
            }
            Self::InvalidField { field, detail } => {
                Problem::new(status, "invalid-field", "Invalid request field")
                    .detail(format!("{field}: {detail}"))
                    .field(field.clone())
            }
            Self::UnsupportedMediaType { detail } => {
                Problem::new(status, "unsupported-media-type", "Unsupported media type")
                    .detail(detail)
            }
            Self::PayloadTooLarge => Problem::new(status, "payload-too-large", "Payload too large")
                .detail("the request body exceeds the size limit"),
            Self::NotFound { what } => {
                Problem::new(status, "not-found", "Not found").detail(format!("{what} not found"))
            }
            Self::Conflict { kind, detail } => {
                Problem::new(status, kind, "Conflict with the current state").detail(detail)
            }
            Self::Refused { kind, detail, .. } => {
                Problem::new(status, kind, "Request refused").detail(detail)
            }
            Self::Upstream { peer, detail } => {
                Problem::new(status, "upstream", "Peer failed").detail(format!("{peer}: {detail}"))
            }
            // Internal causes stay in the logs, not in responses.
            Self::Unavailable { .. } => Problem::new(status, "unavailable", "Service unavailable")
                .detail("the database is unreachable; retry later"),
            Self::Database { .. } | Self::Internal(_) => {
                Problem::new(status, "internal", "Internal error")
            }
        }
    }
}

impl From<sqlx::Error> for ApiError {
    /// Named constraint violations are the client's fault (409/422); connection trouble is
    /// 503 so clients and the peer client's retry know it is transient.
    fn from(err: sqlx::Error) -> Self {
        if let sqlx::Error::Database(db) = &err {
            let constraint = db.constraint().unwrap_or_default().to_owned();
            match db.kind() {
                sqlx::error::ErrorKind::UniqueViolation => {
                    return ApiError::conflict(
                        "duplicate",
                        format!("violates unique constraint {constraint}"),
                    );
                }
                sqlx::error::ErrorKind::CheckViolation
                | sqlx::error::ErrorKind::ForeignKeyViolation
                | sqlx::error::ErrorKind::NotNullViolation => {
                    return ApiError::invalid(
                        constraint.clone(),
                        format!("violates constraint {constraint}"),
                    );
                }
                _ => {}
            }
        }
        match err {
            sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::Io(_)
            | sqlx::Error::Tls(_) => ApiError::Unavailable {
                source: Arc::new(err),
            },
            other => ApiError::Database {
                source: Arc::new(other),
            },
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.status().is_server_error() {
            tracing::error!(error = %self, source = ?std::error::Error::source(&self), "request failed");
        }
        self.to_problem().into_response()
    }
}

pub type ApiResult<T> = Result<T, ApiError>;
