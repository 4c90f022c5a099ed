//! The error type of every LLM call.

use std::time::Duration;

/// Why an LLM call failed.
#[derive(Debug, thiserror::Error)]
pub enum LlmError {
    /// The provider could not be reached (connection refused, DNS failure, TLS failure).
    #[error("LLM provider unreachable: {0}")]
    Unreachable(String),
    /// The call (or, when streaming, the wait for the next chunk) took longer than the timeout.
    #[error("LLM call timed out after {0:?}")]
    Timeout(Duration),
    /// The provider answered with a non-success HTTP status.
    #[error("LLM provider returned HTTP {status}: {body}")]
    Status {
        /// HTTP status code.
        status: u16,
        /// Response body (truncated to a few KiB).
        body: String,
        /// Delay requested by the provider (`retry-after-ms` / `retry-after`), if any.
        retry_after: Option<Duration>,
    },
    /// The connection broke after the provider had started answering, or a stream ended early.
    #[error("LLM response interrupted: {0}")]
    Interrupted(String),
    /// The provider's answer could not be understood.
    #[error("could not decode LLM response: {0}")]
    Decode(String),
    /// The caller cancelled the call.
    #[error("LLM call cancelled")]
    Cancelled,
    /// The client is misconfigured (bad URL, header, unknown provider, empty model chain).
    #[error("LLM configuration error: {0}")]
    Config(String),
}

impl LlmError {
    /// Whether the same call may succeed if repeated: connection failures, timeouts,
    /// interruptions and HTTP 408/409/429/5xx (including Anthropic's 529 "overloaded").
    pub fn is_retryable(&self) -> bool {
        match self {
            LlmError::Unreachable(_) | LlmError::Timeout(_) | LlmError::Interrupted(_) => true,
            LlmError::Status { status, .. } => {
                matches!(status, 408 | 409 | 429) || (500..=599).contains(status)
            }
            LlmError::Decode(_) | LlmError::Cancelled | LlmError::Config(_) => false,
        }
    }

    /// The HTTP status Cortex answers its own client with when a call fails with this error:
    /// `504` for a timeout, `503` when the model gateway is unreachable, overloaded or broken
    /// (connection errors, 429/5xx, undecodable answers), `499` for a cancelled call (the client
    /// is gone) and `500` for everything else (a rejected request or bad configuration is the
    /// operator's problem and never leaks to the client).
    pub fn http_status(&self) -> u16 {
        match self {
            LlmError::Timeout(_) => 504,
            LlmError::Cancelled => 499,
            LlmError::Config(_) => 500,
            LlmError::Unreachable(_) | LlmError::Interrupted(_) | LlmError::Decode(_) => 503,
            LlmError::Status { .. } if self.is_retryable() => 503,
            LlmError::Status { .. } => 500,
        }
    }

    /// The public error code matching [`LlmError::http_status`] (`GATEWAY_TIMEOUT`,
    /// `SERVICE_UNAVAILABLE`, `CANCELLED` or `INTERNAL_ERROR`).
    pub fn public_code(&self) -> &'static str {
        match self.http_status() {
            504 => "GATEWAY_TIMEOUT",
            503 => "SERVICE_UNAVAILABLE",
            499 => "CANCELLED",
            _ => "INTERNAL_ERROR",
        }
    }

    /// Maps a reqwest error: connect errors become [`LlmError::Unreachable`], timeouts
    /// [`LlmError::Timeout`] (with the configured `timeout`), builder errors
    /// [`LlmError::Config`], anything else (a body broken off, a reset) [`LlmError::Interrupted`].
    pub(crate) fn from_reqwest(err: reqwest::Error, timeout: Duration) -> Self {
        let text = error_chain(&err);
        if err.is_connect() {
            LlmError::Unreachable(text)
        } else if err.is_timeout() {
            LlmError::Timeout(timeout)
        } else if err.is_builder() {
            LlmError::Config(text)
        } else {
            // Includes reqwest's "decode" kind, which it uses for a body that broke off
            // mid-way (this crate decodes JSON itself, with serde_json).
            LlmError::Interrupted(text)
        }
    }
}

/// An error and its sources, joined with `: ` (reqwest hides the useful part in the sources).
fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Runs `fut` until it completes or `token` is cancelled, whichever comes first; on
/// cancellation the future is dropped (which aborts its HTTP request) and
/// [`LlmError::Cancelled`] is returned.
pub async fn with_cancel<T, F>(
    token: &tokio_util::sync::CancellationToken,
    fut: F,
) -> Result<T, LlmError>
where
    F: std::future::Future<Output = Result<T, LlmError>>,
{
    tokio::select! {
        biased;
        () = token.cancelled() => Err(LlmError::Cancelled),
        out = fut => out,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(code: u16) -> LlmError {
        LlmError::Status {
            status: code,
            body: String::new(),
            retry_after: None,
        }
    }

    #[test]
    fn retryable_classes() {
        assert!(status(429).is_retryable());
        assert!(status(500).is_retryable());
        assert!(status(529).is_retryable());
        assert!(!status(400).is_retryable());
        assert!(!status(401).is_retryable());
        assert!(!status(404).is_retryable());
        assert!(LlmError::Unreachable("x".into()).is_retryable());
        assert!(LlmError::Timeout(Duration::from_secs(1)).is_retryable());
        assert!(!LlmError::Decode("x".into()).is_retryable());
        assert!(!LlmError::Cancelled.is_retryable());
    }

    #[test]
    fn public_mapping() {
        assert_eq!(LlmError::Unreachable("x".into()).http_status(), 503);
        assert_eq!(
            LlmError::Unreachable("x".into()).public_code(),
            "SERVICE_UNAVAILABLE"
        );
        assert_eq!(LlmError::Timeout(Duration::from_secs(1)).http_status(), 504);
        assert_eq!(
            LlmError::Timeout(Duration::from_secs(1)).public_code(),
            "GATEWAY_TIMEOUT"
        );
        assert_eq!(status(503).http_status(), 503);
        assert_eq!(status(429).http_status(), 503);
        assert_eq!(status(401).http_status(), 500);
        assert_eq!(status(401).public_code(), "INTERNAL_ERROR");
        assert_eq!(LlmError::Cancelled.http_status(), 499);
    }

    #[tokio::test]
    async fn with_cancel_stops_a_pending_call() {
        let token = tokio_util::sync::CancellationToken::new();
        token.cancel();
        let out: Result<(), LlmError> =
            with_cancel(&token, std::future::pending::<Result<(), LlmError>>()).await;
        assert!(matches!(out, Err(LlmError::Cancelled)));
        let live = tokio_util::sync::CancellationToken::new();
        let out = with_cancel(&live, async { Ok::<_, LlmError>(7) }).await;
        assert!(matches!(out, Ok(7)));
    }
}
