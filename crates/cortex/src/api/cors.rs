//! CORS from configuration: exact origins and wildcard patterns such as `https://*.example.com`.

use axum::http::{HeaderName, HeaderValue, Method};
use tower_http::cors::{AllowOrigin, CorsLayer};

/// One allowed origin: exact, or with a single `*` standing for one or more host characters.
#[derive(Debug, Clone)]
pub enum OriginPattern {
    Exact(String),
    Wildcard { prefix: String, suffix: String },
}

impl OriginPattern {
    pub fn parse(s: &str) -> Result<Self, String> {
        let s = s.trim().trim_end_matches('/').to_ascii_lowercase();
        if !(s.starts_with("http://") || s.starts_with("https://")) {
            return Err(format!(
                "cors origin {s:?} must start with http:// or https://"
            ));
        }
        match s.matches('*').count() {
            0 => Ok(OriginPattern::Exact(s)),
            1 => {
                let (prefix, suffix) = s.split_once('*').unwrap_or_default();
                if !prefix.ends_with("://") && !prefix.ends_with('.') && !prefix.ends_with('-') {
                    return Err(format!("cors origin {s:?}: `*` must start a host label"));
                }
                Ok(OriginPattern::Wildcard {
                    prefix: prefix.into(),
                    suffix: suffix.into(),
                })
            }
            _ => Err(format!("cors origin {s:?} has more than one `*`")),
        }
    }

    /// Whether a request's `Origin` matches. The wildcard covers host characters only, so
    /// `https://evil.com/x.example.com` or `https://example.com.evil.org` never match.
    pub fn matches(&self, origin: &str) -> bool {
        let origin = origin.to_ascii_lowercase();
        match self {
            OriginPattern::Exact(o) => *o == origin,
            OriginPattern::Wildcard { prefix, suffix } => {
                origin.len() > prefix.len() + suffix.len()
                    && origin.starts_with(prefix.as_str())
                    && origin.ends_with(suffix.as_str())
                    && origin[prefix.len()..origin.len() - suffix.len()]
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
            }
        }
    }
}

/// Routes a widget embedded on a customer's site calls.
fn widget_route(path: &str) -> bool {
    matches!(
        path,
        "/v1/sdk/init" | "/v1/chat" | "/v1/chat/stream" | "/widget.js"
    ) || path.starts_with("/v1/sdk/config/")
}

pub fn layer(origins: &[String]) -> CorsLayer {
    let patterns: Vec<OriginPattern> = origins
        .iter()
        .filter_map(|o| OriginPattern::parse(o).ok())
        .collect();
    CorsLayer::new()
        .allow_origin(AllowOrigin::predicate(
            move |origin: &HeaderValue, parts: &axum::http::request::Parts| {
                // The widget's routes answer any origin at the CORS level: the public key's
                // own allowed origins are enforced by the handlers and the SDK session.
                widget_route(parts.uri.path())
                    || origin
                        .to_str()
                        .is_ok_and(|o| patterns.iter().any(|p| p.matches(o)))
            },
        ))
        .allow_methods([
            Method::GET,
            Method::POST,
            Method::PUT,
            Method::PATCH,
            Method::DELETE,
            Method::OPTIONS,
        ])
        .allow_headers([
            axum::http::header::AUTHORIZATION,
            axum::http::header::CONTENT_TYPE,
            HeaderName::from_static("x-api-key"),
            HeaderName::from_static("x-public-key"),
            HeaderName::from_static("x-sdk-token"),
            HeaderName::from_static("x-request-id"),
            HeaderName::from_static("last-event-id"),
        ])
        .expose_headers([
            HeaderName::from_static("x-request-id"),
            HeaderName::from_static("x-ratelimit-limit"),
            HeaderName::from_static("x-ratelimit-remaining"),
            HeaderName::from_static("x-ratelimit-reset"),
            axum::http::header::RETRY_AFTER,
        ])
        .max_age(std::time::Duration::from_secs(600))
}

#[cfg(test)]
mod tests {
    use super::OriginPattern;

    #[test]
    fn wildcards_cover_subdomains_only() {
        let p = OriginPattern::parse("https://*.example.com").unwrap();
        assert!(p.matches("https://app.example.com"));
        assert!(p.matches("https://a.b.example.com"));
        assert!(!p.matches("https://example.com"));
        assert!(!p.matches("http://app.example.com"));
        assert!(!p.matches("https://evil.com/.example.com"));
        assert!(!p.matches("https://app.example.com.evil.org"));
        let v = OriginPattern::parse("https://*-preview.vercel.app").unwrap();
        assert!(v.matches("https://pr-12-preview.vercel.app"));
        assert!(OriginPattern::parse("https://x*y.com").is_err());
        assert!(OriginPattern::parse("ftp://x.com").is_err());
        assert!(OriginPattern::parse("https://*.*.com").is_err());
    }
}
