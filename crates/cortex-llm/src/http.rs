//! HTTP plumbing shared by the providers: client settings, retries with exponential backoff and
//! jitter, `Retry-After` handling, and turning an SSE response into a stream of events with an
//! idle timeout.

use std::time::Duration;

use eventsource_stream::{Event, Eventsource};
use futures::StreamExt;
use futures::stream::BoxStream;
use rand::Rng;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use secrecy::SecretString;

use crate::error::LlmError;

/// Largest error body kept in [`LlmError::Status`].
const MAX_ERROR_BODY: usize = 4096;

/// When and how often a failed call is repeated.
#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    /// Retries after the first attempt (so `max_retries + 1` attempts at most). Default 2.
    pub max_retries: u32,
    /// Delay before the first retry; doubles on each further retry. Default 250 ms.
    pub base_delay: Duration,
    /// Upper bound of the backoff delay. Default 4 s.
    pub max_delay: Duration,
    /// A provider's `Retry-After` up to this long is waited for; a longer one ends the retries
    /// at once (so a model chain moves on to its next model). Default 10 s.
    pub max_retry_after: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_retries: 2,
            base_delay: Duration::from_millis(250),
            max_delay: Duration::from_secs(4),
            max_retry_after: Duration::from_secs(10),
        }
    }
}

impl RetryPolicy {
    /// No retries at all.
    pub fn none() -> Self {
        RetryPolicy {
            max_retries: 0,
            ..RetryPolicy::default()
        }
    }

    /// How long to wait before retry number `retry` (0-based) after `err`, or `None` when the
    /// error must not be retried (not retryable, retries exhausted, or a `Retry-After` longer than
    /// [`RetryPolicy::max_retry_after`]).
    pub fn delay_before_retry(&self, retry: u32, err: &LlmError) -> Option<Duration> {
        if retry >= self.max_retries || !err.is_retryable() {
            return None;
        }
        if let LlmError::Status {
            retry_after: Some(wait),
            ..
        } = err
        {
            return (*wait <= self.max_retry_after).then_some(*wait);
        }
        let exp = self
            .base_delay
            .saturating_mul(2u32.saturating_pow(retry))
            .min(self.max_delay);
        // "Equal jitter": half fixed, half random, so concurrent clients spread out.
        let half = exp / 2;
        let jitter = rand::rng().random_range(0.0..=1.0);
        Some(half + half.mul_f64(jitter))
    }
}

/// Connection settings of one provider endpoint.
#[derive(Debug, Clone)]
pub struct HttpSettings {
    /// Base URL: for OpenAI-compatible servers up to and including the version path
    /// (`https://api.openai.com/v1`, `http://localhost:11434/v1`); for Anthropic the host
    /// (`https://api.anthropic.com`), `/v1/messages` is appended.
    pub base_url: String,
    /// API key (sent as `Authorization: Bearer` or `x-api-key`); none for local servers.
    pub api_key: Option<SecretString>,
    /// Extra headers sent with every request (e.g. OpenRouter's `HTTP-Referer`).
    pub headers: Vec<(String, String)>,
    /// Per-call timeout. A blocking call must finish within it; a streaming call must receive its
    /// response headers within it and then each next chunk within it. Default 60 s.
    pub timeout: Duration,
    /// Timeout of the TCP/TLS connect. Default 10 s.
    pub connect_timeout: Duration,
    /// Retries of a failed call (before a streaming call yields its first event).
    pub retry: RetryPolicy,
}

impl HttpSettings {
    /// Settings for `base_url` with the defaults (60 s timeout, 2 retries).
    pub fn new(base_url: impl Into<String>) -> Self {
        HttpSettings {
            base_url: base_url.into(),
            api_key: None,
            headers: Vec::new(),
            timeout: Duration::from_secs(60),
            connect_timeout: Duration::from_secs(10),
            retry: RetryPolicy::default(),
        }
    }

    /// Sets the API key.
    #[must_use]
    pub fn with_api_key(mut self, key: impl Into<String>) -> Self {
        self.api_key = Some(SecretString::from(key.into()));
        self
    }

    /// Sets the per-call timeout.
    #[must_use]
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Sets the retry policy.
    #[must_use]
    pub fn with_retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// Adds a header sent with every request.
    #[must_use]
    pub fn with_header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// `base_url` joined with `path` (exactly one `/` between them).
    pub(crate) fn url(&self, path: &str) -> String {
        format!(
            "{}/{}",
            self.base_url.trim_end_matches('/'),
            path.trim_start_matches('/')
        )
    }

    /// A reqwest client with these settings' connect timeout and `default_headers`
    /// (plus the extra headers).
    pub(crate) fn build_client(
        &self,
        mut default_headers: HeaderMap,
    ) -> Result<reqwest::Client, LlmError> {
        for (name, value) in &self.headers {
            let name = HeaderName::from_bytes(name.as_bytes())
                .map_err(|e| LlmError::Config(format!("header name {name:?}: {e}")))?;
            let value = HeaderValue::from_str(value)
                .map_err(|e| LlmError::Config(format!("header value for {name}: {e}")))?;
            default_headers.insert(name, value);
        }
        reqwest::Client::builder()
            .connect_timeout(self.connect_timeout)
            .default_headers(default_headers)
            .build()
            .map_err(|e| LlmError::Config(format!("HTTP client: {e}")))
    }
}

/// A sensitive header value (kept out of `Debug` output).
pub(crate) fn secret_header(value: &str) -> Result<HeaderValue, LlmError> {
    let mut v = HeaderValue::from_str(value)
        .map_err(|_| LlmError::Config("API key is not a valid header value".into()))?;
    v.set_sensitive(true);
    Ok(v)
}

/// The delay a response asks for: `retry-after-ms` (OpenAI) or `retry-after` in seconds.
/// (The HTTP-date form is ignored: LLM APIs send seconds.)
pub(crate) fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let get = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    if let Some(ms) = get("retry-after-ms").and_then(|v| v.trim().parse::<f64>().ok()) {
        return (ms.is_finite() && ms >= 0.0).then(|| Duration::from_secs_f64(ms / 1000.0));
    }
    let secs = get("retry-after")?.trim().parse::<f64>().ok()?;
    (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs))
}

/// Turns a non-success response into [`LlmError::Status`] (reading at most a few KiB of body).
pub(crate) async fn status_error(resp: reqwest::Response) -> LlmError {
    let status = resp.status().as_u16();
    let retry_after = retry_after(resp.headers());
    let body = match resp.bytes().await {
        Ok(bytes) => {
            let cut = &bytes[..bytes.len().min(MAX_ERROR_BODY)];
            String::from_utf8_lossy(cut).into_owned()
        }
        Err(e) => format!("<body unreadable: {e}>"),
    };
    LlmError::Status {
        status,
        body,
        retry_after,
    }
}

/// Runs `attempt` until it succeeds, fails with an error the policy does not retry, or the
/// retries are exhausted; waits per [`RetryPolicy::delay_before_retry`] in between.
pub(crate) async fn retrying<T, F, Fut>(
    policy: &RetryPolicy,
    what: &str,
    mut attempt: F,
) -> Result<T, LlmError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, LlmError>>,
{
    let mut retry = 0;
    loop {
        match attempt().await {
            Ok(v) => return Ok(v),
            Err(err) => match policy.delay_before_retry(retry, &err) {
                Some(delay) => {
                    tracing::debug!(%err, ?delay, retry, what, "retrying LLM call");
                    tokio::time::sleep(delay).await;
                    retry += 1;
                }
                None => return Err(err),
            },
        }
    }
}

/// Sends a request built by `build` and returns the response if its status is a success;
/// the whole exchange (headers) must complete within `timeout`.
pub(crate) async fn send(
    build: reqwest::RequestBuilder,
    timeout: Duration,
) -> Result<reqwest::Response, LlmError> {
    let resp = match tokio::time::timeout(timeout, build.send()).await {
        Ok(Ok(resp)) => resp,
        Ok(Err(e)) => return Err(LlmError::from_reqwest(e, timeout)),
        Err(_) => return Err(LlmError::Timeout(timeout)),
    };
    if resp.status().is_success() {
        Ok(resp)
    } else {
        Err(status_error(resp).await)
    }
}

/// Sends a request, reads the whole body within `timeout` and decodes it as JSON `T`.
pub(crate) async fn send_for_json<T: serde::de::DeserializeOwned>(
    build: reqwest::RequestBuilder,
    timeout: Duration,
) -> Result<T, LlmError> {
    let exchange = async {
        let resp = send(build, timeout).await?;
        resp.bytes()
            .await
            .map_err(|e| LlmError::from_reqwest(e, timeout))
    };
    let body = match tokio::time::timeout(timeout, exchange).await {
        Ok(out) => out?,
        Err(_) => return Err(LlmError::Timeout(timeout)),
    };
    serde_json::from_slice(&body).map_err(|e| {
        let head = String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned();
        LlmError::Decode(format!("{e} in {head:?}"))
    })
}

/// The SSE events of a streaming response; each next event must arrive within `idle`.
/// The stream owns the response: dropping it closes the connection.
pub(crate) fn sse_events(
    resp: reqwest::Response,
    idle: Duration,
) -> BoxStream<'static, Result<Event, LlmError>> {
    let events = resp.bytes_stream().eventsource();
    futures::stream::unfold(Box::pin(events), move |mut events| async move {
        let item = match tokio::time::timeout(idle, events.next()).await {
            Err(_) => Some(Err(LlmError::Timeout(idle))),
            Ok(None) => None,
            Ok(Some(Ok(event))) => Some(Ok(event)),
            Ok(Some(Err(e))) => Some(Err(match e {
                eventsource_stream::EventStreamError::Transport(e) => {
                    LlmError::from_reqwest(e, idle)
                }
                other => LlmError::Decode(other.to_string()),
            })),
        };
        item.map(|item| (item, events))
    })
    .boxed()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_with_jitter_and_caps() {
        let p = RetryPolicy {
            max_retries: 10,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_millis(1000),
            max_retry_after: Duration::from_secs(5),
        };
        let err = LlmError::Unreachable("x".into());
        for (retry, full) in [
            (0u32, 100u64),
            (1, 200),
            (2, 400),
            (3, 800),
            (4, 1000),
            (9, 1000),
        ] {
            let d = p
                .delay_before_retry(retry, &err)
                .map(|d| d.as_millis() as u64);
            let d = d.unwrap_or(u64::MAX);
            assert!(d >= full / 2 && d <= full, "retry {retry}: {d}");
        }
        assert_eq!(p.delay_before_retry(10, &err), None);
        assert_eq!(p.delay_before_retry(0, &LlmError::Decode("x".into())), None);
    }

    #[test]
    fn retry_after_small_is_honoured_large_is_not() {
        let p = RetryPolicy::default();
        let small = LlmError::Status {
            status: 429,
            body: String::new(),
            retry_after: Some(Duration::from_secs(1)),
        };
        assert_eq!(
            p.delay_before_retry(0, &small),
            Some(Duration::from_secs(1))
        );
        let large = LlmError::Status {
            status: 429,
            body: String::new(),
            retry_after: Some(Duration::from_secs(600)),
        };
        assert_eq!(p.delay_before_retry(0, &large), None);
    }

    #[test]
    fn parses_retry_after_headers() {
        let mut h = HeaderMap::new();
        assert_eq!(retry_after(&h), None);
        h.insert("retry-after", HeaderValue::from_static("2"));
        assert_eq!(retry_after(&h), Some(Duration::from_secs(2)));
        h.insert("retry-after-ms", HeaderValue::from_static("150"));
        assert_eq!(retry_after(&h), Some(Duration::from_millis(150)));
        let mut h = HeaderMap::new();
        h.insert(
            "retry-after",
            HeaderValue::from_static("Wed, 21 Oct 2015 07:28:00 GMT"),
        );
        assert_eq!(retry_after(&h), None);
    }

    #[test]
    fn joins_urls() {
        assert_eq!(
            HttpSettings::new("http://x/v1/").url("/chat/completions"),
            "http://x/v1/chat/completions"
        );
        assert_eq!(
            HttpSettings::new("http://x").url("v1/messages"),
            "http://x/v1/messages"
        );
    }
}
