//! Errors of guarded outbound requests.

use std::time::Duration;

/// Why an outbound request failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NetError {
    /// The network guard refused the destination; no connection was made.
    #[error("request to {host} blocked by the network guard: {reason}")]
    Blocked {
        /// The host of the refused URL (or redirect target).
        host: String,
        /// Why it was refused (e.g. "loopback address").
        reason: String,
    },
    /// The URL is malformed, has no host or uses a scheme other than http/https.
    #[error("invalid URL: {0}")]
    InvalidUrl(String),
    /// The policy itself is malformed (e.g. an unparsable `allowed_hosts` entry).
    #[error("invalid network policy: {0}")]
    InvalidPolicy(String),
    /// The host name could not be resolved.
    #[error("could not resolve {host}: {message}")]
    Dns {
        /// The host name.
        host: String,
        /// The resolver's message.
        message: String,
    },
    /// The attempt did not complete within the timeout.
    #[error("request timed out after {} ms", .0.as_millis())]
    Timeout(Duration),
    /// The connection could not be established or was closed before a response arrived.
    #[error("connection failed: {0}")]
    Connect(String),
    /// The response body is larger than the policy's cap (and the policy says to fail).
    #[error("response body exceeds the limit of {limit} bytes")]
    TooLarge {
        /// The cap in bytes.
        limit: usize,
    },
    /// The server answered with a non-success status (after any retries).
    #[error("HTTP {status}{}", if .body.is_empty() { String::new() } else { format!(": {}", .body) })]
    Status {
        /// The status code.
        status: u16,
        /// The start of the response body (UTF-8 lossy, at most 1 KB).
        body: String,
    },
    /// More redirects than the policy allows (0 means redirects are disabled).
    #[error("too many redirects (limit {limit})")]
    TooManyRedirects {
        /// The redirect limit in force.
        limit: usize,
    },
    /// A redirect without a usable `Location` header.
    #[error("invalid redirect: {0}")]
    InvalidRedirect(String),
    /// The response body could not be read to the end.
    #[error("error reading the response body: {0}")]
    Body(String),
    /// The request could not be built (bad header value, client construction…).
    #[error("invalid request: {0}")]
    Request(String),
}

impl NetError {
    /// Whether another attempt may succeed (connection errors only; statuses are judged apart).
    pub fn is_retryable(&self) -> bool {
        matches!(self, NetError::Connect(_))
    }

    /// Whether this is a refusal by the network guard.
    pub fn is_blocked(&self) -> bool {
        matches!(self, NetError::Blocked { .. })
    }
}
