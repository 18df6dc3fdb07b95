//! One error type for the whole service, mapped once to an HTTP response and once to a socket
//! ack (`{"ok": false, "error": {...}}`).
//!
//! Messages are written for people; internal causes (SQL, Redis) are logged, never returned.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use serde_json::{json, Value};

/// A field-level validation problem, returned beside `invalid_payload`.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct FieldError {
    /// The field's name, or its path in the payload (`file.url`).
    pub field: std::borrow::Cow<'static, str>,
    pub message: String,
}

/// The error codes of the wire contract.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Code {
    InvalidPayload,
    TooLong,
    NotFound,
    Forbidden,
    NotInChannel,
    RateLimited,
    Unavailable,
    Unauthorized,
    InvalidCredentials,
    Conflict,
    ForbiddenOrigin,
    MethodNotAllowed,
    TooManyConnections,
    TooLarge,
    UnsupportedType,
    QuotaExceeded,
    Internal,
}

impl Code {
    /// The snake_case name clients match on.
    pub fn as_str(self) -> &'static str {
        match self {
            Code::InvalidPayload => "invalid_payload",
            Code::TooLong => "too_long",
            Code::NotFound => "not_found",
            Code::Forbidden => "forbidden",
            Code::NotInChannel => "not_in_channel",
            Code::RateLimited => "rate_limited",
            Code::Unavailable => "unavailable",
            Code::Unauthorized => "unauthorized",
            Code::InvalidCredentials => "invalid_credentials",
            Code::Conflict => "conflict",
            Code::ForbiddenOrigin => "forbidden_origin",
            Code::MethodNotAllowed => "method_not_allowed",
            Code::TooManyConnections => "too_many_connections",
            Code::TooLarge => "too_large",
            Code::UnsupportedType => "unsupported_type",
            Code::QuotaExceeded => "quota_exceeded",
            Code::Internal => "internal",
        }
    }

    /// The code of an error answer that has only a status (a rejection that is not banter's).
    pub fn of_status(status: StatusCode) -> Code {
        match status {
            StatusCode::NOT_FOUND => Code::NotFound,
            StatusCode::METHOD_NOT_ALLOWED => Code::MethodNotAllowed,
            StatusCode::PAYLOAD_TOO_LARGE => Code::TooLarge,
            StatusCode::UNSUPPORTED_MEDIA_TYPE => Code::UnsupportedType,
            StatusCode::TOO_MANY_REQUESTS => Code::RateLimited,
            StatusCode::UNAUTHORIZED => Code::Unauthorized,
            StatusCode::FORBIDDEN => Code::Forbidden,
            StatusCode::CONFLICT => Code::Conflict,
            StatusCode::SERVICE_UNAVAILABLE | StatusCode::GATEWAY_TIMEOUT => Code::Unavailable,
            s if s.is_server_error() => Code::Internal,
            _ => Code::InvalidPayload,
        }
    }

    fn status(self) -> StatusCode {
        match self {
            Code::InvalidPayload | Code::TooLong => StatusCode::BAD_REQUEST,
            Code::NotFound => StatusCode::NOT_FOUND,
            Code::Forbidden | Code::NotInChannel | Code::ForbiddenOrigin | Code::QuotaExceeded => {
                StatusCode::FORBIDDEN
            }
            Code::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Code::UnsupportedType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Code::RateLimited | Code::TooManyConnections => StatusCode::TOO_MANY_REQUESTS,
            Code::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            Code::Unauthorized | Code::InvalidCredentials => StatusCode::UNAUTHORIZED,
            Code::Conflict => StatusCode::CONFLICT,
            Code::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Code::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

/// An error a client sees: a code, a human message, and optional details.
#[derive(Clone, Debug)]
pub struct AppError {
    pub code: Code,
    pub message: String,
    pub errors: Vec<FieldError>,
    pub retry_after_ms: Option<u64>,
    /// The size limit a `too_large` answer refers to, in bytes.
    pub max_bytes: Option<u64>,
    /// The dependency (`database` or `redis`) whose failure this is, for the metrics.
    pub dependency: Option<&'static str>,
}

/// Result alias used by handlers.
pub type AppResult<T> = Result<T, AppError>;

impl AppError {
    pub fn new(code: Code, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            errors: Vec::new(),
            retry_after_ms: None,
            max_bytes: None,
            dependency: None,
        }
    }

    /// `too_large`: over a size limit of `max_bytes`.
    pub fn too_large(what: &str, max_bytes: u64) -> Self {
        Self {
            max_bytes: Some(max_bytes),
            ..Self::new(
                Code::TooLarge,
                format!("{what} is too large (at most {max_bytes} bytes)"),
            )
        }
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(Code::InvalidPayload, message)
    }

    /// `invalid_payload` with the list of fields that failed.
    pub fn fields(errors: Vec<FieldError>) -> Self {
        let message = errors
            .iter()
            .map(|e| format!("{}: {}", e.field, e.message))
            .collect::<Vec<_>>()
            .join("; ");
        Self {
            errors,
            ..Self::new(Code::InvalidPayload, message)
        }
    }

    pub fn unauthorized() -> Self {
        Self::new(Code::Unauthorized, "sign in first")
    }

    pub fn not_found(what: &str) -> Self {
        Self::new(Code::NotFound, format!("{what} not found"))
    }

    pub fn rate_limited(retry_after_ms: u64) -> Self {
        Self {
            retry_after_ms: Some(retry_after_ms),
            ..Self::new(
                Code::RateLimited,
                format!(
                    "too many requests, try again in {} s",
                    retry_after_ms.div_ceil(1000)
                ),
            )
        }
    }

    /// A dependency (Postgres or Redis) failed: logged with its cause, answered as `unavailable`.
    pub fn unavailable(what: &'static str, cause: &dyn std::fmt::Display) -> Self {
        tracing::warn!(dependency = what, error = %cause, "dependency call failed");
        Self {
            dependency: Some(what),
            ..Self::new(
                Code::Unavailable,
                format!("{what} is unavailable, try again shortly"),
            )
        }
    }

    /// The `error` object of an ack or `error` event.
    pub fn to_json(&self) -> Value {
        let mut v = json!({ "code": self.code.as_str(), "message": self.message });
        if let Some(ms) = self.retry_after_ms {
            v["retry_after_ms"] = json!(ms);
        }
        if let Some(max) = self.max_bytes {
            v["max_bytes"] = json!(max);
        }
        if !self.errors.is_empty() {
            v["errors"] = json!(self.errors);
        }
        v
    }
}

impl std::fmt::Display for AppError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code.as_str(), self.message)
    }
}

/// One failed field is `invalid_payload` naming it.
impl From<FieldError> for AppError {
    fn from(e: FieldError) -> Self {
        AppError::fields(vec![e])
    }
}

impl From<sqlx::Error> for AppError {
    fn from(e: sqlx::Error) -> Self {
        AppError::unavailable("database", &e)
    }
}

impl From<redis::RedisError> for AppError {
    fn from(e: redis::RedisError) -> Self {
        AppError::unavailable("redis", &e)
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let mut response = (self.code.status(), Json(self.to_json())).into_response();
        if let Some(ms) = self.retry_after_ms {
            if let Ok(v) = ms.div_ceil(1000).to_string().parse() {
                response.headers_mut().insert("retry-after", v);
            }
        }
        // For the metrics layer, which counts failed dependencies.
        response.extensions_mut().insert(self);
        response
    }
}

/// Whether a database error is a unique-constraint violation.
fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.code().as_deref() == Some("23505"))
}

/// What a unique violation means where it happens, said once per call site.
pub trait ResultExt<T> {
    /// A unique violation is `conflict` with `message` (a name or email taken); any other
    /// failure is `unavailable` as usual.
    fn conflict_on_unique(self, message: &str) -> AppResult<T>;

    /// A unique violation is `Ok(None)`, for callers that then try something else.
    fn none_on_unique(self) -> Result<Option<T>, sqlx::Error>;
}

impl<T> ResultExt<T> for Result<T, sqlx::Error> {
    fn conflict_on_unique(self, message: &str) -> AppResult<T> {
        self.map_err(|e| {
            if is_unique_violation(&e) {
                AppError::new(Code::Conflict, message)
            } else {
                e.into()
            }
        })
    }

    fn none_on_unique(self) -> Result<Option<T>, sqlx::Error> {
        match self {
            Ok(v) => Ok(Some(v)),
            Err(e) if is_unique_violation(&e) => Ok(None),
            Err(e) => Err(e),
        }
    }
}
