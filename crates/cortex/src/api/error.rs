//! The one place where failures become HTTP: status, code and the contract's envelope
//! `{"success": false, "detail": …, "error": {"code", "message"}}`. 5xx details go to the log only.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::{Value, json};

use crate::store::StoreError;

/// One validation failure, in FastAPI's shape.
#[derive(Debug, Clone, Serialize, PartialEq, utoipa::ToSchema)]
pub struct FieldError {
    /// Where: `["body", "name"]`, `["query", "limit"]`.
    pub loc: Vec<Value>,
    pub msg: String,
    #[serde(rename = "type")]
    pub kind: String,
}

impl FieldError {
    pub fn body(field: &str, msg: impl Into<String>, kind: &str) -> Self {
        Self {
            loc: vec![json!("body"), json!(field)],
            msg: msg.into(),
            kind: kind.into(),
        }
    }

    pub fn query(field: &str, msg: impl Into<String>, kind: &str) -> Self {
        Self {
            loc: vec![json!("query"), json!(field)],
            msg: msg.into(),
            kind: kind.into(),
        }
    }
}

/// Every failure a handler can answer with.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("request validation failed")]
    Validation(Vec<FieldError>),
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    PayloadTooLarge(String),
    /// Shutting down, or a dependency is unreachable; `detail` is an object where the contract shows one.
    #[error("{message}")]
    ServiceUnavailable {
        message: String,
        detail: Option<Value>,
    },
    #[error("{0}")]
    GatewayTimeout(String),
    /// 429 `RATE_LIMIT_EXCEEDED`, with `Retry-After`, `retryAfterMs` and, for a counted
    /// limit, the `X-RateLimit-*` headers of the window that refused it.
    #[error("{message}")]
    RateLimited {
        message: String,
        retry_after_ms: u64,
        quota: Option<crate::limits::Quota>,
    },
    /// 402: billing and plan limits; `detail` is the reference's object (with `error_code`).
    #[error("{message}")]
    PaymentRequired {
        code: &'static str,
        message: String,
        detail: Value,
    },
    /// Logged with its cause; the client sees a generic message.
    #[error("internal error: {0}")]
    Internal(String),
}

pub type ApiResult<T> = Result<T, ApiError>;

pub const NO_CREDENTIALS: &str = "No valid authentication credentials found";
pub const MALFORMED_KEY: &str = "Invalid API key format. Expected format: ctx_…";

impl ApiError {
    pub fn internal(e: impl std::fmt::Display) -> Self {
        ApiError::Internal(e.to_string())
    }

    pub fn unauthorized() -> Self {
        ApiError::Unauthorized(NO_CREDENTIALS.into())
    }

    pub fn not_found(what: &str) -> Self {
        ApiError::NotFound(format!("{what} not found"))
    }

    /// `402 INSUFFICIENT_CREDITS`, with the reference's `detail` object.
    pub fn insufficient_credits() -> Self {
        Self::payment(
            "INSUFFICIENT_CREDITS",
            "Billing check failed: Insufficient credits",
            json!({}),
        )
    }

    /// A `402` whose `detail` is `extra` plus `message` and `error_code`.
    pub fn payment(code: &'static str, message: &str, extra: Value) -> Self {
        let mut detail = match extra {
            Value::Object(m) => m,
            _ => serde_json::Map::new(),
        };
        detail.insert("message".into(), json!(message));
        detail.insert("error_code".into(), json!(code));
        ApiError::PaymentRequired {
            code,
            message: message.to_owned(),
            detail: Value::Object(detail),
        }
    }

    pub fn validation(errors: Vec<FieldError>) -> Self {
        ApiError::Validation(errors)
    }

    /// The code and the client-safe message, for errors reported inside a stream.
    pub fn code_and_message(&self) -> (&'static str, String) {
        let (_, code) = self.parts();
        let message = match self {
            ApiError::Internal(cause) => {
                tracing::error!(error = %cause, "internal error");
                "Internal server error".to_string()
            }
            ApiError::Validation(_) => "Request validation failed".to_string(),
            other => other.to_string(),
        };
        (code, message)
    }

    fn parts(&self) -> (StatusCode, &'static str) {
        match self {
            ApiError::BadRequest(_) => (StatusCode::BAD_REQUEST, "BAD_REQUEST"),
            ApiError::Validation(_) => (StatusCode::UNPROCESSABLE_ENTITY, "VALIDATION_ERROR"),
            ApiError::Unauthorized(_) => (StatusCode::UNAUTHORIZED, "UNAUTHORIZED"),
            ApiError::Forbidden(_) => (StatusCode::FORBIDDEN, "FORBIDDEN"),
            ApiError::NotFound(_) => (StatusCode::NOT_FOUND, "NOT_FOUND"),
            ApiError::Conflict(_) => (StatusCode::CONFLICT, "CONFLICT"),
            ApiError::PayloadTooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, "PAYLOAD_TOO_LARGE"),
            ApiError::ServiceUnavailable { .. } => {
                (StatusCode::SERVICE_UNAVAILABLE, "SERVICE_UNAVAILABLE")
            }
            ApiError::GatewayTimeout(_) => (StatusCode::GATEWAY_TIMEOUT, "GATEWAY_TIMEOUT"),
            ApiError::RateLimited { .. } => (StatusCode::TOO_MANY_REQUESTS, "RATE_LIMIT_EXCEEDED"),
            ApiError::PaymentRequired { code, .. } => (StatusCode::PAYMENT_REQUIRED, *code),
            ApiError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "INTERNAL_ERROR"),
        }
    }
}

impl From<crate::knowledge::KnowledgeError> for ApiError {
    fn from(e: crate::knowledge::KnowledgeError) -> Self {
        use crate::knowledge::KnowledgeError;
        match e {
            KnowledgeError::UnknownModel(u) => ApiError::BadRequest(u.to_string()),
            KnowledgeError::SourceNotFound => ApiError::not_found("Knowledge source"),
            KnowledgeError::DocumentNotFound => ApiError::not_found("Document"),
            KnowledgeError::AgentNotFound => ApiError::not_found("Agent"),
            KnowledgeError::Invalid(m) => ApiError::BadRequest(m),
            KnowledgeError::Failed(m) => ApiError::Internal(m),
            KnowledgeError::Store(s) => s.into(),
        }
    }
}

/// Map a pipeline failure to the contract: 404 agent, 503 model unreachable, 504 model timed out.
impl From<crate::pipeline::PipelineError> for ApiError {
    fn from(e: crate::pipeline::PipelineError) -> Self {
        use crate::pipeline::PipelineError;
        match e {
            PipelineError::AgentNotFound => ApiError::not_found("Agent"),
            PipelineError::Llm(err) => {
                tracing::warn!(error = %err, "model call failed");
                if err.http_status() == 504 {
                    ApiError::GatewayTimeout("LLM call timed out".into())
                } else {
                    ApiError::ServiceUnavailable {
                        message: "LLM gateway unreachable".into(),
                        detail: None,
                    }
                }
            }
            PipelineError::Store(err) => err.into(),
            // The agent's saved template failed on this turn's values: named, at its line.
            PipelineError::Template(err) => ApiError::validation(vec![FieldError {
                loc: vec![json!("agent"), json!("system_prompt")],
                msg: format!("The agent's system prompt failed to render: {err}"),
                kind: "template_error".into(),
            }]),
            PipelineError::Cancelled => ApiError::internal("request cancelled"),
            PipelineError::InsufficientCredits => ApiError::insufficient_credits(),
        }
    }
}

impl From<crate::store::StartRefusal> for ApiError {
    fn from(e: crate::store::StartRefusal) -> Self {
        use crate::store::StartRefusal;
        match e {
            StartRefusal::NotFound(what) => ApiError::not_found(what),
            StartRefusal::Busy => {
                ApiError::Conflict("This thread already has a running agent run".into())
            }
            StartRefusal::InsufficientCredits => ApiError::insufficient_credits(),
            StartRefusal::RunLimit {
                running_thread_ids,
                running_count,
                limit,
            } => ApiError::payment(
                "AGENT_RUN_LIMIT_EXCEEDED",
                &format!("Maximum of {limit} concurrent runs. You have {running_count} running."),
                json!({"running_thread_ids": running_thread_ids, "running_count": running_count, "limit": limit}),
            ),
            StartRefusal::ThreadLimit {
                current_count,
                limit,
            } => ApiError::payment(
                "THREAD_LIMIT_EXCEEDED",
                &format!("Maximum of {limit} threads allowed."),
                json!({"current_count": current_count, "limit": limit}),
            ),
            StartRefusal::Store(s) => s.into(),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound => ApiError::NotFound("Resource not found".into()),
            StoreError::Conflict(what) => ApiError::Conflict(what),
            StoreError::Corrupt(_)
            | StoreError::Db(_)
            | StoreError::Sqlite(_)
            | StoreError::Migrate(_) => ApiError::internal(e),
        }
    }
}

impl From<crate::pipeline::cache::CacheError> for ApiError {
    fn from(e: crate::pipeline::cache::CacheError) -> Self {
        use crate::pipeline::cache::CacheError;
        match e {
            CacheError::Store(s) => s.into(),
            CacheError::Embed(_) | CacheError::Index(_) => ApiError::internal(e),
        }
    }
}

impl From<crate::sandbox::FsError> for ApiError {
    fn from(e: crate::sandbox::FsError) -> Self {
        use crate::sandbox::FsError;
        match e {
            FsError::BadPath(_) | FsError::NotAFile(_) | FsError::NotADirectory(_) => {
                ApiError::BadRequest(e.to_string())
            }
            FsError::NotFound(_) => ApiError::not_found("File"),
            FsError::TooLarge(m) => ApiError::PayloadTooLarge(m),
            FsError::Io(_) => ApiError::internal(e),
        }
    }
}

/// `X-RateLimit-Limit`, `X-RateLimit-Remaining` and `X-RateLimit-Reset` (unix seconds).
pub fn rate_limit_headers(headers: &mut axum::http::HeaderMap, q: &crate::limits::Quota) {
    headers.insert("x-ratelimit-limit", HeaderValue::from(q.limit));
    headers.insert("x-ratelimit-remaining", HeaderValue::from(q.remaining));
    headers.insert("x-ratelimit-reset", HeaderValue::from(q.reset_unix));
}

/// The error envelope, for handlers and layers that build responses themselves.
pub fn envelope(status: StatusCode, code: &str, message: &str, detail: Value) -> Response {
    let body =
        json!({"success": false, "detail": detail, "error": {"code": code, "message": message}});
    let mut resp = (status, axum::Json(body)).into_response();
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = self.parts();
        match self {
            ApiError::Validation(errors) => {
                envelope(status, code, "Request validation failed", json!(errors))
            }
            ApiError::ServiceUnavailable { message, detail } => {
                let detail = detail.unwrap_or_else(|| json!(message));
                envelope(status, code, &message, detail)
            }
            ApiError::RateLimited {
                message,
                retry_after_ms,
                quota,
            } => {
                let body = json!({"success": false, "detail": message,
                    "error": {"code": code, "message": message}, "retryAfterMs": retry_after_ms});
                let mut resp = (status, axum::Json(body)).into_response();
                let headers = resp.headers_mut();
                headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
                headers.insert(
                    header::RETRY_AFTER,
                    HeaderValue::from(retry_after_ms.div_ceil(1000).max(1)),
                );
                if let Some(q) = quota {
                    rate_limit_headers(headers, &q);
                }
                resp
            }
            ApiError::PaymentRequired {
                code,
                message,
                detail,
            } => envelope(status, code, &message, detail),
            ApiError::Internal(cause) => {
                tracing::error!(error = %cause, "internal error");
                envelope(
                    status,
                    code,
                    "Internal server error",
                    json!("Internal server error"),
                )
            }
            ApiError::BadRequest(m)
            | ApiError::Unauthorized(m)
            | ApiError::Forbidden(m)
            | ApiError::NotFound(m)
            | ApiError::Conflict(m)
            | ApiError::PayloadTooLarge(m)
            | ApiError::GatewayTimeout(m) => envelope(status, code, &m, json!(m)),
        }
    }
}
