//! Authentication is on for every route except the explicit public list below. A request's
//! credentials become an [`Identity`] in its extensions; handlers take it with `Caller`.

use std::time::Duration;

use axum::extract::{MatchedPath, Request, State};
use axum::http::HeaderMap;
use axum::middleware::Next;
use axum::response::Response;
use chrono::Utc;

use super::error::{ApiError, MALFORMED_KEY, rate_limit_headers};
use crate::auth::{Identity, Principal, api_key};
use crate::limits::Subject;
use crate::state::AppState;
use crate::store::{ApiKeyStore, CompanyStore, PublicKeyStore};

/// Routes that answer without credentials. Everything else requires them.
pub const PUBLIC_ROUTES: &[&str] = &[
    "/health",
    "/v1/health",
    "/health/detailed",
    "/openapi.json",
    "/portal/api/login",
    // These authenticate with a public widget key (X-Public-Key / X-API-Key: pk_…) themselves.
    "/v1/sdk/init",
    "/v1/sdk/config/{agent_id}",
    "/widget.js",
    // The developer portal's page and assets; its data comes from the API with the user's token.
    "/",
    "/ui/{*path}",
];

/// Routes that also take the credential as `?token=` (EventSource cannot send headers).
pub const TOKEN_QUERY_ROUTES: &[&str] = &["/v1/agent-run/{id}/stream"];

/// The scope an API key needs for each family of routes (by path prefix; `*` has them all).
/// Reading a family needs its scope; changing configuration also needs `admin`, which on its
/// own opens the configuration families (`configures` = true) but not chat, memory or runs.
pub const ROUTE_SCOPES: &[(&str, &str, bool)] = &[
    ("/v1/agents", "agents", true),
    ("/v1/actions", "actions", true),
    ("/v1/connections", "actions", true),
    ("/v1/knowledge", "knowledge", true),
    ("/v1/cache", "cache", true),
    ("/v1/public-keys", "admin", true),
    ("/v1/metrics", "metrics", true),
    ("/v1/chat", "chat", false),
    ("/v1/memory", "memory", false),
    ("/v1/agent/", "runs", false),
    ("/v1/agent-run", "runs", false),
    ("/v1/thread", "runs", false),
    ("/v1/projects", "runs", false),
    ("/v1/billing", "runs", false),
];

/// The scope an API key needs for `route` (a template or a path), and whether `admin` opens it.
pub fn route_scope(route: &str) -> Option<(&'static str, bool)> {
    ROUTE_SCOPES
        .iter()
        .find(|(prefix, _, _)| route.starts_with(prefix))
        .map(|(_, scope, configures)| (*scope, *configures))
}

/// An API key may call `route` only with the scope of its family.
fn check_scope(identity: &Identity, route: &str) -> Result<(), ApiError> {
    if !matches!(identity.principal, Principal::ApiKey { .. }) {
        return Ok(());
    }
    let Some((scope, configures)) = route_scope(route) else {
        return Ok(());
    };
    if identity.has_scope(scope) || (configures && identity.has_scope("admin")) {
        Ok(())
    } else {
        Err(ApiError::Forbidden(format!(
            "This API key does not have the {scope} scope"
        )))
    }
}

/// The only routes an SDK session token (`X-SDK-Token: sdk_…`) opens.
pub const SDK_ROUTES: &[&str] = &["/v1/chat", "/v1/chat/stream"];

enum Credential<'a> {
    Sdk(&'a str),
    ApiKey(&'a str),
    Jwt(&'a str),
    Malformed,
    None,
}

fn credential(headers: &HeaderMap) -> Credential<'_> {
    if let Some(v) = headers.get("x-sdk-token") {
        return match v.to_str() {
            Ok(t) => Credential::Sdk(t.trim()),
            Err(_) => Credential::None,
        };
    }
    if let Some(v) = headers.get("x-api-key") {
        return match v.to_str() {
            Ok(k) if k.trim().starts_with(api_key::PREFIX) => Credential::ApiKey(k.trim()),
            _ => Credential::Malformed,
        };
    }
    let Some(auth) = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    else {
        return Credential::None;
    };
    let Some((scheme, token)) = auth.split_once(' ') else {
        return Credential::None;
    };
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Credential::None;
    }
    let token = token.trim();
    if token.starts_with(api_key::PREFIX) {
        Credential::ApiKey(token)
    } else if token.split('.').count() == 3 {
        Credential::Jwt(token)
    } else {
        Credential::None
    }
}

/// Resolve the caller of a request from its headers.
pub async fn authenticate(state: &AppState, headers: &HeaderMap) -> Result<Identity, ApiError> {
    match credential(headers) {
        Credential::None => Err(ApiError::unauthorized()),
        Credential::Malformed => Err(ApiError::Unauthorized(MALFORMED_KEY.into())),
        Credential::Sdk(token) => {
            let claims = state
                .jwt
                .verify_sdk(token)
                .ok_or_else(ApiError::unauthorized)?;
            let origin = headers
                .get(axum::http::header::ORIGIN)
                .and_then(|v| v.to_str().ok())
                .map(|o| o.trim_end_matches('/').to_ascii_lowercase());
            if origin.as_deref() != Some(claims.origin.as_str()) {
                return Err(ApiError::Forbidden(
                    "This SDK session belongs to another origin".into(),
                ));
            }
            // A revoked public key ends its sessions at once.
            let key = state
                .store
                .public_key_by_id(claims.sub)
                .await?
                .filter(|k| k.revoked_at.is_none() && k.company_id == claims.company_id)
                .ok_or_else(ApiError::unauthorized)?;
            Ok(Identity {
                company_id: key.company_id,
                principal: Principal::Sdk {
                    public_key_id: key.id,
                    agent_id: claims.agent_id,
                },
                scopes: vec!["chat".into()],
            })
        }
        Credential::Jwt(token) if crate::auth::jwks::Jwks::handles(token) => {
            let jwks = state.jwks.as_ref().ok_or_else(ApiError::unauthorized)?;
            let ext = jwks
                .verify(token)
                .await
                .ok_or_else(ApiError::unauthorized)?;
            // The company must exist here; its id in a valid token is not enough.
            state
                .store
                .get_company(ext.company_id)
                .await?
                .ok_or_else(ApiError::unauthorized)?;
            Ok(Identity {
                company_id: ext.company_id,
                principal: Principal::User {
                    user_id: ext.user_id,
                    role: ext.role,
                },
                scopes: vec!["*".into()],
            })
        }
        Credential::Jwt(token) => {
            let claims = state.jwt.verify(token).ok_or_else(ApiError::unauthorized)?;
            Ok(Identity {
                company_id: claims.company_id,
                principal: Principal::User {
                    user_id: claims.sub,
                    role: claims.role,
                },
                scopes: vec!["*".into()],
            })
        }
        Credential::ApiKey(raw) => {
            if !api_key::is_well_formed(raw) {
                return Err(ApiError::Unauthorized(MALFORMED_KEY.into()));
            }
            let hash = api_key::hash(raw);
            let key = match state.keys.get(&hash) {
                Some(key) => key,
                None => {
                    let start = state.keys.read_start();
                    let key = state
                        .store
                        .find_key_by_hash(&hash)
                        .await?
                        .ok_or_else(ApiError::unauthorized)?;
                    if key.revoked_at.is_none() {
                        state.keys.put(key.clone(), start);
                    }
                    key
                }
            };
            let now = Utc::now();
            let usable = api_key::hashes_equal(&key.key_hash, &hash)
                && key.revoked_at.is_none()
                && key.expires_at.is_none_or(|exp| exp > now);
            if !usable {
                return Err(ApiError::unauthorized());
            }
            touch_if_due(state, &key, now);
            Ok(Identity {
                company_id: key.company_id,
                principal: Principal::ApiKey { key_id: key.id },
                scopes: key.scopes,
            })
        }
    }
}

/// Write `last_used_at` in the background when it is older than the configured interval;
/// otherwise nothing is written, so verification costs one indexed read.
fn touch_if_due(state: &AppState, key: &crate::store::ApiKey, now: chrono::DateTime<Utc>) {
    let secs = state.config.auth.api_key_touch_interval_seconds;
    let interval = chrono::Duration::seconds(i64::try_from(secs).unwrap_or(i64::MAX / 1000));
    let due = key.last_used_at.is_none_or(|t| now - t >= interval);
    if !due || !state.claim_key_touch(key.id, Duration::from_secs(secs)) {
        return;
    }
    let (st, company_id, key_id) = (state.clone(), key.company_id, key.id);
    state.tasks.spawn(async move {
        if let Err(e) = st.store.touch_key(company_id, key_id, now, interval).await {
            tracing::warn!(error = %e, %key_id, "could not record api key use");
        }
    });
}

/// For a route that takes `?token=` and a request without credential headers: the token as a
/// bearer header.
fn query_token(route: &str, req: &Request) -> Option<HeaderMap> {
    if !TOKEN_QUERY_ROUTES.contains(&route)
        || !matches!(credential(req.headers()), Credential::None)
    {
        return None;
    }
    let token = req.uri().query()?.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        (k == "token").then(|| v.to_owned())
    })?;
    let mut headers = HeaderMap::new();
    let value = axum::http::HeaderValue::from_str(&format!("Bearer {token}")).ok()?;
    headers.insert(axum::http::header::AUTHORIZATION, value);
    Some(headers)
}

/// The layer: public routes pass, everything else needs a valid credential.
pub async fn require_auth(
    State(state): State<AppState>,
    mut req: Request,
    next: Next,
) -> Result<Response, ApiError> {
    // The route template (`/v1/sdk/config/{agent_id}`), or the raw path of an unknown route.
    let matched = req.extensions().get::<MatchedPath>().cloned();
    let raw = matched.is_none().then(|| req.uri().path().to_owned());
    let route = matched
        .as_ref()
        .map(MatchedPath::as_str)
        .or(raw.as_deref())
        .unwrap_or_default();
    if PUBLIC_ROUTES.contains(&route) {
        return Ok(next.run(req).await);
    }
    let identity = match query_token(route, &req) {
        Some(headers) => authenticate(&state, &headers).await?,
        None => authenticate(&state, req.headers()).await?,
    };
    if matches!(identity.principal, Principal::Sdk { .. }) && !SDK_ROUTES.contains(&route) {
        return Err(ApiError::Unauthorized(
            "SDK session tokens are valid only for the chat endpoints".into(),
        ));
    }
    check_scope(&identity, route)?;
    let quota = state
        .rate
        .hit(
            Subject::Company(identity.company_id),
            state.config.limits.company_rate(),
        )
        .await;
    if let Some(q) = quota
        && !q.allowed
    {
        metrics::counter!("cortex_rate_limited_total", "limit" => "company").increment(1);
        return Err(ApiError::RateLimited {
            message: "Rate limit exceeded".into(),
            retry_after_ms: q.retry_after_ms,
            quota: Some(q),
        });
    }
    req.extensions_mut().insert(identity);
    let mut resp = next.run(req).await;
    // A handler's own, narrower limit (a conversation's) may have set them already.
    if let Some(q) = quota
        && !resp.headers().contains_key("x-ratelimit-remaining")
    {
        rate_limit_headers(resp.headers_mut(), &q);
    }
    Ok(resp)
}
