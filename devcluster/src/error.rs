//! API errors, rendered as `metav1.Status` bodies with the reason and code the real
//! API server uses, because clients (kube-rs, kubectl) branch on `reason`/`code`.

use serde_json::{Value, json};

/// One field-level problem inside an `Invalid` (422) or conflict Status.
#[derive(Clone, Debug, PartialEq)]
pub struct Cause {
    pub reason: &'static str,
    pub message: String,
    pub field: String,
}

impl Cause {
    pub fn invalid(
        field: impl Into<String>,
        value: &Value,
        detail: impl std::fmt::Display,
    ) -> Self {
        Cause {
            reason: "FieldValueInvalid",
            message: format!("Invalid value: {}: {detail}", short_value(value)),
            field: field.into(),
        }
    }
    pub fn required(field: impl Into<String>) -> Self {
        Cause {
            reason: "FieldValueRequired",
            message: "Required value".into(),
            field: field.into(),
        }
    }
    pub fn not_supported(field: impl Into<String>, value: &Value, allowed: &[Value]) -> Self {
        let allowed: Vec<String> = allowed.iter().map(short_value).collect();
        Cause {
            reason: "FieldValueNotSupported",
            message: format!(
                "Unsupported value: {}: supported values: {}",
                short_value(value),
                allowed.join(", ")
            ),
            field: field.into(),
        }
    }
    pub fn type_mismatch(field: impl Into<String>, value: &Value, expected: &str) -> Self {
        let field = field.into();
        Cause {
            reason: "FieldValueTypeInvalid",
            message: format!(
                "Invalid value: {}: {field} in body must be of type {expected}",
                type_name(value)
            ),
            field,
        }
    }
    /// The message as the API server prints it inside the Status message: `field: message`.
    fn display(&self) -> String {
        format!("{}: {}", self.field, self.message)
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn short_value(v: &Value) -> String {
    match v {
        Value::Object(_) => "\"object\"".into(),
        Value::Array(_) => "\"array\"".into(),
        other => other.to_string(),
    }
}

/// Identifies the object an error is about (`details` in the Status).
#[derive(Clone, Debug, Default)]
pub struct Target {
    pub group: String,
    /// The resource (plural) for NotFound/AlreadyExists/Conflict, the Kind for Invalid, as upstream.
    pub kind: String,
    pub name: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{message}")]
    NotFound { target: Target, message: String },
    #[error("{message}")]
    AlreadyExists { target: Target, message: String },
    #[error("{message}")]
    Conflict {
        target: Target,
        message: String,
        causes: Vec<Cause>,
    },
    #[error("{kind} \"{name}\" is invalid")]
    Invalid {
        group: String,
        kind: String,
        name: String,
        causes: Vec<Cause>,
    },
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Forbidden(String),
    /// An authorization denial: 403 with the resource in `details`, as RBAC answers.
    #[error("{message}")]
    Denied { target: Target, message: String },
    #[error("Unauthorized")]
    Unauthorized,
    /// A request this server knows but cannot carry out (exec into a simulated Pod).
    #[error("{0}")]
    NotImplemented(String),
    #[error("{0}")]
    MethodNotAllowed(String),
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("{0}")]
    Expired(String),
    #[error("{0}")]
    Internal(String),
    #[error("{message}")]
    TooManyRequests { message: String, retry_after: u32 },
    /// An eviction a PodDisruptionBudget forbids: 429, the budget's shortfall as a cause.
    #[error("Cannot evict pod as it would violate the pod's disruption budget.")]
    DisruptionBudget { cause: String },
}

pub type ApiResult<T> = Result<T, ApiError>;

fn qualified(group: &str, resource: &str) -> String {
    if group.is_empty() {
        resource.to_string()
    } else {
        format!("{resource}.{group}")
    }
}

impl ApiError {
    pub fn not_found(group: &str, resource: &str, name: &str) -> Self {
        ApiError::NotFound {
            target: Target {
                group: group.into(),
                kind: resource.into(),
                name: name.into(),
            },
            message: format!("{} \"{name}\" not found", qualified(group, resource)),
        }
    }
    pub fn already_exists(group: &str, resource: &str, name: &str) -> Self {
        ApiError::AlreadyExists {
            target: Target {
                group: group.into(),
                kind: resource.into(),
                name: name.into(),
            },
            message: format!("{} \"{name}\" already exists", qualified(group, resource)),
        }
    }
    pub fn conflict(group: &str, resource: &str, name: &str, why: &str) -> Self {
        ApiError::Conflict {
            target: Target {
                group: group.into(),
                kind: resource.into(),
                name: name.into(),
            },
            message: format!(
                "Operation cannot be fulfilled on {} \"{name}\": {why}",
                qualified(group, resource)
            ),
            causes: vec![],
        }
    }
    pub fn stale(group: &str, resource: &str, name: &str) -> Self {
        Self::conflict(
            group,
            resource,
            name,
            "the object has been modified; please apply your changes to the latest version and try again",
        )
    }
    pub fn invalid(group: &str, kind: &str, name: &str, causes: Vec<Cause>) -> Self {
        ApiError::Invalid {
            group: group.into(),
            kind: kind.into(),
            name: name.into(),
            causes,
        }
    }

    pub fn code(&self) -> u16 {
        match self {
            ApiError::NotFound { .. } => 404,
            ApiError::AlreadyExists { .. } | ApiError::Conflict { .. } => 409,
            ApiError::Invalid { .. } => 422,
            ApiError::BadRequest(_) => 400,
            ApiError::Forbidden(_) | ApiError::Denied { .. } => 403,
            ApiError::Unauthorized => 401,
            ApiError::NotImplemented(_) => 501,
            ApiError::MethodNotAllowed(_) => 405,
            ApiError::UnsupportedMediaType(_) => 415,
            ApiError::Expired(_) => 410,
            ApiError::Internal(_) => 500,
            ApiError::TooManyRequests { .. } | ApiError::DisruptionBudget { .. } => 429,
        }
    }

    pub fn reason(&self) -> &'static str {
        match self {
            ApiError::NotFound { .. } => "NotFound",
            ApiError::AlreadyExists { .. } => "AlreadyExists",
            ApiError::Conflict { .. } => "Conflict",
            ApiError::Invalid { .. } => "Invalid",
            ApiError::BadRequest(_) => "BadRequest",
            ApiError::Forbidden(_) | ApiError::Denied { .. } => "Forbidden",
            ApiError::Unauthorized => "Unauthorized",
            ApiError::NotImplemented(_) => "NotImplemented",
            ApiError::MethodNotAllowed(_) => "MethodNotAllowed",
            ApiError::UnsupportedMediaType(_) => "UnsupportedMediaType",
            ApiError::Expired(_) => "Expired",
            ApiError::Internal(_) => "InternalError",
            ApiError::TooManyRequests { .. } | ApiError::DisruptionBudget { .. } => {
                "TooManyRequests"
            }
        }
    }

    /// The `metav1.Status` body.
    pub fn to_status(&self) -> Value {
        let (message, details) = match self {
            ApiError::NotFound { target, message }
            | ApiError::AlreadyExists { target, message }
            | ApiError::Denied { target, message } => (
                message.clone(),
                Some(json!({"name": target.name, "group": target.group, "kind": target.kind})),
            ),
            ApiError::Conflict {
                target,
                message,
                causes,
            } => {
                let mut d =
                    json!({"name": target.name, "group": target.group, "kind": target.kind});
                if !causes.is_empty() {
                    d["causes"] = causes_json(causes);
                }
                (message.clone(), Some(d))
            }
            ApiError::Invalid {
                group,
                kind,
                name,
                causes,
            } => {
                let listed: Vec<String> = causes.iter().map(Cause::display).collect();
                let message = format!(
                    "{} \"{name}\" is invalid: {}",
                    qualified(group, kind),
                    if listed.len() == 1 {
                        listed[0].clone()
                    } else {
                        format!("[{}]", listed.join(", "))
                    }
                );
                (
                    message,
                    Some(
                        json!({"name": name, "group": group, "kind": kind, "causes": causes_json(causes)}),
                    ),
                )
            }
            ApiError::TooManyRequests {
                message,
                retry_after,
            } => (
                message.clone(),
                Some(json!({"retryAfterSeconds": retry_after})),
            ),
            ApiError::DisruptionBudget { cause } => (
                self.to_string(),
                Some(json!({"causes": [{"reason": "DisruptionBudget", "message": cause}]})),
            ),
            other => (other.to_string(), None),
        };
        let mut status = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": message,
            "reason": self.reason(),
            "code": self.code(),
        });
        if let Some(d) = details {
            status["details"] = d;
        }
        status
    }
}

fn causes_json(causes: &[Cause]) -> Value {
    Value::Array(
        causes
            .iter()
            .map(|c| json!({"reason": c.reason, "message": c.message, "field": c.field}))
            .collect(),
    )
}

/// Errors of starting and running the server (not of requests).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("failed to bind {addr}")]
    Bind {
        addr: String,
        source: std::io::Error,
    },
    #[error("failed to write kubeconfig {path}")]
    WriteKubeconfig {
        path: String,
        source: std::io::Error,
    },
    #[error("failed to build kube client")]
    Client { source: kube::Error },
    #[error("invalid server URL {url}")]
    Url { url: String },
    #[error("failed to parse manifests")]
    ParseManifests { source: serde_saphyr::Error },
    #[error("failed to apply manifest #{index} ({what})")]
    ApplyManifest {
        index: usize,
        what: String,
        source: Box<ApiError>,
    },
    #[error("failed to open the audit log {path}")]
    Audit {
        path: String,
        source: std::io::Error,
    },
    #[error("failed to issue a token for {who}")]
    Token { who: String, source: Box<ApiError> },
    #[error("failed to build kube config")]
    Config {
        source: kube::config::KubeconfigError,
    },
}
