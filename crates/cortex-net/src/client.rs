//! [`GuardedClient`]: bounded, guarded, retrying outbound HTTP.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use http::header::{self, HeaderMap, HeaderName};
use http::{Method, StatusCode};
use url::Url;

use crate::error::NetError;
use crate::guard::{GuardedResolver, MAX_REDIRECT_HOPS, NetGuard, NetPolicy, OversizePolicy};

/// How much of a failed response's body [`NetError::Status`] carries.
const STATUS_BODY_PREVIEW: usize = 1024;

/// One outbound HTTP request. Cheap to clone (the body is [`Bytes`]), so it can be retried.
#[derive(Debug, Clone)]
pub struct OutboundRequest {
    /// HTTP method.
    pub method: Method,
    /// Absolute http/https URL.
    pub url: Url,
    /// Request headers. Values marked sensitive ([`http::HeaderValue::set_sensitive`]) are, like
    /// `Authorization` and `Cookie`, dropped when a redirect leaves the original origin.
    pub headers: HeaderMap,
    /// Request body, if any.
    pub body: Option<Bytes>,
}

impl OutboundRequest {
    /// A request without headers or body.
    pub fn new(method: Method, url: Url) -> Self {
        Self {
            method,
            url,
            headers: HeaderMap::new(),
            body: None,
        }
    }

    /// A `GET` of `url`, which must parse as an absolute URL.
    pub fn get(url: &str) -> Result<Self, NetError> {
        let url = Url::parse(url).map_err(|e| NetError::InvalidUrl(format!("{url:?}: {e}")))?;
        Ok(Self::new(Method::GET, url))
    }

    /// A `POST` of `fields` as `application/x-www-form-urlencoded`, accepting JSON (an OAuth 2
    /// token request).
    pub fn post_form(url: &str, fields: &[(&str, &str)]) -> Result<Self, NetError> {
        let url = Url::parse(url).map_err(|e| NetError::InvalidUrl(format!("{url:?}: {e}")))?;
        let body = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(fields)
            .finish();
        let mut req = Self::new(Method::POST, url);
        req.headers.insert(
            header::CONTENT_TYPE,
            header::HeaderValue::from_static("application/x-www-form-urlencoded"),
        );
        req.headers.insert(
            header::ACCEPT,
            header::HeaderValue::from_static("application/json"),
        );
        req.body = Some(Bytes::from(body));
        Ok(req)
    }
}

/// A response read through the guard, its body capped at the policy's limit.
#[derive(Debug, Clone)]
pub struct FetchedResponse {
    /// Final status code.
    pub status: u16,
    /// Response headers of the final response.
    pub headers: HeaderMap,
    /// Body, at most [`NetPolicy::max_response_bytes`] bytes.
    pub body: Bytes,
    /// Whether the body was cut at the cap.
    pub truncated: bool,
    /// Time from the start of the call to the end of the body, retries and redirects included.
    pub elapsed: Duration,
    /// Attempts made (1 when the first one was final).
    pub attempts: u32,
    /// URL of the final response (after redirects).
    pub final_url: Url,
}

impl FetchedResponse {
    /// Whether the status is 2xx.
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The body as text, invalid UTF-8 replaced; an incomplete character cut off by truncation is dropped.
    pub fn text_lossy(&self) -> String {
        lossy_prefix(&self.body)
    }
}

/// Decodes bytes as UTF-8 lossily, dropping an incomplete character at the very end.
pub(crate) fn lossy_prefix(bytes: &[u8]) -> String {
    let mut end = bytes.len();
    // An incomplete trailing sequence is at most 3 bytes; drop it rather than show U+FFFD.
    if let Err(e) = std::str::from_utf8(&bytes[end.saturating_sub(4)..])
        && e.error_len().is_none()
    {
        end = end.saturating_sub(4) + e.valid_up_to();
    }
    String::from_utf8_lossy(&bytes[..end]).into_owned()
}

/// The result of [`GuardedClient::fetch`]: any HTTP status is a response; `Err` means none was had.
#[derive(Debug)]
pub struct FetchReport {
    /// The final response or the last error.
    pub result: Result<FetchedResponse, NetError>,
    /// Attempts made, including the failed ones.
    pub attempts: u32,
    /// Time spent, retries and backoff included.
    pub elapsed: Duration,
}

/// An HTTP client whose every connection goes through the network guard.
///
/// * Only http/https URLs; literal IP hosts are checked before anything is sent and host names
///   are resolved by [`GuardedResolver`], so the address actually connected to is the one checked.
/// * Environment proxies are ignored (a proxy would do the resolution and defeat the guard).
/// * Redirects are followed by hand, at most [`NetPolicy::max_redirects`] hops (≤ 3), each hop
///   checked again; credentials are dropped when a hop leaves the original origin.
/// * Bodies are streamed and reading stops at [`NetPolicy::max_response_bytes`].
/// * Connection errors, 5xx and 429 are retried [`NetPolicy::max_retries`] times with
///   exponential backoff; other 4xx never are.
#[derive(Debug, Clone)]
pub struct GuardedClient {
    client: reqwest::Client,
    guard: NetGuard,
    policy: Arc<NetPolicy>,
}

impl GuardedClient {
    /// Builds a client enforcing `policy`; fails on a malformed policy.
    pub fn new(policy: NetPolicy) -> Result<Self, NetError> {
        let guard = NetGuard::new(&policy)?;
        let client = reqwest::Client::builder()
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .dns_resolver(Arc::new(GuardedResolver::new(guard.clone())))
            .connect_timeout(policy.connect_timeout)
            .timeout(policy.timeout)
            .user_agent(policy.user_agent.clone())
            .build()
            .map_err(|e| NetError::Request(format!("cannot build HTTP client: {e}")))?;
        Ok(Self {
            client,
            guard,
            policy: Arc::new(policy),
        })
    }

    /// The policy in force.
    pub fn policy(&self) -> &NetPolicy {
        &self.policy
    }

    /// The compiled guard (to check URLs up front, e.g. when an action is saved).
    pub fn guard(&self) -> &NetGuard {
        &self.guard
    }

    /// Sends `request`; a final status of 400 or more is [`NetError::Status`].
    pub async fn send(&self, request: OutboundRequest) -> Result<FetchedResponse, NetError> {
        let response = self.fetch(request).await.result?;
        if response.status >= 400 {
            let preview = &response.body[..response.body.len().min(STATUS_BODY_PREVIEW)];
            return Err(NetError::Status {
                status: response.status,
                body: lossy_prefix(preview),
            });
        }
        Ok(response)
    }

    /// `GET`s `url` (see [`GuardedClient::send`]).
    pub async fn get(&self, url: &str) -> Result<FetchedResponse, NetError> {
        self.send(OutboundRequest::get(url)?).await
    }

    /// Sends `request` with retries and reports every HTTP status as a response, with the
    /// number of attempts made whatever the outcome.
    pub async fn fetch(&self, request: OutboundRequest) -> FetchReport {
        let started = Instant::now();
        let mut attempts = 0u32;
        loop {
            attempts += 1;
            let outcome =
                match tokio::time::timeout(self.policy.timeout, self.attempt(&request, started))
                    .await
                {
                    Ok(outcome) => outcome,
                    Err(_) => Err(NetError::Timeout(self.policy.timeout)),
                };
            let retry_hint = match &outcome {
                Ok(resp) if resp.status >= 500 || resp.status == 429 => {
                    Some(retry_after(&resp.headers))
                }
                Ok(_) => None,
                Err(err) if err.is_retryable() => Some(None),
                Err(_) => None,
            };
            let Some(server_hint) = retry_hint.filter(|_| attempts <= self.policy.max_retries)
            else {
                let result = outcome.map(|mut resp| {
                    resp.attempts = attempts;
                    resp.elapsed = started.elapsed();
                    resp
                });
                return FetchReport {
                    result,
                    attempts,
                    elapsed: started.elapsed(),
                };
            };
            let exp = self
                .policy
                .retry_base_delay
                .saturating_mul(1u32 << (attempts - 1).min(16));
            let delay = server_hint
                .map_or(exp, |hint| hint.max(exp))
                .min(self.policy.retry_max_delay);
            tracing::debug!(
                url = %request.url,
                attempt = attempts,
                delay_ms = delay.as_millis() as u64,
                "retrying outbound request"
            );
            tokio::time::sleep(delay).await;
        }
    }

    /// One attempt: the request and its redirect hops, body read to the cap.
    async fn attempt(
        &self,
        request: &OutboundRequest,
        started: Instant,
    ) -> Result<FetchedResponse, NetError> {
        let mut current = request.clone();
        let max_hops = self.policy.max_redirects.min(MAX_REDIRECT_HOPS);
        let mut hops = 0usize;
        loop {
            self.guard.check_url(&current.url)?;
            let mut builder = self
                .client
                .request(current.method.clone(), current.url.clone())
                .headers(current.headers.clone());
            if let Some(body) = &current.body {
                builder = builder.body(body.clone());
            }
            let response = builder
                .send()
                .await
                .map_err(|e| map_send_error(&e, self.policy.timeout))?;
            let status = response.status();
            if is_followed_redirect(status)
                && let Some(location) = response.headers().get(header::LOCATION)
            {
                if hops >= max_hops {
                    return Err(NetError::TooManyRedirects { limit: max_hops });
                }
                hops += 1;
                let location = location.to_str().map_err(|_| {
                    NetError::InvalidRedirect("Location header is not valid text".to_string())
                })?;
                let next = current.url.join(location).map_err(|e| {
                    NetError::InvalidRedirect(format!("Location {location:?}: {e}"))
                })?;
                current = redirect_request(current, status, next);
                continue;
            }
            let headers = response.headers().clone();
            let final_url = response.url().clone();
            let (body, truncated) = self.read_capped(response).await?;
            return Ok(FetchedResponse {
                status: status.as_u16(),
                headers,
                body,
                truncated,
                elapsed: started.elapsed(),
                attempts: 1,
                final_url,
            });
        }
    }

    async fn read_capped(
        &self,
        mut response: reqwest::Response,
    ) -> Result<(Bytes, bool), NetError> {
        let cap = self.policy.max_response_bytes;
        let fail_on_oversize = self.policy.oversize == OversizePolicy::Error;
        if let Some(len) = response.content_length()
            && fail_on_oversize
            && len > cap as u64
        {
            return Err(NetError::TooLarge { limit: cap });
        }
        let initial = response
            .content_length()
            .map_or(8 * 1024, |l| l as usize)
            .min(cap);
        let mut buf = BytesMut::with_capacity(initial);
        let mut truncated = false;
        while let Some(chunk) = response.chunk().await.map_err(|e| {
            if e.is_timeout() {
                NetError::Timeout(self.policy.timeout)
            } else {
                NetError::Body(error_chain(&e))
            }
        })? {
            let room = cap - buf.len();
            if chunk.len() > room {
                if fail_on_oversize {
                    return Err(NetError::TooLarge { limit: cap });
                }
                buf.extend_from_slice(&chunk[..room]);
                truncated = true;
                break;
            }
            buf.extend_from_slice(&chunk);
        }
        Ok((buf.freeze(), truncated))
    }
}

fn is_followed_redirect(status: StatusCode) -> bool {
    matches!(status.as_u16(), 301 | 302 | 303 | 307 | 308)
}

/// The request for the next redirect hop: 303 (and 301/302 after a POST) becomes a body-less
/// GET; 307/308 keep method and body; credentials are dropped when the origin changes.
fn redirect_request(prev: OutboundRequest, status: StatusCode, next: Url) -> OutboundRequest {
    let OutboundRequest {
        mut method,
        url,
        mut headers,
        mut body,
    } = prev;
    let to_get = match status.as_u16() {
        303 => method != Method::HEAD,
        301 | 302 => method == Method::POST,
        _ => false,
    };
    if to_get {
        method = Method::GET;
        body = None;
        for name in [
            header::CONTENT_TYPE,
            header::CONTENT_LENGTH,
            header::CONTENT_ENCODING,
        ] {
            headers.remove(name);
        }
    }
    if url.origin() != next.origin() {
        let sensitive: Vec<HeaderName> = headers
            .iter()
            .filter(|(_, v)| v.is_sensitive())
            .map(|(k, _)| k.clone())
            .collect();
        for name in sensitive.into_iter().chain([
            header::AUTHORIZATION,
            header::PROXY_AUTHORIZATION,
            header::COOKIE,
        ]) {
            headers.remove(name);
        }
    }
    OutboundRequest {
        method,
        url: next,
        headers,
        body,
    }
}

/// A server's `Retry-After` in seconds (the HTTP-date form is ignored).
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    headers
        .get(header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse::<u64>()
        .ok()
        .map(Duration::from_secs)
}

/// The guard's own error if the resolver refused the host, else a classified transport error.
fn map_send_error(err: &reqwest::Error, timeout: Duration) -> NetError {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = source {
        if let Some(net) = e.downcast_ref::<NetError>() {
            return net.clone();
        }
        source = e.source();
    }
    if err.is_connect() {
        // Includes connect timeouts: a connection error, so retryable.
        NetError::Connect(error_chain(err))
    } else if err.is_timeout() {
        NetError::Timeout(timeout)
    } else if err.is_builder() {
        NetError::Request(error_chain(err))
    } else {
        // Connect failures and connections closed before a response: no response was had.
        NetError::Connect(error_chain(err))
    }
}

fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(e) = source {
        let s = e.to_string();
        if !text.contains(&s) {
            text.push_str(": ");
            text.push_str(&s);
        }
        source = e.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lossy_prefix_drops_cut_character() {
        let s = "héllo wörld";
        let bytes = s.as_bytes();
        // Cut in the middle of 'ö' (2 bytes).
        let cut = s.find('ö').unwrap() + 1;
        assert_eq!(lossy_prefix(&bytes[..cut]), "héllo w");
        assert_eq!(lossy_prefix(bytes), s);
        assert_eq!(lossy_prefix(b"a\xffb"), "a\u{fffd}b");
    }

    #[test]
    fn redirect_rewrites_method_and_strips_credentials() {
        let mut headers = HeaderMap::new();
        headers.insert(header::AUTHORIZATION, "Bearer x".parse().unwrap());
        let mut key: http::HeaderValue = "k".parse().unwrap();
        key.set_sensitive(true);
        headers.insert("x-api-key", key);
        headers.insert(header::CONTENT_TYPE, "application/json".parse().unwrap());
        headers.insert("x-trace", "1".parse().unwrap());
        let req = OutboundRequest {
            method: Method::POST,
            url: Url::parse("http://a.example/x").unwrap(),
            headers,
            body: Some(Bytes::from_static(b"{}")),
        };
        let same = redirect_request(
            req.clone(),
            StatusCode::TEMPORARY_REDIRECT,
            Url::parse("http://a.example/y").unwrap(),
        );
        assert_eq!(same.method, Method::POST);
        assert!(same.body.is_some());
        assert!(same.headers.contains_key(header::AUTHORIZATION));
        assert!(same.headers.contains_key("x-api-key"));

        let other = redirect_request(
            req,
            StatusCode::SEE_OTHER,
            Url::parse("http://b.example/y").unwrap(),
        );
        assert_eq!(other.method, Method::GET);
        assert!(other.body.is_none());
        assert!(!other.headers.contains_key(header::AUTHORIZATION));
        assert!(!other.headers.contains_key("x-api-key"));
        assert!(!other.headers.contains_key(header::CONTENT_TYPE));
        assert!(other.headers.contains_key("x-trace"));
    }

    #[test]
    fn retry_after_parses_seconds() {
        let mut h = HeaderMap::new();
        assert_eq!(retry_after(&h), None);
        h.insert(header::RETRY_AFTER, "3".parse().unwrap());
        assert_eq!(retry_after(&h), Some(Duration::from_secs(3)));
        h.insert(
            header::RETRY_AFTER,
            "Wed, 21 Oct 2015 07:28:00 GMT".parse().unwrap(),
        );
        assert_eq!(retry_after(&h), None);
    }
}
